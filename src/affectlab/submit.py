"""Submission files for an ABAW challenge's test set: written from a predictions table, checked before upload.

    python -m affectlab.submit --edition 6th --track va --test-list LIST (--frame-counts FILE | --videos DIR)
                               (--predictions TABLE.csv | --run RUN --test-frames DIR --data-root DIR) --out PATH
    python -m affectlab.submit --edition 6th --track va --test-list LIST [--frame-counts FILE | --videos DIR]
                               --check PATH

Two halves. :func:`write_submission` turns a predictions table — one row per predicted frame (``video``,
``frame`` counted from 1 as the release numbers its crops, then the track's values) or per video (``video``
and the targets) — into the edition's format; any model's output can fill it (``--predictions`` reads it from
a CSV). :func:`predictions_from_run` fills it from a ``python -m affectlab.fit`` run (``models/best.pth``
through the paper's recipe, on the test set's face crops). The writer and the checker need no torch.

Frame-level tracks (VA, EXPR, AU) get one row per frame of every listed video; the frame count comes from the
video (``--videos``: OpenCV reads every frame, since the container's frame-count field can be off by one),
from the organisers' sample file or the frames-from-videos manifest (``--frame-counts``), never from the crop
folders, which miss the face-less frames. The organisers give no rule for face-less frames (every frame must
have a row); the course fills each with the prediction of the **nearest predicted frame of the same video**
(the earlier one on a tie) — the rule of a public 3rd ABAW entry (th2l/Affwild2-ABAW3-ActionUnit,
``tools/prepare_test_data.py``: a gap takes its neighbours' crops, split at its middle) — and counts them per
video. A listed video with no predicted frame at all gets the track's neutral row (valence = arousal = 0,
Neutral, no AU) and is named; a listed video without a prediction in a video-level track gets the mean of
the predicted videos and is named. Values are put in their ranges (VA clipped to [-1, 1], intensities to
[0, 1], class scores -> the arg-max class, AU probabilities -> 1 at >= 0.5), the clipped ones counted.

:func:`check_submission` (``--check PATH``: a file, or the folder of per-video files) validates any
submission, ours or another tool's, against the test-set list (and the frame counts when given): the header,
each row's key, field count and value range, missing and extra frames or videos, the line count. It names the
file and line of every problem (the first first); the command exits 1 on a problem.

The formats, as the release's sample files and public ABAW entries show them (docs/real-data.md lists the
sources of each; where none was found, the rule chosen is said there):

=============  ==================  ==============================================================================
edition        tracks              file
=============  ==================  ==============================================================================
1st-3rd ABAW   va, expr, au        a folder of ``<video>.txt``: header ``valence,arousal`` / the class names / the
(2020-2022)                        AU names (no key column); line i+1 is frame i; EXPR one class index a line
3rd, 4th, 7th  mtl                 one file ``image,valence,arousal,expression,aus``; a row per listed image:
                                   ``video/00001.jpg,v,a,class,AU...`` (12 AUs)
5th ABAW on    va, expr, au        one file ``image_location,valence,arousal`` / ``image_location,Neutral,...`` /
(2023-)                            ``image_location,AU1,...``; a row per frame ``video/00001.jpg,<values>``
5th ABAW       reaction            ``File_ID,Adoration,...,Surprise`` a row per video (Hume-Reaction)
6th, 8th on    mimicry             ``Filename,Admiration,...,Joy`` a row per video (Hume-Vidmimic2)
=============  ==================  ==============================================================================

Public sources (repository: path), read for their format only: 1st ABAW kuhnkeF/ABAW2020TNT:
``write_labelfile.py``; 2nd sucv/ABAW2: ``script/generate_test_result.py``, glmanhtu/multitask-abaw-2021:
``multitask_cnn_rnn/test.py`` and ``create_annotation_files/affwild2/create_test_set_file.py``; 3rd
th2l/Affwild2-ABAW3-ActionUnit: ``voting_fusion.py``, ``tools/prepare_test_data.py``; 5th upczww/abaw5:
``EXPR/test.py``, sucv/ABAW3: ``generate_result.py``; 6th upczww/abaw6: ``VA/test.py``, ``EXPR/test.py``,
``AU/test.py``; 8th FreedomPuppy77/Charon: ``VA/test.py``; multi-task khanhnd185/MTL-ABAW4: ``test.py``,
``dataset.py``; Hume-Reaction cyinen/CVPR2023-ABAW5-ERI: ``predict.py``, ``config/config.py``; Hume-Vidmimic2
ZZZRamsey/CVPR_2026_ABAW_10th_EMI: ``infer.py``, ``tools/clip_submissions_to_unit_interval.py``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from affectlab.data import editions
from affectlab.labels import AUS_ABAW, REACTIONS
from affectlab.labels import MIMICRY_EMOTIONS as MIMICRY   # Hume-Vidmimic2's six, as its CSVs name them

TRACKS = ("va", "expr", "au", "mtl", "reaction", "mimicry")
FRAME_TRACKS = ("va", "expr", "au", "mtl")
VIDEO_EXT = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
_KEY = re.compile(r"^(?P<video>.+)/(?P<frame>\d+)\.(?:jpg|jpeg|png)$", re.I)


class SubmitError(Exception):
    """Bad input (a file, a list, a table, a setting): printed as one line, exit status 2."""


# --- the formats -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Format:
    """One track of one edition: how its file looks. ``per_video``: a folder of ``<video>.txt`` files with no
    key column (1st-3rd ABAW); otherwise one file. ``names``: the value columns the header names; ``kind``:
    ``float`` in ``[lo, hi]`` or ``int`` in ``range(lo, hi + 1)``, per value field."""
    edition: editions.Edition
    track: str
    per_video: bool
    key: str | None             # the key column's header name (None: per-video files, no key)
    names: tuple[str, ...]       # what the header names after the key
    fields: tuple[tuple[str, str, float, float], ...]   # (name, kind, lo, hi) of each value field of a row

    @property
    def header(self) -> str:
        return ",".join(([self.key] if self.key else []) + list(self.names))

    @property
    def video_level(self) -> bool:
        return self.track in ("reaction", "mimicry")

    def describe(self) -> str:
        where = "a folder of <video>.txt files" if self.per_video else "one file"
        return f"{self.edition.name} {self.track}: {where}, header {self.header!r}"


def tracks_of(edition: editions.Edition) -> tuple[str, ...]:
    """The tracks of ``edition`` this module writes (the Aff-Wild2 tracks, multi-task, Hume's)."""
    n = edition.number
    out = () if edition.layout == "mtl" else ("va", "expr", "au")
    if n == 3 or edition.layout == "mtl":
        out += ("mtl",)
    if n == 5:
        out += ("reaction",)
    if n == 6 or n >= 8:
        out += ("mimicry",)
    return out


def format_of(edition: editions.Edition | int | str, track: str) -> Format:
    """The file format of ``track`` in ``edition`` (an Edition, its number, ``"6th"`` or a year)."""
    e = edition if isinstance(edition, editions.Edition) else parse_edition(edition)
    if track not in TRACKS:
        raise SubmitError(f"--track {track!r}: choose one of {', '.join(TRACKS)}")
    if track not in tracks_of(e):
        raise SubmitError(f"{e.name} has no {track} track here; its tracks: {', '.join(tracks_of(e))} "
                          "(docs/real-data.md, 'Submission files')")
    classes, aus = tuple(e.classes), tuple(e.aus)
    va = (("valence", "float", -1.0, 1.0), ("arousal", "float", -1.0, 1.0))
    expr = (("expression", "int", 0, len(classes) - 1),)
    au = tuple((a, "int", 0, 1) for a in aus)
    if track == "mtl":
        return Format(e, track, False, "image", ("valence", "arousal", "expression", "aus"),
                      va + expr + tuple((a, "int", 0, 1) for a in AUS_ABAW))
    if track == "reaction":
        return Format(e, track, False, "File_ID", REACTIONS, tuple((r, "float", 0.0, 1.0) for r in REACTIONS))
    if track == "mimicry":
        return Format(e, track, False, "Filename", MIMICRY, tuple((r, "float", 0.0, 1.0) for r in MIMICRY))
    per_video = e.number in (1, 2, 3)
    names = {"va": ("valence", "arousal"), "expr": classes, "au": aus}[track]
    fields = {"va": va, "expr": expr, "au": au}[track]
    return Format(e, track, per_video, None if per_video else "image_location", names, fields)


def parse_edition(text: int | str) -> editions.Edition:
    """``6``, ``"6th"``, ``"sixth"`` -> the 6th ABAW; ``2024`` -> the first edition of that year."""
    s = str(text).strip().lower()
    m = re.fullmatch(r"(\d+)(?:st|nd|rd|th)?(?:[ _-]*abaw)?", s)
    try:
        if m:
            n = int(m.group(1))
            return editions.for_year(n) if n >= 2000 else editions.for_number(n)
        n = editions.number_of(f"{s} abaw")
        if n is not None:
            return editions.for_number(n)
    except ValueError as e:
        raise SubmitError(f"--edition {text!r}: {e}") from None
    raise SubmitError(f"--edition {text!r}: give the ABAW's number (1-11, '6th') or its year (2020-2026)")


# --- the test-set lists and the frame counts ---------------------------------------------------------------

def _norm_id(text: str) -> str:
    """A video id as lists and files may write it: ``[00012]``, ``00012`` and ``12`` are one video."""
    s = text.strip().strip("[]").strip()
    return str(int(s)) if s.isdigit() else s


def _read_csv(path: Path, **kw) -> pd.DataFrame:
    """``pd.read_csv`` with a malformed or empty file refused naming it."""
    try:
        return pd.read_csv(path, **kw)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise SubmitError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None


def read_test_list(path: str | os.PathLike, track: str) -> list[str]:
    """The names the organisers list for ``track``'s test set, in their order.

    Frame tracks: a ``names_of_videos_in_each_test_set/*.txt`` (one video a line). ``mtl``: the multi-task
    list of images (``video/00001.jpg`` a line; a first line without ``/`` is its header). Video-level tracks:
    a CSV with a ``File_ID`` / ``Filename`` column (Hume-Reaction's ``data_info.csv``: its ``Test`` rows; a
    Hume-Vidmimic2 split CSV), or one id a line. Refused naming the line: a name listed twice; an empty list."""
    path = Path(path)
    if not path.is_file():
        raise SubmitError(f"--test-list {path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise SubmitError(f"{path}: not a text list ({e})") from None
    start = 0
    if track in ("reaction", "mimicry") and lines:
        head = [c.strip() for c in next(csv.reader([lines[0]]))]
        col = next((c for c in ("File_ID", "Filename", "video") if c in head), None)
        if col is not None:
            df = _read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
            df.columns = [c.strip() for c in df.columns]
            if "Split" in df:
                df = df[df["Split"].str.strip().str.lower() == "test"]
            names = [(i, v.strip()) for i, v in zip(df.index + 2, df[col])]
            return _unique(path, names)
    if track == "mtl" and lines and "/" not in lines[0]:
        start = 1
    names = [(i + 1, ln.strip()) for i, ln in enumerate(lines) if i >= start and ln.strip()]
    names = [(i, n.split(",")[0].strip()) for i, n in names]
    return _unique(path, names)


def _unique(path: Path, names: list[tuple[int, str]]) -> list[str]:
    if not names:
        raise SubmitError(f"{path}: the test-set list is empty")
    seen: dict[str, int] = {}
    for line, n in names:
        if n in seen:
            raise SubmitError(f"{path}, line {line}: {n!r} is listed twice (first on line {seen[n]})")
        seen[n] = line
    return [n for _, n in names]


def read_frame_counts(path: str | os.PathLike) -> dict[str, int]:
    """Each video's frame count from ``path``: a CSV with ``video`` and ``frames`` columns; an organisers'
    sample / example submission (``image_location,...`` or ``image,...``: its rows counted per video); or a
    JSON manifest — ``{video: frames}``, ``{"videos": {video: {"frames": n, ...}}}`` or a list of records with
    ``video`` and ``frames`` (``frame_count`` / ``n_frames`` also read): ``python -m affectlab.frames``'s
    ``manifest.json``, whose records give each video's decoded frames and its output folders (``<video>_left``
    / ``_right`` take the video's count)."""
    path = Path(path)
    if not path.is_file():
        raise SubmitError(f"--frame-counts {path}: no such file")
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise SubmitError(f"{path}: not JSON ({e})") from None
        return _counts_from_json(path, doc)
    with open(path, encoding="utf-8-sig") as f:
        first = f.readline()
    head = [c.strip().lower() for c in first.split(",")]
    if head and head[0] in ("image_location", "image"):
        counts: dict[str, int] = {}
        with open(path, encoding="utf-8-sig") as f:
            next(f)
            for i, line in enumerate(f, start=2):
                if not line.strip():
                    continue
                m = _KEY.match(line.split(",")[0].strip())
                if not m:
                    raise SubmitError(f"{path}, line {i}: {line.split(',')[0]!r} is no video/00001.jpg")
                counts[m["video"]] = counts.get(m["video"], 0) + 1
        return counts
    df = _read_csv(path, dtype=str, encoding="utf-8-sig")
    cols = {c.strip().lower(): c for c in df.columns}
    vc = cols.get("video")
    fc = next((cols[k] for k in ("frames", "frame_count", "n_frames") if k in cols), None)
    if vc is None or fc is None:
        raise SubmitError(f"{path}, line 1: expected the columns video,frames (or an organisers' sample file "
                          f"starting image_location,...), found {list(df.columns)}")
    return _counts(path, [(i + 2, v, n) for i, (v, n) in enumerate(zip(df[vc], df[fc]))])


def _counts_from_json(path: Path, doc) -> dict[str, int]:
    recs = doc.get("videos", doc) if isinstance(doc, dict) else doc
    rows = []
    if isinstance(recs, dict):
        for v, r in recs.items():
            rows.append((v, v, r if not isinstance(r, dict) else _frames_field(r)))
    elif isinstance(recs, list):
        for i, r in enumerate(recs):
            if not isinstance(r, dict) or "video" not in r:
                raise SubmitError(f"{path}: record {i} has no 'video'")
            if r.get("status", "done") != "done":     # an unreadable video has no count: named if listed
                continue
            n = _frames_field(r)
            rows.append((r["video"], r["video"], n))
            # python -m affectlab.frames: a two-person video's folders <video>_left / _right share its frames
            rows += [(r["video"], folder, n) for folder in (r.get("folders") or {}) if folder != r["video"]]
    else:
        raise SubmitError(f"{path}: expected {{video: frames}} or records with video and frames")
    return _counts(path, rows, "video")


def _frames_field(r: dict):
    return next((r[k] for k in ("frames", "frame_count", "n_frames") if k in r), None)


def _counts(path: Path, rows, where: str = "line") -> dict[str, int]:
    out = {}
    for at, v, n in rows:
        try:
            k = int(str(n).strip())
        except (TypeError, ValueError):
            k = -1
        if k < 1:
            raise SubmitError(f"{path}, {where} {at}: video {v!r} has frame count {n!r} (a whole number >= 1)")
        out[str(v).strip()] = k
    return out


def find_video(videos: Path, name: str) -> Path | None:
    """The video file of test-set name ``name`` in ``videos``: ``<name>.<ext>``, or for ``<v>_left`` /
    ``<v>_right`` (two people in one video, Aff-Wild2's naming) the file of ``<v>``."""
    base = re.sub(r"_(left|right)$", "", name)
    for stem in dict.fromkeys((name, base)):
        for ext in VIDEO_EXT:
            for e in (ext, ext.upper()):
                p = videos / f"{stem}{e}"
                if p.is_file():
                    return p
    return None


def count_video_frames(path: str | os.PathLike) -> int:
    """The number of frames OpenCV reads from ``path`` (grabbed one by one: exact, where the container's
    frame-count field may be off by one or missing)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SubmitError(f"{path}: OpenCV cannot open this video")
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise SubmitError(f"{path}: no readable frame (empty, or a codec OpenCV lacks)")
    return n


def frame_counts_from_videos(videos: str | os.PathLike, names: Sequence[str]) -> dict[str, int]:
    """Each listed video's frame count from its file in ``videos`` (:func:`count_video_frames`)."""
    videos = Path(videos)
    if not videos.is_dir():
        raise SubmitError(f"--videos {videos}: not a folder")
    missing = [n for n in names if find_video(videos, n) is None]
    if missing:
        raise SubmitError(f"--videos {videos}: no video file for {len(missing)} listed video(s), e.g. "
                          f"{missing[:5]} (looked for <name>{{{','.join(VIDEO_EXT)}}}, _left/_right stripped)")
    return {n: count_video_frames(find_video(videos, n)) for n in names}


# --- the writer ------------------------------------------------------------------------------------------------

@dataclass
class Report:
    """What :func:`write_submission` wrote and what it filled in."""
    out: Path
    format: str
    rows: int = 0
    videos: int = 0
    predicted: int = 0                      # rows that came from a prediction
    filled: int = 0                         # rows filled (face-less frames, videos without a prediction)
    filled_per_video: dict = field(default_factory=dict)
    empty_videos: list = field(default_factory=list)     # listed videos with no prediction at all
    clipped: int = 0                        # values put back into their range
    ignored_videos: list = field(default_factory=list)   # predicted videos the list does not hold

    def lines(self) -> list[str]:
        out = [f"wrote {self.out}: {self.format}",
               f"{self.rows:,} rows for {self.videos} listed videos: {self.predicted:,} predicted, "
               f"{self.filled:,} filled"]
        if self.filled_per_video:
            worst = sorted(self.filled_per_video.items(), key=lambda kv: -kv[1])[:5]
            out.append(f"filled (no face / no prediction) in {len(self.filled_per_video)} video(s), most in "
                       + ", ".join(f"{v} ({n})" for v, n in worst))
        if self.empty_videos:
            out.append(f"{len(self.empty_videos)} listed video(s) had no prediction at all and got the fill row: "
                       f"{self.empty_videos[:10]}")
        if self.clipped:
            out.append(f"{self.clipped:,} value(s) outside their range were clipped into it")
        if self.ignored_videos:
            out.append(f"{len(self.ignored_videos)} predicted video(s) are not in the test-set list (left out): "
                       f"{self.ignored_videos[:5]}")
        return out


def _values(preds: pd.DataFrame, fmt: Format) -> tuple[np.ndarray, int]:
    """The table's values as the format's fields (a float array, one column per field) and how many were
    clipped into range. Refuses a missing column or a non-finite value, naming the row."""
    cols, clipped = [], 0
    e = fmt.edition

    def need(names):
        miss = [c for c in names if c not in preds]
        if miss:
            hint = ("; the table scores 7 classes, the 3rd ABAW on labels 8 (with Other): predict with a run "
                    "trained on that edition's release" if miss == ["Other"] else "")
            raise SubmitError(f"predictions table: no column(s) {miss} for {fmt.edition.name} {fmt.track} (columns: "
                              f"{[c for c in preds.columns if c != '_line']}){hint}")
        return preds[list(names)].to_numpy(dtype=float)

    def finite(a, what):
        bad = ~np.isfinite(a)
        if bad.any():
            i = int(np.flatnonzero(bad.any(axis=1) if a.ndim > 1 else bad)[0])
            raise SubmitError(f"predictions table, line {_line(preds, i)}: {what} is not a finite number "
                              f"(video {preds['video'].iloc[i]!r}{_frame_of(preds, i)})")
        return a

    if fmt.track in ("va", "mtl"):
        va = finite(need(("valence", "arousal")), "valence/arousal")
        clipped += int(((va < -1) | (va > 1)).sum())
        cols.append(np.clip(va, -1, 1))
    if fmt.track in ("expr", "mtl"):
        classes = e.classes
        if "expr" in preds or "expression" in preds:
            c = finite(preds["expr" if "expr" in preds else "expression"].to_numpy(dtype=float), "expr")
            bad = (c != np.round(c)) | (c < 0) | (c >= len(classes))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise SubmitError(f"predictions table, line {_line(preds, i)}: expr {c[i]} is no class index "
                                  f"0-{len(classes) - 1} of {', '.join(classes)}")
        else:
            scores = finite(need(classes), "a class score")
            c = scores.argmax(axis=1).astype(float)
        cols.append(c[:, None])
    if fmt.track in ("au", "mtl"):
        aus = AUS_ABAW if fmt.track == "mtl" else e.aus
        a = finite(need(aus), "an AU")
        cols.append((a >= 0.5).astype(float))
    if fmt.video_level:
        a = finite(need(fmt.names), "a target")
        clipped += int(((a < 0) | (a > 1)).sum())
        cols.append(np.clip(a, 0, 1))
    return np.hstack(cols), clipped


def _line(preds, i) -> int:
    """The line of the table's CSV (header = line 1) that row ``i`` came from, whatever the rows' order now."""
    return int(preds["_line"].iloc[i]) if "_line" in preds else i + 2


def _frame_of(preds, i):
    return f", frame {preds['frame'].iloc[i]}" if "frame" in preds else ""


def _neutral(fmt: Format) -> np.ndarray:
    """The fill row of a video without any prediction: valence = arousal = 0, Neutral (0), no AU."""
    return np.zeros(len(fmt.fields))


def _fmt_row(fmt: Format, v: np.ndarray) -> str:
    """A row's values as text: floats to 6 decimals without trailing zeros (never ``-0``), classes and AUs as
    whole numbers."""
    return ",".join(f"{round(float(x), 6) + 0.0:.6f}".rstrip("0").rstrip(".") if kind == "float" else str(int(x))
                    for x, (_, kind, _, _) in zip(v, fmt.fields))


def nearest_rows(frames: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows for the ``wanted`` frame numbers from the predicted ``frames`` (sorted, unique) and their
    ``values``: a frame without a prediction takes the nearest predicted frame's values (the earlier one on a
    tie). Returns the rows and how many were filled."""
    j = np.searchsorted(frames, wanted)              # first predicted frame >= each wanted frame
    after = np.clip(j, 0, len(frames) - 1)
    before = np.clip(j - 1, 0, len(frames) - 1)
    take_before = np.abs(wanted - frames[before]) <= np.abs(frames[after] - wanted)
    idx = np.where(take_before, before, after)
    return values[idx], int((~np.isin(wanted, frames)).sum())


def fill_nearest(frames: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Rows for frames 1..n of a video (:func:`nearest_rows`)."""
    return nearest_rows(frames, values, np.arange(1, n + 1))


def write_submission(preds: pd.DataFrame, out: str | os.PathLike, edition, track: str, test_list: Sequence[str],
                     frame_counts: dict[str, int] | None = None, *, overwrite: bool = False) -> Report:
    """Write ``preds`` (a predictions table, see the module's doc) as ``track``'s submission of ``edition``
    for the videos (images, for ``mtl``) of ``test_list`` into ``out`` (a file, or a folder of per-video
    files), through a temporary file renamed into place. ``frame_counts``: every listed video's frame count
    (frame-level tracks but ``mtl``). Returns the :class:`Report`; refuses an ``out`` that exists unless
    ``overwrite``."""
    fmt = format_of(edition, track)
    out = Path(out)
    if out.exists() and not overwrite:
        raise SubmitError(f"--out {out} exists: choose another path or pass --force to replace it")
    if "video" not in preds:
        raise SubmitError(f"predictions table: no 'video' column (columns: {list(preds.columns)})")
    preds = preds.copy()
    preds["video"] = preds["video"].astype(str).str.strip()
    preds["_line"] = np.arange(len(preds)) + 2          # messages name the table's own lines
    rep = Report(out, fmt.describe())
    listed = list(test_list)
    if fmt.video_level:
        return _write_videos(preds, out, fmt, listed, rep)
    if "frame" not in preds:
        raise SubmitError("predictions table: no 'frame' column (a frame-level track: video, frame, values)")
    preds["frame"] = pd.to_numeric(preds["frame"], errors="coerce")
    bad = preds["frame"].isna() | (preds["frame"] < 1) | (preds["frame"] != preds["frame"].round())
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SubmitError(f"predictions table, line {_line(preds, i)}: frame {preds['frame'].iloc[i]!r} is no "
                          "frame number (1 for the video's first frame, as the release numbers its crops)")
    dup = preds.duplicated(["video", "frame"])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise SubmitError(f"predictions table, line {_line(preds, i)}: video {preds['video'].iloc[i]!r} frame "
                          f"{int(preds['frame'].iloc[i])} is predicted twice")
    preds = preds.sort_values(["video", "frame"], kind="stable").reset_index(drop=True)
    values, rep.clipped = _values(preds, fmt)
    groups = {v: idx for v, idx in preds.groupby("video", sort=False).indices.items()}
    if fmt.track == "mtl":
        listed_videos = {_KEY.match(k)["video"] if _KEY.match(k) else k for k in listed}
    else:
        listed_videos = set(listed)
    rep.ignored_videos = sorted(set(groups) - listed_videos)

    def rows_of(video: str, wanted: np.ndarray) -> np.ndarray:
        idx = groups.get(video)
        if idx is None:
            rep.empty_videos.append(video)
            rep.filled_per_video[video] = len(wanted)
            rep.filled += len(wanted)
            return np.tile(_neutral(fmt), (len(wanted), 1))
        frames = preds["frame"].to_numpy()[idx].astype(int)
        if frames[-1] > wanted[-1] and fmt.track != "mtl":
            raise SubmitError(f"predictions for video {video!r} reach frame {frames[-1]}, but it has {wanted[-1]} "
                              "frames (by the frame counts given): the counts or the frame numbers are wrong")
        rows, filled = nearest_rows(frames, values[idx], wanted)
        if filled:
            rep.filled_per_video[video] = filled
        rep.filled += filled
        rep.predicted += len(wanted) - filled
        return rows

    if fmt.track == "mtl":
        # s-Aff-Wild2 lists sampled frames: a row per listed image, filled from its video's nearest prediction
        by_video: dict[str, list[int]] = {}
        for k in listed:
            m = _KEY.match(k)
            if not m:
                raise SubmitError(f"test-set list: {k!r} is no video/00001.jpg image")
            by_video.setdefault(m["video"], []).append(int(m["frame"]))
        row_of = {}
        for video, wanted in by_video.items():
            wanted = np.array(sorted(set(wanted)))
            for f, r in zip(wanted, rows_of(video, wanted)):
                row_of[(video, int(f))] = r
        lines = [fmt.header]
        for k in listed:
            m = _KEY.match(k)
            lines.append(f"{k},{_fmt_row(fmt, row_of[(m['video'], int(m['frame']))])}")
        rep.rows, rep.videos = len(listed), len(by_video)
        _write_text(out, lines)
        return rep

    counts = _need_counts(frame_counts, listed)
    if fmt.per_video:
        files = {}
        for video in listed:
            rows = rows_of(video, np.arange(1, counts[video] + 1))
            files[f"{video}.txt"] = [fmt.header] + [_fmt_row(fmt, r) for r in rows]
            rep.rows += len(rows)
        rep.videos = len(listed)
        _write_folder(out, files, overwrite)
        return rep
    lines = [fmt.header]
    for video in listed:
        rows = rows_of(video, np.arange(1, counts[video] + 1))
        lines += [f"{video}/{i:05d}.jpg,{_fmt_row(fmt, r)}" for i, r in enumerate(rows, start=1)]
    rep.rows, rep.videos = len(lines) - 1, len(listed)
    _write_text(out, lines)
    return rep


def _need_counts(frame_counts, listed) -> dict[str, int]:
    if frame_counts is None:
        raise SubmitError("a frame-level track needs each video's frame count: --frame-counts FILE (video,frames "
                          "CSV, the organisers' sample file, the frames manifest) or --videos DIR")
    missing = [v for v in listed if v not in frame_counts]
    if missing:
        raise SubmitError(f"no frame count for {len(missing)} listed video(s), e.g. {missing[:5]}")
    return frame_counts


def _write_videos(preds, out, fmt: Format, listed, rep: Report) -> Report:
    preds = preds.assign(_id=preds["video"].map(_norm_id))
    dup = preds.duplicated("_id")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise SubmitError(f"predictions table, line {_line(preds, i)}: video {preds['video'].iloc[i]!r} is "
                          "predicted twice")
    values, rep.clipped = _values(preds, fmt)
    pos = {v: i for i, v in enumerate(preds["_id"])}
    mean = values.mean(axis=0) if len(values) else np.zeros(len(fmt.fields))
    listed_ids = {_norm_id(v) for v in listed}
    rep.ignored_videos = sorted(v for v in preds["video"] if _norm_id(v) not in listed_ids)
    lines = [fmt.header]
    for v in listed:
        i = pos.get(_norm_id(v))
        if i is None:
            rep.empty_videos.append(v)
            rep.filled += 1
            row = mean
        else:
            rep.predicted += 1
            row = values[i]
        lines.append(f"{v},{_fmt_row(fmt, row)}")
    rep.rows, rep.videos = len(listed), len(listed)
    _write_text(out, lines)
    return rep


def _write_text(out: Path, lines: list[str]) -> None:
    """Write ``lines`` to ``out`` through a temporary file in its folder, renamed into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    try:
        with os.fdopen(fd, "w", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_folder(out: Path, files: dict[str, list[str]], overwrite: bool) -> None:
    """Write the per-video files into a temporary folder beside ``out``, then rename it into place (an
    existing ``out`` is moved aside first and removed only once the new one is there)."""
    import shutil

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        for name, lines in files.items():
            (tmp / name).write_text("\n".join(lines) + "\n")
        old = None
        if out.exists() and overwrite:
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """A predictions table from a CSV (``video``, ``frame``, values; ``image_location`` / ``image`` keys as
    ``video/00001.jpg`` are split into video and frame)."""
    path = Path(path)
    if not path.is_file():
        raise SubmitError(f"--predictions {path}: no such file")
    df = _read_csv(path, dtype={"video": str}, encoding="utf-8-sig")
    df.columns = [c.strip() for c in df.columns]
    key = next((c for c in ("image_location", "image") if c in df), None)
    if "video" not in df and key is not None:
        parts = df[key].astype(str).str.extract(_KEY)
        if parts["video"].isna().any():
            i = int(np.flatnonzero(parts["video"].isna().to_numpy())[0])
            raise SubmitError(f"{path}, line {i + 2}: {df[key].iloc[i]!r} is no video/00001.jpg")
        df = df.assign(video=parts["video"], frame=parts["frame"].astype(int))
    for col in ("File_ID", "Filename"):
        if "video" not in df and col in df:
            df = df.rename(columns={col: "video"})
    return df


# --- the checker -----------------------------------------------------------------------------------------------

@dataclass
class Problem:
    file: Path
    line: int               # 1-based; 0: the file as a whole (missing, extra)
    message: str

    def __str__(self) -> str:
        return f"{self.file}, line {self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


@dataclass
class CheckResult:
    path: Path
    format: str
    problems: list = field(default_factory=list)
    rows: int = 0
    more: int = 0            # problems found beyond the ones kept

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, file: Path, line: int, message: str, limit: int) -> None:
        if len(self.problems) < limit:
            self.problems.append(Problem(file, line, message))
        else:
            self.more += 1


def _check_values(res, file, line, fields, fmt: Format, limit) -> bool:
    for text, (name, kind, lo, hi) in zip(fields, fmt.fields):
        t = text.strip()
        try:
            x = float(t)
        except ValueError:
            res.add(file, line, f"{name} {t!r} is not a number", limit)
            return False
        if not np.isfinite(x):
            res.add(file, line, f"{name} {t!r} is not a finite number", limit)
            return False
        if kind == "int" and not re.fullmatch(r"[+-]?\d+", t):
            res.add(file, line, f"{name} {t!r} is not a whole number ({int(lo)}-{int(hi)})", limit)
            return False
        if not lo <= x <= hi:
            rng = f"{int(lo)}-{int(hi)}" if kind == "int" else f"[{lo:g}, {hi:g}]"
            res.add(file, line, f"{name} {t} is out of range {rng}", limit)
            return False
    return True


def _split_row(res, file, line, text, want: int, limit) -> list[str] | None:
    if not text.strip():
        res.add(file, line, "blank line (every row is one frame or video; no blank lines)", limit)
        return None
    fields = text.split(",")
    if len(fields) != want:
        res.add(file, line, f"{len(fields)} fields, expected {want}", limit)
        return None
    return fields


def _check_header(res, file, lines, fmt: Format, limit) -> bool:
    if not lines:
        res.add(file, 1, f"empty file; expected the header {fmt.header!r}", limit)
        return False
    got = lines[0]
    if got.startswith("\ufeff"):
        res.add(file, 1, "the file starts with a byte-order mark (save it as plain UTF-8)", limit)
        got = got[1:]
    if got.strip() != fmt.header:
        res.add(file, 1, f"wrong header {got.strip()!r}, expected {fmt.header!r}", limit)
        return False
    return True


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def check_submission(path: str | os.PathLike, edition, track: str, test_list: Sequence[str],
                     frame_counts: dict[str, int] | None = None, limit: int = 20) -> CheckResult:
    """Every problem of the submission at ``path`` (up to ``limit``, then counted) against ``test_list``
    and, when given, ``frame_counts`` (without them the frames of a video are checked to run 1, 2, ... but
    a video cut short at its end cannot be told)."""
    fmt = format_of(edition, track)
    path = Path(path)
    res = CheckResult(path, fmt.describe())
    if fmt.per_video:
        return _check_folder(path, fmt, list(test_list), frame_counts, res, limit)
    if not path.is_file():
        res.add(path, 0, "no such file" + (" (a folder: this track's submission is one file)" if path.is_dir()
                                           else ""), limit)
        return res
    lines = _read_lines(path)
    res.rows = max(len(lines) - 1, 0)
    if not _check_header(res, path, lines, fmt, limit):
        return res
    want = 1 + len(fmt.fields)
    if fmt.video_level:
        return _check_video_rows(path, lines, fmt, list(test_list), res, want, limit)
    if fmt.track == "mtl":
        return _check_mtl_rows(path, lines, fmt, list(test_list), res, want, limit)
    listed = list(test_list)
    order = {v: i for i, v in enumerate(listed)}
    counts = frame_counts or {}
    seen: set[str] = set()
    cur, nxt = None, 1

    def close(video, nxt, line):
        n = counts.get(video)
        if n is not None and nxt <= n:
            res.add(path, line, f"missing frame(s): video {video} ends at frame {nxt - 1} (line {line - 1}), "
                                f"it has {n} frames ({video}/{nxt:05d}.jpg-{video}/{n:05d}.jpg absent)", limit)

    for i, text in enumerate(lines[1:], start=2):
        fields = _split_row(res, path, i, text, want, limit)
        if fields is None:
            continue
        key = fields[0].strip()
        m = _KEY.match(key)
        if not m:
            res.add(path, i, f"{key!r} is no image location video/00001.jpg", limit)
            continue
        video, frame = m["video"], int(m["frame"])
        if video != cur:
            if cur is not None:
                close(cur, nxt, i)
            if video not in order:
                res.add(path, i, f"extra frame: video {video!r} is not in the test-set list", limit)
                cur, nxt = None, 1
                continue
            if video in seen:
                res.add(path, i, f"video {video} appears again (its frames must be one run of lines)", limit)
            seen.add(video)
            cur, nxt = video, 1
        if cur is None:
            continue
        if frame != nxt:
            what = (f"missing frame(s) {video}/{nxt:05d}.jpg-{video}/{frame - 1:05d}.jpg" if frame > nxt else
                    f"frame {key} repeated or out of order")
            res.add(path, i, f"{what} (expected {video}/{nxt:05d}.jpg)", limit)
        n = counts.get(video)
        if n is not None and frame > n:
            res.add(path, i, f"extra frame {key}: video {video} has {n} frames", limit)
        nxt = max(nxt, frame + 1)
        _check_values(res, path, i, fields[1:], fmt, limit)
    if cur is not None:
        close(cur, nxt, len(lines) + 1)
    absent = [v for v in listed if v not in seen]
    for v in absent:
        res.add(path, len(lines) + 1, f"missing video {v} ({counts.get(v, '?')} frames): none of its rows is "
                                      "in the file", limit)
    if counts and all(v in counts for v in listed):
        expected = 1 + sum(counts[v] for v in listed)
        if expected != len(lines):
            res.add(path, 0, f"wrong line count: {len(lines)} lines, expected {expected} (1 header + the frames "
                             "of every listed video)", limit)
    return res


def _check_folder(folder: Path, fmt: Format, listed, counts, res: CheckResult, limit) -> CheckResult:
    if not folder.is_dir():
        res.add(folder, 0, "no such folder (this track's submission is a folder of <video>.txt files)", limit)
        return res
    want = len(fmt.fields)
    for video in listed:
        f = folder / f"{video}.txt"
        if not f.is_file():
            res.add(f, 0, f"missing video {video}: no file", limit)
            continue
        lines = _read_lines(f)
        res.rows += max(len(lines) - 1, 0)
        if not _check_header(res, f, lines, fmt, limit):
            continue
        for i, text in enumerate(lines[1:], start=2):
            fields = _split_row(res, f, i, text, want, limit)
            if fields is not None:
                _check_values(res, f, i, fields, fmt, limit)
        n = (counts or {}).get(video)
        if n is not None and len(lines) - 1 != n:
            if len(lines) - 1 < n:
                res.add(f, len(lines) + 1, f"missing frame(s) {len(lines)}-{n}: {len(lines) - 1} rows, the video "
                                           f"has {n} frames (wrong line count: {len(lines)}, expected {n + 1})", limit)
            else:
                res.add(f, n + 2, f"extra frame {n + 1}: the video has {n} frames (wrong line count: {len(lines)}, "
                                  f"expected {n + 1})", limit)
    names = set(listed)
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix == ".txt" and f.stem not in names:
            res.add(f, 0, f"extra file: video {f.stem!r} is not in the test-set list", limit)
        elif f.is_file() and f.suffix != ".txt" and not f.name.startswith("."):
            res.add(f, 0, "extra file: the folder holds <video>.txt files only", limit)
    return res


def _check_mtl_rows(path, lines, fmt, listed, res, want, limit) -> CheckResult:
    order = {k: i for i, k in enumerate(listed)}
    seen: dict[str, int] = {}
    for i, text in enumerate(lines[1:], start=2):
        fields = _split_row(res, path, i, text, want, limit)
        if fields is None:
            continue
        key = fields[0].strip()
        if key not in order:
            res.add(path, i, f"extra frame: {key!r} is not in the test-set list", limit)
            continue
        if key in seen:
            res.add(path, i, f"{key} again (first on line {seen[key]})", limit)
            continue
        seen[key] = i
        _check_values(res, path, i, fields[1:], fmt, limit)
    for k in listed:
        if k not in seen:
            res.add(path, len(lines) + 1, f"missing frame {k}: the list holds it, the file does not", limit)
            break
    miss = sum(k not in seen for k in listed)
    if miss > 1:
        res.add(path, 0, f"{miss} listed images missing in all (wrong line count: {len(lines)}, expected "
                         f"{len(listed) + 1})", limit)
    return res


def _check_video_rows(path, lines, fmt, listed, res, want, limit) -> CheckResult:
    ids = {_norm_id(v): v for v in listed}
    seen: dict[str, int] = {}
    for i, text in enumerate(lines[1:], start=2):
        fields = _split_row(res, path, i, text, want, limit)
        if fields is None:
            continue
        vid = _norm_id(fields[0])
        if vid not in ids:
            res.add(path, i, f"extra video {fields[0].strip()!r}: not in the test-set list", limit)
            continue
        if vid in seen:
            res.add(path, i, f"video {fields[0].strip()} again (first on line {seen[vid]})", limit)
            continue
        seen[vid] = i
        _check_values(res, path, i, fields[1:], fmt, limit)
    absent = [v for k, v in ids.items() if k not in seen]
    for v in absent:
        res.add(path, len(lines) + 1, f"missing video {v}: the list holds it, the file does not", limit)
    if absent or len(lines) - 1 != len(listed):
        res.add(path, 0, f"wrong line count: {len(lines)} lines, expected {len(listed) + 1}", limit)
    return res


# --- predictions from a fit run -------------------------------------------------------------------------------

FRAME_PAPERS = ("facechannel", "senet50", "scan")
VIDEO_PAPERS = ("facernet",)


def crop_frames(folder: str | os.PathLike, videos: Sequence[str]) -> pd.DataFrame:
    """The face crops of the listed videos: ``folder/<video>/<n>.jpg`` -> rows (video, frame = n, path).
    A listed video without a folder has no row (all of its frames are filled); a frame 0 is refused (the
    release numbers crops from 1, and reading it would shift every frame by one)."""
    from affectlab.data.hume import frame_order

    folder = Path(folder)
    if not folder.is_dir():
        raise SubmitError(f"--test-frames {folder}: not a folder")
    rows = []
    for v in videos:
        d = folder / v
        if not d.is_dir():
            continue
        for name in sorted(os.listdir(d), key=frame_order):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in (".jpg", ".jpeg", ".png") or not stem.isdigit():
                continue
            if int(stem) == 0:
                raise SubmitError(f"{d}: holds a frame 0 ({name}); the release numbers frames from 1")
            rows.append((v, int(stem), str(d / name)))
    if not rows:
        raise SubmitError(f"--test-frames {folder}: no <video>/<n>.jpg crops for any of the {len(videos)} "
                          f"listed videos (e.g. {folder / videos[0]})")
    return pd.DataFrame(rows, columns=["video", "frame", "path"])


def video_crops(folder: str | os.PathLike, videos: Sequence[str]) -> pd.DataFrame:
    """The frames of each listed video of a video-level track (Hume-Reaction, Hume-Vidmimic2):
    ``folder/<id>/`` (the id with or without its brackets) -> rows (video as listed, frames in order, length).
    A listed video without frames has no row (the writer fills it, counted)."""
    from affectlab.data.hume import frame_order

    folder = Path(folder)
    if not folder.is_dir():
        raise SubmitError(f"--test-frames {folder}: not a folder")
    rows = []
    for v in videos:
        bare = v.strip().strip("[]")
        d = next((folder / n for n in dict.fromkeys((v, bare, f"[{bare}]")) if (folder / n).is_dir()), None)
        names = sorted((n for n in os.listdir(d) if n.lower().endswith((".jpg", ".jpeg", ".png"))),
                       key=frame_order) if d else []
        if names:
            rows.append((v, [str(d / n) for n in names], len(names)))
    if not rows:
        raise SubmitError(f"--test-frames {folder}: no frames for any of the {len(videos)} listed videos (looked "
                          f"for {folder}/<id>/*.jpg, e.g. {folder / videos[0].strip('[]')})")
    return pd.DataFrame(rows, columns=["video", "frames", "length"])


def _video_predictions(job, model, S: dict, videos: pd.DataFrame, dev) -> pd.DataFrame:
    """A FaceRNET run's intensities for ``videos`` (``video_crops``), through the loader its recipe trains
    with (padded to ``t`` frames, a longer video truncated to ``t`` as in training)."""
    from affectlab.data.loaders import video_dls
    from affectlab.train import predict

    targets = tuple(getattr(job.learn.dls, "targets", None) or REACTIONS)
    df = videos.copy()
    for c in targets:
        df[c] = 0.0               # placeholders: the loader wants a label; none is read
    df.attrs["targets"] = targets
    dls = video_dls(df, df, t=S["t"], size=S["image_size"], bs=max(1, int(S.get("batch_size", 4))), augment=False,
                    device=dev, damaged="raise")
    preds, _ = predict(model, dls.valid, device=dev)
    out = preds.get("intensity", next(iter(preds.values()))).numpy()
    if out.shape != (len(df), len(targets)):
        raise SubmitError(f"the run's model gave {out.shape[1]} intensities for {out.shape[0]} videos; expected "
                          f"{len(targets)} ({', '.join(targets)}) for {len(df)}")
    return pd.concat([df[["video"]].reset_index(drop=True), pd.DataFrame(out, columns=list(targets))], axis=1)


def predictions_from_run(run: str | os.PathLike, frames: pd.DataFrame, data_root: str | os.PathLike,
                         device: str = "auto", bs: int = 128) -> pd.DataFrame:
    """A predictions table from the ``python -m affectlab.fit`` run in ``run``: the paper's model rebuilt by
    its recipe (``command_job`` on ``data_root``, the data it trained on, limited to a few rows: only the
    architecture is wanted), ``models/best.pth`` loaded into it, and the test ``frames`` (``crop_frames``)
    through it. Columns: video, frame, then ``valence``, ``arousal`` and one score per class of the run's
    ``labels`` (softmax) as the model has those heads (FaceChannel, SE-ResNet-50, SCAN); for a FaceRNET run
    and ``frames`` from ``video_crops``: video and the data set's intensities."""
    import torch

    from affectlab.recipes import recipe
    from affectlab.train import resolve_device

    run = Path(run)
    docs = sorted(run.glob("fit_*.json"))
    if not docs:
        raise SubmitError(f"--run {run}: no fit_<paper>.json (the output folder of python -m affectlab.fit)")
    doc = json.loads(docs[0].read_text())
    paper, S = doc.get("paper"), doc.get("settings") or {}
    if paper not in FRAME_PAPERS + VIDEO_PAPERS:
        raise SubmitError(f"--run {run}: a {paper} run; predicting from a run works for the frame models "
                          f"({', '.join(FRAME_PAPERS)}) and FaceRNET — for the temporal model write your own "
                          "predictions table and pass it with --predictions")
    if paper in VIDEO_PAPERS and "frames" not in frames:
        raise SubmitError(f"--run {run}: a FaceRNET run predicts one row per video (--track reaction or mimicry)")
    if paper in FRAME_PAPERS and "frames" in frames:
        raise SubmitError(f"--run {run}: a {paper} run predicts frames (--track va, expr, au or mtl)")
    best = run / "models" / "best.pth"
    if not best.is_file():
        raise SubmitError(f"--run {run}: no models/best.pth (the run did not finish, or was a --smoke run "
                          "without a best epoch)")
    dev = resolve_device(device)
    job = recipe(paper).command_job(S, Path(data_root), dev, int(doc.get("seed", 0)), limit=(8, 8))
    model = job.learn.model
    state = torch.load(best, map_location=dev, weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) and "model" in state else state
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise SubmitError(f"{best}: does not fit the {paper} model its settings build ({str(e).splitlines()[0]})") \
            from None
    model.to(dev).eval()
    if paper in VIDEO_PAPERS:
        return _video_predictions(job, model, S, frames, dev)
    classes = (doc.get("labels") or {}).get("classes") or list(editions.space_of(S).classes)
    from affectlab.data.loaders import frame_batches

    df = frames.assign(expr=-1)
    outs: dict[str, list] = {}
    with torch.no_grad():
        for x in frame_batches(df, S["image_size"], bs):
            o = model(x.to(dev))
            o = o if isinstance(o, dict) else {"expr": o}
            for k in ("va", "expr"):
                if k in o:
                    outs.setdefault(k, []).append(o[k].float().cpu())
    table = frames[["video", "frame"]].reset_index(drop=True)
    if "va" in outs:
        va = torch.cat(outs["va"]).numpy()
        table["valence"], table["arousal"] = va[:, 0], va[:, 1]
    if "expr" in outs:
        p = torch.softmax(torch.cat(outs["expr"]), dim=1).numpy()
        if p.shape[1] != len(classes):
            raise SubmitError(f"{best}: an expression head of {p.shape[1]} outputs, the run's labels name "
                              f"{len(classes)} classes")
        for j, c in enumerate(classes):
            table[c] = p[:, j]
    return table


# --- the command -----------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m affectlab.submit", description="\n\n".join(__doc__.split("\n\n")[:2]),
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="Formats and their public sources: docs/real-data.md, 'Submission files'.")
    p.add_argument("--edition", required=True, help="the ABAW: its number (6, 6th) or year (2024 = the 6th)")
    p.add_argument("--track", required=True, choices=TRACKS)
    p.add_argument("--test-list", type=Path, required=True,
                   help="the organisers' list: names_of_videos_in_each_test_set/*.txt, the MTL image list, "
                        "Hume's data_info.csv / test split CSV")
    p.add_argument("--frame-counts", type=Path, help="each video's frame count: video,frames CSV, the organisers' "
                                                     "sample submission, or the frames manifest (JSON)")
    p.add_argument("--videos", type=Path, help="the test videos: count each listed video's frames with OpenCV")
    p.add_argument("--check", type=Path, metavar="PATH", help="validate this submission (file or folder) and exit")
    p.add_argument("--predictions", type=Path, help="a predictions table (CSV: video, frame, values)")
    p.add_argument("--run", type=Path, help="a python -m affectlab.fit output folder (models/best.pth)")
    p.add_argument("--test-frames", type=Path, help="with --run: the test set's face crops, <video>/<n>.jpg")
    p.add_argument("--data-root", type=Path, help="with --run: the data the run trained on (rebuilds its model)")
    p.add_argument("--save-predictions", type=Path, metavar="CSV",
                   help="with --run: also keep the predictions table (write other editions from it with --predictions)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, help="the submission to write (a file; a folder for per-video files)")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    return p


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    fmt = format_of(args.edition, args.track)
    listed = read_test_list(args.test_list, args.track)
    counts = None
    if args.frame_counts and args.videos:
        raise SubmitError("give --frame-counts or --videos, not both")
    if args.frame_counts:
        counts = read_frame_counts(args.frame_counts)
    elif args.videos and args.track in ("va", "expr", "au"):
        counts = frame_counts_from_videos(args.videos, listed)
    print(f"{fmt.describe()}; {len(listed)} listed {'images' if args.track == 'mtl' else 'videos'} in "
          f"{args.test_list}")
    if args.check:
        res = check_submission(args.check, fmt.edition, args.track, listed, counts)
        if res.ok:
            note = "" if counts or fmt.video_level or fmt.track == "mtl" else \
                " (no frame counts given: a video cut short at its end is not detected)"
            print(f"{args.check}: OK, {res.rows:,} rows{note}")
            return 0
        print(f"{args.check}: {len(res.problems) + res.more} problem(s); the first:", file=sys.stderr)
        for prob in res.problems:
            print(f"  {prob}", file=sys.stderr)
        if res.more:
            print(f"  ... and {res.more} more", file=sys.stderr)
        return 1
    if args.out is None:
        raise SubmitError("give --out PATH to write a submission, or --check PATH to validate one")
    if (args.predictions is None) == (args.run is None):
        raise SubmitError("give the predictions: --predictions TABLE.csv, or --run RUN with --test-frames and "
                          "--data-root")
    if args.predictions:
        preds = read_predictions(args.predictions)
    else:
        if args.test_frames is None or args.data_root is None:
            raise SubmitError("--run needs --test-frames (the test crops) and --data-root (the data it trained on)")
        videos = sorted({_KEY.match(k)["video"] for k in listed if _KEY.match(k)}) if args.track == "mtl" else listed
        crops = video_crops(args.test_frames, videos) if fmt.video_level else crop_frames(args.test_frames, videos)
        preds = predictions_from_run(args.run, crops, args.data_root, args.device)
        if args.save_predictions:
            _write_text(args.save_predictions, preds.to_csv(index=False).splitlines())
            print(f"kept the predictions table: {args.save_predictions} ({len(preds):,} frames)")
    rep = write_submission(preds, args.out, fmt.edition, args.track, listed, counts, overwrite=args.force)
    for line in rep.lines():
        print(line)
    res = check_submission(args.out, fmt.edition, args.track, listed, counts)
    if not res.ok:       # the writer's own output must pass: a failure here is a bug of ours
        print(f"check of the written file failed: {res.problems[0]}", file=sys.stderr)
        return 1
    print(f"checked: {args.out} passes --check")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except SubmitError as e:
        print(f"python -m affectlab.submit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
