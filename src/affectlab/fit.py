"""Train one paper's model from a terminal: its recipe (the code its chapter runs), on one GPU, many (torchrun),
or a CPU, with exact resume.

    python -m affectlab.fit PAPER --profile {quick,paper} --data-root DIR --out DIR [--smoke] [--resume]
                            [--set key=value ...] [--weights FILE] [--seed N] [--device auto] [--compile]
                            [--deterministic]
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
import contextlib
import json
import os
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
            from affectlab import distributed as dist
            from affectlab.checkpoint import Checkpoint

            ck = next(cb for cb in self.learn.cbs if isinstance(cb, Checkpoint))
            path = ck.file_for(ck.fit_key())
            seen = dist.all_gather(path.is_file())      # every rank decides alike: no rank waits for another
            if not any(seen):
                have = ", ".join(p.name for p in sorted(ck.folder.glob("*.pt")))
                raise FitError(f"--resume: {ck.folder} holds no checkpoint of this configuration ({path.name}; "
                               f"there: {have}); resume with the same command line, data and processes")
            if not all(seen):
                raise FitError(f"--resume: rank(s) {[r for r, s in enumerate(seen) if not s]} see no {path} that "
                               "rank 0 sees; every rank must read the same --out (a file system all nodes share)")

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
    """One folder for every rank: rank 0 writes each checkpoint, every rank's random states in it."""
    return out / "checkpoints"


@contextlib.contextmanager
def _gpu_determinism(deterministic: bool):
    """``--deterministic`` during the fit: cuDNN's deterministic kernels (no benchmark search) and torch's
    deterministic algorithms (a warning where an operator has none), so the same seed gives the same numbers
    and a resumed run ends on an uninterrupted one's; without it cuDNN benchmarks and picks the fastest kernels
    (the last digits may then differ from run to run). CPU kernels are deterministic either way at a fixed
    thread count. The process's previous settings come back afterwards."""
    import torch

    cudnn = torch.backends.cudnn
    before = (cudnn.deterministic, cudnn.benchmark, torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn.deterministic, cudnn.benchmark = deterministic, not deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = before[:2]
        torch.use_deterministic_algorithms(before[2], warn_only=before[3])


def _precision(learn, fp16: bool, cuda: bool) -> str | None:
    """The ``fp16`` setting on the Learner: mixed precision on CUDA (bf16 where the GPU has it, else fp16 with
    fastai's gradient scaler) or float32. Returns a note when the setting cannot apply here."""
    import torch
    from fastai.callback.fp16 import MixedPrecision

    mixed = any(isinstance(cb, MixedPrecision) for cb in learn.cbs)
    if fp16 and not cuda:
        return "fp16: mixed precision runs on CUDA only; this run trains in float32"
    if fp16 and not mixed:
        learn.to_bf16() if torch.cuda.is_bf16_supported() else learn.to_fp16()
    elif mixed and not fp16:
        learn.to_fp32()
    return None


# Losses over the batch (a correlation of the batch's items): a batch of one item gives them no gradient.
BATCH_LOSSES = {"temporal": "the CCC of valence and arousal over the batch's clips",
                "facernet": "the Pearson loss over the batch's videos"}


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
    args = _parser().parse_args(_paper_first(sys.argv[1:] if argv is None else argv))
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
    if args.deterministic:     # read when cuBLAS starts: before the first CUDA matrix product
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    dist.init(cuda)             # the ranks agree on every check below: an error stops all of them
    if not args.data_root.is_dir():
        raise FitError(f"--data-root {args.data_root}: not a folder")
    from affectlab.recipes import with_labels
    try:      # the classes of the edition under --data-root (affectlab.data.editions)
        S = with_labels(S, args.data_root)
    except ValueError as e:
        raise FitError(str(e)) from None
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
    try:
        dist.agree([p.name for p in have], f"the checkpoints in {folder} (a file system all nodes share?)")
    except RuntimeError as e:
        raise FitError(str(e)) from None
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
        try:
            job = recipe(paper).command_job(S_run, args.data_root, device, args.seed, limit=limit,
                                            weights=args.weights)
        except (ValueError, FileNotFoundError) as e:   # the data or a setting refused, before any training
            raise FitError(str(e)) from None
    learn = job.learn
    precision = _precision(learn, S_run["fp16"], cuda)
    for note in [*job.notes, *([precision] if precision else [])]:
        say(note)
    sizes = dist.rank_batches(learn.dls.train)
    per = f"per process ({dist.world_size()})" if dist.world_size() > 1 else "in one process"
    if not sizes:
        raise FitError(f"{learn.dls.train.n} training {UNIT[paper]} make no full batch of {learn.dls.train.bs} "
                       f"{per}, and incomplete batches are dropped: lower the batch (--set)")
    if paper in BATCH_LOSSES and min(sizes) < 2:
        raise FitError(f"{paper} trains with {BATCH_LOSSES[paper]}, which needs 2 or more {UNIT[paper]} a "
                       f"batch; {per} the batches hold {sorted(set(sizes))}: raise the batch or the data, or use "
                       "fewer processes")
    dist.seed_rank(args.seed, learn.dls)     # the model is built: ranks 1.. augment and drop out their own way
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
    with _gpu_determinism(args.deterministic):   # here: the recipe's set_seed turned cuDNN's determinism on
        job.fit(cbs)   # a resumed fit shows its bar too: the checkpoint lets it watch the finished epochs go by
    seconds = time.time() - t0
    if ddp is not None:
        learn.remove_cb(ddp)
    ck = next((cb for cb in learn.cbs if isinstance(cb, Checkpoint)), None)
    done = out / f"fit_{paper}.json"
    if args.resume and ck is not None and ck.last_action == "skipped" and done.is_file():
        say(f"--resume: the run in {out} is finished (all {learn.n_epoch} epochs checkpointed): nothing to "
            f"train; its results are in {done}. To train again, choose another --out.")
        return 0

    preds, targs = dist.gathered_predict(learn, learn.dls.valid)
    scores = job.score(preds, targs)
    if S_run.get("labels"):   # the edition and classes trained, with the head's output count as measured
        job.labels = {**S_run["labels"], **({"outputs": int(preds["expr"].shape[1])} if "expr" in preds
                                            and preds["expr"].ndim == 2 else {})}
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
        "labels": job.labels, "smoke_note": smoke_note, "notes": job.notes, "processes": len(digests), "param_digests": digests,
        "checkpoints": {"last": str(last) if last else None, "best": str(best) if best.is_file() else None},
    })
    path.write_text(json.dumps(doc, indent=1, default=str))
    (out / "run.log").write_text("\n".join(say.lines) + "\n")
    losses = (f"first loss {doc['first_loss']:.4f}, last {doc['last_loss']:.4f}" if steplog.losses else
              "no training step (the checkpoint's final state)")
    say(f"{steplog.steps} optimiser steps in {seconds:.1f} s; {losses}; "
        + ", ".join(f"{m} {v:.4f}" for m, v in scores.items()))
    say(f"wrote {path}")
    return path


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# What each paper's command reads under --data-root (docs/real-data.md lays each release out).
DATASETS = {
    "facechannel": "Aff-Wild2 (EXPR and VA tracks)",
    "senet50": "Aff-Wild2 (EXPR track) with ExpW merged",
    "temporal": "Aff-Wild2 (EXPR and VA tracks, consecutive frames)",
    "scan": "Aff-Wild2 (EXPR track)",
    "facernet": "Hume-Reaction or Hume-Vidmimic2 (whichever --data-root holds)",
}
# options that take one value: the token after one is never PAPER
_VALUE_OPTIONS = ("--profile", "--data-root", "--out", "--weights", "--seed", "--device")


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The epilog as written, and every option's default in its help."""


def _paper_first(argv: Sequence[str]) -> list[str]:
    """``argv`` with PAPER moved to the front, so that ``--set a=1 b=2 PAPER ...`` does not read PAPER as a
    setting (``--set`` takes every following word)."""
    argv, skip = list(argv), False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a in _VALUE_OPTIONS:
            skip = True
        elif a in PAPERS:
            return [a, *argv[:i], *argv[i + 1:]]
    return argv


def _parser() -> argparse.ArgumentParser:
    from affectlab.recipes import settings

    papers = "\n".join(f"  {p:12s} {RECIPES[p][1]}\n  {'':12s} reads: {DATASETS[p]}\n  {'':12s} --set keys: "
                        + ", ".join(sorted(set(settings(p, "quick")) - {"paper", "profile"})) for p in PAPERS)
    p = _Parser(prog="python -m affectlab.fit", description=__doc__.split("\n\n")[0],
                epilog=f"papers:\n{papers}\n\nexit status: 0 trained (or a finished run resumed), 2 bad input (one "
                       f"line), {EXIT_NO_GPU} --profile paper without a GPU and without --allow-cpu (after measuring "
                       "two steps and estimating the time)\n\nMulti-GPU, resuming, what to download: docs/gpu.md",
                formatter_class=_Formatter)
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
                   help="the VGGFace2 release weights (docs/gpu.md), loaded into the released network: "
                        "senet50_ft_weight.pkl for senet50, resnet50_ft_weight.pkl for temporal and scan "
                        "(--profile paper)")
    p.add_argument("--seed", type=int, default=0,
                   help="the training seed: data order, augmentation, initial weights (the data stay the same)")
    p.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:1 ...")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic cuDNN and torch algorithms: the same seed gives the same numbers and --resume "
                        "ends on an uninterrupted run's (GPU; default: cuDNN benchmark mode, faster)")
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
