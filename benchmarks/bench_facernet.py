"""FaceRNET training at the paper's video scale (t = 480, batch 4, 112 px): cached REC features vs end to end.

Each variant runs in its own Python process so their peak resident memory (``ru_maxrss`` of that process)
cannot contaminate each other; the process's RSS right after importing torch is reported beside it as the
floor. The cached path trains a whole epoch on [B, 480, 26] REC representations; the end-to-end path runs
REC on every true frame of every video, so it is measured on a couple of batches and its epoch time is
extrapolated from them (labelled as such). Inputs are random tensors: the cost does not depend on content.

    python -m benchmarks.bench_facernet            # prints the figures as JSON
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys

from benchmarks.timing import measure, stopwatch

SETTINGS = dict(t=480, batch_size=4, image_size=112, rec_width=32, videos_per_epoch=64, e2e_batches=2)


def _rss_gib(usage_kib: int) -> float:
    return usage_kib / 2 ** 20  # Linux reports ru_maxrss in KiB


def _measure(variant: str, t: int, batch_size: int, image_size: int, rec_width: int, videos_per_epoch: int,
             e2e_batches: int) -> dict:
    import torch

    from affectlab.models.facernet import REC, FaceRNet, FaceRNetLoss, rec_representations

    floor = _rss_gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    torch.manual_seed(0)
    lengths = torch.full((batch_size,), t, dtype=torch.long)   # the worst case: every video 480 frames long
    y = {"intensity": torch.rand(batch_size, 7)}
    loss_fn = FaceRNetLoss()
    batches_per_epoch = videos_per_epoch // batch_size
    out = {"rss_floor_gib": floor}
    if variant == "cached":
        rec = REC(width=rec_width).eval()
        with torch.no_grad():  # one-off cost of filling the cache: REC over one 480-frame video
            frames = torch.randn(t, 3, image_size, image_size)
            with stopwatch() as build:
                rec_representations(rec(frames))
            out["cache_build_s_per_video"] = build.s
        del frames
        model = FaceRNet(t=t)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        feats = torch.rand(videos_per_epoch, t, 26)

        def epoch():
            for i in range(batches_per_epoch):
                x = feats[i * batch_size:(i + 1) * batch_size]
                loss = loss_fn(model(x, lengths), y)
                opt.zero_grad()
                loss.backward()
                opt.step()

        out["epoch_s"] = measure(epoch, warmup=0, repeat=1).total_s  # one whole epoch, as always measured
        out["epoch_measured_batches"] = batches_per_epoch
    else:
        model = FaceRNet(t=t, rec=REC(width=rec_width))
        opt = torch.optim.Adam(model.parameters(), lr=1e-5)
        def batch(x):
            loss = loss_fn(model(x, lengths), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        # a batch costs about a minute here, so no separate warm-up: the best of the batches stands in for it;
        # each batch's frames are drawn untimed
        best = measure(batch, setup=lambda: torch.randn(batch_size, t, 3, image_size, image_size),
                       warmup=0, repeat=e2e_batches).min_s
        out["batch_s"] = best
        out["epoch_s"] = best * batches_per_epoch
        out["epoch_measured_batches"] = e2e_batches
    out["peak_rss_gib"] = _rss_gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return out


def _in_subprocess(variant: str, settings: dict) -> dict:
    code = ("import json, sys, torch; torch.set_num_threads(2); from benchmarks.bench_facernet import _measure; "
            "print('RESULT', json.dumps(_measure(**json.loads(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps({"variant": variant, **settings})],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_facernet {variant} failed:\n{proc.stderr[-2000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def run(**overrides) -> dict:
    settings = {**SETTINGS, **overrides}
    cached = _in_subprocess("cached", settings)
    e2e = _in_subprocess("end_to_end", settings)
    return {
        "settings": ", ".join(f"{k}={v}" for k, v in settings.items()),
        "cached_peak_rss_gib": cached["peak_rss_gib"],
        "cached_rss_after_import_gib": cached["rss_floor_gib"],
        "cached_epoch_s": cached["epoch_s"],
        "cached_cache_build_s_per_video": cached["cache_build_s_per_video"],
        "cached_under_4gib_target": cached["peak_rss_gib"] < 4.0,
        "end_to_end_peak_rss_gib": e2e["peak_rss_gib"],
        "end_to_end_rss_after_import_gib": e2e["rss_floor_gib"],
        "end_to_end_batch_s": e2e["batch_s"],
        "end_to_end_epoch_s_extrapolated": e2e["epoch_s"],
        "end_to_end_over_cached_epoch_time": e2e["epoch_s"] / cached["epoch_s"],
        "end_to_end_over_cached_peak_rss": e2e["peak_rss_gib"] / cached["peak_rss_gib"],
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
