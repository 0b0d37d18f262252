"""CI tries another numeric path: the chapter whose figures sit nearest their floors (03, the joint
FaceChannel's macro-F1) runs once more with ``seed=1`` and ``OMP_NUM_THREADS=1``.

Another CPU, another thread count or another seed trains to other numbers; nbval runs every chapter with
seed 0 and the default threads, so an assertion tuned to one machine's exact numbers would pass there and
fail at a user's. Here it fails in CI. ``python -m affectlab.spread`` measures the full spread (chapters 03-08,
seeds 0-2, both thread counts) before a chapter is committed; CI runs this one chapter of it: 03, 07 and 08
took 537 s of a 55-minute CI run here, two at a time on one thread.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
# 07 failed here once (FaceRNet ρ 0.113 < 0.15 with a face feature model trained on one thread, seed 1), on the
# world whose reaction labels were means normalised by clip length. With peak-end labels (generator 1.2) and
# the best epoch kept, the same path reached ρ 0.33 (face model trained on one thread, seed 1). 07 and 08 left
# this test when it outgrew CI's budget; the seed spread holds their six settings. 03 stays: at seed 0 on one
# thread its joint FC scored macro-F1 0.165 at Adam 1e-2, within what shuffled labels reach.
CHAPTERS = ["03"]   # longest first, if more (see one_thread_runs)

pytestmark = pytest.mark.slow


def _run_chapter(chapter: str, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "affectlab.course", "run", "--no-report", "--out", str(out),
           "--only", chapter, "-p", "seed", "1"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=40 * 60)


@pytest.fixture(scope="module")
def one_thread_runs(request, tmp_path_factory):
    """The selected chapters' runs, two at a time: each runs on one thread, so two of them fill a 2-core machine
    (as ``python -m affectlab.spread --jobs 2`` runs its one-thread chapters) and CI waits for the longest pair
    rather than for the sum. Each is its own process with its own output folder; the numbers do not depend on
    what runs beside them."""
    from concurrent.futures import ThreadPoolExecutor

    wanted = [c for c in CHAPTERS
              if any(getattr(item, "callspec", None) and item.callspec.params.get("chapter") == c
                     and item.originalname == "test_chapter_passes_with_seed_1_on_one_thread"
                     for item in request.session.items)]
    outs = {c: tmp_path_factory.mktemp(f"chapter{c}-seed1-threads1") for c in wanted}
    with ThreadPoolExecutor(max_workers=2) as pool:     # CHAPTERS is longest first: 03 and 07 start together
        futures = {c: pool.submit(_run_chapter, c, outs[c]) for c in wanted}
        return {c: (f.result(), outs[c]) for c, f in futures.items()}


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_passes_with_seed_1_on_one_thread(chapter, one_thread_runs):
    proc, tmp_path = one_thread_runs[chapter]
    status_file = tmp_path / "status.json"
    assert status_file.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    status = json.loads(status_file.read_text())["status"]
    failed = {k: v for k, v in status.items() if v != "ok"}
    assert not failed, f"chapter failing with seed=1, OMP_NUM_THREADS=1: {failed}"
    assert list(status) == [p.stem for p in (ROOT / "notebooks").glob(f"{chapter}_*.ipynb")]
    # each recorded its figures under the seed it was given
    for path in (tmp_path / "metrics").glob("*.json"):
        assert {r["seed"] for r in json.loads(path.read_text())["records"]} == {1}, path.name
