"""Stopping the synthetic-world generator (``python -m affectlab.data.synth``) while its worker pool writes:
SIGTERM and SIGINT stop every worker with it and leave no half world (nor its temporary folder); a SIGKILL'd
run's workers die with it and its leftover temporary folder is removed by the next run; every next run then
makes the same world as a run never interrupted."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from affectlab.data.synth import content_hash, make_world

psutil = pytest.importorskip("psutil")
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals and /proc: Linux only")


def _alive(procs) -> list:
    """The processes of ``procs`` still running (a zombie waiting to be reaped has ended)."""
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _start_and_wait_for_frames(out: Path) -> tuple[subprocess.Popen, list]:
    """Start the CLI on the tiny preset with 2 workers; return once its workers have written frames, with
    the process and its children (the pool's workers) as they were then; None when the run ended first."""
    proc = subprocess.Popen([sys.executable, "-m", "affectlab.data.synth", "--preset", "tiny", "--seed", "0",
                             "--workers", "2", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    frames = out.parent / f"{out.name}.tmp-{proc.pid}" / "affwild2" / "cropped_aligned"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if proc.returncode == 0:
                return None, []             # finished before we saw a frame: the caller tries again
            pytest.fail(f"the generator ended (rc {proc.returncode}) before it could be interrupted: "
                        f"{proc.stderr.read()[-2000:]}")
        try:
            started = any(any(v.iterdir()) for v in frames.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            started = False
        if started:
            kids = psutil.Process(proc.pid).children(recursive=True)
            if len(kids) >= 2:
                return proc, kids
        time.sleep(0.003)
    proc.kill()
    pytest.fail("the generator wrote no frame within 120 s")


def _interrupted(out: Path, sig) -> tuple[subprocess.Popen, list, str]:
    """Start the generator and send ``sig`` once it writes frames. On an idle machine the tiny world can be
    finished before the signal lands (exit code 0, as CI once saw): that run proves nothing, so it is removed
    and the run started again (at most 5 times)."""
    for _ in range(5):
        proc, kids = _start_and_wait_for_frames(out)
        if proc is None:
            shutil.rmtree(out, ignore_errors=True)
            continue
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _assert_all_gone(kids)
            pytest.fail(f"the generator did not end within 20 s of {sig.name}")
        if proc.returncode == 0:
            shutil.rmtree(out, ignore_errors=True)
            continue
        return proc, kids, err
    pytest.skip(f"the tiny world was written 5 times before {sig.name} could land")


def _assert_all_gone(kids, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while _alive(kids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _alive(kids)
    for p in left:   # don't leave them behind for the next test
        p.kill()
    assert [p.pid for p in left] == []


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The manifest of a tiny world made without interruption."""
    root = make_world(tmp_path_factory.mktemp("whole") / "tiny", preset="tiny", seed=0, progress=False, workers=2)
    return json.loads((root / "manifest.json").read_text())


@pytest.mark.timeout(300)
@pytest.mark.parametrize("sig, rc, last_line", [
    (signal.SIGTERM, -signal.SIGTERM, None),
    (signal.SIGINT, 130, "synthetic world: interrupted; nothing of this run was kept (the next run makes it anew)"),
])
def test_signal_stops_workers_and_keeps_no_half_world(tmp_path, uninterrupted, sig, rc, last_line):
    out = tmp_path / "tiny"
    proc, kids, err = _interrupted(out, sig)
    _assert_all_gone(kids)
    assert proc.returncode == rc, err[-2000:]
    if last_line is not None:
        assert err.strip().splitlines()[-1] == last_line
    # Neither the world nor its temporary folder: only the lock file is left.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tiny.lock"]

    again = make_world(out, preset="tiny", seed=0, progress=False, workers=2)
    manifest = json.loads((again / "manifest.json").read_text())
    assert manifest["counts"] == uninterrupted["counts"]
    assert manifest["content_hash"] == uninterrupted["content_hash"] == content_hash(again)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tiny.lock", "tiny"]


@pytest.mark.timeout(300)
def test_sigkill_workers_die_with_it_and_the_next_run_starts_over(tmp_path, uninterrupted):
    out = tmp_path / "tiny"
    proc, kids, _ = _interrupted(out, signal.SIGKILL)   # no cleanup possible in the parent itself
    _assert_all_gone(kids)
    assert proc.returncode == -signal.SIGKILL
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left in ([".tiny.lock"], [".tiny.lock", f"tiny.tmp-{proc.pid}"])
    if len(left) == 2:                           # a half world, never taken for the world:
        assert not (tmp_path / f"tiny.tmp-{proc.pid}" / "manifest.json").exists()
        assert not out.exists()
    again = make_world(out, preset="tiny", seed=0, progress=False, workers=2)
    assert json.loads((again / "manifest.json").read_text())["content_hash"] == uninterrupted["content_hash"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tiny.lock", "tiny"]


@pytest.mark.timeout(300)
def test_sigterm_during_regeneration_keeps_the_previous_world(tmp_path):
    for _ in range(5):   # a regeneration finished before the signal landed proves nothing: start again
        out = make_world(tmp_path / "tiny", preset="tiny", seed=1, progress=False, workers=1)
        before = json.loads((out / "manifest.json").read_text())
        proc, kids = _start_and_wait_for_frames(out)  # seed 0: regenerates
        if proc is None:
            continue
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
        if proc.returncode != 0:
            break
    else:
        pytest.skip("the tiny world was regenerated 5 times before SIGTERM could land")
    _assert_all_gone(kids)
    assert proc.returncode == -signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tiny.lock", "tiny"]
    assert json.loads((out / "manifest.json").read_text()) == before
    assert content_hash(out) == before["content_hash"]
