"""What every recipe shares: the base profiles, devices, seeds, fastai Learners, resumable fits, the one
predict loop, the one frozen-feature loop, and the caches of trained models and features.

Cache keys, the invalidation rule and the atomic writer are ``affectlab.cache``'s.
A paper's own settings (its learning rates, epochs, widths) are that paper's recipe's ``OVERRIDES``
(``affectlab.recipes.<paper>``); ``affectlab.recipes.settings(paper, profile, **overrides)`` merges them
over ``PROFILES`` here with ``merge_settings``.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from affectlab import cache as caching
from affectlab.paths import cache_dir

PROFILES: dict[str, dict] = {
    # CPU, the notebooks' default: each chapter in <= 3 minutes on a 2-core laptop.
    "quick": dict(image_size=64, batch_size=64, num_workers=0, epochs=4, fp16=False, preset="quick"),
    # The papers' own settings, meant for a GPU and a real dataset (or the `full` synthetic preset).
    "paper": dict(image_size=112, batch_size=256, num_workers=8, epochs=20, fp16=True, preset="full"),
}


def profile_settings(profile: str) -> dict:
    """The shared settings of ``profile``, with a clear error for an unknown name."""
    try:
        return dict(PROFILES[profile])
    except KeyError:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}") from None


def merge_settings(base: dict, overrides: dict, given: dict | None = None, what: str = "settings") -> dict:
    """One flat configuration: ``base`` (a profile of ``PROFILES``), then a recipe's ``overrides``, then the
    caller's ``given`` values. A ``given`` key that neither defines is an error naming the known keys, so a
    typo never silently trains with the default."""
    out = {**base, **overrides}
    unknown = sorted(set(given or {}) - set(out))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {sorted(out)}")
    return {**out, **(given or {})}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA when available, else Apple MPS, else CPU; anything else is validated."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was asked for but CUDA is not available here; use 'auto' or 'cpu'")
    return dev


def set_seed(seed: int = 0, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (all devices) so a chapter gives the same numbers on the same machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


@torch.no_grad()
def features(model: nn.Module, batches: Iterable, device: str | torch.device = "auto", *,
             cache: tuple[str, str] | None = None):
    """The one frozen-feature loop: ``model`` in eval mode over ``batches`` (images, or tuples whose first
    item is the input), outputs concatenated in order — a tensor, or a dict of tensors for a model that
    returns dicts. ``cache=(name, key)`` stores the result under data/cache (``affectlab.cache.cached``); the key must hold
    everything that determines it: the model's weights (``weights_digest``), the files (``files_key``), the
    settings and the seed."""
    if cache is not None:
        name, key = cache
        # the one invalidation rule (affectlab.cache): features follow the readers', loaders' and models' code
        key = caching.key(key, caching.code_key(""))
        out = caching.cached(name, key, lambda: _as_dict(features(model, batches, device)))
        return out["features"] if set(out) == {"features"} else out
    dev = resolve_device(device)
    was_training = model.training
    model.eval().to(dev)
    chunks: list = []
    for b in batches:
        x = b[0] if isinstance(b, (tuple, list)) else b
        chunks.append(model(x.to(dev)))
    model.train(was_training)
    if not chunks:
        return torch.empty(0)
    # dtypes are kept (a model may return float16 maps to halve a cache)
    if isinstance(chunks[0], dict):
        return {k: torch.cat([c[k].detach().cpu() for c in chunks]) for k in chunks[0]}
    return torch.cat([c.detach().cpu() for c in chunks])


def _as_dict(x) -> dict[str, torch.Tensor]:
    return x if isinstance(x, dict) else {"features": x}


def extract_features(model: nn.Module, images: Iterable[torch.Tensor], device: str | torch.device = "auto"
                     ) -> torch.Tensor:
    """``features`` of a model that maps images to ``[B, D]`` (the name the chapters used first)."""
    return features(model, images, device)


def weights_digest(model: nn.Module) -> str:
    """A short hash of a model's parameters and buffers: part of every cache key of its features."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Plan:
    """How a paper fits its Learner: ``epochs`` at ``lr`` (a number, or a ``slice`` / list for parameter
    groups) on a ``"one_cycle"`` schedule (fastai's ``fit_one_cycle``; ``moms`` held at the paper's SGD
    momentum when it has one) or a ``"constant"`` one (``learn.fit``), with the schedule's own callbacks
    (``cbs``, e.g. SCAN+CCI's per-epoch decay). A recipe's ``learner`` attaches it as ``learn.plan``; ``fit``
    runs it. The one place a paper's schedule is written, so the chapter, the claims step and
    ``python -m affectlab.fit`` cannot drift apart."""
    epochs: int
    lr: object
    schedule: str = "one_cycle"
    moms: tuple | None = None
    cbs: tuple = field(default=(), compare=False)

    def __post_init__(self):
        if self.schedule not in ("one_cycle", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}; use 'one_cycle' or 'constant'")


def fit(learn, cbs: Sequence = (), quiet: bool = False):
    """Fit ``learn`` by its recipe's ``learn.plan`` (see ``Plan``), with ``cbs`` added for this fit (the
    command's logger, a test's recorder). ``quiet`` hides fastai's progress bar and epoch table; the table is
    kept either way as ``learn.epoch_table`` (``affectlab.epoch_table``). Returns ``learn``."""
    import contextlib

    from affectlab.epoch_table import KeepEpochTable

    plan: Plan = learn.plan
    extra = [*plan.cbs, *cbs, KeepEpochTable()]     # learn.epoch_table: the rows fastai printed (or would have)
    with (learn.no_bar() if quiet else contextlib.nullcontext()), \
            (learn.no_logging() if quiet else contextlib.nullcontext()):
        if plan.schedule == "one_cycle":
            learn.fit_one_cycle(plan.epochs, plan.lr, cbs=extra, **({"moms": plan.moms} if plan.moms else {}))
        else:
            learn.fit(plan.epochs, lr=plan.lr, cbs=extra)
    return learn


def fit_or_reuse(learn, name: str, *key_parts, code: str, retrain: bool = False, quiet: bool = False):
    """``affectlab.train.fit(learn)``, or — when a fit of exactly this Learner was stored before (the claims
    step at the chapter's seed, an earlier run) — its weights, epoch table and learning curve read from
    data/cache/``name``-<key>.pt instead. Exactly: the key holds the model's initial weights (the same draw),
    ``key_parts`` (the caller's settings, seed and a key of the data it trains on), the device type, the thread
    count (one thread sums in another order) and the training code (``code_key(code)``). ``retrain``: train it
    again and store that. The random states after it are the same either way (``affectlab.cache.cached``).

    Returns ``learn`` with ``reused``, ``epoch_table``, ``curve`` (``losses`` per batch and ``values``
    [train loss, valid loss] per epoch, as fastai's recorder holds them) and ``kept_epoch`` (the epoch whose
    weights a keep-the-best callback put back, else None)."""
    from types import SimpleNamespace

    from affectlab.cache import cached, code_key, is_cached, key
    from affectlab.epoch_table import EpochTable

    device = next(learn.model.parameters()).device.type
    k = key(weights_digest(learn.model), *key_parts, device, torch.get_num_threads(), code_key(code))
    reused = is_cached(name, k) and not retrain

    def train() -> dict[str, torch.Tensor]:
        fit(learn, quiet=quiet)
        kept = next((cb.best_epoch for cb in learn.cbs if getattr(cb, "best_epoch", None) is not None), None)
        r = learn.recorder
        return {**{f"model.{n}": v.detach().cpu().contiguous() for n, v in learn.model.state_dict().items()},
                "curve.losses": torch.tensor([float(x) for x in r.losses]),
                "curve.values": torch.tensor([[float(x) for x in v[:2]] for v in r.values]),
                "curve.table": learn.epoch_table.to_tensor(), "kept_epoch": torch.tensor(-1 if kept is None else kept)}

    out = cached(name, k, train, refresh=retrain)
    if reused:
        learn.model.load_state_dict({n[6:]: v for n, v in out.items() if n.startswith("model.")})
        learn.epoch_table = EpochTable.from_tensor(out["curve.table"])
    learn.reused = reused
    learn.curve = SimpleNamespace(losses=out["curve.losses"].tolist(), values=out["curve.values"].tolist())
    learn.kept_epoch = None if int(out["kept_epoch"]) < 0 else int(out["kept_epoch"])
    return learn


def describe(learn) -> dict:
    """What decides how ``learn`` trains, as plain data: the optimiser (its function and keyword
    hyper-parameters, momentum included), the plan (epochs, learning rate, schedule, momentum), the loss
    (its class and settings), the metrics' names and the callbacks' classes. Two Learners with the same
    ``describe`` train the same way; the test of the three paths compares them."""
    opt = learn.opt_func
    opt_desc = {"func": getattr(getattr(opt, "func", opt), "__name__", repr(opt)),
                "kwargs": {k: repr(v) for k, v in sorted(getattr(opt, "keywords", {}).items())}}
    loss = learn.loss_func
    loss_desc = {"class": type(loss).__name__,
                 "settings": {k: repr(v) for k, v in sorted(vars(loss).items())
                              if not k.startswith("_") and not callable(v)} if hasattr(loss, "__dict__") else {}}
    plan = learn.plan
    return {"opt": opt_desc, "epochs": plan.epochs, "lr": repr(plan.lr), "schedule": plan.schedule,
            "moms": plan.moms, "schedule_cbs": [type(c).__name__ for c in plan.cbs], "loss": loss_desc,
            "metrics": [getattr(m, "name", type(m).__name__) for m in learn.metrics],
            "cbs": sorted({type(c).__name__ for c in learn.cbs}), "wd": repr(learn.wd),
            "splitter": getattr(learn.splitter, "__name__", repr(learn.splitter))}


def make_learner(
    dls,
    model: nn.Module,
    loss_func: Callable,
    metrics: Sequence = (),
    *,
    device: str | torch.device = "auto",
    fp16: bool | None = None,
    path: str | Path | None = None,
    cbs: Sequence = (),
    log_name: str | None = None,
    checkpoint: bool = True,
    **kwargs,
):
    """A fastai ``Learner`` with the course's defaults: the model and data on ``device``, a CSV log of every
    epoch when ``log_name`` is given, and mixed precision on CUDA (``fp16=None`` = on CUDA only).

    While a checkpoint folder is active (the course runner's ``AFFECTLAB_CHECKPOINTS``, or a
    ``affectlab.checkpoint.checkpointing`` block) the Learner gets a ``Checkpoint`` callback: each fit is
    saved after every epoch, resumed after an interruption and skipped once complete (see
    ``affectlab.checkpoint``; ``checkpoint=False`` opts this Learner out)."""
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle / lr_find)
    from fastai.callback.progress import CSVLogger
    from fastai.learner import Learner

    from affectlab.checkpoint import attach

    dev = resolve_device(device)
    dls.to(dev) if hasattr(dls, "to") else None
    cbs = list(cbs)
    if log_name:
        log_dir = Path(path or cache_dir() / "logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        cbs.append(CSVLogger(fname=str(log_dir / f"{log_name}.csv")))
    learn = Learner(dls, model.to(dev), loss_func=loss_func, metrics=list(metrics), cbs=cbs,
                    path=path or cache_dir(), **kwargs)
    if fp16 is None:
        fp16 = dev.type == "cuda"
    if fp16:   # bf16 where the GPU has it (no loss scaling needed), else fp16 with fastai's gradient scaler
        learn = learn.to_bf16() if dev.type == "cuda" and torch.cuda.is_bf16_supported() else learn.to_fp16()
    attach(learn, enabled=checkpoint)
    return learn


def fit_resumable(learn, epochs: int, lr, folder: str | Path, key_parts: dict, one_cycle: bool = True, **kwargs):
    """Fit a ``make_learner`` Learner with a checkpoint under ``folder`` keyed by ``key_parts`` (a dict of
    what determines the run: seed, settings, ...) and by the fit itself (see ``affectlab.checkpoint``): a
    rerun after an interruption continues after the last finished epoch and ends on the numbers of an
    uninterrupted fit; a rerun of a finished fit loads its final state without training; other parameters
    train afresh. Learners made by ``make_learner`` inside the course runner are checkpointed already."""
    from affectlab.checkpoint import Checkpoint

    if not any(isinstance(cb, Checkpoint) for cb in learn.cbs):
        learn.add_cb(Checkpoint(folder, key_parts))
    fit = learn.fit_one_cycle if one_cycle else learn.fit
    fit(epochs, lr, **kwargs)
    return learn


def predict(model, dl=None, device: str | torch.device | None = None) -> tuple[dict, dict]:
    """The one predict loop: predictions and targets of a whole (unshuffled) loader as dicts of tensors, in
    dataset order. ``model`` is a Learner (``dl`` defaults to its validation loader) or an ``nn.Module``;
    batches are ``(*inputs, y)`` — frames, clips, or videos with their lengths. A model returning a tensor
    gives ``{"out": ...}``, a plain target ``{"target": ...}``.

    A plain loop rather than fastai's ``get_preds``: that cannot reorder dicts and mistakes a one-head dict
    for a tuple (``detuplify``). Evaluation loaders are never shuffled, so their order is the dataset's.
    """
    if hasattr(model, "model") and hasattr(model, "dls"):       # a fastai Learner
        dl = dl if dl is not None else model.dls.valid
        model = model.model
    if dl is None:
        raise ValueError("predict(model, dl): a plain model needs the loader to predict")
    dev = resolve_device(device) if device is not None else next(
        (p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    preds: dict[str, list] = {}
    targs: dict[str, list] = {}
    with torch.no_grad():
        for batch in dl:
            *xb, y = batch
            out = model(*(x.to(dev) if torch.is_tensor(x) else x for x in xb))
            out = out if isinstance(out, dict) else {"out": out}
            y = y if isinstance(y, dict) else {"target": y}
            for k, v in out.items():
                preds.setdefault(k, []).append(v.detach().float().cpu())
            for k, v in y.items():
                targs.setdefault(k, []).append(v.detach().cpu())
    model.train(was_training)
    return ({k: torch.cat(v) for k, v in preds.items()}, {k: torch.cat(v) for k, v in targs.items()})
