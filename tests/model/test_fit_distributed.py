"""``torchrun --nproc_per_node 2 -m affectlab.fit``: two CPU processes (gloo) on the tiny world.

- they train data-parallel, write one metrics file (rank 0) and hold identical parameters after training;
- the metrics fastai logs during training (``log.csv``) are the whole validation set's: they equal a one-process
  evaluation of ``models/best.pth`` (senet50 and facernet, one epoch, validation sets that 2 ranks x the batch
  do not divide; facernet's 3 videos make the sampler pad one), and so does facernet's Pearson ``valid_loss``
  (its 3 videos are one batch in one process);
- a run killed mid-epoch resumes, every rank from rank 0's checkpoint, to the uninterrupted run's numbers.

The runs are module-scoped and shared between the assertions (each launch costs ~10 s on 2 cores)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from affectlab.course import read_metrics_file

pytestmark = pytest.mark.slow

KILLED = Path(__file__).with_name("fit_killed_mid_epoch.py")
# What each paper's log.csv column is in its recipe's ``score`` (the final figures over the whole set).
LOGGED_AS = {"senet50": {"expr_f1": "f1", "expr_acc": "accuracy", "expr_score": "expr_score"},
             "facernet": {"reaction_pearson": "pearson"}}
ONE_EPOCH = {"senet50": [], "facernet": ["--set", "epochs=1"]}     # senet50's quick profile has one epoch
RESUME_ARGS = ["facechannel", "--profile", "quick", "--device", "cpu", "--set", "epochs=2", "max_train_frames=96",
               "batch_size=16"]


def torchrun(args, *, script=None, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}      # two processes on a small machine: one thread each
    target = [str(script)] if script else ["-m", "affectlab.fit"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *target,
           *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from affectlab.data.synth import make_world

    return make_world(tmp_path_factory.mktemp("world") / "tiny", preset="tiny", seed=0, progress=False)


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory):
    """senet50 and facernet, quick profile (its batch), one epoch, under 2 processes: {paper: --out}."""
    outs = {}
    for paper in LOGGED_AS:
        out = outs[paper] = tmp_path_factory.mktemp(paper)
        torchrun([paper, "--profile", "quick", "--device", "cpu", "--seed", 0, *ONE_EPOCH[paper], "--data-root", world,
                  "--out", out])
    return outs


@pytest.fixture(scope="module")
def facechannel_whole(world, tmp_path_factory):
    """An uninterrupted 2-epoch facechannel run under 2 processes: (its --out, its output)."""
    out = tmp_path_factory.mktemp("whole")
    return out, torchrun([*RESUME_ARGS, "--data-root", world, "--out", out])


def test_two_processes_train_data_parallel_and_rank0_writes(facechannel_whole):
    out, res = facechannel_whole
    assert res.stdout.count("wrote ") == 1                      # rank 0 alone reports and writes
    assert sorted(p.name for p in out.glob("*.json")) == ["fit_facechannel.json"]
    assert read_metrics_file(out / "fit_facechannel.json")
    doc = json.loads((out / "fit_facechannel.json").read_text())
    assert doc["processes"] == 2
    a, b = doc["param_digests"]
    assert a == b                                               # gradients all-reduced: one model
    # each rank took its half of each epoch: 96 frames in batches of 16 are 6 steps in one process, 3 in each of two
    assert doc["steps"] == 2 * 3
    # one checkpoint file, written by rank 0, holding both ranks' random states
    (ck_file,) = (out / "checkpoints").glob("*.pt")
    from affectlab.checkpoint import load_checkpoint

    ck = load_checkpoint(ck_file)
    assert ck["ranks"] == 2 and len(ck["rng"]) == 2
    # ranks 1.. draw their own augmentation and dropout (seed + rank): the ranks' torch streams differ
    assert not torch.equal(ck["rng"][0]["torch"], ck["rng"][1]["torch"])


@pytest.mark.parametrize("paper", list(LOGGED_AS))
def test_logged_metrics_equal_a_one_process_evaluation_of_the_best_model(paper, runs, world):
    from fastai.learner import load_model

    from affectlab.recipes import recipe
    from affectlab.train import predict

    out = runs[paper]
    doc = json.loads((out / f"fit_{paper}.json").read_text())
    S = doc["settings"]
    job = recipe(paper).command_job(S, world, torch.device("cpu"), 0)     # the runs' seed (--seed 0)
    n_valid, bs = len(job.learn.dls.valid.dataset), job.learn.dls.valid.bs
    assert n_valid % (2 * bs) != 0              # the last batches are short: the metric must not lose them
    load_model(out / "models" / "best.pth", job.learn.model, None, with_opt=False)
    preds, targs = predict(job.learn.model, job.learn.dls.valid)          # one process, the whole set
    assert len(next(iter(targs.values()))) == n_valid
    reference = job.score(preds, targs)
    logged = pd.read_csv(out / "log.csv").iloc[-1]
    final = {r["metric"]: r["value"] for r in doc["records"]}
    for column, metric in LOGGED_AS[paper].items():
        assert logged[column] == pytest.approx(reference[metric], abs=1e-5), (column, logged[column], reference)
        assert final[metric] == pytest.approx(reference[metric], abs=1e-5), (metric, final, reference)
    if n_valid <= bs:     # one batch in one process (facernet's 3 videos): the loss over the ranks' batches is its
        valid_loss = float(job.learn.loss_func(preds, targs))
        assert logged["valid_loss"] == pytest.approx(valid_loss, abs=1e-5), (logged["valid_loss"], valid_loss)


def test_killed_mid_epoch_resumes_to_the_uninterrupted_run(world, facechannel_whole, tmp_path):
    (whole, _), broken = facechannel_whole, tmp_path / "broken"
    killed = torchrun([*RESUME_ARGS, "--data-root", world, "--out", broken], script=KILLED, check=False)
    assert killed.returncode != 0 and "KeyboardInterrupt" in killed.stderr
    assert not (broken / "fit_facechannel.json").exists()
    res = torchrun([*RESUME_ARGS, "--data-root", world, "--out", broken, "--resume"])
    assert res.stdout.count("checkpoint: resuming") == 1 and "after epoch 1/2" in res.stdout   # rank 0 says it
    a, b = (json.loads((o / "fit_facechannel.json").read_text()) for o in (whole, broken))
    assert [r["metric"] for r in a["records"]] == [r["metric"] for r in b["records"]]
    for ra, rb in zip(a["records"], b["records"]):
        assert abs(ra["value"] - rb["value"]) <= 1e-6, (ra, rb)
    assert a["param_digests"] == b["param_digests"] and len(set(a["param_digests"])) == 1
    assert a["last_loss"] == pytest.approx(b["last_loss"], abs=1e-6)
    log_a, log_b = (pd.read_csv(o / "log.csv").drop(columns="time") for o in (whole, broken))
    pd.testing.assert_frame_equal(log_a, log_b, atol=1e-6)


def test_a_batch_too_small_for_the_loss_is_refused_before_training(world, tmp_path, capsys):
    from affectlab import fit

    # FaceRNet's Pearson loss is a correlation over the batch's videos: one video a batch gives it nothing
    assert fit.main(["facernet", "--device", "cpu", "--set", "batch_size=1", "--data-root", str(world),
                     "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Pearson loss over the batch's videos" in err and "2 or more videos" in err and "[1]" in err
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
