"""The claims step end to end on the tiny world with 2 seeds: a test of the machinery (every recipe's
``paired_claims`` trains both sides and directions.json is written), not of the verdicts."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from affectlab import claims as C

ROOT = Path(__file__).parents[2]
# Few steps: the machinery, not the numbers, is under test here.
SHORT = {"facechannel": dict(epochs=1, seq_epochs=1, max_train_frames=128), "scan": dict(epochs=1),
         "facernet": dict(epochs=1, rec_epochs=1, head_epochs=2),
         "temporal": dict(epochs=1), "senet50": dict(max_train_frames=128, max_extra=32)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from affectlab.data.synth import make_world

    return make_world(tmp_path_factory.mktemp("claims") / "tiny", preset="tiny", seed=0, progress=False)


def test_every_claim_is_decided_over_two_seeds_on_the_tiny_world(tiny, tmp_path):
    only = [c.id for c in C.CLAIMS if c.recipe in SHORT]
    records = C.run_claims("quick", tiny, "cpu", seeds=[0, 1], only=only, out=tmp_path, overrides=SHORT,
                           cache=False, log=lambda *_: None)
    on_disk = json.loads((tmp_path / "directions.json").read_text())
    assert on_disk == records
    assert [r["id"] for r in records] == only
    for r in records:
        if r["verdict"] == C.NOT_MEASURED:   # occlusion needs occluded validation frames, which tiny may lack
            assert r["id"] == "scan_occlusion" and r["reason"]
            continue
        assert r["seeds"] == [0, 1] and r["verdict"] in C.VERDICTS
        assert r["diffs"] == pytest.approx([a - b for a, b in zip(r["a"], r["b"])])
        assert all(-1 <= x <= 1 for x in r["a"] + r["b"])   # F1, CCC, Pearson ρ, minus an accuracy drop


def test_the_command_writes_directions_json(tiny, tmp_path):
    cmd = [sys.executable, "-m", "affectlab.course", "claims", "--data-root", str(tiny), "--seeds", "0", "1",
           "--only", "temporal_stat_va", "--out", str(tmp_path), "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (record,) = json.loads((tmp_path / "directions.json").read_text())
    assert record["id"] == "temporal_stat_va" and record["seeds"] == [0, 1]
    assert "temporal_stat_va" not in proc.stderr and "hold" in proc.stdout


def test_seeds_after_0_train_in_one_thread_workers_as_they_would_here(tiny, tmp_path):
    """``jobs=2``: seed 0 trains in this process on its threads, seeds 1 and 2 in two one-thread processes;
    each seed's pair equals the same seed trained here on that thread count (the workers change where a seed
    trains, never what it computes)."""
    import torch

    logs = []
    (record,) = C.run_claims("quick", tiny, "cpu", seeds=[0, 1, 2], only=["temporal_stat_va"], out=tmp_path,
                             overrides=SHORT, cache=False, log=logs.append, jobs=2)
    assert record["seeds"] == [0, 1, 2]
    in_workers = sorted(int(m.split(" seed ")[1].split()[0]) for m in logs if "one thread" in m)
    assert in_workers == [1, 2]
    threads = torch.get_num_threads()
    expected = {0: C.paired_results("temporal", 0, "quick", tiny, "cpu", SHORT["temporal"], cache=False)}
    try:
        torch.set_num_threads(1)
        for s in (1, 2):
            expected[s] = C.paired_results("temporal", s, "quick", tiny, "cpu", SHORT["temporal"], cache=False)
    finally:
        torch.set_num_threads(threads)
    assert [(a, b) for a, b in zip(record["a"], record["b"])] == [expected[s]["temporal_stat_va"] for s in (0, 1, 2)]
