"""AffectNet, RAF-DB and ExpW readers: one row per usable face, labels in ``EXPRESSIONS``.

Each returns ``path`` and ``expr`` (canonical, via ``labels.to_canonical``; classes the 7-class task drops,
such as AffectNet's Contempt, are counted in ``df.attrs["dropped"]``). AffectNet also has ``valence``,
``arousal`` (its -2 "not applicable" becomes the -5 sentinel). Where the format gives a face box (AffectNet,
ExpW) the reader returns it as ``box_left, box_top, box_right, box_bottom`` in pixels and the **loader
crops** (``loaders.load_image(path, size, box)``): readers stay cheap and the crop is cached with the image.

Splits: AffectNet's ``training.csv`` / ``validation.csv``; RAF-DB's ``train_`` / ``test_`` name prefix
(``"val"`` and ``"test"`` both mean the test prefix); ExpW has no official split, so the reader takes a
deterministic 85 / 15 split by a hash of the image name (faces of one image stay together).
"""
from __future__ import annotations

import csv
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from affectlab.labels import INVALID_VA, RAW_NAMES, to_canonical

AFFECTNET_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                     "facial_landmarks", "expression", "valence", "arousal")


def _find(root: Path, candidates: list[str], what: str) -> Path:
    for c in candidates:
        if (root / c).is_file():
            return root / c
    raise FileNotFoundError(f"{root}: no {what} found (looked for {', '.join(candidates)})")


def _canon(dataset: str, raw, path: Path, line: int, dropped: dict) -> int | None:
    try:
        c = to_canonical(dataset, raw)
    except ValueError as e:
        raise ValueError(f"{path}, line {line}: {e}") from None
    if c is None:
        reason = f"class {RAW_NAMES[dataset].get(int(raw), raw)} (not in the 7 classes)"
        dropped[reason] = dropped.get(reason, 0) + 1
    return c


def _drop_missing(df: pd.DataFrame, dropped: dict) -> pd.DataFrame:
    exists = np.array([os.path.exists(p) for p in df["path"]], bool)
    if (~exists).any():
        dropped["image missing"] = dropped.get("image missing", 0) + int((~exists).sum())
    return df[exists].reset_index(drop=True)


def _split(split: str, allowed=("train", "val")) -> str:
    s = split.lower()
    s = "val" if s in ("val", "valid", "validation", "test") else s
    if s not in allowed:
        raise ValueError(f"split must be one of {allowed}, not {split!r}")
    return s


def read_affectnet(root: str | os.PathLike, split: str) -> pd.DataFrame:
    root = Path(root)
    split = _split(split)
    name = "training.csv" if split == "train" else "validation.csv"
    subs = ["", "affectnet/", "Manually_Annotated_file_lists/", "affectnet/Manually_Annotated_file_lists/"]
    path = _find(root, [s + name for s in subs], name)
    base = path.parent.parent if path.parent.name == "Manually_Annotated_file_lists" else path.parent
    img_root = base / "Manually_Annotated_Images" if (base / "Manually_Annotated_Images").is_dir() else base
    dropped: dict[str, int] = {}
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in AFFECTNET_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}, line 1: missing column(s) {missing}; expected {list(AFFECTNET_COLUMNS)}")
        idx = {c: header.index(c) for c in AFFECTNET_COLUMNS}
        for line, r in enumerate(reader, start=2):
            if not r:
                continue
            if len(r) != len(header):
                raise ValueError(f"{path}, line {line}: expected {len(header)} fields, got {len(r)}")
            try:
                x, y, w, h = (float(r[idx[c]]) for c in ("face_x", "face_y", "face_width", "face_height"))
                v, a = float(r[idx["valence"]]), float(r[idx["arousal"]])
            except ValueError:
                raise ValueError(f"{path}, line {line}: non-numeric box or valence/arousal in {r}") from None
            c = _canon("affectnet", r[idx["expression"]].strip(), path, line, dropped)
            if c is None:
                continue
            v, a = (INVALID_VA, INVALID_VA) if (v < -1 or a < -1) else (v, a)
            rows.append((str(img_root / r[idx["subDirectory_filePath"]].strip()), c, v, a, x, y, x + w, y + h))
    df = pd.DataFrame(rows, columns=["path", "expr", "valence", "arousal", "box_left", "box_top", "box_right", "box_bottom"])
    df = df.astype({"expr": int, "valence": np.float32, "arousal": np.float32})
    df = _drop_missing(df, dropped)
    df.attrs["dropped"] = dropped
    return df


def _fields(path: Path, layout: str):
    """(line number, fields) of each non-blank line of a whitespace-separated list file whose rows follow
    ``layout``; a row with another field count is an error naming the file and line."""
    n = len(layout.split())
    for line, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        parts = text.split()
        if not parts:
            continue
        if len(parts) != n:
            raise ValueError(f"{path}, line {line}: expected '{layout}', got {text!r}")
        yield line, parts


def read_rafdb(root: str | os.PathLike, split: str) -> pd.DataFrame:
    root = Path(root)
    prefix = "train_" if _split(split) == "train" else "test_"
    path = _find(root, [p + "EmoLabel/list_patition_label.txt" for p in ("", "rafdb/", "basic/", "rafdb/basic/")],
                 "EmoLabel/list_patition_label.txt")
    base = path.parent.parent
    dropped: dict[str, int] = {}
    rows = []
    for line, (name, raw) in _fields(path, "name label"):
        if not name.startswith(prefix):
            continue
        c = _canon("rafdb", raw, path, line, dropped)
        if c is None:
            continue
        stem = name.rsplit(".", 1)[0]
        img = base / "Image" / "aligned" / f"{stem}_aligned.jpg"
        if not img.exists() and (base / "Image" / "original" / name).exists():
            img = base / "Image" / "original" / name
        rows.append((str(img), c))
    df = _drop_missing(pd.DataFrame(rows, columns=["path", "expr"]).astype({"expr": int}), dropped)
    df.attrs["dropped"] = dropped
    return df


def expw_split(image_name: str) -> str:
    """ExpW's deterministic split: 15 % of images (by CRC32 of the name) are validation."""
    return "val" if zlib.crc32(image_name.encode()) % 100 < 15 else "train"


def read_expw(root: str | os.PathLike, split: str) -> pd.DataFrame:
    root = Path(root)
    split = _split(split)
    path = _find(root, ["label/label.lst", "expw/label/label.lst"], "label/label.lst")
    base = path.parent.parent
    dropped: dict[str, int] = {}
    rows = []
    for line, parts in _fields(path, "image_name face_id top left right bottom confidence label"):
        name = parts[0]
        if expw_split(name) != split:
            continue
        try:
            top, left, right, bottom = (float(p) for p in parts[2:6])
            conf = float(parts[6])
        except ValueError:
            raise ValueError(f"{path}, line {line}: non-numeric box or confidence in {text!r}") from None
        c = _canon("expw", parts[7], path, line, dropped)
        if c is None:
            continue
        if right <= left or bottom <= top:
            dropped["empty face box"] = dropped.get("empty face box", 0) + 1
            continue
        rows.append((str(base / "image" / "origin" / name), c, int(parts[1]), conf, left, top, right, bottom))
    df = pd.DataFrame(rows, columns=["path", "expr", "face_id", "confidence", "box_left", "box_top", "box_right", "box_bottom"])
    df = _drop_missing(df.astype({"expr": int}), dropped)
    df.attrs["dropped"] = dropped
    return df
