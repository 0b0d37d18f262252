"""fastai DataLoaders for frames, causal clips and whole videos (batches as in CONTRIBUTING.md).

Images are decoded with OpenCV, resized once to ``size`` and, when they fit in memory (the quick world
does), kept as one uint8 array: a batch is then a single gather, and augmentation (horizontal flip +
colour jitter, as the papers) runs on the whole batch on the target device in ``after_batch``. Validation
loaders are never shuffled nor augmented.

Damaged images never train silently. A file that is missing, empty, truncated (a JPEG without its
end-of-image marker: OpenCV would decode its first half and fill the rest with grey) or undecodable is found
while the loaders are built — fully decoded when the images are kept in memory, checked from its header and
tail otherwise — and dropped with its row; the loaders warn with the count and the files, and keep them in
``dls.damaged`` ({"train": [(path, reason)], "valid": [...]}). A single image read later (``load_image``, a
batch read from disk, e.g. inside a DataLoader worker) that turns out damaged is a ValueError naming the
file. The decoded images are reused across loaders of one session only while every file's size and
modification time are unchanged and the crop settings (size, boxes) are the same.
"""
from __future__ import annotations

import hashlib
import random
import warnings
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pandas as pd
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader

from affectlab.labels import INVALID_AU, INVALID_EXPR, INVALID_VA, REACTIONS

MEAN = torch.tensor([0.485, 0.456, 0.406])
STD = torch.tensor([0.229, 0.224, 0.225])
CACHE_LIMIT_BYTES = 1 << 30          # decoded images kept in memory up to this size
_STORES: dict[str, "ImageStore"] = {}  # recently built stores, reused across loaders of one session


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation of ``x`` ([..., 3, H, W]) back to [0, 1] RGB, for plots and CAM overlays."""
    shape = (3, 1, 1)
    return (x * STD.to(x.device).view(shape) + MEAN.to(x.device).view(shape)).clamp(0, 1)


_TAIL = 256   # bytes at a file's end searched for the JPEG end-of-image marker (some writers pad after it)


def _damage(head: bytes, tail: bytes, nbytes: int) -> str | None:
    """Why a file with this start / end / size cannot be a whole image (None when nothing is visibly wrong).

    A JPEG cut short decodes in OpenCV to its first rows with the rest grey (or to None), with at most a
    warning on stderr; its end-of-image marker FF D9 is then missing — and it cannot occur by chance in the
    compressed data, where every FF byte is followed by 00 or a restart marker. A cut PNG misses its IEND
    chunk."""
    if nbytes == 0:
        return "is empty (0 bytes)"
    if head[:2] == b"\xff\xd8" and b"\xff\xd9" not in tail:
        return "is a truncated JPEG (no end-of-image marker)"
    if head[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        return "is a truncated PNG (no IEND chunk)"
    return None


def check_image_file(path: str) -> str | None:
    """A cheap check of one image file without decoding it (its first and last bytes): None when it looks
    whole, else the reason ("does not exist", "is a truncated JPEG ...")."""
    import os

    try:
        with open(path, "rb") as f:
            head = f.read(8)
            n = os.fstat(f.fileno()).st_size
            f.seek(max(0, n - _TAIL))
            tail = f.read()
    except FileNotFoundError:
        return "does not exist"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    return _damage(head, tail, n)


def read_rgb(path: str, size: int, box=None) -> np.ndarray:
    """Decode ``path`` to a uint8 RGB array of ``size`` x ``size``, cropping ``box`` (left, top, right,
    bottom) first. A missing, empty, truncated or undecodable file is a ValueError naming it."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
    problem = _damage(data[:8].tobytes(), data[-_TAIL:].tobytes(), data.size)
    if problem:
        raise ValueError(f"image {path} {problem}")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"image {path} could not be decoded (corrupt or not an image)")
    if box is not None and not any(pd.isna(b) for b in box):
        h, w = img.shape[:2]
        l, t, r, b = (int(round(v)) for v in box)
        l, t, r, b = max(0, l), max(0, t), min(w, r), min(h, b)
        if r <= l or b <= t:
            raise ValueError(f"image {path}: face box {box} lies outside the {w}x{h} image")
        img = img[t:b, l:r]
    if img.shape[0] != size or img.shape[1] != size:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_image(path: str, size: int = 112, box=None) -> torch.Tensor:
    """One image as a normalised float tensor [3, size, size], ready for a model."""
    x = torch.from_numpy(read_rgb(str(path), size, box)).permute(2, 0, 1).float() / 255
    return (x - MEAN.view(3, 1, 1)) / STD.view(3, 1, 1)


def _boxes(df: pd.DataFrame):
    cols = ["box_left", "box_top", "box_right", "box_bottom"]
    if all(c in df for c in cols):
        return [tuple(r) for r in df[cols].to_numpy()]
    return [None] * len(df)


class ImageStore:
    """Decoded uint8 images [N, H, W, 3] for a list of (path, box), in memory when they fit, else read
    per batch.

    Every file is verified while the store is built: fully decoded when kept in memory, else checked from
    its first and last bytes (``check_image_file``). Damaged ones are listed in ``damaged`` ({index: "image
    <path> is ..."}; zeros in the array), for the caller to drop; ``get`` raises a ValueError naming the file
    if asked for one, or if a file read per batch turns out damaged then."""

    def __init__(self, paths: list[str], boxes: list, size: int, cache: bool | None = None):
        self.paths, self.boxes, self.size = list(map(str, paths)), boxes, size
        nbytes = len(self.paths) * size * size * 3
        self.cached = nbytes <= CACHE_LIMIT_BYTES if cache is None else cache
        self.array = None
        self.damaged: dict[int, str] = {}

        def decode(i):
            try:
                return read_rgb(self.paths[i], size, self.boxes[i])
            except ValueError as e:
                self.damaged[i] = str(e)
                return None

        if self.cached:
            self.array = np.zeros((len(self.paths), size, size, 3), np.uint8)
            with ThreadPoolExecutor(2) as pool:  # OpenCV releases the GIL while decoding
                for i, img in enumerate(pool.map(decode, range(len(self.paths)))):
                    if img is not None:
                        self.array[i] = img
        else:
            for i, p in enumerate(self.paths):
                problem = check_image_file(p)
                if problem:
                    self.damaged[i] = f"image {p} {problem}"
        self.damaged = dict(sorted(self.damaged.items()))

    def __len__(self):
        return len(self.paths)

    def kept(self) -> np.ndarray:
        """The indices of the images that are not damaged."""
        return np.array([i for i in range(len(self.paths)) if i not in self.damaged], np.int64)

    def get(self, idx: np.ndarray) -> np.ndarray:
        """Images at integer indices of any shape -> uint8 array of shape idx.shape + (H, W, 3)."""
        flat = np.asarray(idx).reshape(-1)
        if self.damaged:
            hit = np.isin(flat, list(self.damaged))
            if hit.any():
                bad = int(flat[hit.argmax()])
                raise ValueError(f"{self.damaged[bad]} (it was found damaged when the images were loaded)")
        if self.array is not None:
            return self.array[idx]
        out = np.stack([read_rgb(self.paths[i], self.size, self.boxes[i]) for i in flat])
        return out.reshape(*np.shape(idx), self.size, self.size, 3)


def _stamp(path: str):
    """What identifies a file's content without reading it: (size, modification time and status-change time in ns, inode)."""
    import os

    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino   # ctime: a restored mtime (cp -p, rsync -t) still changes it


def image_store(paths, boxes, size, cache=None, damaged: str = "raise") -> ImageStore:
    """An ``ImageStore``, reused when the same files — same path, size and modification time (a file
    replaced under the same name is decoded again) — were decoded before with the same ``size``, boxes and
    ``cache`` setting. ``damaged="raise"``: a damaged file is a ValueError naming it (and the count of
    others); ``"keep"``: the store lists them in ``store.damaged`` for the caller to drop."""
    if damaged not in ("raise", "keep"):
        raise ValueError(f"damaged must be 'raise' or 'keep', not {damaged!r}")
    paths = list(map(str, paths))
    stamps = [_stamp(p) for p in paths]
    key = hashlib.sha1(repr((paths, stamps, list(boxes), size, cache)).encode()).hexdigest()
    if key not in _STORES:
        while len(_STORES) >= 4:
            _STORES.pop(next(iter(_STORES)))
        _STORES[key] = ImageStore(paths, boxes, size, cache)
    store = _STORES[key]
    if damaged == "raise" and store.damaged:
        first = next(iter(store.damaged.values()))
        more = len(store.damaged) - 1
        raise ValueError(first + (f" (and {more} other damaged image(s) of {len(paths)})" if more else ""))
    return store


class _Damaged:
    """Collects the damaged images each split of a loader dropped; ``report`` warns once with the counts.
    ``mode="raise"``: a damaged image is an error naming it instead (for callers that pair the loader's rows
    with their DataFrame's, e.g. per-row feature extraction, which a dropped row would shift)."""

    def __init__(self, mode: str = "drop"):
        if mode not in ("drop", "raise"):
            raise ValueError(f"damaged must be 'drop' or 'raise', not {mode!r}")
        self.mode = mode
        self.by_split: dict[str, list[tuple[str, str]]] = {}

    def keep(self, store: ImageStore, name: str) -> np.ndarray:
        """Indices of ``store``'s usable images; the damaged ones recorded under ``name``. All damaged: error."""
        if self.mode == "raise" and store.damaged:
            more = len(store.damaged) - 1
            raise ValueError(next(iter(store.damaged.values()))
                             + (f" (and {more} other damaged {name} image(s) of {len(store)})" if more else ""))
        self.by_split[name] = [(store.paths[i], msg) for i, msg in store.damaged.items()]
        kept = store.kept()
        if len(store) and not len(kept):
            raise ValueError(f"all {len(store)} {name} image(s) are damaged, e.g. {next(iter(store.damaged.values()))}")
        return kept

    def report(self, dls) -> None:
        dls.damaged = self.by_split
        n = sum(map(len, self.by_split.values()))
        if n:
            counts = ", ".join(f"{len(v)} {k}" for k, v in self.by_split.items() if v)
            examples = "; ".join([msg for v in self.by_split.values() for _, msg in v][:3])
            warnings.warn(f"dropped {n} damaged image(s) ({counts}) and their rows: {examples}"
                          + (" ..." if n > 3 else "") + " — all of them in dls.damaged", stacklevel=3)


def _labels(df: pd.DataFrame, targets, aus, intensities=REACTIONS) -> dict[str, torch.Tensor]:
    """Per-row targets as tensors, with the sentinels where a column holds no label; ``"intensity"`` reads
    the columns ``intensities`` (a video data set's targets: Hume-Reaction's 7, Hume-Vidmimic2's 6)."""
    out = {}
    for t in targets:
        if t == "expr":
            _need(df, ["expr"], t)
            out[t] = torch.tensor(df["expr"].fillna(INVALID_EXPR).to_numpy(np.int64))
        elif t == "va":
            _need(df, ["valence", "arousal"], t)
            out[t] = torch.tensor(df[["valence", "arousal"]].fillna(INVALID_VA).to_numpy(np.float32))
        elif t == "au":
            _need(df, list(aus), t)
            out[t] = torch.tensor(df[list(aus)].fillna(INVALID_AU).to_numpy(np.float32))
        elif t == "intensity":
            _need(df, list(intensities), t)
            out[t] = torch.tensor(df[list(intensities)].to_numpy(np.float32))
        else:
            raise ValueError(f"unknown target {t!r}; known: expr, va, au, intensity")
    return out


def _need(df, cols, target):
    missing = [c for c in cols if c not in df]
    if missing:
        raise KeyError(f"target {target!r} needs column(s) {missing}, which the DataFrame lacks")


def _au_names(df, aus):
    if aus is not None:
        return tuple(aus)
    if "aus" in df.attrs:
        return tuple(df.attrs["aus"])
    return tuple(c for c in df.columns if c.startswith("AU") and c[2:].isdigit())


class BatchSource:
    """What a loader draws from: ``get(idx) -> batch`` with inputs first, then the target dict."""

    def __init__(self, n: int, get_inputs, labels: dict[str, torch.Tensor], n_inp: int = 1):
        self.n, self.get_inputs, self.labels, self.n_inp = n, get_inputs, labels, n_inp

    def __len__(self):
        return self.n

    def __getitem__(self, i):  # fastai only needs indexability; batches come from ``get``
        return i

    def get(self, idx: np.ndarray):
        return (*self.get_inputs(idx), {k: v[idx] for k, v in self.labels.items()})


class IndexDraws:
    """A torch-style sampler whose indices each epoch are ``draw(generator)``'s (a list of row indices): lets
    a fastai loader draw rows exactly as a plain loop would — ``torch.randperm(n, generator=g)`` per epoch, or
    ``torch.randint`` with replacement — so a fit moved onto a Learner keeps its numbers. The generator is an
    attribute, so a checkpoint captures and restores it with the loader's others (``affectlab.rng``)."""

    def __init__(self, draw, n: int, generator: torch.Generator):
        self.draw, self.n, self.generator = draw, n, generator

    def __iter__(self):
        return iter(self.draw(self.generator))

    def __len__(self):
        return self.n


class AffectDataLoader(DataLoader):
    """A fastai DataLoader that gathers whole batches from a ``BatchSource`` (one array gather instead of
    per-item collation), optionally drawing indices from a torch sampler, and augments on the device."""

    def __init__(self, dataset=None, augment=False, sampler=None, seed=0, **kwargs):
        super().__init__(dataset, **kwargs)
        self.augment, self.sampler, self.seed = augment, sampler, seed
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.n_inp = getattr(dataset, "n_inp", 1)

    def new(self, dataset=None, cls=None, **kwargs):
        res = super().new(dataset, cls, **kwargs)
        res.augment, res.sampler, res.seed = self.augment, self.sampler, self.seed
        return res

    def get_idxs(self):
        if self.sampler is not None and self.shuffle:
            return list(iter(self.sampler))
        return super().get_idxs()

    def create_item(self, s):
        return s

    def create_batch(self, b):
        return self.dataset.get(np.asarray(b, dtype=np.int64))

    def retain(self, res, b):
        return res

    def after_batch(self, b):
        x = b[0]
        if x.dtype == torch.uint8:  # images: [..., H, W, 3] uint8 -> normalised float [..., 3, H, W]
            x = x.permute(*range(x.ndim - 3), x.ndim - 1, x.ndim - 3, x.ndim - 2).float().contiguous()
            if self.augment:
                x = self._augment(x)
            shape = (3, 1, 1)
            x = x.sub_(255 * MEAN.to(x.device).view(shape)).div_(255 * STD.to(x.device).view(shape))
        return (x, *b[1:])

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        """Horizontal flip and colour jitter with the SE-ResNet paper's strengths (brightness 0.4, contrast
        0.3, saturation 0.25; its hue jitter is left out) on [0, 255] images, one draw per sample (shared
        by the frames of a clip or video, so motion stays consistent).

        The three jitters are folded into one affine map per sample: with g the grey image and m its mean,
        brightness b, contrast c and saturation s give  b*c*(s*x + (1-s)*g) + (1-c)*b*m  (torchvision clamps
        after each step; clamping once at the end is the only difference)."""
        n = x.shape[0]
        view = (n,) + (1,) * (x.ndim - 1)
        p = torch.rand(n, 4, generator=self.gen).to(x.device)
        flip = (p[:, 0] < 0.5).nonzero().squeeze(1)
        x[flip] = x[flip].flip(-1)
        bright, contrast, sat = ((1 - a + 2 * a * p[:, i]).view(view) for i, a in ((1, 0.4), (2, 0.3), (3, 0.25)))
        gray = (0.299 * x[..., 0:1, :, :]).add_(x[..., 1:2, :, :], alpha=0.587).add_(x[..., 2:3, :, :], alpha=0.114)
        mean = gray.mean(dim=tuple(range(1, gray.ndim)), keepdim=True)
        out = torch.addcmul(gray * (1 - sat), x, sat)
        out.mul_(bright * contrast).add_((1 - contrast) * bright * mean)
        return out.clamp_(0, 255)


def _dls(train_src, valid_src, bs, augment, sampler, device, num_workers, seed) -> DataLoaders:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    pin = torch.device(device).type == "cuda"
    train = AffectDataLoader(train_src, bs=bs, shuffle=True, drop_last=len(train_src) > bs, augment=augment,
                             sampler=sampler, seed=seed, num_workers=num_workers, pin_memory=pin, device=device)
    valid = AffectDataLoader(valid_src, bs=bs, shuffle=False, augment=False, seed=seed,
                             num_workers=num_workers, pin_memory=pin, device=device)
    dls = DataLoaders(train, valid, device=device)
    dls.n_inp = train_src.n_inp
    return dls


def _sampler(sampler, labels: dict, seed):
    if sampler is None or not isinstance(sampler, str):
        return sampler
    if sampler != "balanced":
        raise ValueError(f"sampler must be None, 'balanced' or a torch sampler, not {sampler!r}")
    if "expr" not in labels:
        raise ValueError("sampler='balanced' balances expressions: include 'expr' in targets")
    from .clean import imbalanced_sampler

    return imbalanced_sampler(labels["expr"].numpy(), seed=seed)


def frame_dls(train_df, valid_df, targets=("expr", "va", "au"), size=112, bs=64, augment=True, sampler=None,
              device=None, num_workers=0, seed=0, aus=None, cache=None, damaged="drop") -> DataLoaders:
    """Frame batches ``(x [B,3,size,size], y)``, ``y`` holding only ``targets`` (with the sentinels for
    missing labels). ``sampler="balanced"`` draws training frames by inverse expression frequency."""
    aus = _au_names(train_df, aus)
    damaged = _Damaged(damaged)

    def source(df, name):
        store = image_store(df["path"].tolist(), _boxes(df), size, cache, damaged="keep")
        kept = damaged.keep(store, name)
        return BatchSource(len(kept), lambda idx: (torch.from_numpy(store.get(kept[idx])),),
                           _labels(df.iloc[kept], targets, aus))

    train_src = source(train_df, "train")
    dls = _dls(train_src, source(valid_df, "valid"), bs, augment, _sampler(sampler, train_src.labels, seed), device,
               num_workers, seed)
    damaged.report(dls)
    return dls


def clip_indices(df: pd.DataFrame, s: int) -> np.ndarray:
    """For each row, the row positions of its causal clip: the previous ``s`` rows of the same video in
    frame order, ending at the row itself, the start padded by repeating the video's first row. [N, s]"""
    if s < 1:
        raise ValueError(f"clip length s must be >= 1, not {s}")
    codes = pd.factorize(df["video"])[0]
    order = np.lexsort((df["frame"].to_numpy(), codes))            # by video, then frame
    sc = codes[order]
    first = np.r_[0, np.flatnonzero(sc[1:] != sc[:-1]) + 1]        # where each video starts (sorted order)
    pos = np.arange(len(sc)) - np.repeat(first, np.diff(np.r_[first, len(sc)]))
    back = np.minimum(np.arange(s - 1, -1, -1)[None, :], pos[:, None])   # never before the video's first row
    clips = np.empty((len(df), s), np.int64)
    clips[order] = order[np.arange(len(sc))[:, None] - back]
    return clips


def _feature_arrays(features, train_df, valid_df):
    """Per-row feature arrays for both splits from a (train, valid) pair or a {path: vector} mapping."""
    if isinstance(features, dict) and not {"train", "valid"} <= set(features):
        return [np.stack([np.asarray(features[p], np.float32) for p in df["path"]]) for df in (train_df, valid_df)]
    tr, va = (features["train"], features["valid"]) if isinstance(features, dict) else features
    out = [np.asarray(f.cpu() if torch.is_tensor(f) else f, np.float32) for f in (tr, va)]
    for arr, df, name in zip(out, (train_df, valid_df), ("train", "valid")):
        if len(arr) != len(df):
            raise ValueError(f"{name} features have {len(arr)} rows but the {name} DataFrame has {len(df)}")
    return out


def clip_dls(train_df, valid_df, s=10, stride=1, targets=("expr", "va"), size=112, bs=64, features=None,
             augment=True, sampler=None, device=None, num_workers=0, seed=0, aus=None, cache=None,
             damaged="drop") -> DataLoaders:
    """Causal clips ending at each labelled frame (every ``stride``-th row of a video): ``x`` is
    ``[B, s, 3, size, size]``, or ``[B, s, D]`` when ``features`` (per-row cached features, see
    ``_feature_arrays``) are given; ``y`` is the labels of the clip's last frame. Rows whose image is damaged
    are dropped (``dls.damaged``, with a warning; ``damaged="raise"``: an error naming the file)."""
    aus = _au_names(train_df, aus)
    feats = _feature_arrays(features, train_df, valid_df) if features is not None else (None, None)
    damaged = _Damaged(damaged)

    def source(df, feat, name):
        store = None
        if feat is None:
            # Rows with a damaged image leave the video: a clip then reaches back past them to earlier frames.
            store = image_store(df["path"].tolist(), _boxes(df), size, cache, damaged="keep")
            kept = damaged.keep(store, name)
            df = df.iloc[kept].reset_index(drop=True)
        clips = clip_indices(df, s)
        rows = np.arange(len(df))
        if stride > 1:
            rank = df.groupby("video", sort=False).cumcount().to_numpy()
            rows = rows[rank % stride == stride - 1]
        labels = {k: v[rows] for k, v in _labels(df, targets, aus).items()}
        clips = clips[rows]
        if feat is not None:
            tensor = torch.from_numpy(feat)
            get = lambda idx: (tensor[clips[idx]],)  # noqa: E731
        else:
            store_rows = kept[clips]
            get = lambda idx: (torch.from_numpy(store.get(store_rows[idx])),)  # noqa: E731
        return BatchSource(len(rows), get, labels)

    train_src = source(train_df, feats[0], "train")
    smp = _sampler(sampler, train_src.labels, seed)
    dls = _dls(train_src, source(valid_df, feats[1], "valid"), bs, augment and features is None, smp, device,
               num_workers, seed)
    damaged.report(dls)
    return dls


def video_dls(train_videos_df, valid_videos_df, t=480, size=64, bs=4, features=None, augment=True, device=None,
              num_workers=0, seed=0, cache=None, damaged="drop", targets=None) -> DataLoaders:
    """Whole videos padded to ``t`` frames: batches ``(x [B,t,3,size,size] | [B,t,D], lengths [B], y)`` with
    ``y = {"intensity": [B, K]}`` (``n_inp`` = 2), K the data set's ``targets`` (default the training frame's
    ``df.attrs["targets"]``: Hume-Reaction's 7 reactions, Hume-Vidmimic2's 6 emotions; ``dls.targets``).
    Longer videos are truncated to ``t`` (with a warning); videos with no usable frame are skipped (counted in
    ``dls.skipped``); damaged frames are dropped from their video (``dls.damaged``, with a warning;
    ``damaged="raise"``: an error naming the file); a missing intensity is an error naming the video.
    ``features``: {video: array [length, D]} of per-frame cached features."""
    skipped = {}
    damaged = _Damaged(damaged)
    targets = tuple(targets or train_videos_df.attrs.get("targets", REACTIONS))

    def source(df, name):
        _need(df, list(targets), "intensity")
        missing = df[list(targets)].isna().any(axis=1)
        if missing.any():
            raise ValueError(f"{name} video {df['video'][missing].iloc[0]!r} has a missing intensity value")
        empty = df["length"].to_numpy() <= 0
        df = df[~empty].reset_index(drop=True)
        too_long = int((df["length"] > t).sum())
        if too_long:
            warnings.warn(f"{too_long} {name} video(s) longer than t={t} frames are truncated to t", stacklevel=3)
        counts = np.minimum(df["length"].to_numpy(), t)
        starts = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
        per_video = [np.arange(a, a + n) for a, n in zip(starts, counts)]
        if features is None:
            paths = [p for frames, n in zip(df["frames"], counts) for p in frames[:n]]
            store = image_store(paths, [None] * len(paths), size, cache, damaged="keep")
            damaged.keep(store, name)
            if store.damaged:       # damaged frames leave their video, which gets shorter
                per_video = [v[~np.isin(v, list(store.damaged))] for v in per_video]
        else:
            damaged.by_split[name] = []
            rows = [np.asarray(features[v], np.float32)[:n] for v, n in zip(df["video"], counts)]
            store = np.concatenate(rows)
        usable = np.array([len(v) > 0 for v in per_video], bool)
        skipped[name] = int(empty.sum() + (~usable).sum())
        df = df[usable].reset_index(drop=True)
        per_video = [v for v, u in zip(per_video, usable) if u]
        lens = torch.as_tensor([len(v) for v in per_video], dtype=torch.long)
        index = np.full((len(df), t), -1, np.int64)
        for i, v in enumerate(per_video):
            index[i, :len(v)] = v
        pad = int(per_video[0][0]) if per_video else 0     # any usable frame; zeroed below

        def get(idx):
            ix = index[idx]
            flat = np.where(ix < 0, pad, ix)
            x = store.get(flat) if features is None else store[flat]
            x[ix < 0] = 0
            return torch.from_numpy(x), lens[idx]

        return BatchSource(len(df), get, _labels(df, ("intensity",), (), targets), n_inp=2)

    dls = _dls(source(train_videos_df, "train"), source(valid_videos_df, "valid"), bs, augment and features is None,
               None, device, num_workers, seed)
    dls.skipped, dls.targets = skipped, targets
    damaged.report(dls)
    return dls


def tensor_dls(train: tuple, valid: tuple, bs: int = 64, sampler=None, device="cpu", seed: int = 0,
               drop_last: bool | None = None):
    """fastai DataLoaders over tensors already in memory (cached per-frame features, cached maps): ``train``
    and ``valid`` are ``(inputs, labels)`` — a tuple of tensors ``[N, ...]`` (the model's inputs, ``n_inp`` of
    them) and a dict of label tensors ``[N, ...]``. Batches are gathered with one index per batch (no
    per-item collation); ``sampler`` draws the training rows (e.g. the imbalanced sampler, ``IndexDraws``);
    ``drop_last`` defaults to dropping a last partial training batch when there is more than one batch."""
    from fastai.data.core import DataLoaders

    def source(d):
        xs, ys = d
        return BatchSource(len(xs[0]), lambda idx: tuple(x[idx] for x in xs), ys, n_inp=len(xs))

    tr, va = source(train), source(valid)
    drop = len(tr) > bs if drop_last is None else drop_last
    dls = DataLoaders(
        AffectDataLoader(tr, bs=bs, shuffle=True, drop_last=drop, sampler=sampler, seed=seed, device=device),
        AffectDataLoader(va, bs=2 * bs, shuffle=False, seed=seed, device=device), device=device)
    dls.n_inp = tr.n_inp
    return dls


def frame_batches(df, size: int, bs: int = 256):
    """The normalised image batches ``[B, 3, size, size]`` of ``df``'s rows, in row order: the input of every
    frozen-feature pass (per-frame features, cached maps). A damaged frame is an error, never a dropped row
    that would shift every later one against ``df``. A generator: the loader is built only when it is
    iterated, so a cache hit decodes nothing."""
    dl = frame_dls(df.iloc[:1], df, targets=("expr",), size=size, bs=bs, augment=False, device="cpu",
                   damaged="raise").valid
    for b in dl:
        yield b[0]
