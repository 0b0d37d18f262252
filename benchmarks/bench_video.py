"""Video analysis in flat memory: a 10-second and a 1-minute 720p video, peak resident memory of each.

    python -m benchmarks.bench_video      # writes the "video" topic into results.json and RESULTS.md

Both videos are made from a real photograph (matplotlib's portrait of Grace Hopper) filmed by a moving
camera (pans, zoom, roll; OpenCV ``VideoWriter``, MJPG, 30 frames/s), then each is analysed by
``affectlab.video.analyse_video`` (tracking, the real-face model, the per-frame CSV and the plot) in a
fresh Python process, which reports its resident set sampled every 20 ms during the analysis (its peak)
and the kernel's lifetime peak (``VmHWM``, which includes importing torch). Each peak stands beside
references measured in the same run: the same process's resident memory after loading the model (before
the first frame), what holding the decoded video in memory would take, and the machine's matmul peak. The
goal: the 1-minute peak within 10 % of the 10-second peak.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.timing import run_child

HERE = Path(__file__).parent
FPS = 30.0
SIZE = (1280, 720)

_CHILD = r"""
from affectlab import faces
from affectlab.video import analyse_video

model = faces.real_face_model()
before, samples, done = start_sampling()   # the resident set every 20 ms while the video is analysed
r = analyse_video(sys.argv[1], sys.argv[2], model=model, progress=False)
done.set()
print(json.dumps({"frames": r.frames, "face_frames": r.face_frames, "fps": r.fps, "seconds": r.seconds,
                  "before_kb": before, "analysis_peak_kb": max(samples), "after_kb": status("VmRSS"),
                  "lifetime_peak_kb": status("VmHWM")}))
"""


def _analyse(video: Path, out: Path) -> dict:
    return run_child(_CHILD, str(video), str(out), cwd=HERE.parent)


def run(lengths=(("10s", 10.0), ("60s", 60.0))) -> dict:
    from matplotlib import cbook

    from affectlab.video import make_demo_video

    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    figures: dict = {"video_size": f"{SIZE[0]}x{SIZE[1]}", "video_fps": FPS}
    with tempfile.TemporaryDirectory(prefix="affectlab-bench-video-") as tmp:
        tmp = Path(tmp)
        for name, seconds in lengths:
            video = make_demo_video(photo, tmp / f"hopper_{name}", seconds=seconds, fps=FPS, size=SIZE)
            r = _analyse(video, tmp / f"out_{name}")
            video.unlink()
            figures.update({
                f"{name}_frames": r["frames"],
                f"{name}_face_frames": r["face_frames"],
                f"{name}_frames_per_s": round(r["fps"], 2),
                f"{name}_rss_before_first_frame_mb": round(r["before_kb"] / 1024, 1),
                f"{name}_peak_rss_during_analysis_mb": round(r["analysis_peak_kb"] / 1024, 1),
                f"{name}_rss_after_last_frame_mb": round(r["after_kb"] / 1024, 1),
                f"{name}_process_peak_rss_mb": round(r["lifetime_peak_kb"] / 1024, 1),
                f"{name}_decoded_video_would_take_mb": round(r["frames"] * SIZE[0] * SIZE[1] * 3 / 2 ** 20, 1),
            })
    a, b = lengths[0][0], lengths[-1][0]
    for key in ("peak_rss_during_analysis", "process_peak_rss"):
        figures[f"{key}_ratio_{b}_over_{a}"] = round(figures[f"{b}_{key}_mb"] / figures[f"{a}_{key}_mb"], 4)
    figures["goal_ratio_at_most"] = 1.10
    return figures


def main() -> int:
    """Run this topic alone and merge it into results.json / RESULTS.md beside the other topics."""
    from benchmarks.run import run_topic_alone

    return run_topic_alone("video", run)


if __name__ == "__main__":
    raise SystemExit(main())
