"""From a folder of videos to the frame folders the readers read: one aligned face crop per frame.

    python -m affectlab.frames VIDEOS OUT [--size 112] [--workers N] [--margin 1.7] [--no-align] [--min-size 40]

Each video is streamed one frame at a time (``video.open_video`` / ``read_frames``: never the whole video in
memory); the face is followed by ``video.FaceTracker`` (the Haar cascade of ``faces``, whole frame once, then a
window around the face) and cropped by ``faces.align_crop`` (eyes levelled, face ``1 / margin`` of the crop's
width, ``size`` px). What is written, as Aff-Wild2's ``cropped_aligned`` lays it out:

- ``OUT/<video>/00001.jpg ...``: the file number is the frame's index in the video, from 1; a frame with no
  face has no file. A video with two people (two faces side by side in at least half of the sampled frames
  that show a face) gives ``OUT/<video>_left/`` and ``OUT/<video>_right/``, as Aff-Wild2 names them: each
  person is followed in their side of the frame (split midway between the two faces);
- ``OUT/manifest.json``: per video its status (``done`` or ``unreadable``, with the error), the frames
  decoded and the count the file's header gives, and per output folder the frames with a face and the
  face-less frames (1-based, as inclusive ranges);
- ``OUT/.frames/boxes/<folder>.csv``: per written frame the face box in the video's pixels and the eye angle,
  from which ``faces.crop_matrix`` gives the exact map from the video's pixels to the crop.

Resumable: a video is finished when its folders and its record (``OUT/.frames/videos/<video>.json``) are both
there; a re-run skips it. Each video is written into ``OUT/.frames/partial/`` and renamed into place when
whole, so a run killed mid-video leaves no half-written ``OUT/<video>/`` (the re-run deletes the partial
copy and starts that video again). A folder ``OUT/<name>`` this command did not write is never overwritten.
An unreadable video is listed (printed and in the manifest) and the run goes on; it is retried next run.
"""
from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from affectlab import faces, video

VIDEO_EXT = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")
STATE = ".frames"            # OUT/.frames: records, boxes, partial folders, the lock
MANIFEST = "manifest.json"
JPEG_QUALITY = 95
PROBE_FRAMES = 9             # frames sampled over a video to count its people before it is read
SECOND_FACE_MIN = 0.6        # a second face counts as a person when at least this share of the first's width


@dataclass(frozen=True)
class Settings:
    size: int = faces.CROP_SIZE
    margin: float = faces.FACE_MARGIN
    align: bool = True
    min_size: int = 40


@dataclass
class _Subject:
    """One person of a video: the output folder and the columns of the frame where they are followed."""
    name: str
    x0: int
    x1: int | None
    tracker: video.FaceTracker
    faces: int = 0
    faceless: list | None = None   # inclusive 1-based ranges [first, last]

    def no_face(self, n: int) -> None:
        if self.faceless and self.faceless[-1][1] == n - 1:
            self.faceless[-1][1] = n
        else:
            self.faceless.append([n, n])


# ------------------------------------------------------------------------------------------------ the videos
def find_videos(root: str | os.PathLike) -> list[Path]:
    """The video files under ``root`` (a video, or a folder searched recursively, hidden folders skipped),
    sorted. Two videos with one name (``a/x.mp4``, ``b/x.avi``) would write one folder: a ValueError."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"videos {str(root)!r}: no such file or folder")
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXT and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not found:
        raise FileNotFoundError(f"no video in {str(root)!r} (looked for {', '.join(VIDEO_EXT)}, in sub-folders too)")
    seen: dict[str, Path] = {}
    for p in found:
        if p.stem in seen:
            raise ValueError(f"two videos named {p.stem!r} would write one folder: {seen[p.stem]} and {p}; "
                             "rename one of them")
        seen[p.stem] = p
    return found


def count_people(path: str | os.PathLike, min_size: int = 40) -> float | None:
    """Where to split the frame between two people (an x in pixels), or None for one person.

    ``PROBE_FRAMES`` frames spread over the video are searched whole; two people when at least half of the
    frames with a face hold two faces side by side, the smaller at least ``SECOND_FACE_MIN`` of the larger's
    width (the cascade's rare false detections are smaller and do not come back frame after frame)."""
    cap, _, n, _ = video.open_video(path)
    try:
        picks = np.linspace(0, n - 1, PROBE_FRAMES).round().astype(int) if n > 1 else range(PROBE_FRAMES)
        with_face, splits = 0, []
        for k in picks:
            if n > 1:
                cap.set(cv2.CAP_PROP_POS_FRAMES, int(k))
            ok, bgr = cap.read()
            if not ok:
                continue
            boxes = faces.detect_faces(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), min_size=min_size)
            with_face += len(boxes) > 0
            if len(boxes) >= 2 and boxes[1][2] >= SECOND_FACE_MIN * boxes[0][2]:
                (xa, _, wa, _), (xb, _, wb, _) = boxes[:2]
                ca, cb = xa + wa / 2, xb + wb / 2
                if abs(ca - cb) >= (wa + wb) / 2:      # side by side, not one face found twice
                    splits.append((ca + cb) / 2)
    finally:
        cap.release()
    if len(splits) >= 2 and 2 * len(splits) >= with_face:
        return float(np.median(splits))
    return None


# --------------------------------------------------------------------------------------- one video (a worker)
def _state(out: Path) -> dict[str, Path]:
    s = out / STATE
    return {"root": s, "videos": s / "videos", "boxes": s / "boxes", "partial": s / "partial"}


def _write_json(path: Path, data) -> None:
    """Whole or not at all: a temporary file renamed over the target."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def extract_video(path: str | os.PathLike, out: str | os.PathLike, settings: Settings = Settings(),
                  progress: bool = False) -> dict:
    """Write one video's crops (``OUT/<video>/`` or ``_left`` / ``_right``), its boxes and its record, and
    return the record. An unreadable video gives a record with ``status: unreadable`` and its error."""
    path, out = Path(path), Path(out)
    st = _state(out)
    name = path.stem
    record = {"video": name, "source": str(path), "status": "unreadable", "settings": asdict(settings)}
    t0 = time.perf_counter()
    try:
        split = count_people(path, settings.min_size)
        cap, fps, n_header, (width, height) = video.open_video(path)
    except (OSError, ValueError, cv2.error) as e:
        record["error"] = str(e)
        _write_json(st["videos"] / f"{name}.json", record)
        return record
    if split is None:
        subjects = [_Subject(name, 0, None, video.FaceTracker(settings.min_size), faceless=[])]
    else:
        cut = int(round(split))
        subjects = [_Subject(f"{name}_left", 0, cut, video.FaceTracker(settings.min_size), faceless=[]),
                    _Subject(f"{name}_right", cut, None, video.FaceTracker(settings.min_size), faceless=[])]
    for s in subjects:   # what a killed run left of this video
        shutil.rmtree(st["partial"] / s.name, ignore_errors=True)
        (st["partial"] / s.name).mkdir(parents=True)
    tables = [open(st["partial"] / f"{s.name}.csv", "w", newline="") for s in subjects]
    writers = [csv.writer(t) for t in tables]
    for w in writers:
        w.writerow(["frame", "x", "y", "w", "h", "eye_angle", "aligned"])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_header or None, unit="frame", desc=name, leave=False, mininterval=0.5)
    n_read = 0
    try:
        for i, bgr in video.read_frames(cap):
            n_read = i + 1
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            for s, table in zip(subjects, writers):
                box = s.tracker.update(rgb[:, s.x0:s.x1])    # a view: each person in their side of the frame
                if box is None:
                    s.no_face(n_read)
                    continue
                box = (box[0] + s.x0, *box[1:])
                face = faces.align_crop(rgb, box, settings.size, settings.margin, align=settings.align)
                target = str(st["partial"] / s.name / f"{n_read:05d}.jpg")
                if not cv2.imwrite(target, cv2.cvtColor(face.crop, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                    raise OSError(f"could not write {target} (disk full, or no permission?)")
                table.writerow([n_read, *box, f"{face.eye_angle:.3f}", int(face.aligned)])
                s.faces += 1
            if bar is not None:
                bar.update(1)
    finally:
        cap.release()
        for t in tables:
            t.close()
        if bar is not None:
            bar.close()
    if n_read == 0:
        record["error"] = f"video {str(path)!r} has no readable frames (empty, or a codec OpenCV lacks)"
        for s in subjects:
            shutil.rmtree(st["partial"] / s.name, ignore_errors=True)
            (st["partial"] / f"{s.name}.csv").unlink(missing_ok=True)
        _write_json(st["videos"] / f"{name}.json", record)
        return record
    record.update(status="done", frames=n_read, frames_in_header=n_header, fps=round(fps, 3),
                  width=width, height=height, people=len(subjects), split_x=split,
                  folders={s.name: {"faces": s.faces, "faceless": n_read - s.faces, "faceless_frames": s.faceless}
                           for s in subjects},
                  seconds=round(time.perf_counter() - t0, 2))
    if n_header and n_read < n_header:
        record["note"] = (f"decoded {n_read} of the {n_header} frames the file's header announces (a damaged "
                          f"or cut file, or a header that counts wrong): the frames after {n_read} have no crop")
    for s in subjects:
        os.replace(st["partial"] / f"{s.name}.csv", st["boxes"] / f"{s.name}.csv")
    # The record first, then the folders: a record whose folders are not all there is a video to redo.
    _write_json(st["videos"] / f"{name}.json", record)
    for s in subjects:
        os.replace(st["partial"] / s.name, out / s.name)
    return record


def _watch_parent(parent: int) -> None:
    """A worker ends when the run that started it is gone (killed): it must not write into OUT behind the
    back of a re-run."""
    cv2.setNumThreads(1)   # one video per process: OpenCV's own threads would only contend

    def watch():
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _job(args, progress: bool = False) -> dict:
    """``extract_video`` whose failure (e.g. a write error) is a record of its own: listed, the run goes on."""
    path, out, settings = args
    try:
        return extract_video(path, out, settings, progress=progress)
    except Exception as e:   # noqa: BLE001 - any failure of one video is that video's, never the run's
        rec = {"video": Path(path).stem, "source": str(path), "status": "failed", "error": f"{type(e).__name__}: {e}",
               "settings": asdict(settings)}
        try:
            _write_json(_state(Path(out))["videos"] / f"{rec['video']}.json", rec)
        except OSError:
            pass   # the parent still lists it
        return rec


# ------------------------------------------------------------------------------------------------- the run
def _finished(out: Path, rec: dict | None) -> bool:
    return bool(rec) and rec.get("status") == "done" and all((out / f).is_dir() for f in rec["folders"])


def _read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _lock(st: dict[str, Path]):
    """One run per OUT at a time. A POSIX record lock (``lockf``) belongs to this process only (the workers
    do not inherit it) and goes with it, however it ends."""
    import fcntl

    fh = open(st["root"] / "lock", "a+")
    try:
        fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise RuntimeError(f"another run is writing into {st['root'].parent} (its lock {st['root'] / 'lock'} "
                           "is held); wait for it to end") from None
    return fh


def write_manifest(out: str | os.PathLike, skipped: dict | None = None) -> dict:
    """``OUT/manifest.json`` from the records of every video written into ``OUT`` (and this run's skipped
    names with their reasons); returns it."""
    out = Path(out)
    st = _state(out)
    records = [r for p in sorted(st["videos"].glob("*.json")) if (r := _read_record(p))]
    manifest = {
        "layout": "OUT/<video>/<frame index from 1, 5 digits>.jpg; frames with no face have no file",
        "videos": records,
        "not_written": skipped or {},
        "summary": {"done": sum(r["status"] == "done" for r in records),
                    "unreadable": [r["video"] for r in records if r["status"] == "unreadable"],
                    "failed": [r["video"] for r in records if r["status"] == "failed"],
                    "folders": sum(len(r.get("folders", {})) for r in records),
                    "crops": sum(f["faces"] for r in records for f in r.get("folders", {}).values())},
    }
    _write_json(out / MANIFEST, manifest)
    return manifest


def extract_frames(videos: str | os.PathLike, out: str | os.PathLike, settings: Settings = Settings(),
                   workers: int = 1, progress: bool = True, log=print) -> dict:
    """Every video under ``videos`` into ``out`` (see the module's docstring); returns the manifest."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    if settings.size < 16:
        raise ValueError(f"size must be at least 16 px; got {settings.size}")
    paths = find_videos(videos)
    out = Path(out)
    st = _state(out)
    for d in ("videos", "boxes", "partial"):
        st[d].mkdir(parents=True, exist_ok=True)
    lock = _lock(st)
    try:
        shutil.rmtree(st["partial"])   # what a killed run left: no run is writing (we hold the lock)
        st["partial"].mkdir()
        pending, skipped, finished = [], {}, 0
        for p in paths:
            rec = _read_record(st["videos"] / f"{p.stem}.json")
            if rec and rec.get("status") == "done" and rec.get("settings") != asdict(settings):
                raise ValueError(f"{out} holds {p.stem!r} cropped with other settings ({rec.get('settings')}; this "
                                 f"run: {asdict(settings)}): write into another folder, or use the same settings")
            if _finished(out, rec):
                finished += 1
                continue
            ours = set(rec.get("folders", {})) if rec else set()
            theirs = [n for n in (p.stem, f"{p.stem}_left", f"{p.stem}_right") if (out / n).exists() and n not in ours]
            if theirs:
                skipped[p.stem] = (f"{out / theirs[0]} exists and was not written by this command: move it away "
                                   "to crop this video")
                continue
            for f in ours:   # a record whose folders are not all there: killed between the renames
                shutil.rmtree(out / f, ignore_errors=True)
            pending.append(p)
        log(f"{len(paths)} videos: {finished} finished before, {len(pending)} to crop"
            + (f", {len(skipped)} not written (see below)" if skipped else ""))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(pending), unit="video", desc="videos")
        jobs = [(str(p), str(out), settings) for p in pending]
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                rec = _job(job, progress)
                _done(rec, out, skipped, bar, log)
        else:
            # spawn, not fork: a forked child inherits OpenCV's and torch's thread pools mid-use and can hang
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_watch_parent, initargs=(os.getpid(),)) as pool:
                for fut in as_completed([pool.submit(_job, j) for j in jobs]):
                    _done(fut.result(), out, skipped, bar, log)
        if bar is not None:
            bar.close()
        manifest = write_manifest(out, skipped)
    finally:
        lock.close()
    for name, why in skipped.items():
        log(f"not written: {name}: {why}")
    s = manifest["summary"]
    log(f"{s['done']} videos cropped into {s['folders']} folders ({s['crops']} crops) in {out}; "
        f"manifest {out / MANIFEST}")
    return manifest


def _done(rec: dict, out: Path, skipped: dict, bar, log) -> None:
    if rec["status"] != "done":
        log(f"{rec['status']}: {rec['source']}: {rec['error']}")
    write_manifest(out, skipped)   # after every video: the manifest is never behind what is on disk
    if bar is not None:
        bar.update(1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m affectlab.frames",
                                description="Crop the face of every frame of every video into OUT/<video>/00001.jpg "
                                            "... (Aff-Wild2's cropped_aligned layout), with a manifest.")
    p.add_argument("videos", help="a video, or a folder of videos (searched recursively)")
    p.add_argument("out", help="the frame folders' parent, e.g. DATA/cropped_aligned (created)")
    p.add_argument("--size", type=int, default=faces.CROP_SIZE,
                   help=f"crop side in px (default {faces.CROP_SIZE}, as Aff-Wild2's cropped_aligned)")
    p.add_argument("--margin", type=float, default=faces.FACE_MARGIN,
                   help=f"crop side / face box width (default {faces.FACE_MARGIN})")
    p.add_argument("--no-align", action="store_true", help="do not level the eyes (faster: no eye cascade)")
    p.add_argument("--min-size", type=int, default=40, help="smallest face width in px (default 40)")
    p.add_argument("--workers", type=int, default=1, help="videos cropped at once, one process each (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    settings = Settings(size=args.size, margin=args.margin, align=not args.no_align, min_size=args.min_size)
    try:
        manifest = extract_frames(args.videos, args.out, settings, workers=args.workers,
                                  progress=not args.no_progress,
                                  log=lambda m: print(m, file=sys.stderr))
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 1 if manifest["summary"]["failed"] else 0   # unreadable videos are listed, not failures of the run


if __name__ == "__main__":
    raise SystemExit(main())
