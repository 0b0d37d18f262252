"""CI tries another numeric path: the chapter whose figures sit nearest their floors (03, the joint
FaceChannel's macro-F1) runs once more with ``seed=1`` and ``OMP_NUM_THREADS=1``.

Another CPU, another thread count or another seed trains to other numbers; nbval runs every chapter with
seed 0 and the default threads, so an assertion tuned to one machine's exact numbers would pass there and
fail at a user's. Here it fails in CI. ``python -m affectlab.spread`` measures the full spread (chapters 03-08,
seeds 0-2, both thread counts) before a chapter is committed; CI runs this one chapter of it. The run starts
when the session is collected and goes on beside the other tests (``conftest.py``): in its turn it added 322 s
to CI.
"""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
# 07 failed here once (FaceRNet ρ 0.113 < 0.15 with a face feature model trained on one thread, seed 1), on the
# world whose reaction labels were means normalised by clip length. With peak-end labels (generator 1.2) and
# the best epoch kept, the same path reached ρ 0.33 (face model trained on one thread, seed 1). 07 and 08 left
# this test when it outgrew CI's budget; the seed spread holds their six settings. 03 stays: at seed 0 on one
# thread its joint FC scored macro-F1 0.165 at Adam 1e-2, within what shuffled labels reach.
CHAPTERS = ["03"]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_passes_with_seed_1_on_one_thread(chapter, one_thread_runs):
    # started at collection, beside the rest of the suite (conftest.py); here it is waited for
    code, output, tmp_path = one_thread_runs[chapter]
    status_file = tmp_path / "status.json"
    assert status_file.is_file(), f"exit code {code}: " + output[-4000:]
    status = json.loads(status_file.read_text())["status"]
    failed = {k: v for k, v in status.items() if v != "ok"}
    assert not failed, f"chapter failing with seed=1, OMP_NUM_THREADS=1: {failed}"
    assert list(status) == [p.stem for p in (ROOT / "notebooks").glob(f"{chapter}_*.ipynb")]
    # each recorded its figures under the seed it was given
    for path in (tmp_path / "metrics").glob("*.json"):
        assert {r["seed"] for r in json.loads(path.read_text())["records"]} == {1}, path.name
