"""Videos: the student's own, and the synthetic world's, analysed frame by frame.

Two analyses, both over ``faces``' detection and crops:

- a trained course model over a video (``predict_video``, one row per sampled frame of ``video_faces``) and
  its valence / arousal trace and expression timeline (``plot_video``). Models trained on the synthetic world
  are not expected to read real faces well: this shows the pipeline, not a working real-world recogniser;
- the real-face model (``realface.real_face_model()``) over a video in memory that does not grow with its
  length: ``analyse_video(path, out)``, or from a shell::

      python -m affectlab.video analyse VIDEO --out DIR [--annotate] [--every N]

  It reads the video one frame at a time, finds the face (OpenCV's Haar cascade on the whole frame once, then
  only in a window around the face it tracks, which is several times cheaper; the whole frame again when the
  face is lost), crops it (the Haar box plus a small margin, as the ``fer`` package does), runs the model and
  writes

  - ``<name>_expressions.csv``: one row per analysed frame — ``frame``, ``time`` (s), ``face`` (0/1), the box
    ``x, y, w, h``, the 7 probabilities ``p_Neutral`` ... ``p_Surprise`` and the top class ``expression``
    (empty where no face was found), each row written as soon as its frame is done;
  - ``<name>_expressions.png``: the probabilities over time;
  - optionally ``<name>_annotated.mp4``: the video with the box, the top class and the probabilities drawn.

  Only the current frame is held (never the whole video), so the peak memory of a 1-minute video is that of
  a 10-second one (``benchmarks/bench_video.py`` measures both).
"""
from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pandas as pd
import torch

from affectlab import faces
from affectlab.labels import EXPRESSIONS

SEARCH_MARGIN = 0.6  # the tracker searches the previous box grown by this share of its width on each side
SMOOTH = 0.5         # weight of the new detection in the tracked box (the rest: the previous box)
COLUMNS = ["frame", "time", "face", "x", "y", "w", "h"] + [f"p_{e}" for e in EXPRESSIONS] + ["expression"]


# ------------------------------------------------------------------------------- a course model over a video
def video_faces(path: str | os.PathLike, every: int = 1, max_frames: int | None = None,
                size: int = faces.CROP_SIZE) -> Iterator[tuple[int, float, faces.FaceCrop | None]]:
    """``(frame index, time in s, crop of the largest face or None)`` for every ``every``-th frame."""
    cap, fps, _, _ = open_video(path)
    n_read = 0
    try:
        for i, bgr in read_frames(cap, max_frames):
            n_read = i + 1
            if i % every == 0:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                try:
                    face = faces.crop_faces(rgb, size, max_faces=1)[0]
                except faces.NoFaceFound:
                    face = None
                yield i, i / fps, face
    finally:
        cap.release()
    if n_read == 0:
        raise ValueError(f"video {str(path)!r} has no readable frames")


@torch.no_grad()
def predict_video(model: torch.nn.Module, path: str | os.PathLike, image_size: int = 64, every: int = 1,
                  max_frames: int | None = None, batch_size: int = 32) -> pd.DataFrame:
    """Run a trained course model over the faces of a video: one row per sampled frame with ``frame``,
    ``time``, ``face`` (found or not), ``valence`` / ``arousal`` and ``expression`` plus its probabilities
    where the model has those heads (NaN / empty where no face was found). Sequence models see each frame
    as a one-frame clip."""
    from affectlab.explain import predict_frames

    rows, crops = [], []
    for frame, t, face in video_faces(path, every, max_frames):
        rows.append({"frame": frame, "time": t, "face": face is not None})
        if face is not None:
            crops.append((len(rows) - 1, face))
    df = pd.DataFrame(rows)
    if not crops:
        raise faces.NoFaceFound(f"no face found in any sampled frame of video {str(path)!r}")
    for start in range(0, len(crops), batch_size):
        chunk = crops[start:start + batch_size]
        out = predict_frames(model, faces.to_tensor([c for _, c in chunk], image_size))
        idx = [r for r, _ in chunk]
        if "va" in out:
            df.loc[idx, "valence"] = out["va"][:, 0].cpu().numpy()
            df.loc[idx, "arousal"] = out["va"][:, 1].cpu().numpy()
        if "expr" in out:
            probs = out["expr"][:, : len(EXPRESSIONS)].softmax(-1).cpu().numpy()
            for k, name in enumerate(EXPRESSIONS):
                df.loc[idx, f"p_{name}"] = probs[:, k]
            df.loc[idx, "expression"] = [EXPRESSIONS[k] for k in probs.argmax(1)]
    return df


def plot_video(df: pd.DataFrame, title: str | None = None):
    """The valence / arousal trace and the expression timeline of ``predict_video``'s table."""
    import matplotlib.pyplot as plt

    has_va, has_expr = "valence" in df, "expression" in df
    n = has_va + has_expr
    if n == 0:
        raise ValueError("the table has neither valence/arousal nor expression columns")
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.2 * n), sharex=True, squeeze=False)
    axes = list(axes[:, 0])
    if has_va:
        ax = axes.pop(0)
        ax.plot(df["time"], df["valence"], label="valence")
        ax.plot(df["time"], df["arousal"], label="arousal")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set(ylim=(-1.05, 1.05), ylabel="VA")
        ax.legend(loc="upper right", fontsize=8)
    if has_expr:
        ax = axes.pop(0)
        codes = df["expression"].map({e: i for i, e in enumerate(EXPRESSIONS)})
        ax.scatter(df["time"], codes, s=8, c=codes, cmap="tab10", vmin=0, vmax=9)
        ax.set(yticks=range(len(EXPRESSIONS)), ylim=(-0.5, len(EXPRESSIONS) - 0.5))
        ax.set_yticklabels(EXPRESSIONS, fontsize=8)
    fig.axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ the real-face model over a video
@dataclass
class VideoAnalysis:
    csv: Path                 # the per-frame table
    plot: Path | None         # probabilities over time
    video: Path | None        # the annotated video, when asked for
    frames: int               # frames analysed
    face_frames: int          # of which with a face
    seconds: float            # wall time of the analysis
    fps: float                # frames analysed per second of wall time

    def table(self):
        """The CSV as a pandas DataFrame (read back from disk)."""
        return pd.read_csv(self.csv)


class FaceTracker:
    """The largest face of the first frame that has one, then followed: each frame the Haar cascade looks
    only in a window around the previous box (the candidate nearest to it wins, its box smoothed with the
    previous one); when the window holds no face the whole frame is searched again."""

    def __init__(self, min_size: int = 40):
        self.min_size = min_size
        self.box: np.ndarray | None = None   # float x, y, w, h

    def update(self, rgb: np.ndarray) -> tuple[int, int, int, int] | None:
        found = self._search_window(rgb) if self.box is not None else None
        if found is None:
            boxes = faces.detect_faces(rgb, min_size=self.min_size)
            if len(boxes) == 0:
                self.box = None
                return None
            found = boxes[0].astype(float)
            self.box = found
        else:
            self.box = SMOOTH * found + (1 - SMOOTH) * self.box
        return tuple(int(round(v)) for v in self.box)

    def _search_window(self, rgb: np.ndarray) -> np.ndarray | None:
        x, y, w, h = self.box
        H, W = rgb.shape[:2]
        x0, y0 = int(max(0, x - SEARCH_MARGIN * w)), int(max(0, y - SEARCH_MARGIN * h))
        x1, y1 = int(min(W, x + w + SEARCH_MARGIN * w)), int(min(H, y + h + SEARCH_MARGIN * h))
        if x1 - x0 < self.min_size or y1 - y0 < self.min_size:
            return None
        boxes = faces.detect_faces(rgb[y0:y1, x0:x1], min_size=max(self.min_size, int(0.5 * w)))
        if len(boxes) == 0:
            return None
        boxes = boxes.astype(float) + np.array([x0, y0, 0, 0])
        centre = np.array([x + w / 2, y + h / 2])
        dist = np.linalg.norm(boxes[:, :2] + boxes[:, 2:] / 2 - centre, axis=1)
        best = boxes[int(np.argmin(dist))]
        return best if dist.min() < max(w, h) else None   # a jump of a whole face width: another face


def read_frames(cap: cv2.VideoCapture, max_frames: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame index, BGR frame)`` of an opened capture, one at a time (never the whole video in memory),
    until it ends or after ``max_frames`` frames."""
    i = 0
    while max_frames is None or i < max_frames:
        ok, bgr = cap.read()
        if not ok:
            return
        yield i, bgr
        i += 1


def open_video(path: str | os.PathLike) -> tuple[cv2.VideoCapture, float, int, tuple[int, int]]:
    """An opened capture, its frame rate, its frame count (0 when unknown) and its size, or a clear error
    naming the file when it does not exist or OpenCV cannot decode it."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"video {str(p)!r} does not exist")
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        raise ValueError(f"video {str(p)!r} could not be opened: not a video, or a format OpenCV cannot read "
                         f"(try converting it to MP4/H.264)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and 0 < fps < 1000 else 30.0
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    return cap, fps, max(n, 0), size


def _writer(path: Path, fps: float, size: tuple[int, int]) -> tuple[cv2.VideoWriter, Path]:
    for fourcc, suffix in (("mp4v", ".mp4"), ("MJPG", ".avi")):
        target = path.with_suffix(suffix)
        w = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if w.isOpened():
            return w, target
        w.release()
    raise RuntimeError(f"OpenCV cannot write a video next to {str(path)!r} (neither mp4v nor MJPG)")


def _annotate(bgr: np.ndarray, box, probs: np.ndarray | None) -> np.ndarray:
    if box is None or probs is None:
        cv2.putText(bgr, "no face", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 255), 2)
        return bgr
    x, y, w, h = box
    k = int(probs.argmax())
    cv2.rectangle(bgr, (x, y), (x + w, y + h), (0, 255, 0), 2)
    cv2.putText(bgr, f"{EXPRESSIONS[k]} {probs[k]:.0%}", (x, max(20, y - 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                (0, 255, 0), 2)
    for i, (name, p) in enumerate(zip(EXPRESSIONS, probs)):   # a bar per class, top left
        y0 = 12 + 18 * i
        cv2.rectangle(bgr, (10, y0), (10 + int(120 * p), y0 + 12), (0, 200, 255), -1)
        cv2.putText(bgr, name, (136, y0 + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return bgr


def plot_probabilities(csv_path: str | os.PathLike, title: str | None = None):
    """The 7 probabilities over time from an ``analyse_video`` CSV (gaps where no face was found)."""
    import matplotlib.pyplot as plt

    df = pd.read_csv(csv_path)
    fig, ax = plt.subplots(figsize=(9, 3))
    colours = plt.get_cmap("tab10")
    for i, name in enumerate(EXPRESSIONS):
        ax.plot(df["time"], df[f"p_{name}"], label=name, color=colours(i), lw=1.2)
    ax.set(xlabel="time (s)", ylabel="probability", ylim=(0, 1))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title(title or f"{Path(csv_path).name}: FER2013 mini-Xception", fontsize=9)
    fig.tight_layout()
    return fig


@torch.no_grad()
def analyse_video(path: str | os.PathLike, out: str | os.PathLike, model: torch.nn.Module | None = None,
                  annotate: bool = False, every: int = 1, max_frames: int | None = None, progress: bool = True,
                  plot: bool = True, min_size: int = 40, align: bool = False) -> VideoAnalysis:
    """Stream ``path`` frame by frame, track the face, and write the per-frame CSV, the plot of the
    probabilities over time and (``annotate=True``) an annotated video into the folder ``out``.

    ``model``: default ``realface.real_face_model()``; ``every``: analyse every n-th frame; ``max_frames``:
    stop after that many frames of the video; ``align``: level the eyes of each crop (an eye cascade per frame,
    about 3x the tracker's cost; off by default — the frontal-face cascade only finds upright faces anyway).
    Raises FileNotFoundError / ValueError naming the file when it
    is missing or unreadable, and ``faces.NoFaceFound`` when no analysed frame has a face (the CSV is kept)."""
    from affectlab import realface

    if every < 1:
        raise ValueError(f"every must be >= 1; got {every}")
    model = model if model is not None else realface.real_face_model()
    device = next(model.parameters()).device
    cap, fps, n_frames, size = open_video(path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(path).stem
    csv_path = out / f"{stem}_expressions.csv"
    writer, video_path = (_writer(out / f"{stem}_annotated", fps / every, size) if annotate else (None, None))
    total = min(n_frames, max_frames) if (n_frames and max_frames) else (n_frames or max_frames or None)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="frame", desc=Path(path).name, mininterval=0.5)
    tracker = FaceTracker(min_size)
    analysed = with_face = n_read = 0
    # One 64 px face per step: threads only contend (on a busy 2-core machine 2 threads ran the model ~100x
    # slower than 1), so the analysis runs torch on one thread and restores the setting afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        with open(csv_path, "w", newline="") as fh:
            table = csv.writer(fh)
            table.writerow(COLUMNS)
            for i, bgr in read_frames(cap, max_frames):
                n_read = i + 1
                if i % every == 0:
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    box = tracker.update(rgb)
                    probs = None
                    if box is not None:
                        crop = faces.align_crop(rgb, box, size=realface.INPUT_SIZE, margin=faces.REAL_FACE_MARGIN, align=align)
                        probs = model(realface.prepare([crop]).to(device)).softmax(-1)[0].cpu().numpy()
                        with_face += 1
                        table.writerow([i, f"{i / fps:.4f}", 1, *box, *(f"{p:.5f}" for p in probs),
                                        EXPRESSIONS[int(probs.argmax())]])
                    else:
                        table.writerow([i, f"{i / fps:.4f}", 0] + [""] * (len(COLUMNS) - 3))
                    if writer is not None:
                        writer.write(_annotate(bgr, box, probs))
                    analysed += 1
                if bar is not None:
                    bar.update(1)
    finally:
        torch.set_num_threads(threads)
        cap.release()
        if writer is not None:
            writer.release()
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    if n_read == 0:
        raise ValueError(f"video {str(path)!r} has no readable frames (empty, or a codec OpenCV lacks)")
    if with_face == 0:
        raise faces.NoFaceFound(
            f"no face found in any of the {analysed} analysed frames of video {str(path)!r} (table: {csv_path}); "
            f"the Haar cascade needs a frontal, upright face at least {min_size} px wide")
    plot_path = None
    if plot:
        import matplotlib.pyplot as plt

        fig = plot_probabilities(csv_path, title=f"{Path(path).name}: FER2013 mini-Xception, per frame")
        plot_path = out / f"{stem}_expressions.png"
        fig.savefig(plot_path, dpi=100)
        plt.close(fig)
    return VideoAnalysis(csv=csv_path, plot=plot_path, video=video_path, frames=analysed, face_frames=with_face,
                         seconds=seconds, fps=analysed / seconds if seconds > 0 else float("nan"))


def make_demo_video(photo, path: str | os.PathLike, seconds: float = 3.0, fps: float = 30.0,
                    size: tuple[int, int] = (1280, 720), seed: int = 0) -> Path:
    """A video of a still photograph filmed by a moving camera: slow pans, zoom in and out, a slight roll,
    written frame by frame with OpenCV's ``VideoWriter`` (MJPG in .avi, which every OpenCV build writes).
    For the chapter's demo, the tests and the memory benchmark; returns the path written."""
    rgb, _ = faces.as_rgb(photo)
    W, H = size
    # the photo, letterboxed onto a canvas of the video's aspect ratio with a blurred copy of itself behind
    scale = H / rgb.shape[0]
    fg = cv2.resize(rgb, (int(rgb.shape[1] * scale), H), interpolation=cv2.INTER_AREA)
    canvas = cv2.GaussianBlur(cv2.resize(rgb, (W, H)), (0, 0), 15)
    x0 = (W - fg.shape[1]) // 2
    if x0 >= 0:
        canvas[:, x0:x0 + fg.shape[1]] = fg
    else:
        canvas = fg[:, -x0:-x0 + W]
    bgr = cv2.cvtColor(np.ascontiguousarray(canvas), cv2.COLOR_RGB2BGR)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 4)
    path = Path(path).with_suffix(".avi")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {str(path)!r}")
    try:
        for i in range(int(round(seconds * fps))):
            t = i / fps
            zoom = 1.15 + 0.12 * np.sin(2 * np.pi * t / 7 + phase[0])
            angle = 4 * np.sin(2 * np.pi * t / 5 + phase[1])
            dx = 0.05 * W * np.sin(2 * np.pi * t / 6 + phase[2])
            dy = 0.04 * H * np.sin(2 * np.pi * t / 4 + phase[3])
            m = cv2.getRotationMatrix2D((W / 2, H / 2), angle, zoom)
            m[:, 2] += (dx, dy)
            writer.write(cv2.warpAffine(bgr, m, (W, H), borderMode=cv2.BORDER_REFLECT))
    finally:
        writer.release()
    return path


def main(argv=None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m affectlab.video",
                                description="Analyse your own video with the real-face model (its weights: "
                                            "python -m affectlab.faces install-weights).")
    sub = p.add_subparsers(dest="cmd", required=True)
    an = sub.add_parser("analyse", help="per-frame expressions of the face in a video: CSV, plot, annotated video")
    an.add_argument("video")
    an.add_argument("--out", required=True, help="folder for <name>_expressions.csv / .png (created)")
    an.add_argument("--annotate", action="store_true", help="also write <name>_annotated.mp4")
    an.add_argument("--every", type=int, default=1, help="analyse every n-th frame (default 1)")
    an.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    an.add_argument("--min-size", type=int, default=40, help="smallest face width in pixels (default 40)")
    an.add_argument("--align", action="store_true", help="level the eyes of every crop (slower)")
    an.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        result = analyse_video(args.video, args.out, annotate=args.annotate, every=args.every,
                               max_frames=args.max_frames, min_size=args.min_size, align=args.align,
                               progress=not args.no_progress)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{result.frames} frames analysed ({result.face_frames} with a face) at {result.fps:.1f} frames/s")
    for f in (result.csv, result.plot, result.video):
        if f is not None:
            print("wrote", f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
