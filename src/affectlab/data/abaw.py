"""Aff-Wild2 / ABAW readers: one DataFrame per task and split, whichever layout is on disk.

Layouts detected (the user never names one), looked for in ``root``, ``root/affwild2``, ``root/Aff-Wild2``
and their ``annotations`` / ``Annotations`` folders:

- ABAW 2020: ``{EXPR_Set,VA_Set,AU_Set}/{Training_Set,Validation_Set}/<video>.txt``;
- ABAW 2022+: ``{EXPR_Classification_Challenge,VA_Estimation_Challenge,AU_Detection_Challenge}/{Train_Set,Validation_Set}``
  (expression files may have 8 classes, ``Other`` = 7);
- the multi-task file: a ``*.txt``/``*.csv`` whose header starts ``image,valence,arousal,expression`` and whose
  name contains ``train`` or ``val`` (ABAW 2022 MTL), one row per image.

Per-video files: line 1 is a header, line i+1 is frame i (image ``cropped_aligned/<video>/%05d.jpg``).
Rows with an invalid label (expression -1, VA -5, AU -1) and annotated frames with no image are dropped and
counted in ``df.attrs["dropped"]``; a malformed file (wrong column count, a non-number, a label outside the
label space) is a ``ValueError`` naming the file and line.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from affectlab.labels import EXPRESSIONS, EXPRESSIONS_8, INVALID_AU, INVALID_EXPR, INVALID_VA

TASKS = ("EXPR", "VA", "AU")
_DIRS_2020 = {"EXPR": "EXPR_Set", "VA": "VA_Set", "AU": "AU_Set"}
_DIRS_2022 = {"EXPR": "EXPR_Classification_Challenge", "VA": "VA_Estimation_Challenge", "AU": "AU_Detection_Challenge"}
_SPLITS_2020 = {"train": "Training_Set", "val": "Validation_Set"}
_SPLITS_2022 = {"train": "Train_Set", "val": "Validation_Set"}
_IMAGE_DIRS = ("cropped_aligned", "cropped-aligned", "cropped_aligned_images")


def _bases(root: Path) -> list[Path]:
    out = []
    for b in (root, root / "affwild2", root / "Aff-Wild2", root / "aff_wild2"):
        out += [b, b / "annotations", b / "Annotations"]
    return [b for b in out if b.is_dir()]


def detect_layout(root: str | os.PathLike) -> tuple[str, Path]:
    """("2020" | "2022" | "mtl", annotation folder) — the first layout found, 2020 (the papers') first."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Aff-Wild2 root {str(root)!r} does not exist or is not a directory")
    bases = _bases(root)
    for name, dirs in (("2020", _DIRS_2020), ("2022", _DIRS_2022)):
        for b in bases:
            if any((b / d).is_dir() for d in dirs.values()):
                return name, b
    for b in bases:
        for d in [b, *[p for p in b.iterdir() if p.is_dir() and "mtl" in p.name.lower()]]:
            if _mtl_files(d):
                return "mtl", d
    raise FileNotFoundError(
        f"{root}: no Aff-Wild2 annotations found (looked for {sorted(_DIRS_2020.values())} (ABAW 2020), "
        f"{sorted(_DIRS_2022.values())} (ABAW 2022+) or a multi-task file, in {root} and its "
        "affwild2/ and annotations/ subfolders)")


def _mtl_files(d: Path) -> dict[str, Path]:
    found = {}
    for p in sorted(d.glob("*.*")):
        if p.suffix.lower() in (".txt", ".csv") and p.is_file():
            with open(p, encoding="utf-8", errors="replace") as f:
                head = f.readline().replace(" ", "").lower()
            if head.startswith("image,valence,arousal,expression"):
                found["val" if "val" in p.name.lower() else "train"] = p
    return found


def _image_root(base: Path) -> Path:
    for b in (base, base.parent, base.parent.parent):
        for name in _IMAGE_DIRS:
            if (b / name).is_dir():
                return b / name
    raise FileNotFoundError(f"no image folder {' / '.join(_IMAGE_DIRS)} found beside {base}")


def _parse(path: Path, header: list[str], lines: list[str], n: int | None = None) -> np.ndarray:
    """The numbers of ``lines`` (file lines 2...) as a float array of ``n`` columns (default: one per header
    name), or a ValueError naming file and line."""
    n = len(header) if n is None else n
    if not lines:
        return np.zeros((0, n))
    try:
        arr = np.array([ln.split(",") for ln in lines], dtype=float)
        if arr.ndim == 2 and arr.shape[1] == n:
            return arr
    except ValueError:
        pass
    for i, ln in enumerate(lines, start=2):
        parts = ln.split(",")
        if len(parts) != n:
            raise ValueError(f"{path}, line {i}: expected {n} value(s) (header: {','.join(header)}), got {len(parts)}: {ln!r}")
        try:
            [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"{path}, line {i}: not a number in {ln!r}") from None
    raise ValueError(f"{path}: could not be parsed")


def _read_txt(path: Path, task: str) -> tuple[list[str], np.ndarray]:
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    lines = [ln.strip() for ln in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return [], np.zeros((0, 0))
    header = [h.strip() for h in lines[0].split(",")]
    # An expression file names its classes in the header but holds one class index per line.
    return header, _parse(path, header, lines[1:], 1 if task == "EXPR" else None)


def _check_labels(task: str, path: Path, header: list[str], arr: np.ndarray) -> None:
    """Raise for a value outside the task's label space (naming file and line)."""
    if task == "EXPR":
        if len(header) not in (7, 8):
            raise ValueError(f"{path}, line 1: expression header must have 7 or 8 class names, got {header}")
        ok = np.isin(arr[:, 0], np.arange(-1, len(header)))
    elif task == "VA":
        if len(header) != 2:
            raise ValueError(f"{path}, line 1: VA header must be 'valence,arousal', got {header}")
        ok = ((arr >= -1) & (arr <= 1) | (arr == INVALID_VA)).all(1)
    else:
        ok = np.isin(arr, (0, 1, INVALID_AU)).all(1)
    bad = np.flatnonzero(~ok)
    if len(bad):
        raise ValueError(f"{path}, line {bad[0] + 2}: label outside the {task} label space: {arr[bad[0]].tolist()}")


def _frames_df(task, path, header, arr, video, img_dir, dropped) -> pd.DataFrame | None:
    n = len(arr)
    frame = np.arange(1, n + 1)
    if task == "EXPR":
        valid = arr[:, 0] != INVALID_EXPR
        cols = {"expr": arr[:, 0].astype(int)}
    elif task == "VA":
        valid = (arr != INVALID_VA).all(1)
        cols = {"valence": arr[:, 0].astype(np.float32), "arousal": arr[:, 1].astype(np.float32)}
    else:
        valid = (arr != INVALID_AU).all(1)
        cols = {au: arr[:, j].astype(int) for j, au in enumerate(header)}
    _count(dropped, f"invalid label ({ {'EXPR': -1, 'VA': -5, 'AU': -1}[task]})", int((~valid).sum()))
    folder = img_dir / video
    if not folder.is_dir():
        _count(dropped, "video has no frame folder", int(valid.sum()))
        return None
    have = set(os.listdir(folder))
    names = np.array([f"{i:05d}.jpg" for i in frame])
    has_img = np.fromiter((nm in have for nm in names), bool, n)
    _count(dropped, "annotated frame has no image", int((valid & ~has_img).sum()))
    keep = valid & has_img
    df = pd.DataFrame({"path": [str(folder / nm) for nm in names[keep]], "video": video,
                       "frame": frame[keep], "subject": video})
    for k, v in cols.items():
        df[k] = v[keep]
    return df


def _count(dropped: dict, reason: str, n: int) -> None:
    if n:
        dropped[reason] = dropped.get(reason, 0) + n


def read_abaw(root: str | os.PathLike, task: str, split: str, keep_other: bool = True) -> pd.DataFrame:
    """One row per usable annotated frame of ``task`` ("EXPR" | "VA" | "AU") in ``split`` ("train" | "val").

    Columns: ``path``, ``video``, ``frame`` (1-based), ``subject`` (= the video name; ``_left``/``_right``
    are two people), then ``expr`` | ``valence``, ``arousal`` | one 0/1 column per AU of the header.
    ``attrs``: ``dropped`` (reason -> count), ``layout``, ``aus`` (AU task), ``classes`` (EXPR task).
    ``keep_other=False`` drops the 8th class ``Other`` of ABAW 2022+ files (counted).
    """
    task, split = task.upper(), split.lower()
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    kind, base = detect_layout(root)
    if kind == "mtl":
        df = read_abaw_multitask(root, split, tasks=(task,))
        return df
    dirs, splits = (_DIRS_2020, _SPLITS_2020) if kind == "2020" else (_DIRS_2022, _SPLITS_2022)
    ann = base / dirs[task] / splits[split]
    if not ann.is_dir():
        raise FileNotFoundError(f"{ann}: missing ({kind} layout, task {task}, split {split})")
    img_dir = _image_root(base)
    dropped: dict[str, int] = {}
    parts, header0, classes = [], None, EXPRESSIONS
    files = sorted(ann.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"{ann}: no annotation files (*.txt)")
    if not any((img_dir / p.stem).is_dir() for p in files):
        raise FileNotFoundError(f"{img_dir}: none of the {len(files)} annotated videos has a frame folder here")
    for path in files:
        header, arr = _read_txt(path, task)
        if not header or len(arr) == 0:
            warnings.warn(f"{path}: empty annotation file, skipped", stacklevel=2)
            _count(dropped, "empty annotation file (videos)", 1)
            continue
        _check_labels(task, path, header, arr)
        if task == "AU":
            if header0 is not None and header != header0:
                raise ValueError(f"{path}, line 1: AU header {header} differs from {header0} of the other files")
            header0 = header
        if task == "EXPR" and len(header) == 8:
            classes = EXPRESSIONS_8
        df = _frames_df(task, path, header, arr, path.stem, img_dir, dropped)
        if df is not None and len(df):
            parts.append(df)
    if not parts:
        raise ValueError(f"{ann}: no usable frames (dropped: {dropped})")
    out = pd.concat(parts, ignore_index=True)
    if task == "EXPR" and not keep_other:
        other = out["expr"] == 7
        _count(dropped, "class Other (8-class file)", int(other.sum()))
        out = out[~other].reset_index(drop=True)
        classes = EXPRESSIONS
    out.attrs.update(dropped=dropped, layout=kind)
    if task == "AU":
        out.attrs["aus"] = tuple(header0)
    if task == "EXPR":
        out.attrs["classes"] = classes
    return out


def read_abaw_multitask(root: str | os.PathLike, split: str, tasks=TASKS) -> pd.DataFrame:
    """All requested tasks' labels per frame, outer-joined on (video, frame): a frame labelled for one task
    keeps its row, with the sentinels (-1 / -5.0 / -1) for the tasks it lacks."""
    split = split.lower()
    tasks = tuple(t.upper() for t in tasks)
    kind, base = detect_layout(root)
    if kind == "mtl":
        return _read_mtl(base, split, tasks)
    out, dropped, attrs = None, {}, {}
    for task in tasks:
        df = read_abaw(root, task, split)
        for k, v in df.attrs["dropped"].items():
            dropped[f"{task}: {k}"] = v
        attrs.update({k: v for k, v in df.attrs.items() if k in ("aus", "classes")})
        df = df.copy()
        df.attrs = {}
        out = df if out is None else out.merge(df, on=["video", "frame", "path", "subject"], how="outer")
    fill = {"expr": INVALID_EXPR, "valence": INVALID_VA, "arousal": INVALID_VA}
    fill.update({au: INVALID_AU for au in attrs.get("aus", ())})
    out = out.fillna({k: v for k, v in fill.items() if k in out})
    for col in ("expr", *attrs.get("aus", ())):
        if col in out:
            out[col] = out[col].astype(int)
    for col in ("valence", "arousal"):
        if col in out:
            out[col] = out[col].astype(np.float32)
    out = out.sort_values(["video", "frame"], kind="stable").reset_index(drop=True)
    out.attrs.update(attrs, dropped=dropped, layout=kind)
    return out


def _read_mtl(base: Path, split: str, tasks) -> pd.DataFrame:
    files = _mtl_files(base)
    if split not in files:
        raise FileNotFoundError(f"{base}: no multi-task annotation file for split {split!r} (found {sorted(files)})")
    path = files[split]
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    header = [h.strip() for h in lines[0].split(",")]
    rows = [ln.split(",", 1) for ln in lines[1:]]
    images = [r[0].strip() for r in rows]
    if not rows:
        raise ValueError(f"{path}: no rows after the header")
    arr = _parse(path, header[1:], [r[1] if len(r) > 1 else "" for r in rows])
    aus = tuple(header[4:])
    _check_labels("EXPR", path, list(EXPRESSIONS_8) if arr[:, 2].max() == 7 else list(EXPRESSIONS), arr[:, 2:3])
    _check_labels("VA", path, ["valence", "arousal"], arr[:, 0:2])
    _check_labels("AU", path, list(aus), arr[:, 3:])
    img_dir = _image_root(base)
    video = [im.split("/")[0] for im in images]
    try:
        frame = [int(Path(im).stem) for im in images]
    except ValueError:
        bad = next(i for i, im in enumerate(images) if not Path(im).stem.isdigit())
        raise ValueError(f"{path}, line {bad + 2}: image {images[bad]!r} is not <video>/<frame number>.jpg") from None
    df = pd.DataFrame({"path": [str(img_dir / im) for im in images], "video": video, "frame": frame, "subject": video})
    dropped: dict[str, int] = {}
    cols = {"EXPR": ["expr"], "VA": ["valence", "arousal"], "AU": list(aus)}
    df["valence"], df["arousal"] = arr[:, 0].astype(np.float32), arr[:, 1].astype(np.float32)
    df["expr"] = arr[:, 2].astype(int)
    for j, au in enumerate(aus):
        df[au] = arr[:, 3 + j].astype(int)
    wanted = [c for t in tasks for c in cols[t]]
    invalid = np.ones(len(df), bool)
    for t in tasks:
        sentinel = {"EXPR": INVALID_EXPR, "VA": INVALID_VA, "AU": INVALID_AU}[t]
        invalid &= (df[cols[t]] == sentinel).any(axis=1).to_numpy()
    _count(dropped, "no valid label for the requested tasks", int(invalid.sum()))
    exists = np.array([os.path.exists(p) for p in df["path"]])
    _count(dropped, "annotated frame has no image", int((~invalid & ~exists).sum()))
    df = df.loc[~invalid & exists, ["path", "video", "frame", "subject", *wanted]].reset_index(drop=True)
    df.attrs.update(dropped=dropped, layout="mtl", aus=aus, classes=EXPRESSIONS_8 if (df.get("expr", pd.Series([0])) == 7).any() else EXPRESSIONS)
    return df
