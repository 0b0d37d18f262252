"""Hume-Vidmimic2 reader: one row per video with its frames and the 6 emotional-mimicry intensities.

Hume-Vidmimic2 is the data set of the emotional-mimicry-intensity (EMI) challenge of the 6th (2024) and 8th
(2025) ABAW: each clip shows a person mimicking a seed video, labelled with six intensities in [0, 1]
(``MIMICRY_EMOTIONS``: Admiration, Amusement, Determination, Empathic Pain, Excitement, Joy); the challenge's
score is the mean Pearson ρ over the six (``affectlab.metrics.mimicry_pearson``). The release ships the clips
(``raw/<id>.mp4``, ``audio/``) and one CSV per split; this reader reads the split CSVs and a folder of face
frames per video, as ``python -m affectlab.data.frames VIDEOS OUT`` writes them from the clips.

How public repositories read the release (they are the only public description of its files):
Skyy93/CVPR2024_abaw (6th ABAW, ``abaw/abaw_dataset.py``) and RamseyZhu/ABAW_8th_EMI (8th ABAW,
``abaw/abaw_dataset.py``) read ``train_split.csv`` and ``valid_split.csv`` with ``pandas.read_csv``, a video's id
from the ``Filename`` column (``str(int(row['Filename'])).zfill(5)``: an integer, its folder and files named
with five digits) and the labels by the six column names above; frames from ``face_images/<id>/`` sorted by
their zero-padded name; both score with the mean over the six of torchmetrics' ``PearsonCorrCoef``
(Skyy93/CVPR2024_abaw ``abaw/evaluate.py``).

Layout read here: ``train_split.csv`` / ``valid_split.csv`` (also ``val_split.csv``, ``validation_split.csv``)
in ``root``, ``root/vidmimic``, ``root/Hume-Vidmimic2``, ``root/data`` or a few folders further down (never
inside numbered or image folders). Header names are matched ignoring case, spaces, ``_`` and ``-``
(``Empathic Pain`` = ``empathic_pain``); the id column is ``Filename`` (or ``File_ID``, ``video``), with or
without zero padding or a video extension. A video's frames: ``<base>/<frame dir>/<id>/``, ``<frame dir>`` one
folder for the whole split: the first of ``FRAME_DIRS`` that holds a listed video (or the ``frames=`` folder
given; ``df.attrs["frames_dir"]`` says which), frames ordered by the number in their name (``0.jpg``, ``1.jpg``
... or ``00001.jpg`` ...).

Kept and dropped (``df.attrs["dropped"]`` counts, ``df.attrs["dropped_rows"]`` the file and line of each):
videos with no frames, an intensity outside [0, 1], an id listed twice in the split (the later lines). A
missing (empty, NaN) or non-numeric intensity, an empty id, a wrong field count or a missing column is a
``ValueError`` naming the file and line (a label cannot be guessed). A split with no usable video is a
``ValueError`` listing what was looked for and found, never an empty frame. ``df.attrs["targets"]`` is
``MIMICRY_EMOTIONS`` (the loaders, FaceRNet's head and the metric follow it), ``df.attrs["dataset"]``
``"Hume-Vidmimic2"``.
"""
from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from affectlab.data.hume import folders_below, frame_order
from affectlab.data.report import Drops, no_usable_rows
from affectlab.labels import MIMICRY_EMOTIONS

DATASET = "Hume-Vidmimic2"
SPLIT_FILES = {"train": ("train_split.csv",), "val": ("valid_split.csv", "val_split.csv", "validation_split.csv")}
_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val"}
ID_COLUMNS = ("Filename", "File_ID", "video")
# Where a video's face frames may be: the frames command's output named as Aff-Wild2's (``cropped_aligned``),
# the release's and the public repositories' folders (``face_images``, ``face_images_aligned``), or beside
# the split files.
FRAME_DIRS = ("cropped_aligned", "face_images", "face_images_aligned", "frames", "images", "")
_IMAGE_EXT = (".jpg", ".jpeg", ".png")
_VIDEO_EXT = (".mp4", ".avi", ".mkv", ".mov", ".webm")
_SEARCH_DEPTH = 3
_TOP = ("vidmimic", "Hume-Vidmimic2", "hume-vidmimic2", "data")


def _key(name: str) -> str:
    """A header name compared ignoring case, spaces, ``_`` and ``-``."""
    return re.sub(r"[\s_\-]+", "", name).lower()


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [c.strip() for c in next(csv.reader(f), [])]


def _is_split_file(path: Path) -> bool:
    keys = {_key(c) for c in _header(path)} if path.is_file() else set()
    return bool(keys & {_key(c) for c in ID_COLUMNS}) and {_key(e) for e in MIMICRY_EMOTIONS} <= keys


def _split_file(base: Path, split: str) -> Path | None:
    return next((base / n for n in SPLIT_FILES[split] if _is_split_file(base / n)), None)


def find_release(root: str | os.PathLike) -> Path | None:
    """The folder holding Hume-Vidmimic2's split files (``train_split.csv`` / ``valid_split.csv`` with an id
    column and the six intensities) under ``root``, or None."""
    root = Path(root)
    for base in (root, *(root / d for d in _TOP)):
        if any(_split_file(base, s) for s in SPLIT_FILES):
            return base
    skip = lambda name: name.isdigit() or name.lower() in FRAME_DIRS  # noqa: E731
    return next((d for d in folders_below(root, _SEARCH_DEPTH, skip)
                 if any(_split_file(d, s) for s in SPLIT_FILES)), None)


def _video_id(text: str) -> str:
    vid = text.strip()
    return vid[: -len(Path(vid).suffix)] if Path(vid).suffix.lower() in _VIDEO_EXT else vid


def _names(vid: str) -> tuple[str, ...]:
    """Folder names a video id may have: as written, zero-padded to 5 digits (the release's folders), unpadded."""
    if not vid.isdigit():
        return (vid,)
    return tuple(dict.fromkeys((vid, vid.zfill(5), str(int(vid)))))


def _frame_folder(place: Path | None, vid: str) -> Path | None:
    return next((place / n for n in _names(vid) if (place / n).is_dir()), None) if place is not None else None


def _frame_place(base: Path, videos: list[str]) -> Path | None:
    """The one folder of frame folders a release's videos are read from: the first of ``FRAME_DIRS`` holding a
    listed video's folder (one source for all: a video the frames command found no face in is dropped, never
    filled from another folder's frames)."""
    for d in FRAME_DIRS:
        if any(_frame_folder(base / d, v) for v in videos):
            return base / d
    return None


def read_vidmimic(root: str | os.PathLike, split: str, frames: str | os.PathLike | None = None) -> pd.DataFrame:
    """Columns: ``video``, ``frames`` (list of frame paths in order), ``length``, then ``MIMICRY_EMOTIONS``.
    ``frames``: the folder holding one ``<id>/`` frame folder per video, when it is not one of ``FRAME_DIRS``
    beside the split files."""
    root = Path(root)
    want = _SPLITS.get(split.lower())
    if want is None:
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    base = find_release(root)
    if base is None:
        raise FileNotFoundError(f"{root}: no Hume-Vidmimic2 split files ({' / '.join(sum(SPLIT_FILES.values(), ()))} "
                                f"with a Filename column and {', '.join(MIMICRY_EMOTIONS)}; looked in {root}, "
                                f"{', '.join(str(root / d) for d in _TOP)} and up to {_SEARCH_DEPTH} levels down)")
    path = _split_file(base, want)
    if path is None:
        raise FileNotFoundError(f"{base}: no {want} split file ({' or '.join(SPLIT_FILES[want])} with a Filename "
                                f"column and the six intensities)")
    frames_dir = Path(frames) if frames is not None else None
    if frames_dir is not None and not frames_dir.is_dir():
        raise FileNotFoundError(f"frames={frames_dir}: not a folder")
    drops = Drops()
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [c.strip() for c in next(reader, [])]
        by_key = {_key(c): i for i, c in enumerate(header)}
        id_col = next((by_key[_key(c)] for c in ID_COLUMNS if _key(c) in by_key), None)
        missing = [c for c in MIMICRY_EMOTIONS if _key(c) not in by_key]
        if id_col is None or missing:
            raise ValueError(f"{path}, line 1: missing column(s) {(['Filename'] if id_col is None else []) + missing} "
                             f"(header: {header})")
        cols = [by_key[_key(c)] for c in MIMICRY_EMOTIONS]
        lines = []
        for r in reader:
            if not r or not any(x.strip() for x in r):
                continue
            if len(r) != len(header):
                raise ValueError(f"{path}, line {reader.line_num}: malformed CSV (expected {len(header)} fields, "
                                 f"got {len(r)})")
            lines.append((reader.line_num, r))
    labelled, seen = [], set()
    for line, r in lines:
        vid = _video_id(r[id_col])
        if not vid:
            raise ValueError(f"{path}, line {line}: empty {header[id_col]}")
        values = []
        for name, c in zip(MIMICRY_EMOTIONS, cols):
            text = r[c].strip()
            try:
                values.append(float(text) if text else math.nan)
            except ValueError:
                raise ValueError(f"{path}, line {line}: video {vid}: non-numeric intensity {name}={text!r}") from None
        if any(np.isnan(values)):
            bad = [n for n, v in zip(MIMICRY_EMOTIONS, values) if np.isnan(v)]
            raise ValueError(f"{path}, line {line}: video {vid}: missing intensity value(s) {bad}")
        if not all(0 <= v <= 1 for v in values):
            drops.add("intensity outside [0, 1]", path, line)
            continue
        canonical = vid.zfill(5) if vid.isdigit() else vid
        if canonical in seen:
            drops.add(f"{header[id_col]} listed twice (later line dropped)", path, line)
            continue
        seen.add(canonical)
        labelled.append((line, vid, canonical, values))
    place = frames_dir if frames_dir is not None else _frame_place(base, [v for _, v, _, _ in labelled])
    rows = []
    for line, vid, canonical, values in labelled:
        folder = _frame_folder(place, vid)
        names = [f for f in os.listdir(folder) if f.lower().endswith(_IMAGE_EXT)] if folder else []
        if not names:
            drops.add("video has no frames", path, line)
            continue
        rows.append((canonical, [str(folder / f) for f in sorted(names, key=frame_order)], len(names), *values))
    if not rows:
        where = [str(frames_dir)] if frames_dir is not None else [str(base / d) if d else str(base) for d in FRAME_DIRS]
        raise no_usable_rows(root, [f"{path} rows", f"frame folders <id>/ in {', '.join(where)}"],
                             [f"{path}: {len(lines)} rows"], drops, what=f"{DATASET} {want} videos")
    out = pd.DataFrame(rows, columns=["video", "frames", "length", *MIMICRY_EMOTIONS])
    out = out.astype({c: np.float32 for c in MIMICRY_EMOTIONS})
    drops.attach(out)
    out.attrs.update(targets=MIMICRY_EMOTIONS, dataset=DATASET, frames_dir=str(place))
    return out


def video_dataset(root: str | os.PathLike) -> str:
    """Which video data set of intensities ``root`` holds: ``"Hume-Reaction"`` (a ``data_info.csv``) or
    ``"Hume-Vidmimic2"`` (its split files). Neither is a FileNotFoundError, both a ValueError asking for the
    folder of one (a run never picks one silently)."""
    from affectlab.data.hume import find_info

    root = Path(root)
    reaction, mimicry = find_info(root), find_release(root)
    if reaction is not None and mimicry is not None:
        raise ValueError(f"{root} holds both Hume-Reaction ({reaction}) and Hume-Vidmimic2 ({mimicry}): point the "
                         f"data root at the folder of the one to use ({reaction.parent} or {mimicry})")
    if reaction is None and mimicry is None:
        raise FileNotFoundError(f"{root}: neither Hume-Reaction's data_info.csv nor Hume-Vidmimic2's "
                                f"{' / '.join(sum(SPLIT_FILES.values(), ()))} "
                                f"(looked up to {_SEARCH_DEPTH} levels down)")
    return "Hume-Reaction" if reaction is not None else DATASET


def read_videos(root: str | os.PathLike, split: str) -> pd.DataFrame:
    """The split of the video data set under ``root`` (``video_dataset``): ``read_hume`` or ``read_vidmimic``;
    ``df.attrs["targets"]`` names its intensities."""
    from affectlab.data.hume import read_hume

    return read_vidmimic(root, split) if video_dataset(root) == DATASET else read_hume(root, split)
