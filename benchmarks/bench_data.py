"""Data pipeline: synthetic-world generation speed (against the issue's targets, tiny < 5 s and quick < 60 s)
and DataLoader throughput at 112 px with augmentation against the training consumption of a FaceChannel
(~2M parameters, 10 convolutions) measured in the same run on the same machine.

The loader is timed over the quick world's Aff-Wild2 training frames, batch 128, two ways: from the
in-memory cache of decoded images (the default when the images fit) and decoding every JPEG per batch
(what a too-large real dataset gets). The model step is forward + backward + SGD on random 112 px input.

    python -m benchmarks.bench_data        # prints the figures as JSON
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from benchmarks.timing import measure, stopwatch

SETTINGS = dict(image_size=112, batch_size=128, loader_batches=12, model_steps=3)


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the generator's worker pool)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def generation(preset: str, out: Path) -> dict:
    from affectlab.data.synth import make_world

    shutil.rmtree(out, ignore_errors=True)
    with stopwatch(cpu_clock=_cpu_s) as gen:  # a one-off cost: the first call builds the world
        make_world(out, preset=preset, seed=0, progress=False)
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    images = counts["affwild2_frames"] + counts["hume_frames"] + counts["static_images"]
    with stopwatch() as again:                                  # the no-op repeat
        make_world(out, preset=preset, seed=0, progress=False)
    # CPU seconds say what the wall time would be on an idle machine (about cpu / workers) when the
    # machine is shared; the load average is recorded beside them.
    return {f"gen_{preset}_wall_s": gen.s, f"gen_{preset}_cpu_s": gen.cpu_s,
            f"gen_{preset}_target_s": {"tiny": 5, "quick": 60}[preset],
            f"gen_{preset}_images": images, f"gen_{preset}_images_per_s": images / gen.s,
            f"gen_{preset}_repeat_call_s": again.s}


def loader_throughput(root: Path, size: int, bs: int, batches: int) -> dict:
    from affectlab.data.abaw import read_abaw_multitask
    from affectlab.data.loaders import _STORES, frame_dls

    tr = read_abaw_multitask(root, "train")
    out = {"loader_train_frames": len(tr)}
    for name, cache in (("cached", True), ("decode_per_batch", False)):
        _STORES.clear()
        with stopwatch() as build:
            dls = frame_dls(tr, tr.iloc[:bs], size=size, bs=bs, augment=True, device="cpu", cache=cache)
        out[f"loader_{name}_build_s"] = build.s
        it = iter(dls.train)
        # the first batch (untimed) starts the iterator; then frames over the timed batches' total seconds
        t = measure(lambda it=it: len(next(it)[0]), warmup=1, repeat=batches, keep_results=True)
        out[f"loader_{name}_frames_per_s"] = sum(t.results) / t.total_s
    _STORES.clear()
    return out


def _model(size: int):
    """The course's FaceChannel if present, else a stand-in of the same shape (10 conv, 4 pool, FC-500)."""
    try:
        from affectlab.models.facechannel import FaceChannel

        return FaceChannel(image_size=size), "affectlab FaceChannel"
    except Exception:  # the data benchmark must not depend on another module being ready
        import torch.nn as nn

        chans, layers, c_in = (32, 32, 64, 64, 128, 128, 256, 256, 128, 128), [], 3
        for i, c in enumerate(chans):
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
            if i in (1, 3, 5, 7):
                layers.append(nn.MaxPool2d(2))
            c_in = c
        body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 500), nn.ReLU(), nn.Linear(500, 9))
        return body, "VGG-style stand-in"


def model_consumption(size: int, bs: int, steps: int) -> dict:
    torch.manual_seed(0)
    model, name = _model(size)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(bs, 3, size, size)

    def step():
        out = model(x)
        loss = sum(v.float().pow(2).mean() for v in out.values()) if isinstance(out, dict) else out.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    t = measure(step, warmup=1, repeat=steps)
    return {"model": name, "model_params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "model_train_images_per_s": t.per_s(bs), "torch_threads": torch.get_num_threads()}


def run() -> dict:
    s = SETTINGS
    import os

    figures = {"image_size": s["image_size"], "batch_size": s["batch_size"], "cpus": os.cpu_count(),
               "load_average_1min_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        figures.update(generation("tiny", Path(tmp) / "tiny"))
        figures.update(generation("quick", Path(tmp) / "quick"))
        figures.update(loader_throughput(Path(tmp) / "quick", s["image_size"], s["batch_size"], s["loader_batches"]))
    figures.update(model_consumption(s["image_size"], s["batch_size"], s["model_steps"]))
    for name in ("cached", "decode_per_batch"):
        figures[f"loader_{name}_over_model"] = figures[f"loader_{name}_frames_per_s"] / figures["model_train_images_per_s"]
    return figures


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
