"""Every paper's ``paper`` profile is built and stepped: ``python -m affectlab.fit PAPER --profile paper --smoke``
on the tiny synthetic world (CPU), and ``--profile paper`` without a GPU says so and stops."""
import json
import math

import pytest
import torch

from affectlab import fit
from affectlab.course import read_metrics_file
from affectlab.recipes import settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from affectlab.data.synth import make_world

    return make_world(tmp_path_factory.mktemp("world") / "tiny", preset="tiny", seed=0, progress=False)


@pytest.mark.parametrize("paper", fit.PAPERS)
def test_paper_profile_smoke_takes_steps_and_writes_the_metrics(paper, world, tmp_path, capsys):
    out = tmp_path / "out"
    assert fit.main([paper, "--profile", "paper", "--smoke", "--data-root", str(world), "--out", str(out),
                     "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "settings: " in printed and "smoke: " in printed and "->" in printed   # the batch cap is said
    path = out / f"fit_{paper}.json"
    records = read_metrics_file(path)                 # the chapters' schema, validated
    assert records and all(r.profile == "paper" and r.data == "synthetic" for r in records)
    doc = json.loads(path.read_text())
    over, _, _ = fit.smoke_settings(paper, settings(paper, "paper"))
    assert doc["settings"] == {**settings(paper, "paper"), **over}
    assert doc["steps"] == fit.SMOKE_STEPS
    assert math.isfinite(doc["first_loss"]) and math.isfinite(doc["last_loss"])
    assert doc["param_digests"] and doc["processes"] == 1
    last, best = doc["checkpoints"]["last"], doc["checkpoints"]["best"]
    assert last and best
    assert torch.load(last, weights_only=True)["format"] == "affectlab-checkpoint-1"
    assert (out / "log.csv").read_text().count("\n") == 2 and (out / "run.log").is_file()


def test_paper_profile_without_a_gpu_says_so_first_estimates_and_stops(world, tmp_path, capsys):
    out = tmp_path / "out"
    code = fit.main(["facechannel", "--profile", "paper", "--data-root", str(world), "--out", str(out),
                     "--device", "cpu"])
    printed = capsys.readouterr().out.splitlines()
    assert code == fit.EXIT_NO_GPU
    assert "GPU" in printed[0] or "'cpu' was asked for" in printed[0]
    assert "30 epochs at 120 px" in printed[0] and "batch_size 1024" in printed[0]
    estimate = next(line for line in printed if line.startswith("measured here:"))
    assert "s per training item" in estimate and "30 epochs ~" in estimate
    assert not (out / "fit_facechannel.json").exists() and not (out / "checkpoints").exists()
