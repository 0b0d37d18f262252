"""Hume-Reaction reader: one row per video with its frames and 7 reaction intensities.

``data_info.csv`` has ``File_ID`` (bracketed, e.g. ``[00001]``), ``Split`` (Train / Val; other splits such
as the unlabelled Test are skipped) and the 7 intensities in ``REACTIONS`` order. It is looked for in
``root``, ``root/hume``, ``root/Hume-Reaction`` and a few folders further down (a ``data_info.csv`` whose
header has no ``File_ID`` is not Hume's). A video's frames live in a folder named by its id, with or without
the brackets (``<base>/<id>/``, or under ``frames/``, ``images/``, ``face_images/`` or ``cropped_aligned/``),
and are ordered by the number in their name (``frame_9.jpg`` before ``frame_10.jpg``; ``00001.jpg`` ...).

Kept and dropped (``df.attrs["dropped"]`` counts, ``df.attrs["dropped_rows"]`` the file and line of each):
videos with no frames, an intensity outside [0, 1], a ``File_ID`` listed twice in the split (the later
lines), a ``Split`` value that is none of Train / Val / Test. A missing (empty, NaN) or non-numeric intensity
in a Train / Val row is a ``ValueError`` naming the file, line and video (a label cannot be guessed). A
split with no usable video is a ``ValueError`` listing what was looked for and found, never an empty frame.
``df.attrs["targets"]`` is ``REACTIONS`` and ``df.attrs["dataset"]`` ``"Hume-Reaction"`` (its successor,
Hume-Vidmimic2, is read by ``affectlab.data.mimicry``).
"""
from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from affectlab.data.report import Drops, no_usable_rows
from affectlab.labels import REACTIONS

_FRAME_DIRS = ("", "frames", "images", "face_images", "cropped_aligned")
_IMAGE_EXT = (".jpg", ".jpeg", ".png")
_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "devel": "val",
           "test": "test"}
_SEARCH_DEPTH = 3


def _frame_folder(base: Path, vid: str) -> Path | None:
    for d in _FRAME_DIRS:
        for name in (vid, f"[{vid}]"):
            p = base / d / name
            if p.is_dir():
                return p
    return None


def frame_order(name: str) -> tuple:
    """Sort key of a frame file name: its digit runs compared as numbers (``frame_10`` after ``frame_9``)."""
    stem = name.rsplit(".", 1)[0]
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", stem)), name


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [c.strip() for c in next(csv.reader(f), [])]


def find_info(root: Path) -> Path | None:
    """Hume-Reaction's ``data_info.csv`` under ``root`` (see the module docstring), or None."""
    direct = [root / "data_info.csv", root / "hume" / "data_info.csv", root / "Hume-Reaction" / "data_info.csv"]
    for p in direct:
        if p.is_file():
            return p
    # A few folders further down; never into per-video (numbered) folders or image folders.
    skip = lambda name: name.strip("[]").isdigit() or name.lower() in _FRAME_DIRS  # noqa: E731
    for d in folders_below(root, _SEARCH_DEPTH, skip):
        p = d / "data_info.csv"
        if p.is_file() and "File_ID" in _header(p):
            return p
    return None


def folders_below(root: Path, depth: int, skip) -> Iterator[Path]:
    """The folders under ``root``, level by level down to ``depth`` (at most 2,000 a level), sorted by name,
    hidden ones and those whose name ``skip`` accepts (frame folders, numbered per-video folders) never
    entered: where a video data set's label file is searched."""
    level = [root]
    for _ in range(depth):
        nxt = []
        for d in level:
            try:
                subs = sorted(e.name for e in os.scandir(d) if e.is_dir())
            except OSError:
                continue
            for name in subs:
                if not name.startswith(".") and not skip(name):
                    yield d / name
                    nxt.append(d / name)
        level = nxt[:2000]


def read_hume(root: str | os.PathLike, split: str) -> pd.DataFrame:
    """Columns: ``video``, ``frames`` (list of frame paths in order), ``length``, then ``REACTIONS``."""
    root = Path(root)
    want = {k: v for k, v in _SPLITS.items() if v != "test"}.get(split.lower())
    if want is None:
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    info = find_info(root)
    if info is None:
        raise FileNotFoundError(f"{root}: no data_info.csv (looked in {root}, {root / 'hume'}, "
                                f"{root / 'Hume-Reaction'} and up to {_SEARCH_DEPTH} levels down)")
    base = info.parent
    drops = Drops()
    with open(info, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [c.strip() for c in next(reader, [])]
        missing = [c for c in ("File_ID", "Split", *REACTIONS) if c not in header]
        if missing:
            raise ValueError(f"{info}, line 1: missing column(s) {missing}")
        col = {c: header.index(c) for c in ("File_ID", "Split", *REACTIONS)}
        lines = []
        for r in reader:
            if not r or not any(x.strip() for x in r):
                continue
            if len(r) != len(header):
                raise ValueError(f"{info}, line {reader.line_num}: malformed CSV (expected {len(header)} fields, got {len(r)})")
            lines.append((reader.line_num, r))
    rows, seen, n_split = [], set(), 0
    for line, r in lines:
        split_value = r[col["Split"]].strip()
        s = _SPLITS.get(split_value.lower())
        if s is None:
            drops.add(f"split {split_value!r} is none of Train / Val / Test", info, line)
            continue
        if s != want:
            continue
        n_split += 1
        vid = r[col["File_ID"]].strip().strip("[]").strip()
        values = []
        for c in REACTIONS:
            text = r[col[c]].strip()
            try:
                values.append(float(text) if text else math.nan)
            except ValueError:
                raise ValueError(f"{info}, line {line}: video {vid}: non-numeric reaction intensity {c}={text!r}") from None
        if any(np.isnan(values)):
            bad = [c for c, v in zip(REACTIONS, values) if np.isnan(v)]
            raise ValueError(f"{info}, line {line}: video {vid}: missing reaction value(s) {bad}")
        if not all(0 <= v <= 1 for v in values):
            drops.add("reaction intensity outside [0, 1]", info, line)
            continue
        if vid in seen:
            drops.add("File_ID listed twice (later line dropped)", info, line)
            continue
        seen.add(vid)
        folder = _frame_folder(base, vid)
        names = [f for f in os.listdir(folder) if f.lower().endswith(_IMAGE_EXT)] if folder else []
        if not names:
            drops.add("video has no frames", info, line)
            continue
        frames = [str(folder / f) for f in sorted(names, key=frame_order)]
        rows.append((vid, frames, len(frames), *values))
    if not rows:
        looked = [f"{info} rows with Split {want.capitalize()}",
                  f"frame folders <id>/ in {base} or its {', '.join(d for d in _FRAME_DIRS if d)}/ folders"]
        raise no_usable_rows(root, looked, [f"{info}: {n_split} {want.capitalize()} rows of {len(lines)}"],
                             drops, what=f"Hume-Reaction {want} videos")
    out = pd.DataFrame(rows, columns=["video", "frames", "length", *REACTIONS])
    out = out.astype({c: np.float32 for c in REACTIONS})
    drops.attach(out)
    out.attrs.update(targets=REACTIONS, dataset="Hume-Reaction")   # what the loaders, the head and the metric follow
    return out
