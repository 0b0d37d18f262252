"""Hume-Reaction reader: one row per video with its frames and 7 reaction intensities.

``data_info.csv`` has ``File_ID`` (bracketed, e.g. ``[00001]``), ``Split`` (Train / Val; other splits such
as an unlabelled Test are skipped) and the 7 intensities in ``REACTIONS`` order. A video's frames live in a
folder named by its id (``<root>/<id>/``, or under ``frames/``, ``images/`` or ``face_images/``), sorted by
name. Videos with no frames are dropped and counted; a missing or non-numeric intensity in a Train / Val
row is an error naming the video (a label cannot be guessed).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from affectlab.labels import REACTIONS

_FRAME_DIRS = ("", "frames", "images", "face_images", "cropped_aligned")
_IMAGE_EXT = (".jpg", ".jpeg", ".png")


def _frame_folder(base: Path, vid: str) -> Path | None:
    for d in _FRAME_DIRS:
        p = base / d / vid
        if p.is_dir():
            return p
    return None


def read_hume(root: str | os.PathLike, split: str) -> pd.DataFrame:
    """Columns: ``video``, ``frames`` (list of frame paths in order), ``length``, then ``REACTIONS``."""
    root = Path(root)
    s = split.lower()
    want = {"train": "train", "val": "val", "valid": "val", "validation": "val", "devel": "val"}.get(s)
    if want is None:
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    info = next((p for p in (root / "data_info.csv", root / "hume" / "data_info.csv") if p.is_file()), None)
    if info is None:
        raise FileNotFoundError(f"{root}: no data_info.csv (looked in {root} and {root / 'hume'})")
    base = info.parent
    try:
        df = pd.read_csv(info, dtype={"File_ID": str, "Split": str})
    except pd.errors.ParserError as e:
        raise ValueError(f"{info}: malformed CSV ({e})") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in ("File_ID", "Split", *REACTIONS) if c not in df.columns]
    if missing:
        raise ValueError(f"{info}, line 1: missing column(s) {missing}")
    split_of = df["Split"].astype(str).str.strip().str.lower().map(
        {"train": "train", "val": "val", "valid": "val", "validation": "val", "devel": "val"})
    df = df[split_of == want].reset_index()
    dropped: dict[str, int] = {}
    rows = []
    for _, r in df.iterrows():
        vid = str(r["File_ID"]).strip().strip("[]")
        line = int(r["index"]) + 2
        try:
            values = [float(r[c]) for c in REACTIONS]
        except (TypeError, ValueError):
            raise ValueError(f"{info}, line {line}: video {vid}: non-numeric reaction intensity") from None
        if any(np.isnan(values)):
            bad = [c for c, v in zip(REACTIONS, values) if np.isnan(v)]
            raise ValueError(f"{info}, line {line}: video {vid}: missing reaction value(s) {bad}")
        folder = _frame_folder(base, vid)
        frames = sorted(str(folder / f) for f in os.listdir(folder) if f.lower().endswith(_IMAGE_EXT)) if folder else []
        if not frames:
            dropped["video has no frames"] = dropped.get("video has no frames", 0) + 1
            continue
        rows.append((vid, frames, len(frames), *values))
    out = pd.DataFrame(rows, columns=["video", "frames", "length", *REACTIONS])
    out = out.astype({c: np.float32 for c in REACTIONS})
    out.attrs["dropped"] = dropped
    return out
