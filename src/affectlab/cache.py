"""The one cache of the course: one way to key a cached result, one rule for when it is stale, one atomic
writer. Every trained model, feature table, claim result and checkpoint under ``data/cache`` (and every
``fit`` checkpoint) is keyed and written here.

A cached result is reused only while everything that determines it is unchanged:

- **what it was computed from** — the settings, the seed, the device type, the rows (``rows_key``: each file's
  identity and every label), the data (``data_key``: the synthetic world's content hash, or a real root's
  label files and folder listings), the weights of a frozen model (``weights_digest`` in ``train``);
- **the code that computes it** — ``code_key(recipe)``: the package's training code (every module but those
  that cannot change a trained number, and but the other papers' recipes). This is the one invalidation rule:
  no version number to bump by hand, no list of modules that drifts from what the code imports.

A real file is known by its identity — size, modification time and inode — never by its path alone: a frame
replaced under the same name is another input. Writes go to a temporary file of this process that is
renamed over the target, so a killed run never leaves a half-written cache that later loads as garbage.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable

import torch

from affectlab.paths import cache_dir
from affectlab.rng import capture_rng, restore_rng

# Modules that cannot change a trained number (commands, display, other tools): left out of ``code_key`` so
# that editing them keeps every cached result.
NOT_TRAINING = frozenset({"cache.py", "claims.py", "course.py", "spread.py", "checks.py", "fit.py", "distributed.py",
                          "video.py", "explain.py", "faces.py", "realface.py", "data/report.py", "paths.py",
                          # pages, submission files and frame folders: never a trained number
                          "results.py", "submit.py", "frames.py"})
# File suffixes that hold labels in some release (Aff-Wild2's txt, AffectNet's csv and npy, ExpW's lst, ...).
LABEL_SUFFIXES = frozenset({".txt", ".csv", ".lst", ".npy", ".json", ".mat"})


def key(*parts) -> str:
    """A short stable hash of anything JSON-serialisable (settings, data keys, model names)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _identity(p: str | os.PathLike) -> str:
    try:
        st = os.stat(p)
    except OSError:
        return "missing"
    # ctime too: even a file whose mtime was restored after a rewrite gets a new one
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def files_key(paths: Iterable[str | os.PathLike]) -> str:
    """A short hash of the files' identities (path, size, mtime, inode; a missing file hashes as missing), in
    order, without reading them: the key of anything computed from those files."""
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{os.fspath(p)}\0{_identity(p)}\n".encode())
    return h.hexdigest()[:16]


def rows_key(df) -> str:
    """A short hash of a frame table's rows: their files (``files_key``) and every numeric label column."""
    labels = df.drop(columns=[c for c in ("path",) if c in df]).select_dtypes("number")
    return key(files_key(df["path"].tolist()), hashlib.sha256(labels.to_numpy().tobytes()).hexdigest(),
               list(labels.columns))


def tensors_key(tensors: dict) -> str:
    """A short hash of a dict of tensors or arrays — names, shapes, dtypes and bytes: the key of anything
    computed from data already in memory (cached features, cached maps)."""
    import numpy as np

    h = hashlib.sha256()
    for name in sorted(tensors):
        v = tensors[name]
        a = np.ascontiguousarray(v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
        h.update(f"{name}\0{a.shape}\0{a.dtype}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def data_key(root: str | os.PathLike) -> str:
    """What a data root holds, for the keys of results computed from a whole dataset (the face feature model,
    the claims): the synthetic world's content hash (its generator's manifest), or for real data a hash over
    every label-like file under ``root`` (``LABEL_SUFFIXES``: path, size, mtime, inode) and every folder's
    path, mtime and entry count (adding, removing or renaming an image changes its folder's mtime). Images
    are not stat'ed one by one (AffectNet holds ~450k); results computed from given rows key those rows
    (``rows_key``) besides."""
    root = Path(root)
    manifest = root / "manifest.json"
    if manifest.is_file():
        try:
            meta = json.loads(manifest.read_text())
        except (json.JSONDecodeError, OSError):
            meta = {}
        # Only the generator's own manifest: a manifest.json shipped with real data must not stand for it.
        if isinstance(meta, dict) and meta.get("generator_version") and meta.get("content_hash"):
            return str(meta["content_hash"])
    h = hashlib.sha256(b"affectlab data key 3\n")
    stack = [root]
    while stack:
        d = stack.pop()
        rel = d.relative_to(root).as_posix()
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
            h.update(f"dir {rel} {d.stat().st_mtime_ns} {len(entries)}\n".encode())
        except OSError as e:
            h.update(f"dir {rel} unreadable {e.errno}\n".encode())
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if not e.name.startswith("."):
                    stack.append(Path(e.path))
            elif Path(e.name).suffix.lower() in LABEL_SUFFIXES:
                h.update(f"file {rel}/{e.name} {_identity(e.path)}\n".encode())
    return h.hexdigest()


def code_key(recipe: str | None = None) -> str:
    """The one invalidation rule: a hash of the package's training code — every module but ``NOT_TRAINING``
    and, for ``recipe`` (a module name under ``recipes/``), but the other recipes. ``recipe=None`` takes every
    recipe (a chapter may train any paper); ``recipe=""`` none but the face feature model's (what frozen
    features depend on: readers, loaders, models). A cached result keyed by it is recomputed after any change
    to code that could change it, and kept after a change to code that cannot."""
    pkg = Path(__file__).parent
    others = set()
    if recipe is not None:
        others = {p.relative_to(pkg).as_posix() for p in (pkg / "recipes").glob("*.py")
                  if p.stem not in (recipe, "__init__", "pretrain")}
    h = hashlib.sha256()
    for p in sorted(pkg.rglob("*.py")):
        rel = p.relative_to(pkg).as_posix()
        if rel in NOT_TRAINING or rel in others:
            continue
        h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _atomic_write(path: str | os.PathLike, mode: str, write) -> None:
    """``write(file)`` into a temporary file of this process's own (two runs filling the same cache never mix
    their bytes), flushed to disk, then renamed over ``path``. On failure the old file is kept and no
    temporary is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (``_atomic_write``)."""
    _atomic_write(path, "wb", lambda f: torch.save(obj, f))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """``path.write_text(text)`` atomically (``_atomic_write``)."""
    _atomic_write(path, "w", lambda f: f.write(text))


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a file written by ``atomic_save``; ``weights_only`` refuses anything but tensors and plain data
    (a cache file is never unpickled)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _leaving_random_states(compute):
    """``compute()`` with every global random state (torch, NumPy, Python, CUDA) put back afterwards. Computing
    a result draws from them (a training seeds and draws; fastai seeds each loader from Python's ``random``,
    torch's loader iterator draws from torch's), so without this a miss would leave other states than a hit,
    and whatever is drawn after a cached result would depend on whether the cache was warm."""
    state = capture_rng()
    try:
        return compute()
    finally:
        restore_rng(state)


def is_cached(name: str, key_: str) -> bool:
    """Whether ``cached(name, key_, ...)`` would read a stored result (a chapter says when it reuses one)."""
    return (cache_dir() / f"{name}-{key_}.pt").is_file()


def cached(name: str, key_: str, compute: Callable[[], dict[str, torch.Tensor]], *,
           refresh: bool = False) -> dict[str, torch.Tensor]:
    """``compute()``'s dict of tensors, stored under data/cache/<name>-<key>.pt after the first call; an
    unreadable file is rebuilt, never trusted. A miss leaves the global random states as a hit does.
    ``refresh``: compute again and replace the stored result (a chapter's "train it here" switch)."""
    path = cache_dir() / f"{name}-{key_}.pt"
    if path.is_file() and not refresh:
        try:
            return load_tensors(path)
        except Exception as e:  # noqa: BLE001  (any unreadable cache is rebuilt)
            warnings.warn(f"cache {path.name} is unreadable ({e}); rebuilding it")
    out = _leaving_random_states(compute)
    atomic_save(out, path)
    return out


def cached_json(name: str, key_: str, compute: Callable[[], dict]) -> dict:
    """``compute()``'s JSON-able dict, stored under data/cache/<name>-<key>.json after the first call (an
    unreadable file is recomputed; a miss leaves the global random states as a hit does)."""
    path = cache_dir() / f"{name}-{key_}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (ValueError, OSError):
            pass
    out = _leaving_random_states(compute)
    atomic_write_text(path, json.dumps(out))
    return out
