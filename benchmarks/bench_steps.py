"""One training step of every paper's ``paper`` profile, as ``python -m affectlab.fit PAPER --profile paper``
builds it (the recipe's ``command_job``: the paper's backbone, image size, widths, loss and optimiser), timed
on this machine beside the run's matmul peak, with what the step spends its time on, its FLOPs per sample and
its memory at the paper's batch size — the figures docs/gpu.md turns into a time per epoch on one GPU.

- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward (convolutions, matmuls and
  recurrent layers' matmuls: the work a matmul peak is comparable to), divided by the batch's items.
- Time: the median of a few steps after a warm-up (``benchmarks.timing.measure``) at the smoke run's capped
  batch (``affectlab.fit.SMOKE_BATCH``: a paper batch of 1024 at 120 px does not fit a laptop's patience).
- Bound: ``torch.profiler``'s three costliest operators of one step, each with its share of the step.
- Memory at the paper batch (float32): parameters + gradients + optimiser state, plus the activations the
  backward pass keeps (``saved_tensors_hooks``: bytes of every distinct saved tensor) per item × the paper's
  batch (FaceRNet: per frame × t frames × batch, every video at its cap — an upper bound). bf16 autocast
  roughly halves the activations.

    python -m benchmarks.bench_steps          # prints the figures as JSON
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from benchmarks.timing import beside_peak, measure

PAPERS = ("facechannel", "senet50", "temporal", "scan", "facernet")
SETTINGS = dict(warmup=1, repeat=3, seed=0)


def _job(paper: str, root: Path):
    """The command's job for ``paper`` under the paper profile with the smoke run's capped batch."""
    from affectlab import fit
    from affectlab.recipes import recipe, settings

    S = settings(paper, "paper")
    over, limit, _ = fit.smoke_settings(paper, S)
    job = recipe(paper).command_job({**S, **over}, root, "cpu", SETTINGS["seed"], limit=limit)
    return S, {**S, **over}, job


def _items(yb) -> int:
    from fastai.torch_core import find_bs

    return find_bs(yb)


def _saved_bytes(fn) -> tuple[int, object]:
    """Bytes of the distinct tensors autograd keeps for the backward pass while ``fn`` runs its forward."""
    seen: dict[tuple, int] = {}

    def pack(t):
        try:
            key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
            seen[key] = t.untyped_storage().nbytes()
        except (RuntimeError, NotImplementedError):   # e.g. a tensor without storage
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def step_figures(paper: str, root: Path, peak: float) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    S, _, job = _job(paper, root)
    learn = job.learn
    model, loss_fn = learn.model.train(), learn.loss_func
    learn.create_opt()
    *xb, yb = learn.dls.train.one_batch()
    n = _items(yb)

    def forward_loss():
        return loss_fn(model(*xb), yb)

    def step():
        loss = forward_loss()
        loss.backward()
        learn.opt.step()
        learn.opt.zero_grad()

    step()                                               # optimiser state exists from here on
    with FlopCounterMode(display=False) as counter:
        forward_loss().backward()
    learn.opt.zero_grad()
    flops = counter.get_total_flops()
    saved, loss = _saved_bytes(forward_loss)
    loss.backward()
    learn.opt.zero_grad()
    timing = measure(step, warmup=SETTINGS["warmup"], repeat=SETTINGS["repeat"])

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:3]

    params = [p for p in model.parameters() if p.requires_grad]
    p_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    g_bytes = sum(p.numel() * p.element_size() for p in params)
    opt_bytes = sum(v.numel() * v.element_size() for st in learn.opt.state.values() for v in st.values()
                    if torch.is_tensor(v) and v.dim() > 0)
    batch_key = "batch" if paper == "senet50" else "batch_size"
    paper_batch = S[batch_key]
    # senet50 accumulates micro-batches: the activations held at once are one micro-batch's
    held = S["micro_batch"] if paper == "senet50" else paper_batch
    out = {"batch_items": n, "paper_batch": paper_batch, "gflop_per_item": flops / n / 1e9,
           "step_s": timing.median_s,
           **beside_peak("step", timing, units=n, unit="items", flops=flops, peak=peak),
           "activation_mb_per_item": saved / n / 2**20,
           "state_mb": (p_bytes + g_bytes + opt_bytes) / 2**20,
           "memory_gb_at_paper_batch": (p_bytes + g_bytes + opt_bytes + saved / n * held) / 2**30,
           "top_ops": ", ".join(f"{e.key} {e.self_cpu_time_total / total:.0%}" for e in top)}
    if paper == "facernet":      # items are videos: per frame too (REC runs on each true frame)
        frames = int(xb[1].sum())
        out["frames_in_batch"] = frames
        out["gflop_per_frame"] = flops / frames / 1e9
        out["activation_mb_per_frame"] = saved / frames / 2**20
        # the tiny world's videos are short: at the paper batch every video is taken at its cap, t frames
        out["gflop_per_item_at_t"] = flops / frames * S["t"] / 1e9
        out["memory_gb_at_paper_batch"] = (p_bytes + g_bytes + opt_bytes + saved / frames * S["t"] * paper_batch) / 2**30
    return {f"{paper}_{k}": v for k, v in out.items()}


def run() -> dict:
    from affectlab.data.synth import make_world
    from benchmarks.reference import run_peak_flops

    peak = run_peak_flops()
    figures = {"matmul_peak_gflops": peak / 1e9, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_world(Path(tmp) / "tiny", preset="tiny", seed=0, progress=False)
        for paper in PAPERS:
            torch.manual_seed(SETTINGS["seed"])
            figures.update(step_figures(paper, root, peak))
    return figures


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
