"""CI tries another numeric path: the chapters whose figures sat nearest their floors (03 FaceChannel,
07 FaceRNET, 08 Grad-CAM's models) run once more with ``seed=1`` and ``OMP_NUM_THREADS=1``.

Another CPU, another thread count or another seed trains to other numbers; nbval runs every chapter with
seed 0 and the default threads, so an assertion tuned to one machine's exact numbers would pass there and
fail at a user's. Here it fails in CI. (``python -m affectlab.spread`` measures the full spread.)
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
# the best epoch kept, the same path reached ρ 0.33 (face model trained on one thread, seed 1); it stays here
# because it sat nearest its floor before.
CHAPTERS = ["03", "07", "08"]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_passes_with_seed_1_on_one_thread(chapter, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "affectlab.course", "run", "--no-report", "--out", str(tmp_path),
           "--only", chapter, "-p", "seed", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=40 * 60)
    status_file = tmp_path / "status.json"
    assert status_file.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    status = json.loads(status_file.read_text())["status"]
    failed = {k: v for k, v in status.items() if v != "ok"}
    assert not failed, f"chapter failing with seed=1, OMP_NUM_THREADS=1: {failed}"
    assert list(status) == [p.stem for p in (ROOT / "notebooks").glob(f"{chapter}_*.ipynb")]
    # each recorded its figures under the seed it was given
    for path in (tmp_path / "metrics").glob("*.json"):
        assert {r["seed"] for r in json.loads(path.read_text())["records"]} == {1}, path.name
