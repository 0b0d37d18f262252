"""Resumable training: a run interrupted mid-way and re-run ends on exactly the numbers of an uninterrupted one.

How a user resumes
------------------
Re-run the same command, with the same parameters::

    python -m affectlab.course run --profile quick --out runs/quick      # interrupted (Ctrl-C, crash, power)
    python -m affectlab.course run --profile quick --out runs/quick      # the same again: it resumes

The course runner gives each chapter a checkpoint folder, ``<out>/checkpoints/<chapter>/`` (through the
environment variable ``AFFECTLAB_CHECKPOINTS``, with the run's parameters in ``AFFECTLAB_CHECKPOINT_KEY``).
Every Learner that ``affectlab.train.make_learner`` builds while a folder is active gets a ``Checkpoint``
callback; each of its fits writes one file after every epoch. On the re-run the chapter's code runs from
the top again; each fit then finds its file and

* continues after the last finished epoch when the file is incomplete — model, optimiser, loss-function
  and gradient-scaler state, the schedule's position (epoch and iteration: ``fit_one_cycle``'s schedule is a
  function of them), the Recorder's history and every random state (torch CPU and CUDA, NumPy, Python
  ``random``, and each DataLoader's own shuffling ``rng``, augmentation ``gen`` and sampler generator) are
  restored as they were after that epoch, so the remaining epochs draw the same batches, augmentations
  and dropout masks;
* skips its training entirely when the file is complete: the final weights are loaded and every random
  state is set as it was after training, so the chapter's later code draws the same numbers as before.

A file belongs to one run only. Its name holds a hash of everything that determines the fit: the caller's
key (the runner's: chapter, profile, parameters, a hash of the chapter's code cells and of affectlab's
source), the Learner's position in the chapter (the n-th one made), its model class and parameter count,
which fit of that Learner it is, the epochs and hyper-parameters asked for, the data's sizes, a hash of the
initial weights and of every random state at the start of the fit. A run with another seed, other settings,
other data, other code or other starting weights therefore starts afresh (and leaves the other run's files
alone); only an identical run resumes. Delete ``<out>/checkpoints`` to force a run from scratch.

Files are written atomically (a temporary file, fsync, ``os.replace``): a run killed while saving leaves the
previous epoch's file intact. They are read with ``torch.load(weights_only=True)`` — nothing is unpickled:
random states are stored as tensors, numbers and strings. A file that cannot be read, or that belongs to
another run, is a warning naming it and a fresh start, never garbage loaded silently.

Tests and nbval never resume from a user's run folder: only the course runner sets the variable, and it is
ignored (with a warning) inside pytest. In code, ``with checkpointing(folder, key_parts): ...`` activates a
folder explicitly.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from fastai.callback.core import Callback, CancelEpochException, CancelFitException
from fastai.learner import Learner
from fastcore.foundation import L
from torch import nn

ENV = "AFFECTLAB_CHECKPOINTS"
ENV_KEY = "AFFECTLAB_CHECKPOINT_KEY"
FORMAT = "affectlab-checkpoint-1"


# --- activation ------------------------------------------------------------------------------------------

class _Session:
    """A checkpoint folder with the key of the run that writes it, counting the Learners made under it."""

    def __init__(self, folder: str | os.PathLike, key_parts: dict | None):
        self.folder = Path(folder)
        self.key_parts = dict(key_parts or {})
        self.n_learners = 0


_CONTEXT: list[_Session] = []
_ENV_SESSION: dict[tuple, _Session] = {}


@contextlib.contextmanager
def checkpointing(folder: str | os.PathLike, key_parts: dict | None = None) -> Iterator[_Session]:
    """Within this block every Learner made by ``make_learner`` checkpoints its fits under ``folder``,
    keyed by ``key_parts`` (a JSON-serialisable dict of whatever determines the run: seed, settings, ...)
    plus the Learner's own sub-key. Learners are numbered from 0 on entering the block, as in a fresh
    process."""
    session = _Session(folder, key_parts)
    _CONTEXT.append(session)
    try:
        yield session
    finally:
        _CONTEXT.remove(session)


def session_from_env(environ=None) -> _Session | None:
    """The session the course runner asked for through ``AFFECTLAB_CHECKPOINTS`` (None when unset). One
    per process and value: the n-th Learner of a chapter's kernel is the n-th of the session."""
    environ = os.environ if environ is None else environ
    folder = environ.get(ENV)
    if not folder:
        return None
    raw = environ.get(ENV_KEY, "{}")
    try:
        key = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{ENV_KEY} is not JSON ({e}): {raw[:200]!r}") from None
    ident = (folder, raw)
    if ident not in _ENV_SESSION:
        _ENV_SESSION[ident] = _Session(folder, key if isinstance(key, dict) else {"key": key})
    return _ENV_SESSION[ident]


def active_session() -> _Session | None:
    """The innermost ``checkpointing`` block, else the runner's environment variable (ignored under pytest,
    so a test never resumes from a user's run folder), else None."""
    if _CONTEXT:
        return _CONTEXT[-1]
    if os.environ.get(ENV) and "PYTEST_CURRENT_TEST" in os.environ:
        warnings.warn(f"{ENV} is set but ignored under pytest: tests never resume from a run folder")
        return None
    return session_from_env()


def attach(learn, enabled: bool = True):
    """Called by ``make_learner``: give ``learn`` a ``Checkpoint`` when a folder is active. Returns it or None.
    Every Learner made while active counts (so the n-th one keeps its number), even with ``enabled=False``."""
    session = active_session()
    if session is None:
        return None
    index = session.n_learners
    session.n_learners += 1
    if not enabled:
        return None
    cb = Checkpoint(session.folder, session.key_parts, index)
    learn.add_cb(cb)
    return cb


# --- keys ------------------------------------------------------------------------------------------------

def _hash_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def source_hash(package_dir: str | os.PathLike | None = None) -> str:
    """A hash of every ``*.py`` file of the affectlab package (names and contents)."""
    root = Path(package_dir) if package_dir else Path(__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def notebook_code_hash(notebook: str | os.PathLike) -> str:
    """A hash of a notebook's code cells (sources only: outputs, markdown and papermill's injected
    parameters cell do not count)."""
    raw = Path(notebook).read_bytes()
    try:
        doc = json.loads(raw)
    except ValueError:       # not a notebook's JSON: its bytes are what identify it
        return hashlib.sha256(raw).hexdigest()[:16]
    cells = [c for c in doc.get("cells", []) if c.get("cell_type") == "code"
             and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    srcs = ["".join(c["source"]) if isinstance(c.get("source"), list) else str(c.get("source", "")) for c in cells]
    return _hash_json(srcs)[:16]


def chapter_key(notebook: str | os.PathLike, profile: str, params: dict) -> dict:
    """The key the course runner gives a chapter's checkpoints: what determines its trainings."""
    return {"chapter": Path(notebook).stem, "profile": profile, "params": params,
            "code": notebook_code_hash(notebook), "affectlab": source_hash()}


def _tensor_digest(tensors: dict) -> str:
    h = hashlib.sha256()
    for k, v in tensors.items():
        h.update(f"{k}:{v.dtype}:{tuple(v.shape)}\0".encode())
        t = v.detach().cpu().contiguous().reshape(-1)
        if t.numel():
            h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# --- random states, stored without pickle ----------------------------------------------------------------

def _encode_rng(obj) -> dict | None:
    """A weights_only-loadable form of a random generator's state (None for anything else)."""
    if isinstance(obj, random.Random):
        version, state, gauss = obj.getstate()
        return {"kind": "python", "version": int(version), "state": torch.tensor(state, dtype=torch.int64),
                "gauss": gauss}
    if isinstance(obj, np.random.RandomState):
        name, key, pos, has_gauss, gauss = obj.get_state(legacy=True)
        return {"kind": "numpy", "name": str(name), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                "has_gauss": int(has_gauss), "gauss": float(gauss)}
    if isinstance(obj, np.random.Generator):
        return {"kind": "numpy_generator", "json": json.dumps(obj.bit_generator.state, default=_jsonable)}
    if isinstance(obj, torch.Generator):
        return {"kind": "torch", "device": str(obj.device), "state": obj.get_state()}
    return None


def _jsonable(o):
    if isinstance(o, (np.ndarray, torch.Tensor)):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"cannot store {type(o).__name__} in a checkpoint")


def _decode_rng_into(obj, enc: dict) -> None:
    kind = enc["kind"]
    if kind == "python":
        obj.setstate((enc["version"], tuple(int(v) for v in enc["state"].tolist()), enc["gauss"]))
    elif kind == "numpy":
        obj.set_state((enc["name"], enc["key"].numpy().astype(np.uint32), enc["pos"], enc["has_gauss"], enc["gauss"]))
    elif kind == "numpy_generator":
        state = json.loads(enc["json"])
        if isinstance(state.get("state", {}).get("key"), list):
            state["state"]["key"] = np.asarray(state["state"]["key"], np.uint32)
        obj.bit_generator.state = state
    elif kind == "torch":
        obj.set_state(enc["state"])
    else:
        raise ValueError(f"unknown random state kind {kind!r}")


def _loader_rngs(dls) -> dict[str, Any]:
    """Every random generator a DataLoader draws from: fastai's shuffling ``rng``, affectlab's augmentation
    ``gen``, any other generator attribute, and its sampler's ``generator`` — keyed '<loader>.<attr>'."""
    loaders = list(getattr(dls, "loaders", None) or [])
    out = {}
    for i, dl in enumerate(loaders):
        inner = getattr(dl, "dl", None)      # a loader wrapped for data-parallel training (fastai's DistributedDL)
        for owner, prefix in ((dl, f"{i}"), (getattr(dl, "sampler", None), f"{i}.sampler"),
                              (inner, f"{i}.dl"), (getattr(inner, "sampler", None), f"{i}.dl.sampler")):
            if owner is None or not hasattr(owner, "__dict__"):
                continue
            for name, val in sorted(vars(owner).items()):
                if isinstance(val, (random.Random, np.random.RandomState, np.random.Generator, torch.Generator)):
                    out[f"{prefix}.{name}"] = val
    return out


def capture_rng(dls=None) -> dict:
    """Every random state of this process (torch CPU and CUDA, NumPy, Python) and of ``dls``' loaders."""
    version, st, gauss = random.getstate()   # the hidden instance behind the module-level functions
    state = {"torch": torch.get_rng_state(), "numpy": _encode_rng(np.random.mtrand._rand),
             "python": {"kind": "python", "version": int(version), "state": torch.tensor(st, dtype=torch.int64),
                        "gauss": gauss}}
    state["cuda"] = list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else []
    state["loaders"] = {k: _encode_rng(v) for k, v in _loader_rngs(dls).items()} if dls is not None else {}
    return state


def restore_rng(state: dict, dls=None) -> None:
    """Set every random state captured by ``capture_rng`` (a generator missing on either side is an error)."""
    torch.set_rng_state(state["torch"])
    _decode_rng_into(np.random.mtrand._rand, state["numpy"])
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    if state["cuda"]:
        if not torch.cuda.is_available() or torch.cuda.device_count() != len(state["cuda"]):
            raise RuntimeError(f"the checkpoint holds the random states of {len(state['cuda'])} CUDA device(s); "
                               f"this machine has {torch.cuda.device_count() if torch.cuda.is_available() else 0}")
        torch.cuda.set_rng_state_all(state["cuda"])
    if dls is not None:
        have = _loader_rngs(dls)
        if sorted(have) != sorted(state["loaders"]):
            raise RuntimeError(f"the data loaders' random generators {sorted(have)} are not the checkpoint's "
                               f"{sorted(state['loaders'])}")
        for k, gen in have.items():
            _decode_rng_into(gen, state["loaders"][k])


def _rng_digest(state: dict) -> str:
    h = hashlib.sha256()

    def walk(prefix, v):
        if isinstance(v, dict):
            for k in sorted(v):
                walk(f"{prefix}.{k}", v[k])
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                walk(f"{prefix}[{i}]", x)
        elif isinstance(v, torch.Tensor):
            h.update(prefix.encode() + _tensor_digest({"": v}).encode())
        else:
            h.update(f"{prefix}={v!r}".encode())

    walk("", state)
    return h.hexdigest()


# --- plain values for weights_only ----------------------------------------------------------------------

def _plain(o):
    """``o`` with NumPy scalars and arrays made Python numbers and tensors (weights_only refuses NumPy)."""
    if isinstance(o, dict):
        return {k: _plain(v) for k, v in o.items()}
    if isinstance(o, L):
        return [_plain(v) for v in o]
    if isinstance(o, tuple) and type(o) is tuple:
        return tuple(_plain(v) for v in o)
    if isinstance(o, (list, tuple)):       # lists and list-likes (fastcore's L) become lists
        return [_plain(v) for v in o]
    if isinstance(o, np.ndarray):
        return torch.from_numpy(o.copy())
    if isinstance(o, np.generic):
        return o.item()
    return o


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint file's contents, read without unpickling (``weights_only=True``); a file of another
    format is a ValueError."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ValueError(f"not an {FORMAT} file")
    return ck


# --- the callback and the Learner that honours it ------------------------------------------------------

class Checkpoint(Callback):
    """Checkpoint every fit of its Learner under ``folder`` (see the module's docstring), once per epoch.

    The epoch loop itself is ``ResumableLearner._do_fit`` (what ``make_learner`` builds): a resumed fit starts
    at its first unfinished epoch, so no callback sees the finished epochs again (a ``SaveModelCallback``
    does not re-save them; ``best`` values of tracker callbacks are restored). ``lr_find`` is never
    checkpointed; ``validate`` / ``get_preds`` are untouched."""

    order = 55

    def __init__(self, folder: str | os.PathLike, key_parts: dict | None = None, index: int = 0):
        self.folder, self.key_parts, self.index = Path(folder), dict(key_parts or {}), index
        self.n_fit = 0
        self.file: Path | None = None
        self.last_action: str | None = None   # 'fresh', 'resumed', 'skipped' — what the last fit did

    def before_fit(self):
        if not isinstance(self.learn, ResumableLearner):
            raise TypeError("Checkpoint needs a Learner from affectlab.train.make_learner (a ResumableLearner): "
                            "a plain fastai Learner would ignore it")

    # -- keys --
    def _key(self) -> dict:
        learn = self.learn
        model = learn.model
        dls = learn.dls

        def size(dl):
            try:
                return [len(dl.dataset), getattr(dl, "bs", None)]
            except TypeError:
                return None

        # fit_one_cycle's learning rates live in its ParamScheduler (the optimiser holds fit's default until
        # the first batch): a schedule is keyed by its values along the fit.
        scheds = {f"{cb_name}.{name}": [_plain(f(float(p))) for p in np.linspace(0, 1, 101)]
                  for cb_name, cb in _named_cbs(learn) for name, f in sorted(getattr(cb, "scheds", {}).items())}
        return {"run": self.key_parts, "learner": self.index, "model": type(model).__name__,
                "n_params": sum(p.numel() for p in model.parameters()), "fit": self.n_fit,
                "n_epoch": learn.n_epoch, "hypers": json.loads(json.dumps(_plain(learn.opt.hypers), default=str)),
                "schedules": json.loads(json.dumps(scheds, default=_jsonable)),
                "loss": type(learn.loss_func).__name__, "data": [size(dl) for dl in getattr(dls, "loaders", [])],
                "weights": _tensor_digest(model.state_dict()), "rng": _rng_digest(capture_rng(dls))}

    # -- state --
    def _state(self, epochs_done: int, complete: bool) -> dict:
        learn = self.learn
        rec = getattr(learn, "recorder", None)
        sched = [cb for cb in learn.cbs if type(cb).__name__ == "ParamScheduler"]
        trackers = {name: {a: _plain(getattr(cb, a)) for a in ("best", "wait", "new_best")
                           if isinstance(getattr(cb, a, None), (int, float, np.generic))}
                    for name, cb in _named_cbs(learn)}
        meta = {"key": self.key, "epochs_done": epochs_done, "n_epoch": learn.n_epoch, "complete": complete,
                "epoch": learn.epoch, "train_iter": getattr(learn, "train_iter", 0),
                "trackers": {k: v for k, v in trackers.items() if v},
                "hps": {k: [float(x) for x in v] for k, v in sched[0].hps.items()} if sched else None}
        ck = {"format": FORMAT, "model": learn.model.state_dict(), "opt": _plain(learn.opt.state_dict()),
              "rng": capture_rng(learn.dls)}
        if isinstance(learn.loss_func, nn.Module):
            ck["loss"] = learn.loss_func.state_dict()
        scaler = getattr(learn, "scaler", None)
        if scaler is not None and hasattr(scaler, "state_dict"):
            ck["scaler"] = _plain(scaler.state_dict())
        if rec is not None:
            meta["recorder"] = {"values": _plain([list(v) for v in rec.values]), "lrs": [float(x) for x in rec.lrs],
                                "iters": [int(x) for x in rec.iters], "count": rec.smooth_loss.count,
                                "log": [_plain(list(r)) for r in self.logged]}
            ck["recorder"] = {"losses": torch.stack([torch.as_tensor(x).float().cpu() for x in rec.losses])
                              if rec.losses else torch.zeros(0),
                              "smooth_val": torch.as_tensor(rec.smooth_loss.val).detach().cpu()}
        ck["meta"] = json.dumps(meta, default=_jsonable)
        return ck

    def _restore(self, ck: dict, meta: dict) -> None:
        learn = self.learn
        learn.model.load_state_dict(ck["model"])
        dev = {p: p.device for p, *_ in learn.opt.all_params()}
        sd = ck["opt"]
        state = [{k: v.to(dev[p]) if isinstance(v, torch.Tensor) else v for k, v in s.items()}
                 for (p, *_), s in zip(learn.opt.all_params(), sd["state"])]
        learn.opt.load_state_dict({"state": state, "hypers": L(sd["hypers"])})
        if "loss" in ck and isinstance(learn.loss_func, nn.Module):
            learn.loss_func.load_state_dict(ck["loss"])
        if "scaler" in ck and getattr(learn, "scaler", None) is not None:
            learn.scaler.load_state_dict(ck["scaler"])
        learn.train_iter = meta["train_iter"]
        rec = getattr(learn, "recorder", None)
        if rec is not None and "recorder" in meta:
            r = meta["recorder"]
            dev0 = next(iter(dev.values()), torch.device("cpu"))
            rec.values = [list(v) for v in r["values"]]
            rec.lrs, rec.iters = list(r["lrs"]), list(r["iters"])
            rec.losses = [x.to(dev0) for x in ck["recorder"]["losses"]]
            rec.smooth_loss.count = r["count"]
            rec.smooth_loss.val = ck["recorder"]["smooth_val"].to(dev0)
            if rec.values:
                learn.final_record = list(rec.values[-1])
            self.logged = [list(row) for row in r["log"]]
            for row in self.logged:        # the finished epochs' table rows, as they were first printed
                learn.logger(row)
        if meta.get("hps") is not None:
            for cb in learn.cbs:
                if type(cb).__name__ == "ParamScheduler":
                    cb.hps = {k: list(v) for k, v in meta["hps"].items()}
        for name, cb in _named_cbs(learn):
            for a, v in meta.get("trackers", {}).get(name, {}).items():
                setattr(cb, a, v)
        restore_rng(ck["rng"], learn.dls)   # last: nothing above draws a random number

    def _load_matching(self) -> tuple[dict, dict] | None:
        """The checkpoint of this very fit, validated against the Learner; None (with a warning when a file
        is there but unusable) to start afresh."""
        path = self.file
        if not path.is_file():
            return None
        try:
            ck = load_checkpoint(path)
            meta = json.loads(ck["meta"])
            if meta.get("key") != self.key:
                raise ValueError("it belongs to another run (its key differs)")
            model_sd = self.learn.model.state_dict()
            if list(ck["model"]) != list(model_sd) or any(ck["model"][k].shape != v.shape for k, v in model_sd.items()):
                raise ValueError("its model weights do not fit this model")
            n_params = sum(1 for _ in self.learn.opt.all_params())
            if len(ck["opt"]["state"]) != n_params or len(ck["opt"]["hypers"]) != len(self.learn.opt.hypers):
                raise ValueError("its optimiser state does not fit this optimiser")
        except Exception as e:
            warnings.warn(f"checkpoint {path} is unusable ({type(e).__name__}: {e}); training afresh and "
                          "overwriting it", stacklevel=2)
            return None
        return ck, meta

    def file_for(self, key: dict) -> Path:
        """The file of this Learner's next fit with ``key`` (``_key()``; a command can ask before fitting
        whether there is one to resume)."""
        name = f"learner{self.index:02d}-{type(self.learn.model).__name__}-fit{self.n_fit}-{_hash_json(key)[:16]}.pt"
        return self.folder / name

    def _fit(self):
        """The epoch loop of a checkpointed fit (called by ``ResumableLearner._do_fit``)."""
        learn = self.learn
        self.key = self._key()
        self.file = self.file_for(self.key)
        self.n_fit += 1
        self.logged: list = []
        start = 0
        found = self._load_matching()
        if found is not None:
            ck, meta = found
            try:
                self._restore(ck, meta)
            except Exception as e:
                raise RuntimeError(f"checkpoint {self.file} matched this run but could not be restored "
                                   f"({type(e).__name__}: {e}); the Learner is in an undefined state — delete "
                                   "the file to train afresh") from e
            start = meta["epochs_done"]
            if meta["complete"]:
                self.last_action = "skipped"
                print(f"checkpoint: {self.file.name} is complete ({meta['epochs_done']}/{meta['n_epoch']} epochs): "
                      "loaded its final state, training skipped")
                return
            self.last_action = "resumed"
            print(f"checkpoint: resuming {self.file.name} after epoch {start}/{learn.n_epoch}")
        else:
            self.last_action = "fresh"
        epoch = start
        try:
            for epoch in range(start, learn.n_epoch):
                learn.epoch = epoch
                learn._with_events(learn._do_epoch, "epoch", CancelEpochException)
                self._log_row()
                _atomic_save(self._state(epoch + 1, complete=epoch + 1 == learn.n_epoch), self.file)
        except CancelFitException:   # stopped early by a callback (EarlyStopping ...): that is its end
            _atomic_save(self._state(epoch, complete=True), self.file)
            raise

    def _log_row(self):
        rec = getattr(self.learn, "recorder", None)
        if rec is not None and getattr(rec, "log", None) is not None:
            self.logged.append([x.item() if isinstance(x, torch.Tensor) else x for x in rec.log])


def _named_cbs(learn):
    """(name, callback): the class name with its rank among callbacks of that class (stable when others,
    e.g. ones passed to a single fit, come and go)."""
    seen: dict[str, int] = {}
    for cb in learn.cbs:
        n = type(cb).__name__
        seen[n] = seen.get(n, -1) + 1
        yield f"{n}.{seen[n]}", cb


class ResumableLearner(Learner):
    """A fastai Learner whose fits honour a ``Checkpoint`` callback (without one, exactly a Learner)."""

    def _do_fit(self):
        cb = next((c for c in self.cbs if isinstance(c, Checkpoint)), None)
        if cb is None or hasattr(self, "lr_finder"):
            return super()._do_fit()
        return cb._fit()
