"""The one-thread chapter runs of ``test_another_numeric_path`` start as soon as the session is collected.

Each run is its own process on one thread. The rest of the suite keeps this machine's two cores about two
thirds busy: CI's `make test` used 1.3 cores on average (`/usr/bin/time`). So a chapter run beside the suite
mostly uses the core the suite leaves idle. Run in its turn, chapter 03 added 322 s to CI. Its test now only
waits for the run and reads what it left.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
TEST = "test_chapter_passes_with_seed_1_on_one_thread"
TIMEOUT_S = 40 * 60
RUNS = pytest.StashKey[dict]()


def _start_chapter(chapter: str, out: Path) -> subprocess.Popen:
    """``python -m affectlab.course run --only <chapter> -p seed 1`` on one thread, into ``out``; its output to
    ``out/run.log`` (a file, not a pipe nobody reads while it runs)."""
    out.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "affectlab.course", "run", "--no-report", "--out", str(out),
           "--only", chapter, "-p", "seed", "1"]
    with open(out / "run.log", "w") as log:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    wanted = sorted({item.callspec.params["chapter"] for item in session.items
                     if getattr(item, "originalname", None) == TEST and hasattr(item, "callspec")})
    if wanted:
        base = Path(tempfile.mkdtemp(prefix="affectlab-one-thread-"))
        session.config.stash[RUNS] = {"base": base, "started": time.monotonic(),
                                      "runs": {c: (_start_chapter(c, base / c), base / c) for c in wanted}}


def pytest_sessionfinish(session):
    started = session.config.stash.get(RUNS, None)
    if not started:
        return
    for proc, _ in started["runs"].values():
        if proc.poll() is None:   # the session stopped before its test waited for it (-x, Ctrl-C)
            proc.kill()
            proc.wait()
    shutil.rmtree(started["base"], ignore_errors=True)


@pytest.fixture(scope="module")
def one_thread_runs(request) -> dict[str, tuple[int, str, Path]]:
    """{chapter: (exit code, the run's output, its output folder)} of the runs started at collection, once
    each has finished, or has been stopped ``TIMEOUT_S`` after it started (the output then says so)."""
    started = request.config.stash.get(RUNS, None)
    if not started:
        pytest.fail("the one-thread chapter runs were not started at collection (tests/notebooks/conftest.py)")
    done = {}
    for chapter, (proc, out) in started["runs"].items():
        note = ""
        try:
            code = proc.wait(timeout=max(0.0, started["started"] + TIMEOUT_S - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
            note = f"\n[stopped: still running {TIMEOUT_S} s after it started]"
        done[chapter] = (code, (out / "run.log").read_text(errors="replace") + note, out)
    return done
