"""Train one paper's model from a terminal: its recipe (the code its chapter runs), on one GPU, many (torchrun),
or a CPU, with exact resume.

    python -m affectlab.fit PAPER --profile {quick,paper} --data-root DIR --out DIR [--smoke] [--resume]
                            [--set key=value ...] [--weights FILE] [--seed N] [--device auto] [--compile]
    torchrun --standalone --nproc_per_node N -m affectlab.fit PAPER ...      # data-parallel, one process a GPU

It prints the flat settings it uses (``affectlab.recipes.settings``), shows fastai's progress, and writes into
``--out``: ``fit_<paper>.json`` (the chapters' metrics schema, plus the settings, the optimiser steps, the
first and last training loss, the checkpoints' paths), ``log.csv`` (one row per epoch), ``run.log`` (what was
printed), ``checkpoints/`` (the last state after every epoch: model, optimiser, schedule, every random state;
``--resume`` continues from it) and ``models/best.pth`` (the best model on the validation set).

``--smoke`` builds exactly the profile's configuration (backbone, image size, widths, optimiser, schedule,
losses) and takes a few optimiser steps on a few batches of ``--data-root``: one epoch, the batch capped to
what a tiny tree holds (said in the output). Without a GPU, ``--profile paper`` says so first, estimates the
time from a measured step and stops unless ``--allow-cpu``. See docs/gpu.md.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from affectlab.recipes import RECIPES

PAPERS = ("facechannel", "senet50", "temporal", "scan", "facernet")

# --smoke: optimiser steps, validation batches, and each paper's batch settings capped to (a training step of
# the paper profile's full backbone at its image size stays within seconds on a CPU, and a tiny tree holds a
# few such batches). Settings not named here keep the profile's values.
SMOKE_STEPS = 2
SMOKE_VALID_BATCHES = 2
SMOKE_BATCH: dict[str, dict[str, int]] = {
    "facechannel": {"batch_size": 8},
    "senet50": {"micro_batch": 4, "batch": 8},       # still 2 accumulated micro-batches per step
    "temporal": {"batch_size": 2},                   # clips of `window` frames each
    "scan": {"batch_size": 8},
    "facernet": {"batch_size": 2},                   # videos of up to t frames each
}
# What one batch item is, per paper (for the output and the time estimate).
UNIT = {"facechannel": "frames", "senet50": "frames", "temporal": "clips", "scan": "frames", "facernet": "videos"}
EXIT_NO_GPU = 3


class FitError(Exception):
    """Bad input to the command: printed as one line, exit status 2."""


def parse_sets(items: Sequence[str]) -> dict:
    """``["epochs=3", "lr=1e-3", "arch=resnet18"]`` -> ``{"epochs": 3, "lr": 0.001, "arch": "resnet18"}`` (Python
    literals where they parse, else the text)."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise FitError(f"--set {item!r}: expected key=value")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        out[key.strip()] = value
    return out


def batch_settings(paper: str) -> tuple[str, ...]:
    return tuple(SMOKE_BATCH[paper])


def smoke_settings(paper: str, S: dict, n_steps: int = SMOKE_STEPS) -> tuple[dict, tuple[int, int], str]:
    """The smoke run's overrides (one epoch, capped batches, loaders in this process), its data limit
    ``(training items, validation items)`` and the line that says what was capped."""
    caps = {k: min(S[k], cap) for k, cap in SMOKE_BATCH[paper].items()}
    step_items = caps.get("batch", next(iter(caps.values())))          # items per optimiser step
    eval_items = caps.get("micro_batch", step_items)                      # items per validation batch
    epoch_keys = [k for k in ("epochs", "seq_epochs", "rec_epochs") if k in S]
    over = {**caps, **{k: 1 for k in epoch_keys}, "num_workers": 0}
    note = (f"smoke: {n_steps} optimiser steps, 1 epoch, {SMOKE_VALID_BATCHES} validation batches; batch "
            + ", ".join(f"{k} {S[k]} -> {v}" for k, v in caps.items())
            + f" ({UNIT[paper]}: a smoke run takes a few steps on whatever the data root holds, a tiny tree "
              "included); everything else as the profile sets it")
    return over, (n_steps * step_items, SMOKE_VALID_BATCHES * eval_items), note


# --- callbacks -----------------------------------------------------------------------------------------

def _callbacks():
    """The command's fastai callbacks (defined on first use: fastai is imported only when training)."""
    from fastai.callback.core import Callback

    class StepLog(Callback):
        """Counts optimiser steps (a step cancelled by gradient accumulation is not one), keeps the training
        loss of the first and last step, and the seconds and items of each step."""
        order = 60

        def __init__(self):
            self.steps, self.losses, self.times, self.items = 0, [], [], []
            self._cancelled = False

        def before_batch(self):
            self._t0, self._cancelled = time.perf_counter(), False

        def after_cancel_step(self):
            self._cancelled = True

        def after_step(self):     # not reached when GradientAccumulation skips the step (CancelBatchException)
            if not self._cancelled:
                self.steps += 1

        def after_batch(self):
            if not self.training:
                return
            from fastai.torch_core import find_bs

            self.losses.append(float(self.learn.loss.detach()))
            self.items.append(find_bs(self.learn.yb))
            self.times.append(time.perf_counter() - self._t0)

    class Accelerate(Callback):
        """On CUDA: the model and image batches in channels-last memory format, and ``torch.compile`` when
        asked (``nn.Module.compile`` compiles in place, so state-dict names and checkpoints are unchanged)."""
        order = 6        # before the batch reaches the model, after it is on the device

        def __init__(self, cuda: bool, compile: bool):
            self.cuda, self.compile = cuda, compile

        def before_fit(self):
            if self.cuda:
                self.learn.model.to(memory_format=__import__("torch").channels_last)
            if self.compile:
                self.learn.model.compile()

        def before_batch(self):
            x = self.learn.xb[0]
            if self.cuda and x.dim() == 4:
                import torch

                self.learn.xb = (x.contiguous(memory_format=torch.channels_last), *self.learn.xb[1:])

    class MustResume(Callback):
        """``--resume``: before any training, the checkpoint of this very configuration must be there (its
        name hashes the run's key, so a changed setting, seed or data would otherwise train afresh)."""
        order = 1000     # after the others' before_fit, before the Checkpoint's (1100): the state it keys

        def before_fit(self):
            from affectlab.checkpoint import Checkpoint

            ck = next(cb for cb in self.learn.cbs if isinstance(cb, Checkpoint))
            path = ck.file_for(ck.fit_key())
            if not path.is_file():
                have = ", ".join(p.name for p in sorted(ck.folder.glob("*.pt")))
                raise FitError(f"--resume: {ck.folder} holds no checkpoint of this configuration ({path.name}; "
                               f"there: {have}); resume with the same command line, data and processes")

    return StepLog, Accelerate, MustResume


# --- the command ---------------------------------------------------------------------------------------

class _Out:
    """Prints (rank 0 only) and keeps what it printed for ``run.log``."""

    def __init__(self, main: bool):
        self.main, self.lines = main, []

    def __call__(self, *parts):
        line = " ".join(str(p) for p in parts)
        self.lines.append(line)
        if self.main:
            print(line, flush=True)


def _checkpoint_folder(out: Path) -> Path:
    from affectlab.distributed import rank, world_size

    base = out / "checkpoints"
    return base / f"rank{rank()}" if world_size() > 1 else base     # each rank keeps its own random states


def _measure(say, paper: str, S: dict, args, device) -> None:
    """The no-GPU plan: two smoke steps of the configuration (nothing written), then ``_estimate``."""
    from affectlab.recipes import recipe
    from affectlab.train import set_seed

    StepLog, *_ = _callbacks()
    over, limit, _ = smoke_settings(paper, S)
    set_seed(args.seed)
    job = recipe(paper).command_job({**S, **over}, args.data_root, device, args.seed, limit=limit,
                                    weights=args.weights)
    log = StepLog()
    with job.learn.no_bar(), job.learn.no_logging():
        job.fit([log])
    _estimate(say, job, log, S, paper, device)


def _estimate(say, job, log, S: dict, paper: str, device) -> None:
    """The epoch's size, the epochs, and the time on this machine from the measured steps."""
    per_item = min(t / n for t, n in zip(log.times[1:] or log.times, log.items[1:] or log.items))
    epochs = S.get("epochs", 1)
    total = per_item * job.n_train * epochs
    from affectlab.course import duration

    say(f"measured here: {per_item:.3f} s per training item ({UNIT[paper]}) on {device} with "
        f"{__import__('torch').get_num_threads()} thread(s) -> one epoch of {job.n_train:,} {UNIT[paper]} "
        f"~{duration(per_item * job.n_train)}, {epochs} epochs ~{duration(total)} on this machine")


def run(argv: Sequence[str] | None = None, extra_cbs: Sequence = ()) -> int:
    """The command (``main``'s body); ``extra_cbs`` are added to the fit (tests stand a kill in with one)."""
    args = _parser().parse_args(argv)
    import torch

    from affectlab import distributed as dist
    from affectlab.recipes import recipe, settings
    from affectlab.train import resolve_device, set_seed, weights_digest

    say = _Out(dist.is_main())
    paper, out = args.paper, args.out
    given = parse_sets(args.set)
    try:
        S = settings(paper, args.profile, **given)
    except ValueError as e:
        raise FitError(str(e)) from None
    try:
        device = dist.local_device(resolve_device(args.device))
    except RuntimeError as e:
        raise FitError(str(e)) from None
    cuda = device.type == "cuda"
    if not args.data_root.is_dir():
        raise FitError(f"--data-root {args.data_root}: not a folder")
    if args.profile == "paper" and not args.smoke and not cuda:
        why = "device 'cpu' was asked for" if torch.cuda.is_available() else \
            "no GPU found (torch.cuda.is_available() is False)"
        say(f"affectlab.fit {paper}: {why}. --profile paper is meant for one or more GPUs: "
            f"{S.get('epochs')} epochs at {S['image_size']} px, batch "
            + ", ".join(f"{k} {S[k]}" for k in batch_settings(paper)) + ".")
        say("measuring two training steps of this configuration to estimate the time here ...")
        _measure(say, paper, S, args, device)
        if not args.allow_cpu:
            say("stopping (exit status 3): run it on a GPU (docs/gpu.md), check the configuration in seconds "
                "with --smoke, use --profile quick on a CPU, or pass --allow-cpu to train here anyway")
            return EXIT_NO_GPU
        say("--allow-cpu: training on the CPU anyway")

    if args.resume and args.smoke:
        raise FitError("--resume continues a training run; a --smoke run is not one")
    folder = _checkpoint_folder(out)
    have = sorted(folder.glob("*.pt")) if folder.is_dir() else []
    if args.resume and not have:
        raise FitError(f"--resume: no checkpoint in {folder} to continue from")
    if have and not args.resume:     # (a smoke run too: its finished checkpoint would skip its steps)
        raise FitError(f"{folder} already holds a run's checkpoints: add --resume to continue it, or choose "
                       "another --out (or delete that folder) to start afresh")

    limit, smoke_note = None, None
    if args.smoke:
        over, limit, smoke_note = smoke_settings(paper, S)
        S_run = {**S, **over}
    else:
        S_run = dict(S)
        if not cuda:
            S_run["num_workers"] = 0          # loader processes only pay off feeding a GPU
    if dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
    say(f"affectlab.fit {paper} ({RECIPES[paper][1]}) · profile {args.profile} · device {device} · "
        f"seed {args.seed} · {dist.world_size()} process(es) · data {args.data_root}")
    say("settings: " + json.dumps(S, default=str))
    if smoke_note:
        say(smoke_note)

    import fastai.callback.progress  # noqa: F401  (Learner.no_bar)
    from fastai.callback.progress import CSVLogger
    from fastai.callback.tracker import SaveModelCallback, TrackerCallback

    from affectlab.checkpoint import Checkpoint, checkpointing

    StepLog, Accelerate, MustResume = _callbacks()
    set_seed(args.seed)
    from affectlab.cache import code_key, data_key, files_key

    # what determines the run (affectlab.cache): the data by their files, the start weights by their file's
    # identity, the training code by the one invalidation rule
    key = {"paper": paper, "profile": args.profile, "settings": S_run, "seed": args.seed, "smoke": args.smoke,
           "data": data_key(args.data_root), "weights": files_key([args.weights]) if args.weights else None,
           "code": code_key(), "world": dist.world_size()}
    with checkpointing(folder, key):
        job = recipe(paper).command_job(S_run, args.data_root, device, args.seed, limit=limit,
                                        weights=args.weights)
    learn = job.learn
    for note in job.notes:
        say(note)
    learn.path, learn.model_dir = out, "models"
    steplog = StepLog()
    cbs = [steplog, Accelerate(cuda, args.compile), *extra_cbs] + ([MustResume()] if args.resume else [])
    # models/best.pth by the recipe's own choice of best epoch when it has one (FaceRNET keeps the best ρ):
    # two trackers on different monitors would each put back another epoch's weights at the end
    trackers = [cb for cb in learn.cbs if isinstance(cb, TrackerCallback)]
    if not any(isinstance(cb, SaveModelCallback) for cb in trackers):
        own = trackers[0] if trackers else None
        cbs.append(SaveModelCallback(monitor=own.monitor if own else "valid_loss", comp=own.comp if own else None,
                                     fname="best"))
    if dist.is_main():
        # written afresh on --resume too: the checkpoint replays the finished epochs' rows into the log
        cbs.append(CSVLogger(fname=str(out / "log.csv")))
    ddp = dist.attach(learn, cuda)
    t0 = time.time()
    job.fit(cbs)   # a resumed fit shows its bar too: the checkpoint lets it watch the finished epochs go by
    seconds = time.time() - t0
    if ddp is not None:
        learn.remove_cb(ddp)
    ck = next((cb for cb in learn.cbs if isinstance(cb, Checkpoint)), None)

    preds, targs = dist.gathered_predict(learn, learn.dls.valid)
    scores = job.score(preds, targs)
    digests = dist.all_gather(weights_digest(learn.model))
    if dist.is_main():
        _write(out, paper, args, S_run, job, scores, steplog, seconds, smoke_note, digests,
               ck.file if ck is not None else None, say)
    dist.barrier()
    return 0


def _write(out: Path, paper, args, S_run, job, scores, steplog, seconds, smoke_note, digests, last, say) -> Path:
    from affectlab.course import record_metrics

    rows = [{"model": job.model, "variant": job.variant, "task": job.task.get(m, "EXPR"), "metric": m, "value": v}
            for m, v in scores.items()]
    bad = [r["metric"] for r in rows if not isinstance(r["value"], (int, float)) or r["value"] != r["value"]]
    if bad:
        say(f"note: {bad} not finite on this evaluation set (e.g. a class or a constant prediction missing in a "
            "few batches); left out of the metrics")
        rows = [r for r in rows if r["metric"] not in bad]
    if not rows:
        rows = [{"model": job.model, "variant": job.variant, "task": "LOSS", "metric": "last_train_loss",
                 "value": steplog.losses[-1]}]
    path = record_metrics(f"fit_{paper}", rows, profile=args.profile, seed=args.seed,
                          data="synthetic" if (args.data_root / "manifest.json").is_file() else "real",
                          metrics_dir=out)
    doc = json.loads(path.read_text())
    best = out / "models" / "best.pth"
    doc.update({
        "paper": paper, "title": RECIPES[paper][1], "smoke": bool(args.smoke), "settings": S_run,
        "steps": steplog.steps, "first_loss": steplog.losses[0] if steplog.losses else None,
        "last_loss": steplog.losses[-1] if steplog.losses else None, "train_seconds": round(seconds, 3),
        "smoke_note": smoke_note, "notes": job.notes, "processes": len(digests), "param_digests": digests,
        "checkpoints": {"last": str(last) if last else None, "best": str(best) if best.is_file() else None},
    })
    path.write_text(json.dumps(doc, indent=1, default=str))
    (out / "run.log").write_text("\n".join(say.lines) + "\n")
    say(f"{steplog.steps} optimiser steps in {seconds:.1f} s; first loss {doc['first_loss']:.4f}, last "
        f"{doc['last_loss']:.4f}; " + ", ".join(f"{m} {v:.4f}" for m, v in scores.items()))
    say(f"wrote {path}")
    return path


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    papers = "\n".join(f"  {p:12s} {RECIPES[p][1]}" for p in PAPERS)
    p = _Parser(prog="python -m affectlab.fit", description=__doc__.split("\n\n")[0],
                epilog=f"papers:\n{papers}\n\nMulti-GPU, resuming, what to download: docs/gpu.md",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paper", choices=PAPERS, metavar="PAPER", help="one of: " + ", ".join(PAPERS))
    p.add_argument("--profile", choices=["quick", "paper"], default="quick",
                   help="quick: the chapters' CPU settings; paper: the paper's own (meant for a GPU)")
    p.add_argument("--data-root", type=Path, required=True,
                   help="the data: a synthetic world (python -m affectlab.data.synth) or the real releases "
                        "(docs/real-data.md)")
    p.add_argument("--out", type=Path, required=True, help="folder for metrics, log, checkpoints")
    p.add_argument("--smoke", action="store_true", help="a few optimiser steps of the configuration, then evaluate")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override a setting of the profile (an unknown key is an error naming the known ones)")
    p.add_argument("--weights", type=Path, default=None,
                   help="VGGFace2 backbone weights (a pickle of numpy arrays) for senet50, temporal, scan")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:1 ...")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    p.add_argument("--allow-cpu", action="store_true", help="train --profile paper on a CPU anyway")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except FitError as e:
        print(f"python -m affectlab.fit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
