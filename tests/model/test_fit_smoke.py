"""Every paper's ``paper`` profile is built and stepped: ``python -m affectlab.fit PAPER --profile paper --smoke``
on the tiny synthetic world (CPU), and ``--profile paper`` without a GPU says so and stops."""
import json
import math

import pytest
import torch

from affectlab import fit
from affectlab.course import read_metrics_file
from affectlab.labels import EXPRESSIONS
from affectlab.recipes import AFFWILD2_PAPERS, settings

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
    assert {k: v for k, v in doc["settings"].items() if k != "labels"} == {**settings(paper, "paper"), **over}
    if paper in AFFWILD2_PAPERS:   # the course world: the 1st ABAW layout, 7 classes
        assert doc["labels"]["classes"] == list(EXPRESSIONS) and doc["labels"]["outputs"] in (7, None)
    assert doc["steps"] == fit.SMOKE_STEPS
    assert math.isfinite(doc["first_loss"]) and math.isfinite(doc["last_loss"])
    assert doc["param_digests"] and doc["processes"] == 1
    last, best = doc["checkpoints"]["last"], doc["checkpoints"]["best"]
    assert last and best
    assert torch.load(last, weights_only=True)["format"] == "affectlab-checkpoint-2"
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


def test_the_gpu_callback_makes_model_and_image_batches_channels_last():
    """The CUDA path's memory format, exercised on the CPU (where channels-last tensors exist too)."""
    from fastai.callback.core import Callback
    from torch import nn

    from affectlab.data.loaders import BatchSource, _dls
    from affectlab.losses import masked_cross_entropy
    from affectlab.train import make_learner

    _, Accelerate, _ = fit._callbacks()
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (32, 12, 12, 3), generator=g, dtype=torch.uint8)
    expr = torch.randint(0, 7, (32,), generator=g)
    src = BatchSource(32, lambda idx: (imgs[torch.as_tensor(idx)],), {"expr": expr})
    dls = _dls(src, src, bs=8, augment=False, sampler=None, device="cpu", num_workers=0, seed=0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 7))

    class Seen(Callback):
        order = 7
        formats = []

        def before_batch(self):
            self.formats.append(self.learn.xb[0].is_contiguous(memory_format=torch.channels_last))

    learn = make_learner(dls, _Dict(net), lambda p, y: masked_cross_entropy(p["expr"], y["expr"]), device="cpu",
                         checkpoint=False)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3, cbs=[Accelerate(cuda=True, compile=False), Seen()])
    assert Seen.formats and all(Seen.formats)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)


class _Dict(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return {"expr": self.net(x)}
