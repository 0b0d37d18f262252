"""``torchrun --nproc_per_node 2 -m affectlab.fit``: two CPU processes (gloo) train data-parallel on the tiny
world, finish, write one metrics file (rank 0), and hold identical parameters after training."""
import json
import os
import subprocess
import sys

import pytest

from affectlab.course import read_metrics_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from affectlab.data.synth import make_world

    return make_world(tmp_path_factory.mktemp("world") / "tiny", preset="tiny", seed=0, progress=False)


def test_two_processes_train_data_parallel_and_rank0_writes(world, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}      # two processes on a small machine: one thread each
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "affectlab.fit", "facechannel", "--profile", "quick", "--smoke", "--device", "cpu",
           "--data-root", str(world), "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.count("wrote ") == 1                      # rank 0 alone reports and writes
    assert sorted(p.name for p in out.glob("*.json")) == ["fit_facechannel.json"]
    assert read_metrics_file(out / "fit_facechannel.json")
    doc = json.loads((out / "fit_facechannel.json").read_text())
    assert doc["processes"] == 2
    a, b = doc["param_digests"]
    assert a == b                                               # gradients all-reduced: one model
    # each rank took its half of the smoke run's batches: 2 steps of 8 frames in one process, 1 in each of two
    assert doc["steps"] == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["rank0", "rank1"]
