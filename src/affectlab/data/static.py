"""AffectNet, RAF-DB and ExpW readers: one row per usable face, labels in ``EXPRESSIONS``.

Each returns ``path`` and ``expr`` (canonical, via ``labels.to_canonical``; classes the 7-class task drops,
such as AffectNet's Contempt, None, Uncertain and Non-Face, are counted as dropped). AffectNet also has
``valence``, ``arousal`` (its -2 "not applicable" becomes the -5 sentinel ``INVALID_VA``). Where the format
gives a face box (AffectNet's original release, ExpW) the reader returns it as ``box_left, box_top,
box_right, box_bottom`` in pixels and the **loader crops** (``loaders.load_image(path, size, box)``); AffectNet's
newer release ships cropped faces, so its boxes are NaN (no crop).

Every frame carries ``df.attrs["dropped"]`` (reason -> count) and ``df.attrs["dropped_rows"]`` (the file and
line of each dropped row; see ``affectlab.data.report``). A malformed file (wrong field count, a non-number
in a box, a label outside the dataset's label space) is a ``ValueError`` naming the file and line. A root
where a dataset's files exist but no row is usable is a ``ValueError`` listing what was looked for and found
(never an empty frame); a root without the dataset is a ``FileNotFoundError``.

Where the files are looked for (case-sensitive names, at most a few folders deep under ``root``; image
folders, numbered folders and hidden ones are not searched):

- AffectNet, original release: ``Manually_Annotated_file_lists/{training,validation}.csv`` (``training.csv``
  has a header, ``validation.csv`` as distributed has none: the columns are then ``AFFECTNET_COLUMNS`` in
  order), images under a ``Manually_Annotated_Images`` folder anywhere near (e.g.
  ``Manually_Annotated/Manually_Annotated_Images/<dir>/<file>``). Newer release: ``{train,val}_set/images/<n>.jpg``
  with ``{train,val}_set/annotations/<n>_{exp,val,aro}.npy`` (read with ``allow_pickle=False``). When both
  are present the original release is read.
- RAF-DB basic: ``EmoLabel/list_patition_label.txt`` (sic) in ``root``, ``basic/``, ``raf-basic/``, ...;
  images ``Image/aligned/<name>_aligned.jpg`` (or ``aligned/``), else ``Image/original/<name>``. The
  compound-emotion list (labels 1-11, in ``compound/``) is refused.
- ExpW: ``label/label.lst`` in ``root`` or ``data/``; images in ``image/origin/`` or ``origin/``.

Splits: AffectNet's training / validation files (``train_set`` / ``val_set``); RAF-DB's ``train_`` /
``test_`` name prefix (``"val"`` and ``"test"`` both mean the test prefix); ExpW has no official split, so the
reader takes a deterministic 85 / 15 split by a CRC32 hash of the image name (``expw_split``; faces of one
image stay together). On a list so small that the hash leaves one split without images, the split falls
back to sorted image order: the last 15 % of the sorted image names (at least one) are ``val``
(``df.attrs["split_rule"]`` says which rule was used); a list with a single image cannot be split and
reading the split it lacks is an error.
"""
from __future__ import annotations

import csv
import itertools
import math
import os
import re
import zlib
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd

from affectlab.data.report import Drops, no_usable_rows
from affectlab.labels import INVALID_VA, RAW_NAMES, to_canonical

AFFECTNET_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                     "facial_landmarks", "expression", "valence", "arousal")
BOX_COLUMNS = ["box_left", "box_top", "box_right", "box_bottom"]

# Folders a search never enters: image folders (hundreds of thousands of files) and caches. Folders whose
# name is a number (AffectNet's image sub-folders, Hume's per-video folders) are skipped as well.
_NO_DESCEND = {"manually_annotated_images", "automatically_annotated_images", "images", "image", "origin",
               "aligned", "original", "annotations", "frames", "face_images", "cropped_aligned", "raw", "wav",
               "videos", "__pycache__", "node_modules"}
_SEARCH_DEPTH = 4
_SEARCH_MAX_DIRS = 4000
_VA_BAD_NUMBER = "valence/arousal missing or not a number"
_VA_OUT_OF_RANGE = "valence/arousal outside [-1, 1] (and not -2)"
_IMAGE_MISSING = "image missing"


def _dirs(root: Path, depth: int = _SEARCH_DEPTH):
    """Folders under ``root`` (``root`` first), breadth first, to ``depth`` levels, skipping image folders,
    numbered folders and hidden ones; at most ``_SEARCH_MAX_DIRS`` folders."""
    queue, seen = deque([(root, 0)]), 0
    while queue and seen < _SEARCH_MAX_DIRS:
        d, level = queue.popleft()
        seen += 1
        yield d
        if level >= depth:
            continue
        try:
            subs = sorted(e.name for e in os.scandir(d) if e.is_dir())
        except OSError:
            continue
        for name in subs:
            low = name.lower()
            if low in _NO_DESCEND or name.startswith(".") or name.strip("[]").isdigit():
                continue
            queue.append((d / name, level + 1))


def _search(root: Path, rel: str, depth: int = _SEARCH_DEPTH) -> list[Path]:
    """Every ``<folder>/<rel>`` that exists (file or folder) under ``root``, shallowest first."""
    return [d / rel for d in _dirs(root, depth) if (d / rel).exists()]


def _canon(dataset: str, raw, path: Path, line: int | None, drops: Drops) -> int | None:
    where = f"{path}, line {line}" if line is not None else f"{path}"
    try:
        c = to_canonical(dataset, raw)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if c is None:
        drops.add(f"class {RAW_NAMES[dataset].get(int(raw), raw)} (not in the 7 classes)", path, line)
    return c


def _split(split: str, allowed=("train", "val")) -> str:
    s = split.lower()
    s = "val" if s in ("val", "valid", "validation", "test") else s
    if s not in allowed:
        raise ValueError(f"split must be one of {allowed}, not {split!r}")
    return s


def _one_per_image(records: list[tuple], drops: Drops) -> list[tuple]:
    """Records are (label file, line, path, labels...): an image listed twice with the same labels keeps its
    first line (the repeats are counted); listed with different labels, all its lines are dropped and
    counted — no label is trusted over the other, and an image never trains twice."""
    by_path: dict[str, list[tuple]] = {}
    for r in records:
        by_path.setdefault(r[2], []).append(r)
    kept = []
    for r in records:
        group = by_path[r[2]]
        if len(group) == 1:
            kept.append(r)
        elif len({repr(g[3:]) for g in group}) > 1:
            drops.add("one image with conflicting labels", r[0], r[1])
        elif r is group[0]:
            kept.append(r)
        else:
            drops.add("duplicate line", r[0], r[1])
    return kept


def _keep_existing(records: list[tuple], drops: Drops) -> list[tuple]:
    """Records are (label file, line, path, ...): those whose image is missing are dropped and counted."""
    kept = []
    for r in records:
        if os.path.exists(r[2]):
            kept.append(r)
        else:
            drops.add(_IMAGE_MISSING, r[0], r[1])
    return kept


def _frame(records: list[tuple], columns: list[str], drops: Drops) -> pd.DataFrame:
    df = pd.DataFrame([r[2:] for r in records], columns=columns)
    return drops.attach(df)


# --------------------------------------------------------------------------------------------- AffectNet

def _va_value(text) -> tuple[float | None, str | None]:
    """A valence or arousal value: (value, None), INVALID_VA for AffectNet's -2, or (None, reason)."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None, _VA_BAD_NUMBER
    if math.isnan(v):
        return None, _VA_BAD_NUMBER
    if v == -2:
        return INVALID_VA, None
    if not -1 <= v <= 1:
        return None, _VA_OUT_OF_RANGE
    return v, None


def _is_header(row: list[str]) -> bool:
    """AffectNet's ``training.csv`` starts with a header, ``validation.csv`` does not: a first row is a header
    when its first field is ``subDirectory_filePath``, or it names a known column, or it has no number."""
    fields = [f.strip() for f in row]
    if not fields:
        return False
    if fields[0] == AFFECTNET_COLUMNS[0] or set(fields) & set(AFFECTNET_COLUMNS):
        return True

    def number(s):
        try:
            float(s)
            return True
        except ValueError:
            return False

    return not any(number(f) for f in fields)


def _affectnet_lists(root: Path, name: str) -> list[Path]:
    direct = [root / name, root / "affectnet" / name, root / "AffectNet" / name]
    found = [p for p in direct if p.is_file()]
    found += [p for p in _search(root, f"Manually_Annotated_file_lists/{name}") if p.is_file() and p not in found]
    return found


def _affectnet_npy_dirs(root: Path, split: str) -> list[Path]:
    """``<x>_set`` folders with an ``annotations`` folder holding at least one ``*_exp.npy``."""
    out = []
    for d in _search(root, f"{split}_set/annotations"):
        if not d.is_dir():
            continue
        with os.scandir(d) as it:
            if any(e.name.endswith("_exp.npy") for e in it):
                out.append(d.parent)
    return out


def _image_root_for(csv_path: Path, root: Path, sample: list[str]) -> tuple[Path, list[Path]]:
    """The ``Manually_Annotated_Images`` folder (searched near the list file, then under ``root``) under which
    most of ``sample`` (the list's first image paths) exist; the list's own folder when none is found."""
    base = csv_path.parent.parent if csv_path.parent.name == "Manually_Annotated_file_lists" else csv_path.parent
    candidates: list[Path] = []
    for start, depth in ((base, 3), (root, _SEARCH_DEPTH)):
        for d in _search(start, "Manually_Annotated_Images", depth=depth):
            if d.is_dir() and d not in candidates:
                candidates.append(d)
    if not candidates:
        return base, candidates
    score = [sum(os.path.exists(c / s) for s in sample) for c in candidates]
    return candidates[int(np.argmax(score))], candidates


def _read_affectnet_csv(path: Path, root: Path) -> pd.DataFrame:
    drops = Drops()
    records, n_rows = [], 0
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = _csv_rows(f)
        head = list(itertools.islice(rows, 51))   # the header (if any) and a sample to locate the images
        if head and _is_header(head[0][1]):
            header = [h.strip() for h in head[0][1]]
            missing = [c for c in AFFECTNET_COLUMNS if c not in header]
            if missing:
                raise ValueError(f"{path}, line 1: missing column(s) {missing}; expected {list(AFFECTNET_COLUMNS)}")
            head = head[1:]
        else:
            header = list(AFFECTNET_COLUMNS)   # validation.csv as distributed: no header, the known order
        idx = {c: header.index(c) for c in AFFECTNET_COLUMNS}
        sample = [r[idx[AFFECTNET_COLUMNS[0]]].strip() for _, r in head if len(r) == len(header)]
        img_root, candidates = _image_root_for(path, root, sample)
        for line, r in itertools.chain(head, rows):
            n_rows += 1
            if len(r) != len(header):
                raise ValueError(f"{path}, line {line}: expected {len(header)} fields ({','.join(header)}), got {len(r)}")
            try:
                x, y, w, h = (float(r[idx[c]]) for c in ("face_x", "face_y", "face_width", "face_height"))
            except ValueError:
                raise ValueError(f"{path}, line {line}: non-numeric face box in {r[:5]}") from None
            c = _canon("affectnet", r[idx["expression"]].strip(), path, line, drops)
            if c is None:
                continue
            (v, bad_v), (a, bad_a) = _va_value(r[idx["valence"]]), _va_value(r[idx["arousal"]])
            if bad_v or bad_a:
                drops.add(bad_v or bad_a, path, line)
                continue
            if w <= 0 or h <= 0:
                drops.add("empty face box", path, line)
                continue
            records.append((path, line, str(img_root / r[idx["subDirectory_filePath"]].strip()), c, v, a, x, y, x + w, y + h))
    n_labelled = len(records)
    records = _keep_existing(_one_per_image(records, drops), drops)
    if not records:
        raise no_usable_rows(root, [f"{path} (rows: {n_rows})", "images under a Manually_Annotated_Images folder"],
                             [f"{path}"] + ([str(c) for c in candidates] or ["no Manually_Annotated_Images folder"])
                             + ([f"{n_labelled} labelled rows whose images are missing under {img_root}"] if n_labelled else []),
                             drops, what="AffectNet faces")
    df = _frame(records, ["path", "expr", "valence", "arousal", *BOX_COLUMNS], drops)
    df.attrs["layout"] = "csv"
    return df


def _csv_rows(f):
    reader = csv.reader(f)
    for r in reader:
        if r and any(x.strip() for x in r):
            yield reader.line_num, r


def _npy_scalar(path: Path):
    """The one value of a ``.npy`` annotation (a number or a numeric string); never unpickles."""
    arr = np.load(path, allow_pickle=False)
    if arr.size != 1:
        raise ValueError(f"{path}: expected one value, got an array of shape {arr.shape}")
    v = arr.reshape(()).item()
    return v.decode() if isinstance(v, bytes) else v


def _npy_id_key(name: str):
    stem = name[: -len("_exp.npy")]
    return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)


def _read_affectnet_npy(set_dir: Path, root: Path) -> pd.DataFrame:
    drops = Drops()
    ann, img_dir = set_dir / "annotations", set_dir / "images"
    exp_files = sorted((e.name for e in os.scandir(ann) if e.name.endswith("_exp.npy")), key=_npy_id_key)
    records = []
    for name in exp_files:
        stem = name[: -len("_exp.npy")]
        exp_path = ann / name
        values = {}
        for kind in ("exp", "val", "aro"):
            p = ann / f"{stem}_{kind}.npy"
            if not p.is_file():
                drops.add(f"annotation file missing (_{kind}.npy)", p)
                break
            try:
                values[kind] = _npy_scalar(p)
            except (ValueError, OSError, EOFError):   # a pickled (object) array, a truncated file, several values
                drops.add("annotation .npy unreadable without unpickling, or not one value", p)
                break
        if len(values) < 3:
            continue
        raw = values["exp"]
        raw = raw.strip() if isinstance(raw, str) else raw
        c = _canon("affectnet", raw, exp_path, None, drops)
        if c is None:
            continue
        (v, bad_v), (a, bad_a) = _va_value(values["val"]), _va_value(values["aro"])
        if bad_v or bad_a:
            drops.add(bad_v or bad_a, ann / f"{stem}_{'val' if bad_v else 'aro'}.npy")
            continue
        img = next((img_dir / f"{stem}{ext}" for ext in (".jpg", ".png", ".jpeg") if (img_dir / f"{stem}{ext}").exists()),
                   img_dir / f"{stem}.jpg")
        records.append((exp_path, None, str(img), c, v, a, np.nan, np.nan, np.nan, np.nan))
    n_labelled = len(records)
    records = _keep_existing(records, drops)
    if not records:
        raise no_usable_rows(root, [f"{ann}/<n>_exp.npy, _val.npy, _aro.npy", f"{img_dir}/<n>.jpg"],
                             [f"{len(exp_files)} *_exp.npy files"] + ([f"{n_labelled} labelled faces whose images are missing"] if n_labelled else []),
                             drops, what="AffectNet faces")
    df = _frame(records, ["path", "expr", "valence", "arousal", *BOX_COLUMNS], drops)
    df.attrs["layout"] = "npy"
    return df


def read_affectnet(root: str | os.PathLike, split: str) -> pd.DataFrame:
    """AffectNet faces of ``split`` ("train" or "val"/"validation"/"test" = the validation set).

    Columns ``path, expr, valence, arousal, box_left, box_top, box_right, box_bottom``. Classes 7-10
    (Contempt, None, Uncertain, Non-Face) are dropped (not in the 7 classes); valence / arousal of -2 (not
    applicable) become ``INVALID_VA``; any other value outside [-1, 1], empty or NaN drops the row (counted
    with its file and line). An expression outside 0-10 or not an integer is a ``ValueError`` naming the file
    and line.
    """
    root = Path(root)
    split = _split(split)
    name = "training.csv" if split == "train" else "validation.csv"
    lists = _affectnet_lists(root, name)
    if lists:
        return _read_affectnet_csv(lists[0], root)
    sets = _affectnet_npy_dirs(root, split)
    if sets:
        return _read_affectnet_npy(sets[0], root)
    raise FileNotFoundError(
        f"{root}: no AffectNet {split} labels found (looked for {name} in {root}, {root / 'affectnet'} and any "
        f"Manually_Annotated_file_lists/ folder up to {_SEARCH_DEPTH} levels down, and for the newer release's "
        f"{split}_set/annotations/*_exp.npy)")


# ------------------------------------------------------------------------------------------------ RAF-DB

_RAF_LIST = "EmoLabel/list_patition_label.txt"


def _is_compound(path: Path) -> bool:
    """The list sits in the compound set's folder (``compound/``, ``raf-compound/``, ...)."""
    return re.sub(r"[-_ ]", "", path.parent.parent.name.lower()) in ("compound", "rafcompound", "rafdbcompound")


def _read_lines(path: Path, layout: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank line of a whitespace-separated list file whose rows follow
    ``layout``; a row with another field count is an error naming the file and line."""
    n = len(layout.split())
    out = []
    for line, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        parts = text.split()
        if not parts:
            continue
        if len(parts) != n:
            raise ValueError(f"{path}, line {line}: expected '{layout}', got {text!r}")
        out.append((line, parts))
    return out


def read_rafdb(root: str | os.PathLike, split: str) -> pd.DataFrame:
    """RAF-DB basic faces of ``split`` ("train", or "test"/"val" = the ``test_`` images). Columns ``path, expr``.

    A label outside 1-7 is a ``ValueError`` naming the file and line; the compound-emotion list (labels
    1-11, ``compound/``) is refused with a ``ValueError``.
    """
    root = Path(root)
    prefix = "train_" if _split(split) == "train" else "test_"
    direct = [root / p / _RAF_LIST for p in ("", "basic", "raf-basic", "RAF-DB/basic", "rafdb", "rafdb/basic")]
    found = [p for p in direct if p.is_file()]
    found += [p for p in _search(root, _RAF_LIST) if p.is_file() and p not in found]
    basic = [p for p in found if not _is_compound(p)]
    if not basic:
        if found:
            raise ValueError(f"{found[0]}: this is RAF-DB's compound-emotion list (labels 1-11), not the basic set "
                             f"(labels 1-7); point data_root at the basic set (the folder holding basic/EmoLabel/)")
        raise FileNotFoundError(f"{root}: no RAF-DB label list found (looked for {_RAF_LIST} in {root}, basic/, "
                                f"raf-basic/, rafdb/ and up to {_SEARCH_DEPTH} levels down)")
    path = basic[0]
    lines = _read_lines(path, "name label")
    compound = [(ln, p[1]) for ln, p in lines if p[1].strip().isdigit() and 8 <= int(p[1]) <= 11]
    if compound:
        ln, lab = compound[0]
        raise ValueError(f"{path}, line {ln}: label {lab} - this looks like RAF-DB's compound-emotion list "
                         "(labels 1-11), not the basic set (labels 1-7); point data_root at the basic set")
    base = path.parent.parent
    aligned = [d for d in (base / "Image" / "aligned", base / "aligned") if d.is_dir()]
    original = [d for d in (base / "Image" / "original", base / "original") if d.is_dir()]
    drops = Drops()
    records, n_prefix = [], 0
    for line, (name, raw) in lines:
        if not name.startswith(("train_", "test_")):
            drops.add("name without the train_/test_ prefix", path, line)
            continue
        if not name.startswith(prefix):
            continue
        n_prefix += 1
        c = _canon("rafdb", raw, path, line, drops)
        if c is None:
            continue
        stem = name.rsplit(".", 1)[0]
        options = [d / f"{stem}_aligned.jpg" for d in aligned] + [d / name for d in aligned + original]
        img = next((p for p in options if p.exists()), options[0] if options else base / "Image" / "aligned" / f"{stem}_aligned.jpg")
        records.append((path, line, str(img), c))
    records = _keep_existing(_one_per_image(records, drops), drops)
    if not records:
        raise no_usable_rows(root, [f"{path} rows named {prefix}*", "images in Image/aligned/ (<name>_aligned.jpg), aligned/ or Image/original/"],
                             [f"{path}: {n_prefix} {prefix}* rows"] + [str(d) for d in aligned + original],
                             drops, what=f"RAF-DB {prefix}* faces")
    return _frame(records, ["path", "expr"], drops)


# -------------------------------------------------------------------------------------------------- ExpW

_EXPW_LAYOUT = "image_name face_id top left right bottom confidence label"
_EXPW_VAL_SHARE = 15


def expw_split(image_name: str) -> str:
    """ExpW's deterministic split: 15 % of images (by CRC32 of the name) are validation."""
    return "val" if zlib.crc32(image_name.encode()) % 100 < _EXPW_VAL_SHARE else "train"


def expw_splits(image_names) -> tuple[dict[str, str], str]:
    """{image name: split} for a whole label list, and the rule used ("hash" or "sorted order").

    ``expw_split`` (hash) when it gives both splits at least one image; otherwise (a small list) the last
    15 % of the sorted names, at least one, are ``val``. A single image goes to ``train``."""
    names = sorted(set(image_names))
    by_hash = {n: expw_split(n) for n in names}
    if len(names) < 2 or len(set(by_hash.values())) == 2:
        return by_hash, "hash"
    n_val = max(1, round(len(names) * _EXPW_VAL_SHARE / 100))
    return {n: ("val" if i >= len(names) - n_val else "train") for i, n in enumerate(names)}, "sorted order"


def read_expw(root: str | os.PathLike, split: str) -> pd.DataFrame:
    """ExpW faces of ``split``. Columns ``path, expr, face_id, confidence`` and the face box.

    Duplicate lines are dropped (the first kept) and counted; two lines for one face (image and face_id)
    with different labels or boxes drop both. A line with a wrong field count or a non-number is a
    ``ValueError`` naming the file and line. ``df.attrs["split_rule"]``: "hash" or "sorted order" (module doc).
    """
    root = Path(root)
    split = _split(split)
    direct = [root / p for p in ("label/label.lst", "data/label/label.lst", "expw/label/label.lst",
                                 "expw/data/label/label.lst", "ExpW/data/label/label.lst", "label.lst", "data/label.lst")]
    found = [p for p in direct if p.is_file()]
    found += [p for p in _search(root, "label/label.lst") if p.is_file() and p not in found]
    if not found:
        raise FileNotFoundError(f"{root}: no ExpW label list found (looked for label/label.lst in {root}, data/, "
                                f"expw/ and up to {_SEARCH_DEPTH} levels down)")
    path = found[0]
    base = path.parent.parent if path.parent.name == "label" else path.parent
    parsed = []
    for line, parts in _read_lines(path, _EXPW_LAYOUT):
        try:
            face_id = int(parts[1])
            top, left, right, bottom = (float(p) for p in parts[2:6])
            conf = float(parts[6])
        except ValueError:
            raise ValueError(f"{path}, line {line}: non-numeric face id, box or confidence in {' '.join(parts)!r}") from None
        parsed.append((line, parts, face_id, top, left, right, bottom, conf))
    assign, rule = expw_splits(r[1][0] for r in parsed)
    drops = Drops()
    faces: dict[tuple, list] = {}
    for rec in parsed:
        faces.setdefault((rec[1][0], rec[2]), []).append(rec)
    unique = []
    for rec in parsed:
        if assign[rec[1][0]] != split:
            continue
        group = faces[(rec[1][0], rec[2])]
        if len({tuple(r[1]) for r in group}) > 1:
            drops.add("one face (image, face_id) with conflicting lines", path, rec[0])
        elif rec is not group[0]:
            drops.add("duplicate line", path, rec[0])
        else:
            unique.append(rec)
    img_dirs = [d for d in (base / "image" / "origin", base / "origin", base / "image") if d.is_dir()]
    sample = [r[1][0] for r in unique[:50]]
    img_dir = max(img_dirs, key=lambda d: sum((d / s).exists() for s in sample)) if img_dirs else base / "image" / "origin"
    records, n_split = [], 0
    for line, parts, face_id, top, left, right, bottom, conf in unique:
        n_split += 1
        c = _canon("expw", parts[7], path, line, drops)
        if c is None:
            continue
        if right <= left or bottom <= top:
            drops.add("empty face box", path, line)
            continue
        records.append((path, line, str(img_dir / parts[0]), c, face_id, conf, left, top, right, bottom))
    records = _keep_existing(records, drops)
    if not records:
        looked = [f"{path} lines of {split} images (split rule: {rule})", "images in image/origin/ or origin/"]
        raise no_usable_rows(root, looked, [f"{path}: {len(assign)} images, {n_split} distinct faces in {split}"]
                             + [str(d) for d in img_dirs], drops, what=f"ExpW {split} faces")
    df = _frame(records, ["path", "expr", "face_id", "confidence", *BOX_COLUMNS], drops)
    df.attrs["split_rule"] = rule
    return df


def static_corpus(root: str | os.PathLike, split: str) -> pd.DataFrame:
    """AffectNet + RAF-DB + ExpW rows of ``split`` under ``root`` (whichever exist), with a ``source``
    column; valence / arousal only where AffectNet gives them (NaN -> the -5 sentinel in the loader)."""
    root = Path(root)
    frames = []
    for name, reader in (("affectnet", read_affectnet), ("rafdb", read_rafdb), ("expw", read_expw)):
        sub = root / name if (root / name).is_dir() else root
        try:
            df = reader(sub, split)
        except FileNotFoundError:
            continue
        frames.append(df.assign(source=name))
    if not frames:
        raise FileNotFoundError(f"{root}: no AffectNet, RAF-DB or ExpW corpus found for pre-training")
    return pd.concat(frames, ignore_index=True)
