"""Where the course keeps its data, caches and runs, and validation of user-given paths.

Chapters run with the notebook folder as working directory, the tests and the runner from the repository
root; every path is resolved from the project root so both agree. ``AFFECTLAB_HOME`` overrides it.
"""
from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The repository root: $AFFECTLAB_HOME, else the nearest parent of the cwd holding pyproject.toml and
    notebooks/, else the cwd."""
    env = os.environ.get("AFFECTLAB_HOME")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "pyproject.toml").is_file() and (p / "notebooks").is_dir():
            return p
    return here


def data_dir() -> Path:
    return project_root() / "data"


def runs_dir() -> Path:
    """Where course runs write their metrics, figures and checkpoints: runs/ of the project, or
    $AFFECTLAB_RUNS (``make test`` points it at a temporary folder, so tests never touch a user's runs)."""
    env = os.environ.get("AFFECTLAB_RUNS")
    return Path(env).resolve() if env else project_root() / "runs"


def cache_dir() -> Path:
    """Cached models and features (git-ignored); safe to delete, rebuilt on demand."""
    d = data_dir() / "cache"
    d.mkdir(parents=True, exist_ok=True)
    return d


def synthetic_root(preset: str = "quick", seed: int = 0) -> Path:
    """Where ``make_world`` puts a preset of the synthetic world: ``quick`` with seed 0 -> data/synthetic,
    anything else in its own folder (data/synthetic-full, data/synthetic-quick-seed1), so another world seed
    (``start(..., world_seed=N)``) never regenerates — and invalidates the caches of — the course's world."""
    name = "synthetic" if preset == "quick" else f"synthetic-{preset}"
    if seed != 0:
        name = f"synthetic-{preset}-seed{seed}"
    return data_dir() / name


def existing_dir(path: str | os.PathLike, what: str = "directory") -> Path:
    """Validate a user-given directory: a clear error naming it when it is missing or a file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} {str(p)!r} does not exist")
    if not p.is_dir():
        raise NotADirectoryError(f"{what} {str(p)!r} is not a directory")
    return p.resolve()
