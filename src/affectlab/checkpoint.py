"""Resumable training: a fit interrupted mid-way and re-run ends on exactly the numbers of an uninterrupted one.

To resume, re-run the same command with the same parameters (``python -m affectlab.course run --profile quick
--out runs/quick`` after Ctrl-C, a crash or a power cut; ``python -m affectlab.fit ... --resume``). The course
runner checkpoints each chapter under ``<out>/checkpoints/<chapter>/`` (the variable ``AFFECTLAB_CHECKPOINTS``,
the run's parameters in ``AFFECTLAB_CHECKPOINT_KEY``): every Learner ``affectlab.train.make_learner`` builds while
a folder is active gets a ``Checkpoint`` callback, which writes one file per fit after every epoch. On the re-run
each fit finds its file and

* if it is incomplete, continues after the last finished epoch with the model, optimiser, loss-function and
  gradient-scaler state, the schedule's position, the Recorder's history and every random state (torch CPU and
  CUDA, NumPy, Python ``random``, each DataLoader's shuffling ``rng``, augmentation ``gen`` and sampler
  generator) as they were then: the remaining epochs draw the same batches, augmentations and dropout;
* if it is complete, does not train: the final weights and the random states after training are loaded, so
  the code after the fit draws the same numbers as before.

A file's name hashes what determines its fit: the caller's key (the runner's: chapter, profile, parameters, the
chapter's code cells, ``affectlab.cache.code_key()``), the Learner's rank, its model's class and size, which fit
of it this is, the epochs, hyper-parameters and schedules, the data's sizes, the initial weights and every
random state at the start: any other run starts afresh (and leaves this one's files alone). Delete
``<out>/checkpoints`` to start from scratch. Files are written atomically (``affectlab.cache.atomic_save``) and
read with ``weights_only=True`` (random states are stored as tensors, numbers and strings); a file that cannot
be read, or is another run's, is a warning and a fresh start. Tests never resume from a user's run folder (the
variable is ignored under pytest); ``with checkpointing(folder, key_parts): ...`` activates a folder explicitly.

Under ``torchrun`` (a ``torch.distributed`` process group) the ranks act as one: rank 0 alone writes the file,
which holds every rank's random states (gathered) beside the model and optimiser, identical on every rank; on a
re-run every rank reads it, rank 0's view decides, and a rank that sees another state (no file, another epoch:
an ``--out`` not shared by every node) is an error on every rank, never a hang.

Only fastai's public callback API is used: the ``Checkpoint`` is the last callback at every event; a resumed fit
pauses the others (``Callback.run``) and cancels its finished epochs (``CancelEpochException``), so no callback
sees them again; a complete fit is cancelled (``CancelFitException``) once loaded.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from fastai.callback.core import Callback, CancelEpochException, CancelFitException
from fastai.callback.progress import ProgressCallback
from fastai.callback.schedule import ParamScheduler
from fastai.callback.tracker import TrackerCallback
from fastai.learner import Recorder
from fastai.optimizer import OptimWrapper
from fastcore.foundation import L
from torch import nn

from affectlab.cache import atomic_save, code_key
from affectlab.rng import capture_rng, restore_rng

ENV = "AFFECTLAB_CHECKPOINTS"
ENV_KEY = "AFFECTLAB_CHECKPOINT_KEY"
FORMAT = "affectlab-checkpoint-2"   # 2: the state stored as plain fields (1 held a JSON "meta" string)
# What a checkpoint keeps of the Learner's callbacks: the Recorder's history, the schedule's, a tracker's best.
KEPT = {Recorder: ("values", "lrs", "iters", "losses"), ParamScheduler: ("hps",),
        TrackerCallback: ("best", "wait", "new_best")}


@dataclass
class _Session:
    """A checkpoint folder, the key of the run that writes it, and how many Learners were made under it."""
    folder: Path
    key_parts: dict
    n_learners: int = 0


_CONTEXT: list[_Session] = []
_ENV_SESSION: dict[tuple, _Session] = {}


@contextlib.contextmanager
def checkpointing(folder: str | os.PathLike, key_parts: dict | None = None) -> Iterator[_Session]:
    """Within this block every Learner made by ``make_learner`` checkpoints its fits under ``folder``, keyed by
    ``key_parts`` (a JSON-able dict of what determines the run) and its own sub-key; numbered from 0."""
    session = _Session(Path(folder), dict(key_parts or {}))
    _CONTEXT.append(session)
    try:
        yield session
    finally:
        _CONTEXT.remove(session)


def session_from_env(environ=None) -> _Session | None:
    """The runner's session (``AFFECTLAB_CHECKPOINTS``; None when unset), one per process and value."""
    environ = os.environ if environ is None else environ
    folder, raw = environ.get(ENV), environ.get(ENV_KEY, "{}")
    if not folder:
        return None
    try:
        key = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{ENV_KEY} is not JSON ({e}): {raw[:200]!r}") from None
    key = key if isinstance(key, dict) else {"key": key}
    return _ENV_SESSION.setdefault((folder, raw), _Session(Path(folder), key))


def active_session() -> _Session | None:
    """The innermost ``checkpointing`` block, else the runner's variable (ignored under pytest), else None."""
    if _CONTEXT:
        return _CONTEXT[-1]
    if os.environ.get(ENV) and "PYTEST_CURRENT_TEST" in os.environ:
        warnings.warn(f"{ENV} is set but ignored under pytest: tests never resume from a run folder")
        return None
    return session_from_env()


def attach(learn, enabled: bool = True) -> Checkpoint | None:
    """``make_learner``'s hook: give ``learn`` a ``Checkpoint`` when a folder is active (returned, else None).
    Every Learner made while active counts, even with ``enabled=False``, so the n-th keeps its number."""
    session = active_session()
    if session is None:
        return None
    session.n_learners += 1
    if not enabled:
        return None
    learn.add_cb(cb := Checkpoint(session.folder, session.key_parts, session.n_learners - 1))
    return cb


def notebook_code_hash(notebook: str | os.PathLike) -> str:
    """A hash of a notebook's code cells (not outputs, markdown, nor papermill's injected parameters)."""
    raw = Path(notebook).read_bytes()
    try:
        cells = json.loads(raw).get("cells", [])
    except ValueError:       # not a notebook's JSON: its bytes are what identify it
        return hashlib.sha256(raw).hexdigest()[:16]
    return _hash(["".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code"
                  and "injected-parameters" not in c.get("metadata", {}).get("tags", [])])[:16]


def chapter_key(notebook: str | os.PathLike, profile: str, params: dict) -> dict:
    """The key the course runner gives a chapter's checkpoints: what determines its trainings."""
    return {"chapter": Path(notebook).stem, "profile": profile, "params": params,
            "code": notebook_code_hash(notebook), "affectlab": code_key()}


# torch.distributed itself, not affectlab.distributed (a layer above: it runs the Learners this module checkpoints)
def _ranks() -> tuple[int, int]:
    """(this process's rank, the number of processes) of a ``torch.distributed`` process group; (0, 1) without."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _gather(obj) -> list:
    """Every rank's ``obj`` in rank order (``[obj]`` in one process); every rank must call it."""
    n = _ranks()[1]
    if n == 1:
        return [obj]
    out = [None] * n
    torch.distributed.all_gather_object(out, obj)
    return out


def resume_point(views: list, file: Path) -> tuple | None:
    """What every rank does with a fit's checkpoint, from each rank's view of it (``None``: no usable file, else
    ``(epochs_done, complete)``), in rank order: rank 0's view, which every other rank must share. A rank that
    sees another state is an error raised on every rank alike (they all decide from the same gathered views)."""
    def says(v):
        return "sees no usable checkpoint" if v is None else f"would resume after epoch {v[0]}"
    odd = [r for r, v in enumerate(views) if v != views[0]]
    if odd:
        raise RuntimeError(f"checkpoint {file}: rank 0 {says(views[0])}, but "
                           + ", ".join(f"rank {r} {says(views[r])}" for r in odd)
                           + ": every rank must read the same checkpoint (an --out on a file system every node "
                             "shares); delete it to train afresh")
    return views[0]


def _jsonable(o):
    if isinstance(o, (np.ndarray, torch.Tensor)):
        return o.tolist()
    if isinstance(o, L):
        return list(o)
    return o.item() if isinstance(o, np.generic) else str(o)


def _hash(obj) -> str:
    """A hash of JSON-able data in which a tensor counts by its dtype, shape and bytes (weights, random states)."""
    def enc(o):
        if not isinstance(o, torch.Tensor):
            return _jsonable(o)
        t = o.detach().cpu().contiguous().reshape(-1)
        return [str(t.dtype), list(o.shape), hashlib.sha256(t.view(torch.uint8).numpy().tobytes()).hexdigest()]
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=enc).encode()).hexdigest()


def _plain(o):
    """``o`` with NumPy values made Python numbers and tensors, list-likes lists (weights_only refuses NumPy)."""
    if isinstance(o, dict):
        return {k: _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple, L)):
        return (tuple if type(o) is tuple else list)(_plain(v) for v in o)
    if isinstance(o, np.ndarray):
        return torch.from_numpy(o.copy())
    return o.item() if isinstance(o, np.generic) else o


def _opt_state(opt) -> dict:
    """The optimiser's state: fastai's own format, or a wrapped PyTorch optimiser's (``OptimWrapper``)."""
    return {"torch": _plain(opt.opt.state_dict())} if isinstance(opt, OptimWrapper) else _plain(opt.state_dict())


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint file's contents, read with ``weights_only=True``; another format is a ValueError."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ValueError(f"not an {FORMAT} file")
    return ck


def _rng_key(dls):
    """The random states in a fit's key: this process's, or under torchrun every rank's (the same key on each)."""
    hashes = _gather(_hash(capture_rng(dls)))
    return hashes[0] if len(hashes) == 1 else _hash(hashes)


def _say(line: str) -> None:
    if _ranks()[0] == 0:      # one line for the run, not one per rank
        print(line)


class Checkpoint(Callback):
    """Checkpoints every fit of its Learner under ``folder`` after each epoch, resumes or skips it (see the
    module); ``lr_find``, ``validate`` and ``get_preds`` are left alone. ``last_action``: what the last fit did
    ('fresh', 'resumed' or 'skipped')."""
    order = 1100    # the last at every event: keys and loads after the others' before_fit, saves after all

    def __init__(self, folder: str | os.PathLike, key_parts: dict | None = None, index: int = 0):
        self.folder, self.key_parts, self.index = Path(folder), dict(key_parts or {}), index
        self.n_fit, self.file, self.last_action, self.active, self.start, self.paused = 0, None, None, False, 0, []

    def own_event(self) -> bool:
        """Whether this event is one of our fits': not ``lr_find``'s, nor ``validate``'s or ``get_preds``' (which
        send before_fit ... after_fit too, holding ``learn.lock``)."""
        lock = getattr(self.learn, "lock", None)
        return not (hasattr(self.learn, "lr_finder") or (lock is not None and lock.locked()))

    def named_cbs(self):
        """(name, callback): the class name and rank among its class's callbacks (stable as others come and go)."""
        seen: dict[str, int] = {}
        for cb in self.learn.cbs:
            seen[n] = seen.get(n := type(cb).__name__, -1) + 1
            yield f"{n}.{seen[n]}", cb

    def fit_key(self) -> dict:
        """What determines the fit about to start (the others' ``before_fit`` done): its file's name hashes it."""
        learn, model = self.learn, self.learn.model
        # fit_one_cycle's learning rates live in its ParamScheduler: a schedule is keyed by its values
        scheds = {f"{n}.{k}": [f(float(p)) for p in np.linspace(0, 1, 101)]
                  for n, cb in self.named_cbs() for k, f in sorted(getattr(cb, "scheds", {}).items())}
        data = [[len(dl.dataset), getattr(dl, "bs", None)] if hasattr(getattr(dl, "dataset", None), "__len__")
                else None for dl in getattr(learn.dls, "loaders", [])]
        key = {"run": self.key_parts, "learner": self.index, "model": type(model).__name__, "fit": self.n_fit,
               "n_params": sum(p.numel() for p in model.parameters()), "n_epoch": learn.n_epoch, "data": data,
               "hypers": learn.opt.hypers, "schedules": scheds, "loss": type(learn.loss_func).__name__,
               "weights": _hash(model.state_dict()), "rng": _rng_key(learn.dls)}
        return json.loads(json.dumps(key, default=_jsonable))

    def file_for(self, key: dict) -> Path:
        """The file of this Learner's next fit with ``key`` (``fit_key()``)."""
        model = type(self.learn.model).__name__
        return self.folder / f"learner{self.index:02d}-{model}-fit{self.n_fit}-{_hash(key)[:16]}.pt"

    def before_fit(self):
        if not self.own_event():
            return
        self.key = self.fit_key()
        self.file, self.start, self.at_epoch, self.paused, self.logged = self.file_for(self.key), 0, 0, [], []
        self.n_fit, self.active, self.last_action = self.n_fit + 1, True, "fresh"
        ck = self.load_matching()
        # under torchrun every rank reads the file rank 0 wrote: rank 0's view decides, any other is an error
        resume_point(_gather(None if ck is None else (ck["epochs_done"], ck["complete"])), self.file)
        if ck is None:
            return
        try:
            self.restore(ck)
        except Exception as e:
            raise RuntimeError(f"checkpoint {self.file} matched this run but could not be restored ({type(e).__name__}"
                               f": {e}); the Learner is in an undefined state: delete the file to train afresh") from e
        self.start, self.last_action = ck["epochs_done"], "skipped" if ck["complete"] else "resumed"
        if ck["complete"]:
            self.active = False
            _say(f"checkpoint: {self.file.name} is complete ({self.start}/{ck['n_epoch']} epochs): loaded its final "
                 "state, training skipped")
            raise CancelFitException
        _say(f"checkpoint: resuming {self.file.name} after epoch {self.start}/{ck['n_epoch']}")
        # no other callback sees the finished epochs, but the progress bar (it counts from epoch 0)
        self.paused = [(cb, cb.run) for cb in self.learn.cbs if cb is not self and not isinstance(cb, ProgressCallback)]
        for cb, _ in self.paused:
            cb.run = False

    def before_epoch(self):
        if self.active and self.own_event():
            self.at_epoch = self.learn.epoch    # (a validate() inside the fit would reset learn.epoch)
            if self.at_epoch < self.start:
                raise CancelEpochException

    def after_epoch(self):
        epoch, rec = self.at_epoch, getattr(self.learn, "recorder", None)
        if not (self.active and self.own_event()) or epoch < self.start - 1:
            return
        if epoch == self.start - 1:       # the last finished epoch: the others run from the next one
            for cb, run in self.paused:
                cb.run = run
            return
        if rec is not None and getattr(rec, "log", None) is not None:
            self.logged.append(_plain(list(rec.log)))
        self.save(epoch + 1, complete=epoch + 1 == self.learn.n_epoch)

    def after_cancel_fit(self):       # stopped early by a callback (EarlyStopping ...): that is its end
        if self.active and self.own_event():
            self.save(self.at_epoch, complete=True)

    def after_fit(self):
        if self.own_event():
            self.active = False

    def save(self, epochs_done: int, complete: bool) -> None:
        """The fit's state written to its file: by rank 0 alone under torchrun (every rank gathers its random
        states into it first)."""
        state = self.state(epochs_done, complete)
        if _ranks()[0] == 0:
            atomic_save(state, self.file)

    def state(self, epochs_done: int, complete: bool) -> dict:
        """The checkpoint of the fit as it is now, after ``epochs_done`` epochs."""
        learn, rec = self.learn, getattr(self.learn, "recorder", None)
        kept = {n: {a: _plain(getattr(cb, a)) for a in next((v for k, v in KEPT.items() if isinstance(cb, k)), ())
                    if a in vars(cb)} for n, cb in self.named_cbs()}
        ck = {"format": FORMAT, "key": self.key, "epochs_done": epochs_done, "n_epoch": learn.n_epoch,
              "complete": complete, "model": learn.model.state_dict(), "opt": _opt_state(learn.opt),
              "train_iter": learn.train_iter, "log": self.logged, "cbs": {n: v for n, v in kept.items() if v},
              "smooth_loss": (rec.smooth_loss.count, rec.smooth_loss.val) if rec is not None else None}
        if isinstance(learn.loss_func, nn.Module):
            ck["loss"] = learn.loss_func.state_dict()
        if hasattr(getattr(learn, "scaler", None), "state_dict"):
            ck["scaler"] = _plain(learn.scaler.state_dict())
        rngs = _gather(capture_rng(learn.dls))    # [this process's] in one process
        return {**ck, **({"rng": rngs[0]} if len(rngs) == 1 else {"ranks": len(rngs), "rng": rngs})}

    def restore(self, ck: dict) -> None:
        """Set the Learner, its callbacks and every random state as ``ck`` holds them."""
        learn, rec = self.learn, getattr(self.learn, "recorder", None)
        learn.model.load_state_dict(ck["model"])
        if isinstance(learn.opt, OptimWrapper):     # a PyTorch optimiser in fastai's wrapper: its own format
            learn.opt.opt.load_state_dict(ck["opt"]["torch"])
        else:
            params = [p for p, *_ in learn.opt.all_params()]
            state = [{k: v.to(p.device) if isinstance(v, torch.Tensor) else v for k, v in s.items()}
                     for p, s in zip(params, ck["opt"]["state"], strict=True)]
            learn.opt.load_state_dict({"state": state, "hypers": L(ck["opt"]["hypers"])})
        if "loss" in ck:
            learn.loss_func.load_state_dict(ck["loss"])
        if "scaler" in ck and getattr(learn, "scaler", None) is not None:
            learn.scaler.load_state_dict(ck["scaler"])
        learn.train_iter, self.logged = ck["train_iter"], ck["log"]
        for name, cb in self.named_cbs():
            for a, v in ck["cbs"].get(name, {}).items():
                setattr(cb, a, v)
        if rec is not None:
            rec.smooth_loss.count, rec.smooth_loss.val = ck["smooth_loss"]
            learn.final_record = list(rec.values[-1]) if rec.values else None
        for row in self.logged:            # the finished epochs' table rows, as they were first printed
            learn.logger(row)
        rank, n = _ranks()
        if ck.get("ranks", 1) != n:
            raise RuntimeError(f"it holds the random states of {ck.get('ranks', 1)} process(es); this run has {n}")
        restore_rng(ck["rng"][rank] if n > 1 else ck["rng"], learn.dls)   # last: nothing above draws a number

    def load_matching(self) -> dict | None:
        """The checkpoint of this very fit; None to start afresh (with a warning if a file is there but unusable)."""
        if not self.file.is_file():
            return None
        try:
            ck = load_checkpoint(self.file)
            if ck.get("key") != self.key:
                raise ValueError("it belongs to another run (its key differs)")
            return ck
        except Exception as e:  # noqa: BLE001  (any unusable file is a fresh start)
            warnings.warn(f"checkpoint {self.file} is unusable ({type(e).__name__}: {e}); training afresh and "
                          "overwriting it", stacklevel=2)
            return None
