"""Aff-Wild2 / ABAW readers: one DataFrame per task and split, for the release of any ABAW edition on disk.

The edition is detected from the tree (the user never names it): how to read it from the task folders, which
ABAW it is (``df.attrs["edition"]``, an :class:`affectlab.data.editions.Edition`: its number, the year its
scores use, its classes and AUs) from the annotation top folder's number (``6th ABAW Annotations``,
``8th_ABAW_Annotations``), else from the task-folder layout. ``root`` may be the dataset folder, the unzipped archive's top folder or the
annotations folder: the annotation folder is searched up to four levels below ``root``, the image folders
up to four levels above the annotation folder.

==========  ===============================================================================================
layout      task folders (per-video files ``<video>.txt``)
==========  ===============================================================================================
``2020``    1st ABAW: ``{EXPR_Set,VA_Set,AU_Set}/{Training_Set,Validation_Set}`` (8 AUs, 7 classes)
``2021``    2nd ABAW: ``{EXPR_Set,VA_Set,AU_Set}/{Train_Set,Validation_Set}`` (12 AUs, 7 classes)
``2022``    3rd-5th ABAW (2022-2023): ``{EXPR_Classification_Challenge,VA_Estimation_Challenge,
            AU_Detection_Challenge}/{Train_Set,Validation_Set}`` (8 classes, ``Other`` = 7)
``2024``    6th ABAW and later: ``EXPR_Recognition_Challenge`` instead of ``EXPR_Classification_Challenge``
``mtl``     only multi-task files: ``MTL*/{train_set,validation_set}.txt`` (3rd ABAW), or anywhere
            ``training_set_annotations.txt`` / ``validation_set_annotations.txt`` (4th, 7th ABAW); header
            ``image,valence,arousal,expression,`` then ``aus`` or the AU names. Also when ``root`` is the
            folder of such files (the way to read the MTL file of a release that has per-task folders)
==========  ===============================================================================================

Images: ``<video>/<frame>.jpg`` under every folder named ``cropped*`` near the annotations
(``cropped_aligned/``, ``cropped_aligned_images/cropped_aligned/`` and ``.../cropped_aligned_new_50_vids/``,
a doubled ``cropped_aligned/cropped_aligned/``); frame files may have any zero padding.

Per-video files: line 1 is a header, read by name (``arousal,valence`` works; the expression header names the
class of each index; the AU header names the AU of each column); line i+1 labels frame i, image
``<video>/<i:05d>.jpg`` of the release. Refused with a ValueError naming file and line: a first line of
numbers (no header), a blank line inside the file, a wrong column count, a value that is not a finite number,
a label outside the task's space (expression ``-1..n_classes-1``, VA ``[-1, 1]`` or -5, AU 0/1/-1).
Refused naming the folder: a frame folder holding a frame 0 (its numbering is not the release's, and reading it
would shift every label by one frame), two files for one frame. Refused naming both: the annotations of two
releases under ``root`` (or in one folder), one video's frames in two image folders.

Dropped and counted (``df.attrs["dropped"]``: reason -> count, ``df.attrs["dropped_rows"]``: file and line of
each row, see :mod:`affectlab.data.report`): the release's own sentinels (``invalid label (-1)`` /
``(-5)``), ``video has no frame folder``, ``annotated frame has no image``, ``class Other (8-class file)``
with ``keep_other=False``, ``empty annotation file (videos)``. Nothing usable: :func:`report.no_usable_rows`.
"""
from __future__ import annotations

import os
import re
import warnings
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd

from affectlab.data import editions, report
from affectlab.data.report import Drops
from affectlab.labels import AUS_ABAW, EXPRESSIONS, EXPRESSIONS_8, INVALID_AU, INVALID_EXPR, INVALID_VA

TASKS = ("EXPR", "VA", "AU")
# task folder (lower case) -> (family, task); family "set" = 1st/2nd ABAW, "challenge" = 3rd ABAW and later.
_TASK_DIRS = {
    "expr_set": ("set", "EXPR"), "va_set": ("set", "VA"), "au_set": ("set", "AU"),
    "expr_classification_challenge": ("challenge", "EXPR"), "expr_recognition_challenge": ("challenge", "EXPR"),
    "va_estimation_challenge": ("challenge", "VA"), "au_detection_challenge": ("challenge", "AU"),
}
_SPLIT_DIRS = {"train": ("training_set", "train_set"), "val": ("validation_set",)}
_EDITIONS = {
    "2020": "1st ABAW (2020): {EXPR,VA,AU}_Set/Training_Set",
    "2021": "2nd ABAW (2021): {EXPR,VA,AU}_Set/Train_Set",
    "2022": "3rd-5th ABAW (2022-2023): *_Challenge with EXPR_Classification_Challenge",
    "2024": "6th ABAW (2024) or later: *_Challenge with EXPR_Recognition_Challenge",
    "mtl": "multi-task file (MTL_Challenge of the 3rd ABAW or later)",
}
_IMAGE_EXT = (".jpg", ".jpeg", ".png")
_MAX_DEPTH, _MAX_DIRS, _IMAGE_LEVELS = 4, 3000, 4
_SENTINEL = {"EXPR": INVALID_EXPR, "VA": INVALID_VA, "AU": INVALID_AU}


# --- where the annotations are ------------------------------------------------------------------------------

def _subdirs(d: Path) -> list[Path]:
    try:
        with os.scandir(d) as it:
            return sorted(Path(e.path) for e in it if not e.name.startswith(".") and e.is_dir())
    except OSError:
        return []


def _is_mtl_dir(p: Path) -> bool:
    return "mtl" in p.name.lower()


def _mtl_files(d: Path, need_header: bool = False) -> dict[str, Path]:
    """Split -> the multi-task file in ``d``: a ``*.txt``/``*.csv`` whose name says ``train`` or ``val``
    (and, with ``need_header``, whose first line names ``image,valence,arousal,expression``)."""
    found: dict[str, Path] = {}
    for p in sorted(d.glob("*.*")):
        if p.suffix.lower() not in (".txt", ".csv") or not p.is_file():
            continue
        name = p.name.lower()
        split = "val" if re.search(r"(^|[^a-z])val", name) else "train" if re.search(r"(^|[^a-z])train", name) else None
        if split is None:
            continue
        if need_header:
            with open(p, encoding="utf-8-sig", errors="replace") as f:
                head = {h.strip().lower() for h in f.readline().split(",")}
            if not {"image", "valence", "arousal", "expression"} <= head:
                continue
        if split in found:
            raise ValueError(f"{d}: two multi-task files for split {split!r}: {found[split].name} and {p.name}; "
                             "move one of them out of this folder")
        found[split] = p
    return found


def _scan(root: Path) -> tuple[dict[Path, dict[str, list[Path]]], list[Path]]:
    """Annotation folders below ``root``: {base: {task: [task folders]}} and the multi-task folders."""
    bases: dict[Path, dict[str, list[Path]]] = {}
    mtl: list[Path] = []
    queue, seen = deque([(root, 0)]), 0
    while queue and seen < _MAX_DIRS:
        d, depth = queue.popleft()
        seen += 1
        if _mtl_files(d, need_header=True):     # multi-task files outside an MTL folder (4th, 7th ABAW)
            mtl.append(d)
        for p in _subdirs(d):
            key = p.name.lower()
            if key in _TASK_DIRS:
                bases.setdefault(d, {}).setdefault(_TASK_DIRS[key][1], []).append(p)
            elif _is_mtl_dir(p):
                if _mtl_files(p):
                    mtl.append(p)
            elif depth < _MAX_DEPTH and not key.startswith("cropped"):
                queue.append((p, depth + 1))
    return bases, mtl


def _family_layout(base: Path, folders: dict[str, list[Path]]) -> str:
    """The layout of one annotation folder, or a ValueError when it mixes two releases."""
    names = sorted(p.name for ps in folders.values() for p in ps)
    fams = {_TASK_DIRS[n.lower()][0] for n in names}
    if len(fams) > 1 or any(len(ps) > 1 for ps in folders.values()):
        sets = [n for n in names if _TASK_DIRS[n.lower()][0] == "set"]
        chal = [n for n in names if _TASK_DIRS[n.lower()][0] == "challenge"]
        raise ValueError(
            f"{base} holds the annotations of two ABAW releases ({', '.join(names)}): "
            + (f"{sets} are the 1st/2nd ABAW (2020-2021), {chal} the 3rd ABAW or later (2022+). "
               if sets and chal else "EXPR_Classification_Challenge is the 3rd-5th ABAW (2022-2023), "
               "EXPR_Recognition_Challenge the 6th ABAW or later (2024+). ")
            + "Move one release's task folders into a folder of their own and point data_root at the other.")
    if "set" in fams:
        splits = {s.name.lower() for ps in folders.values() for p in ps for s in _subdirs(p)}
        if {"training_set", "train_set"} <= splits:
            both = [str(s) for ps in folders.values() for p in ps for s in _subdirs(p)
                    if s.name.lower() in ("training_set", "train_set")]
            raise ValueError(
                f"{base}: both Training_Set (1st ABAW, 2020) and Train_Set (2nd ABAW, 2021) are present "
                f"({', '.join(both[:4])}{' ...' if len(both) > 4 else ''}): two releases merged into one folder. "
                "Move one release's annotations into a folder of their own and point data_root at the other.")
        return "2021" if "train_set" in splits else "2020"
    expr = [p.name.lower() for p in folders.get("EXPR", [])]
    return "2024" if "expr_recognition_challenge" in expr else "2022"


def _locate(root: Path) -> tuple[str, Path, dict[str, Path]]:
    """(layout, annotation folder, {task: task folder}) — for ``mtl`` the folder holding the multi-task files."""
    if not root.is_dir():
        raise FileNotFoundError(f"Aff-Wild2 root {str(root)!r} does not exist or is not a directory")
    if root.name.lower() in _TASK_DIRS:         # pointed at one task folder: read its release
        root = root.parent
    elif _is_mtl_dir(root) and _mtl_files(root):  # pointed at the folder of the multi-task files
        return "mtl", root, {}
    bases, mtl = _scan(root)
    place = {m: m.parent if _is_mtl_dir(m) else m for m in mtl}   # the folder a release's MTL files belong to
    places = sorted(set(bases) | set(place.values()))
    if len(places) > 1:
        def what(b):
            if b in bases:
                return f"{b} ({', '.join(sorted(p.name for ps in bases[b].values() for p in ps))})"
            return f"{b} ({', '.join(sorted(f.name for m in mtl if place[m] == b for f in _mtl_files(m).values()))})"
        raise ValueError(
            f"{root} holds the annotations of more than one ABAW release: " + "; ".join(what(b) for b in places)
            + ". Point data_root at the release to read (its annotation folder or a folder holding only it), "
            "or move the others out of this folder.")
    if bases:
        base = places[0]
        layout = _family_layout(base, bases[base])
        return layout, base, {t: ps[0] for t, ps in bases[base].items()}
    if len(mtl) > 1:
        raise ValueError(f"{places[0]} holds the multi-task files of more than one release: "
                         f"{', '.join(map(str, mtl))}. Point data_root at one of these folders, or move the others.")
    if mtl:
        return "mtl", mtl[0], {}
    top = sorted(p.name for p in root.iterdir())[:12]
    raise FileNotFoundError(
        f"{root}: no Aff-Wild2 annotations found. Looked for the task folders "
        "{EXPR,VA,AU}_Set (1st/2nd ABAW), EXPR_Classification_Challenge / EXPR_Recognition_Challenge, "
        "VA_Estimation_Challenge, AU_Detection_Challenge (3rd ABAW and later) or an MTL folder with "
        f"train/validation files, up to {_MAX_DEPTH + 1} levels below {root}. Found: {top or 'an empty folder'}.")


def detect_layout(root: str | os.PathLike) -> tuple[str, Path]:
    """(``"2020" | "2021" | "2022" | "2024" | "mtl"``, annotation folder) of the one release under ``root``.

    The annotation folder is the one holding the task folders (for ``mtl``: holding the multi-task files).
    Raises FileNotFoundError when there is none, ValueError when two releases are merged under ``root``."""
    layout, base, _ = _locate(Path(root))
    return layout, base


# --- where the images are ------------------------------------------------------------------------------------

def _cropped_dirs(d: Path, depth: int = 0) -> list[Path]:
    out = []
    for p in _subdirs(d):
        if p.name.lower().startswith("cropped"):
            out.append(p)
            if depth < 2:
                out += _cropped_dirs(p, depth + 1)
    return out


class _Images:
    """The frame folders of the annotated videos, in every ``cropped*`` folder at the nearest level above
    the annotation folder that holds any of them (the 5th ABAW ships two: cropped_aligned and
    cropped_aligned_new_50_vids)."""

    def __init__(self, base: Path, videos):
        videos = sorted(set(videos))
        levels = [base, *list(base.parents)[:_IMAGE_LEVELS]]
        self.roots: list[Path] = []
        self.folders: dict[str, Path] = {}
        first: list[Path] = []
        for a in levels:
            cands = _cropped_dirs(a)
            if cands and not first:
                first = cands
            useful = {c: {v for v in videos if (c / v).is_dir()} for c in cands}
            useful = {c: vs for c, vs in useful.items() if vs}
            if useful:
                self.roots = sorted(useful)
                for c in self.roots:
                    for v in sorted(useful[c]):
                        if v in self.folders:
                            raise ValueError(
                                f"the frames of video {v!r} are in two image folders: {self.folders[v]} and {c / v}. "
                                "Keep one of them (a doubled folder after unzipping: move the inner one's "
                                "contents up and delete the empty copy).")
                        self.folders[v] = c / v
                break
        if not self.roots:
            if not first:
                raise FileNotFoundError(
                    f"no image folder found: looked for folders named cropped* (cropped_aligned, "
                    f"cropped_aligned_images/cropped_aligned, ...) in {base} and its {_IMAGE_LEVELS} parent folders")
            self.roots = first
        self._index: dict[str, dict[int, str]] = {}

    def frames(self, video: str) -> dict[int, str] | None:
        """Frame number -> file name for ``video`` (None when it has no frame folder)."""
        if video not in self.folders:
            return None
        if video not in self._index:
            self._index[video] = _frame_index(self.folders[video])
        return self._index[video]


def _frame_index(folder: Path) -> dict[int, str]:
    idx: dict[int, str] = {}
    other = []
    for name in os.listdir(folder):
        stem, ext = os.path.splitext(name)
        if ext.lower() not in _IMAGE_EXT:
            continue
        if not stem.isdigit():
            other.append(name)
            continue
        k = int(stem)
        if k in idx:
            raise ValueError(f"{folder}: two files for frame {k}: {idx[k]} and {name}. Keep one of them.")
        idx[k] = name
    if 0 in idx:
        raise ValueError(
            f"{folder}: holds frame 0 ({idx[0]}). The release numbers frames from 1 (00001.jpg) and line i+1 of an "
            "annotation file (line i after the header) labels frame i; frames numbered from 0 were extracted "
            "differently, and pairing them with the labels would shift every label by one frame. Use the "
            "release's cropped_aligned frames, or rename each file n to n+1 (00000.jpg -> 00001.jpg, ...).")
    if not idx and other:
        raise ValueError(f"{folder}: {len(other)} image file(s) but none named by its frame number "
                         f"(e.g. {sorted(other)[0]!r}; expected 00001.jpg, 00002.jpg, ...)")
    return idx


# --- one annotation file -------------------------------------------------------------------------------------

def _lines(path: Path) -> list[str]:
    """Stripped lines (CRLF, BOM, trailing spaces and blank lines at the end removed)."""
    lines = [ln.strip() for ln in path.read_bytes().decode("utf-8-sig", errors="replace").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _no_header(path: Path, line: str, expected: str) -> ValueError:
    return ValueError(
        f"{path}, line 1: no header — the first line holds numbers ({line!r}). Aff-Wild2 annotation files start "
        f"with a header ({expected}) and line i+1 labels frame i; read without it every label would move one "
        "frame. Add the header line (or restore the file from the release).")


def _parse(path: Path, header: str, lines: list[str], n: int, first_line: int = 2) -> np.ndarray:
    """The numbers of ``lines`` (file lines ``first_line``...) as a float array of ``n`` columns, or a
    ValueError naming file and line (wrong column count, blank line, not a finite number)."""
    if not lines:
        return np.zeros((0, n))
    try:
        arr = np.array([ln.split(",") for ln in lines], dtype=float)
        if arr.ndim == 2 and arr.shape[1] == n and np.isfinite(arr).all():
            return arr
    except ValueError:
        pass
    for i, ln in enumerate(lines, start=first_line):
        if not ln:
            raise ValueError(f"{path}, line {i}: blank line inside the file (every line after the header is one "
                             "frame; remove the line or restore the file from the release)")
        parts = ln.split(",")
        if len(parts) != n:
            raise ValueError(f"{path}, line {i}: expected {n} value(s) (header: {header}), got {len(parts)}: {ln!r}")
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"{path}, line {i}: not a number in {ln!r}") from None
        if not np.isfinite(vals).all():
            raise ValueError(f"{path}, line {i}: not a finite number in {ln!r}")
    raise ValueError(f"{path}: could not be parsed")


def _label_check(task: str, path: Path, arr: np.ndarray, n_classes: int = 8, lines=None) -> None:
    """Raise for a value outside the task's label space, naming file and line."""
    if task == "EXPR":
        ok = np.isin(arr[:, 0], np.arange(-1, n_classes))
        space = f"-1 or 0..{n_classes - 1}"
    elif task == "VA":
        ok = ((arr >= -1) & (arr <= 1) | (arr == INVALID_VA)).all(1)
        space = "[-1, 1] or -5"
    else:
        ok = np.isin(arr, (0, 1, INVALID_AU)).all(1)
        space = "0, 1 or -1"
    bad = np.flatnonzero(~ok)
    if len(bad):
        line = bad[0] + 2 if lines is None else lines[bad[0]]
        raise ValueError(f"{path}, line {line}: label outside the {task} label space ({space}): {arr[bad[0]].tolist()}")


def _au_name(s: str) -> str | None:
    m = re.fullmatch(r"au0*(\d+)", s.strip().lower())
    return f"AU{m.group(1)}" if m else None


def _read_task_file(path: Path, task: str) -> tuple[tuple, np.ndarray] | None:
    """(header info, labels) of one per-video file, in the course's columns; None for an empty file.

    EXPR: (classes of the file, int array of canonical ``EXPRESSIONS_8`` indices);
    VA: ((), array (n, 2) valence, arousal); AU: (AU names, array (n, n_aus))."""
    lines = _lines(path)
    if not lines:
        return None
    names = [h.strip() for h in lines[0].split(",")]
    head = ",".join(names)
    if all(_is_number(h) for h in names):
        raise _no_header(path, lines[0], {"EXPR": "the class names, " + ",".join(EXPRESSIONS),
                                          "VA": "'valence,arousal'", "AU": "the AU names, AU1,AU2,..."}[task])
    if task == "EXPR":
        canon = {c.lower(): i for i, c in enumerate(EXPRESSIONS_8)}
        unknown = [h for h in names if h.lower() not in canon]
        if unknown or len(names) not in (7, 8) or len(set(h.lower() for h in names)) != len(names):
            raise ValueError(f"{path}, line 1: expression header must name 7 or 8 distinct classes of "
                             f"{','.join(EXPRESSIONS_8)}, got {head!r}")
        arr = _parse(path, head, lines[1:], 1)
        _label_check("EXPR", path, arr, len(names))
        to_canon = np.array([canon[h.lower()] for h in names])
        v = arr[:, 0].astype(int)
        return tuple(EXPRESSIONS_8[i] for i in to_canon), np.where(v < 0, INVALID_EXPR, to_canon[np.maximum(v, 0)])
    if task == "VA":
        low = [h.lower() for h in names]
        if sorted(low) != ["arousal", "valence"]:
            raise ValueError(f"{path}, line 1: VA header must name the columns valence and arousal, got {head!r}")
        arr = _parse(path, head, lines[1:], 2)
        _label_check("VA", path, arr)
        return (), arr[:, [low.index("valence"), low.index("arousal")]]
    aus = [_au_name(h) for h in names]
    if None in aus or len(set(aus)) != len(aus):
        raise ValueError(f"{path}, line 1: AU header must name distinct action units (AU1,AU2,...), got {head!r}")
    arr = _parse(path, head, lines[1:], len(aus))
    _label_check("AU", path, arr)
    return tuple(aus), arr


def _rows(task, path, labels, video, images: _Images, drops: Drops) -> dict | None:
    """The usable rows of one file as columns (with the private ``_line``), drops recorded."""
    n = len(labels)
    frame = np.arange(1, n + 1)
    line = frame + 1
    if task == "EXPR":
        valid = labels != INVALID_EXPR
    else:
        valid = (labels != _SENTINEL[task]).all(1)
    drops.add(f"invalid label ({ {'EXPR': -1, 'VA': -5, 'AU': -1}[task]})", path, line[~valid].tolist())
    idx = images.frames(video)
    if idx is None:
        drops.add("video has no frame folder", path, line[valid].tolist())
        return None
    has_img = np.fromiter((int(f) in idx for f in frame), bool, n)
    drops.add("annotated frame has no image", path, line[valid & ~has_img].tolist())
    keep = valid & has_img
    folder = images.folders[video]
    return {"path": [str(folder / idx[int(f)]) for f in frame[keep]], "frame": frame[keep], "_line": line[keep],
            "_file": str(path), "labels": labels[keep]}


# --- readers -------------------------------------------------------------------------------------------------

def _check_args(task: str | None, split: str) -> None:
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")


def _split_dir(folder: Path, split: str, layout: str) -> Path:
    for s in _subdirs(folder):
        if s.name.lower() in _SPLIT_DIRS[split]:
            return s
    want = {"train": "Training_Set" if layout == "2020" else "Train_Set", "val": "Validation_Set"}[split]
    raise FileNotFoundError(f"{folder / want}: missing ({_EDITIONS[layout]}; split {split}). "
                            f"Found in {folder}: {[s.name for s in _subdirs(folder)] or 'no folders'}")


def _refuse_videos_in_both_splits(folder: Path, split: str, layout: str, files: list[Path]) -> None:
    """A video annotated in both splits would leak its frames from training into validation: refused."""
    other = "val" if split == "train" else "train"
    try:
        other_dir = _split_dir(folder, other, layout)
    except FileNotFoundError:
        return
    both = sorted({p.stem for p in files} & {p.stem for p in other_dir.glob("*.txt")})
    if both:
        raise ValueError(f"{len(both)} video(s) annotated in both {files[0].parent.name} and {other_dir.name} "
                         f"of {folder}, e.g. {files[0].parent / (both[0] + '.txt')} and "
                         f"{other_dir / (both[0] + '.txt')}: a video belongs to one split; remove it from one")


def _drop_other(df: pd.DataFrame, drops: Drops) -> pd.DataFrame:
    other = (df["expr"] == 7).to_numpy()
    for f, g in df[other].groupby("_file", sort=False):
        drops.add("class Other (8-class file)", f, g["_line"].tolist())
    return df[~other].reset_index(drop=True)


def read_abaw(root: str | os.PathLike, task: str, split: str, keep_other: bool = True) -> pd.DataFrame:
    """One row per usable annotated frame of ``task`` ("EXPR" | "VA" | "AU") in ``split`` ("train" | "val").

    Columns: ``path``, ``video``, ``frame`` (1-based), ``subject`` (= the video name; ``_left``/``_right``
    are two people), then ``expr`` | ``valence``, ``arousal`` | one 0/1 column per AU of the header.
    ``attrs``: ``dropped`` (reason -> count), ``dropped_rows`` (file and line of each, see
    :func:`affectlab.data.report.dropped_rows`), ``layout``, ``edition`` (an ``editions.Edition``),
    ``sources`` (task -> the folder or file its labels came from), ``aus`` (AU task), ``classes`` (EXPR task:
    the edition's, 8 with ``Other`` from the 3rd ABAW on). ``keep_other=False`` drops the 8th class ``Other`` of 3rd-ABAW-and-later files (counted).
    """
    task, split = task.upper(), split.lower()
    _check_args(task, split)
    layout, base, folders = _locate(Path(root))
    if layout == "mtl":
        return _read_mtl(base, split, (task,), keep_other)
    if task not in folders:
        raise FileNotFoundError(f"{base}: no {task} task folder ({_EDITIONS[layout]}); found "
                                f"{sorted(p.name for p in folders.values())}")
    ann = _split_dir(folders[task], split, layout)
    files = sorted(p for p in ann.iterdir() if p.suffix.lower() == ".txt" and p.is_file())
    _refuse_videos_in_both_splits(folders[task], split, layout, files)
    drops = Drops()
    if not files:
        raise report.no_usable_rows(ann, [f"per-video {task} annotation files <video>.txt in {ann}"],
                                    sorted(p.name for p in ann.iterdir()), what=f"{task} frames")
    images = _Images(base, [p.stem for p in files])
    parts, aus0, classes = [], None, None
    for path in files:
        got = _read_task_file(path, task)
        if got is None or len(got[1]) == 0:
            warnings.warn(f"{path}: empty annotation file, skipped", stacklevel=2)
            drops.add("empty annotation file (videos)", path)
            continue
        info, labels = got
        if task == "AU":
            if aus0 is None:
                aus0, first = info, path
            elif set(info) != set(aus0):
                raise ValueError(f"{path}, line 1: AU header {','.join(info)} names other AUs than "
                                 f"{','.join(aus0)} in {first}, line 1 (files of one split must annotate the same AUs)")
            labels = labels[:, [info.index(a) for a in aus0]]
        if task == "EXPR" and (classes is None or len(info) > len(classes)):
            classes = EXPRESSIONS_8 if len(info) == 8 else EXPRESSIONS
        rows = _rows(task, path, labels, path.stem, images, drops)
        if rows is not None and len(rows["frame"]):
            parts.append((path.stem, rows))
    if not parts:
        raise report.no_usable_rows(
            root, [f"{task} annotation files in {ann}", "their frames <video>/<frame>.jpg in "
                   + (", ".join(map(str, images.roots)))],
            [f"{len(files)} annotation file(s)", f"{len(images.folders)} of their videos with a frame folder"],
            drops, what=f"{task} frames")
    df = _assemble(task, parts, aus0)
    if task == "EXPR" and not keep_other:
        df = _drop_other(df, drops)
        classes = EXPRESSIONS
        if not len(df):
            raise report.no_usable_rows(root, [f"{task} frames of a class other than Other in {ann}"],
                                        [f"{len(files)} annotation file(s)"], drops, what=f"{task} frames")
    df = df.drop(columns=["_line", "_file"])
    drops.attach(df)
    edition = editions.detect(base, layout)
    df.attrs.update(layout=layout, edition=edition, sources={task: str(ann)})
    if task == "AU":
        df.attrs["aus"] = tuple(aus0)
    if task == "EXPR":
        # the edition's classes, or the files' own when they name more (an 8-class file in a renamed tree)
        df.attrs["classes"] = EXPRESSIONS if not keep_other else max(classes, edition.classes, key=len)
    return df


def _assemble(task, parts, aus) -> pd.DataFrame:
    frames = []
    for video, r in parts:
        d = {"path": r["path"], "video": video, "frame": r["frame"], "subject": video}
        lab = r["labels"]
        if task == "EXPR":
            d["expr"] = lab.astype(int)
        elif task == "VA":
            d["valence"], d["arousal"] = lab[:, 0].astype(np.float32), lab[:, 1].astype(np.float32)
        else:
            d.update({a: lab[:, j].astype(int) for j, a in enumerate(aus)})
        d["_line"], d["_file"] = r["_line"], r["_file"]
        frames.append(pd.DataFrame(d))
    return pd.concat(frames, ignore_index=True)


def read_abaw_multitask(root: str | os.PathLike, split: str, tasks=TASKS) -> pd.DataFrame:
    """All requested tasks' labels per frame, outer-joined on (video, frame): a frame labelled for one task
    keeps its row, with the sentinels (-1 / -5.0 / -1) for the tasks it lacks.

    A release with per-task folders is read from them (its ``MTL_Challenge`` file is a different, smaller
    set: point ``root`` at that folder to read it). Dropped reasons are prefixed with the task
    (``"EXPR: invalid label (-1)"``)."""
    split = split.lower()
    tasks = tuple(t.upper() for t in tasks)
    _check_args(None, split)
    for t in tasks:
        _check_args(t, split)
    layout, base, _ = _locate(Path(root))
    if layout == "mtl":
        return _read_mtl(base, split, tasks)
    out, drops, attrs = None, Drops(), {}
    for task in tasks:
        df = read_abaw(root, task, split)
        detail = report.dropped_rows(df)
        for (reason, file), g in detail.groupby(["reason", "file"], sort=False):
            drops.add(f"{task}: {reason}", file, [int(x) for x in g["line"].dropna()])
            if g["line"].isna().any():
                drops.add(f"{task}: {reason}", file, n=int(g["line"].isna().sum()))
        attrs.update({k: v for k, v in df.attrs.items() if k in ("aus", "classes")})
        attrs.setdefault("sources", {}).update(df.attrs["sources"])
        df = pd.DataFrame(df)
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
    drops.attach(out)
    out.attrs.update(attrs, layout=layout, edition=editions.detect(base, layout))
    return out


def _read_mtl(folder: Path, split: str, tasks, keep_other: bool = True) -> pd.DataFrame:
    """The multi-task file of ``split`` in ``folder``: one row per image named in it."""
    files = _mtl_files(folder)
    if split not in files:
        raise FileNotFoundError(f"{folder}: no multi-task annotation file for split {split!r} (found "
                                f"{sorted(p.name for p in files.values())}; expected a name with 'train' or 'val')")
    path = files[split]
    raw = _lines(path)
    if not raw:
        raise report.no_usable_rows(path, ["a header and one row per image"], ["an empty file"])
    names = [h.strip().lower() for h in raw[0].split(",")]
    if _is_number(names[0]) or "/" in names[0] or names[0].endswith(_IMAGE_EXT):
        raise ValueError(f"{path}, line 1: no header — the first line holds a row ({raw[0][:60]!r}). The multi-task "
                         "file starts with the header image,valence,arousal,expression,aus; add it.")
    need = ("image", "valence", "arousal", "expression")
    if not set(need) <= set(names):
        raise ValueError(f"{path}, line 1: the header must name {','.join(need)} and the AUs, got {raw[0]!r}")
    if "aus" in names:
        if names[-1] != "aus" or names.count("aus") > 1:
            raise ValueError(f"{path}, line 1: 'aus' must be the last header column (the 12 AU values follow), "
                             f"got {raw[0]!r}")
        aus = AUS_ABAW
        cols = names[:-1] + list(aus)
    else:
        aus = tuple(_au_name(h) for h in names if h not in need)
        if None in aus or len(set(aus)) != len(aus):
            raise ValueError(f"{path}, line 1: header columns other than {','.join(need)} must be distinct AU "
                             f"names, got {raw[0]!r}")
        cols = [h if h in need else _au_name(h) for h in names]
    body = [(i, ln) for i, ln in enumerate(raw[1:], start=2)]
    if not body:
        raise report.no_usable_rows(path, ["one row per image after the header"], ["only the header"])
    for i, ln in body:
        if not ln:
            raise ValueError(f"{path}, line {i}: blank line inside the file")
    rows = [ln.split(",") for _, ln in body]
    ii = cols.index("image")
    images = [r[ii].strip() if len(r) > ii else "" for r in rows]
    values = [",".join(r[:ii] + r[ii + 1:]) for r in rows]
    vcols = [c for c in cols if c != "image"]
    arr = _parse(path, ",".join(cols), values, len(vcols))
    lines = np.array([i for i, _ in body])
    va = arr[:, [vcols.index("valence"), vcols.index("arousal")]]
    ex = arr[:, [vcols.index("expression")]]
    au = arr[:, [vcols.index(a) for a in aus]]
    _label_check("EXPR", path, ex, 8, lines)
    _label_check("VA", path, va, lines=lines)
    _label_check("AU", path, au, lines=lines)
    video, frame = [], []
    for i, im in zip(lines, images):
        p = Path(im.replace("\\", "/"))
        if not p.stem.isdigit() or len(p.parts) < 2:
            raise ValueError(f"{path}, line {i}: image {im!r} is not <video>/<frame number>.jpg")
        video.append(p.parts[-2])
        frame.append(int(p.stem))
    img = _Images(folder, video)
    df = pd.DataFrame({"video": video, "frame": frame, "subject": video, "_line": lines})
    df["valence"], df["arousal"] = va[:, 0].astype(np.float32), va[:, 1].astype(np.float32)
    df["expr"] = ex[:, 0].astype(int)
    for j, a in enumerate(aus):
        df[a] = au[:, j].astype(int)
    cols_of = {"EXPR": ["expr"], "VA": ["valence", "arousal"], "AU": list(aus)}
    invalid = np.ones(len(df), bool)
    for t in tasks:
        invalid &= (df[cols_of[t]] == _SENTINEL[t]).any(axis=1).to_numpy()
    drops = Drops()
    reason = "no valid label for the requested tasks"
    drops.add(reason, path, lines[invalid].tolist())
    paths, no_folder, no_img = [], np.zeros(len(df), bool), np.zeros(len(df), bool)
    for k, (v, f) in enumerate(zip(video, frame)):
        idx = img.frames(v) if not invalid[k] else None
        if idx is None:
            no_folder[k] = not invalid[k]
            paths.append("")
        elif f not in idx:
            no_img[k] = True
            paths.append("")
        else:
            paths.append(str(img.folders[v] / idx[f]))
    drops.add("video has no frame folder", path, lines[no_folder].tolist())
    drops.add("annotated frame has no image", path, lines[no_img].tolist())
    df.insert(0, "path", paths)
    wanted = [c for t in tasks for c in cols_of[t]]
    df = df.loc[~invalid & ~no_folder & ~no_img, ["path", "video", "frame", "subject", "_line", *wanted]]
    df = df.reset_index(drop=True)
    if "expr" in df and not keep_other:
        df = _drop_other(df.assign(_file=str(path)), drops).drop(columns="_file")
    if not len(df):
        raise report.no_usable_rows(path, [f"rows with a {'/'.join(tasks)} label and an image in "
                                           + ", ".join(map(str, img.roots))],
                                    [f"{len(body)} row(s)", f"{len(img.folders)} of their videos with a frame folder"],
                                    drops, what="frames")
    df = df.drop(columns="_line")
    drops.attach(df)
    df.attrs.update(layout="mtl", edition=editions.detect(folder, "mtl"), aus=tuple(aus),
                    classes=EXPRESSIONS_8 if keep_other else EXPRESSIONS, sources={t: str(path) for t in tasks})
    return df
