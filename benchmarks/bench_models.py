"""Frame models of papers 1-2: FaceChannel training throughput and achieved FLOP/s against this machine's
matmul peak (channels-first, channels-last, channels-last + torch.compile; and the quick profile's narrow
FaceChannel in both formats), the fastai Learner against a
plain PyTorch loop on the same model and data, and SE-ResNet-50 inference at 112 and 224 px.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward of the
training step (convolutions and matmuls, the work a matmul peak is comparable to). Each timing is the
median of a few steps after warm-up (``benchmarks.timing.measure``; the Learner-vs-loop epochs take the best
of two), beside the run's matmul peak. Inputs are random tensors: the cost does not depend on content.

    python -m benchmarks.bench_models        # prints the figures as JSON
"""
from __future__ import annotations

import json

import torch

from benchmarks.timing import beside_peak, measure

SETTINGS = dict(image_size=112, batch_size=128, steps=3, warmup=1,
                quick_image_size=64, quick_batch_size=64, quick_width=16,
                learner_image_size=64, learner_batch_size=64, learner_batches=12,
                senet_batch=16, senet_steps=3)


def _facechannel_batch(image_size, batch_size, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, image_size, image_size, generator=g)
    y = {"va": torch.rand(batch_size, 2, generator=g) * 2 - 1,
         "expr": torch.randint(0, 7, (batch_size,), generator=g)}
    return x, y


def facechannel_training(image_size: int, batch_size: int, steps: int, warmup: int, peak: float, width: int = 64,
                         prefix: str = "", compiled: bool = True) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from affectlab.models.facechannel import FaceChannel, facechannel_loss

    loss_fn = facechannel_loss()
    x, y = _facechannel_batch(image_size, batch_size)
    torch.manual_seed(0)
    probe = FaceChannel(image_size=image_size, width=width)
    with FlopCounterMode(display=False) as counter:
        loss_fn(probe(x), y).backward()
    flops = counter.get_total_flops()
    out = {f"{prefix}facechannel_gflop_per_step": flops / 1e9}

    def variant(name, channels_last, compile_):
        name = prefix + name
        torch.manual_seed(0)
        model = FaceChannel(image_size=image_size, width=width)
        xx = x
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            xx = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        fwd = torch.compile(model) if compile_ else model

        def step():
            opt.zero_grad(set_to_none=True)
            loss_fn(fwd(xx), y).backward()
            opt.step()

        try:
            t = measure(step, warmup=warmup + (1 if compile_ else 0), repeat=steps)
        except Exception as e:  # torch.compile needs a working C++ toolchain; report, don't crash
            out[f"{name}_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            return
        out.update(beside_peak(name, t, units=batch_size, flops=flops, peak=peak))

    variant("channels_first", False, False)
    variant("channels_last", True, False)
    if compiled:
        variant("channels_last_compiled", True, True)
    return out


def learner_vs_loop(image_size: int, batch_size: int, n_batches: int) -> dict:
    """One epoch of FaceChannel training on the same tensors: fastai Learner.fit vs a hand-written loop.

    Each epoch starts from a fresh model (built untimed); the figure is the best of two epochs. The Learner's
    validation is cancelled (the loop does not validate), so both time the same training work."""
    import fastai.callback.progress  # noqa: F401  (Learner.no_bar / no_logging)
    from fastai.callback.core import Callback, CancelValidException
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    from fastai.optimizer import SGD

    from affectlab.models.facechannel import FaceChannel, facechannel_loss

    x, y = _facechannel_batch(image_size, batch_size * n_batches, seed=1)
    items = [(x[i], {"va": y["va"][i], "expr": y["expr"][i]}) for i in range(len(x))]
    loss_fn = facechannel_loss()

    class NoValidation(Callback):
        def before_validate(self):
            raise CancelValidException()

    def fresh_model():
        torch.manual_seed(0)
        return FaceChannel(image_size=image_size).to(memory_format=torch.channels_last)

    def plain_setup():
        model = fresh_model()
        return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def plain(model_opt):
        model, opt = model_opt
        model.train()
        for i in range(n_batches):
            sl = slice(i * batch_size, (i + 1) * batch_size)
            xb = x[sl].contiguous(memory_format=torch.channels_last)
            yb = {"va": y["va"][sl], "expr": y["expr"][sl]}
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xb), yb).backward()
            opt.step()

    def learner_setup():
        train = DataLoader(items, bs=batch_size, shuffle=False, drop_last=True)
        valid = DataLoader(items[:batch_size], bs=batch_size)
        return Learner(DataLoaders(train, valid), fresh_model(), loss_func=loss_fn,
                       opt_func=lambda p, lr: SGD(p, lr, mom=0.9), cbs=NoValidation())

    def learner(learn):
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, 0.01)

    # the plain loop's warm-up epoch warms the allocator and oneDNN primitives for both
    t_plain = measure(plain, setup=plain_setup, warmup=1, repeat=2).min_s
    t_learn = measure(learner, setup=learner_setup, warmup=0, repeat=2).min_s
    return {"plain_loop_images_per_s": batch_size * n_batches / t_plain,
            "fastai_learner_images_per_s": batch_size * n_batches / t_learn,
            "fastai_overhead_share": t_learn / t_plain - 1}


@torch.no_grad()
def senet_inference(batch: int, steps: int) -> dict:
    from affectlab.models.senet import SENet50Classifier

    model = SENet50Classifier("seresnet50").eval().to(memory_format=torch.channels_last)
    out = {}
    for size in (112, 224):
        x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
        t = measure(lambda: model(x), warmup=1, repeat=steps)
        out[f"seresnet50_inference_{size}px_images_per_s"] = t.per_s(batch)
    return out


def run() -> dict:
    from benchmarks.reference import run_peak_flops

    s = SETTINGS
    peak = run_peak_flops()  # the run's reference, measured once (here, when this topic runs alone)
    figures = {"matmul_peak_gflops": peak / 1e9, "threads": torch.get_num_threads(),
               "facechannel_image_size": s["image_size"], "facechannel_batch_size": s["batch_size"]}
    figures.update(facechannel_training(s["image_size"], s["batch_size"], s["steps"], s["warmup"], peak))
    # The quick profile's FaceChannel (width 16 at 64 px, batch 64): narrow layers whose BatchNorms dominate,
    # where the memory formats rank the other way round (affectlab.recipes.facechannel.make_fc picks by device)
    figures.update(facechannel_training(s["quick_image_size"], s["quick_batch_size"], s["steps"] * 3, s["warmup"],
                                        peak, width=s["quick_width"], prefix="quick_", compiled=False))
    figures.update(learner_vs_loop(s["learner_image_size"], s["learner_batch_size"], s["learner_batches"]))
    figures.update(senet_inference(s["senet_batch"], s["senet_steps"]))
    return figures


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
