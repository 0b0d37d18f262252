"""Frames from videos in flat memory: a short video and one 4x as long, cropped by ``python -m affectlab.frames``.

    python -m benchmarks.bench_frames      # writes the "frames" topic into results.json and RESULTS.md

Both videos are made as ``bench_video``'s are (matplotlib's portrait of Grace Hopper filmed by a moving camera,
OpenCV ``VideoWriter``, MJPG, 25 frames/s, 640x360), then each is cropped by ``affectlab.frames.extract_frames``
(tracking, eye alignment, 112 px JPEG crops, the boxes and the manifest) in a fresh Python process, which
reports its resident set sampled every 20 ms during the run (its peak), the peak of Python's own allocations
(``tracemalloc``, which numpy's arrays report to) and the kernel's lifetime peak (``VmHWM``, which includes
importing torch). Each peak stands beside references measured in the same run: the same process's resident
memory before the first frame, and what holding the decoded video in memory would take; the throughput
stands beside the machine's matmul peak. The goal: the long video's peaks within 10 % of the short one's.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.timing import run_child

HERE = Path(__file__).parent
FPS = 25.0
SIZE = (640, 360)

_CHILD = r"""
import tracemalloc
from affectlab import frames
from benchmarks.timing import stopwatch

before, samples, done = start_sampling()   # the resident set every 20 ms while the video is cropped
tracemalloc.start()
with stopwatch() as sw:
    m = frames.extract_frames(sys.argv[1], sys.argv[2], progress=False, log=lambda _: None)
traced_peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
done.set()
rec = m["videos"][0]
print(json.dumps({"frames": rec["frames"], "crops": m["summary"]["crops"], "seconds": sw.s, "before_kb": before,
                  "peak_kb": max(samples), "traced_peak_b": traced_peak, "lifetime_peak_kb": status("VmHWM")}))
"""


def _crop(video: Path, out: Path) -> dict:
    return run_child(_CHILD, str(video), str(out), cwd=HERE.parent)


def run(lengths=(("short", 8.0), ("long", 32.0))) -> dict:
    from matplotlib import cbook

    from affectlab.video import make_demo_video

    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    figures: dict = {"video_size": f"{SIZE[0]}x{SIZE[1]}", "video_fps": FPS}
    with tempfile.TemporaryDirectory(prefix="affectlab-bench-frames-") as tmp:
        tmp = Path(tmp)
        for name, seconds in lengths:
            folder = tmp / f"videos_{name}"
            video = make_demo_video(photo, folder / f"hopper_{name}", seconds=seconds, fps=FPS, size=SIZE)
            r = _crop(folder, tmp / f"out_{name}")
            video.unlink()
            figures.update({
                f"{name}_frames": r["frames"],
                f"{name}_crops": r["crops"],
                f"{name}_frames_per_s": round(r["frames"] / r["seconds"], 2),
                f"{name}_rss_before_first_frame_mb": round(r["before_kb"] / 1024, 1),
                f"{name}_peak_rss_while_cropping_mb": round(r["peak_kb"] / 1024, 1),
                f"{name}_peak_python_allocations_mb": round(r["traced_peak_b"] / 2 ** 20, 2),
                f"{name}_process_peak_rss_mb": round(r["lifetime_peak_kb"] / 1024, 1),
                f"{name}_decoded_video_would_take_mb": round(r["frames"] * SIZE[0] * SIZE[1] * 3 / 2 ** 20, 1),
            })
    a, b = lengths[0][0], lengths[-1][0]
    for key in ("peak_rss_while_cropping", "peak_python_allocations", "process_peak_rss"):
        figures[f"{key}_ratio_{b}_over_{a}"] = round(figures[f"{b}_{key}_mb"] / figures[f"{a}_{key}_mb"], 4)
    figures["goal_ratio_at_most"] = 1.10
    return figures


def main() -> int:
    """Run this topic alone and merge it into results.json / RESULTS.md beside the other topics."""
    from benchmarks.run import run_topic_alone

    return run_topic_alone("frames", run)


if __name__ == "__main__":
    raise SystemExit(main())
