"""A cached model shows the training it did: the epoch table fastai printed while it trained is stored with it,
and a retraining at the same seed prints the same rows (every column but the time)."""
import pytest

from affectlab import cache
from affectlab.epoch_table import EpochTable

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from affectlab.data.synth import make_world

    return make_world(tmp_path_factory.mktemp("world") / "tiny", preset="tiny", seed=0, progress=False)


def test_a_cached_frame_model_keeps_its_epoch_table_and_a_retraining_prints_the_same_rows(world, tmp_path, monkeypatch, capsys):
    from affectlab.recipes import facechannel as fc, start

    monkeypatch.setattr(cache, "cache_dir", lambda: tmp_path)
    run = start("facechannel", "quick", world, "cpu", 0, epochs=2, max_train_frames=256, width=8)
    _, _, valid_df, by_class, _ = fc.data(run.root, run.S, 0)
    rows = fc.validation_rows(valid_df, 3)
    _, first, p1, _ = fc.fit_frame_model(run.S, "FC_E", by_class, rows, "cpu", 0)
    printed = capsys.readouterr().out
    assert not first.reused
    table = first.table
    assert table.columns[:3] == ["epoch", "train_loss", "valid_loss"] and table.columns[-1] == "time"
    assert len(table.rows) == 2 and [r[0] for r in table.rows] == ["0", "1"]
    assert all(float(r[1]) > 0 and float(r[2]) > 0 for r in table.rows)
    assert table.rows[0][1] in printed           # fastai printed it live (not quiet), the row as kept

    _, again, p2, _ = fc.fit_frame_model(run.S, "FC_E", by_class, rows, "cpu", 0)
    assert again.reused and again.table == table and (p1["expr"] == p2["expr"]).all()

    _, fresh, p3, _ = fc.fit_frame_model(run.S, "FC_E", by_class, rows, "cpu", 0, retrain=True, quiet=True)
    assert not fresh.reused
    assert fresh.table.without_time() == table.without_time()     # the same training, row for row
    assert (p3["expr"] == p1["expr"]).all()
    assert capsys.readouterr().out == ""                          # quiet: no bar, no table


def test_the_table_survives_the_cache_format():
    t = EpochTable(["epoch", "train_loss", "valid_loss", "f1", "time"], [["0", "1.000000", "0.900000", "0.1", "00:01"]])
    assert EpochTable.from_tensor(t.to_tensor()) == t
    assert t.without_time() == [["0", "1.000000", "0.900000", "0.1"]]


def test_a_long_training_says_after_its_first_epoch_about_how_long_it_takes(capsys):
    import re

    import fastai.callback.progress  # noqa: F401  (Learner.no_bar)
    import torch
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from torch.utils.data import TensorDataset

    from affectlab.epoch_table import SayHowLong

    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    dls = DataLoaders.from_dsets(TensorDataset(x, y), TensorDataset(x, y), bs=16, device="cpu")
    learn = Learner(dls, torch.nn.Linear(3, 1), loss_func=torch.nn.MSELoss(), cbs=[SayHowLong("a test fit")])
    with learn.no_bar(), learn.no_logging():
        learn.fit(4, 1e-2)
    said = re.findall(r"a test fit: the first epoch took (\d+) s; all 4 epochs take about ([\d.]+) min here",
                      capsys.readouterr().out)
    assert len(said) == 1   # once, after the first epoch
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-2)  # one epoch: nothing to foresee
    assert "first epoch" not in capsys.readouterr().out


def _tiny_learner(seed: int):
    """A Learner of a small regression, its weights drawn under ``seed``: the same seed, the same Learner."""
    import torch

    from affectlab.data.loaders import tensor_dls
    from affectlab.train import Plan, make_learner

    g = torch.Generator().manual_seed(123)
    x, y = torch.randn(96, 4, generator=g), torch.randn(96, 1, generator=g)
    dls = tensor_dls(((x[:64],), {"y": y[:64]}), ((x[64:],), {"y": y[64:]}), bs=16, seed=0)
    torch.manual_seed(seed)
    learn = make_learner(dls, torch.nn.Linear(4, 1), lambda p, t: ((p - t["y"]) ** 2).mean(), device="cpu")
    learn.plan = Plan(3, 1e-2, "one_cycle")
    return learn


def _same_rng(a: dict, b: dict) -> bool:
    import torch

    def same(x, y):
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        return torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y

    return all(same(a[k], b[k]) for k in ("torch", "numpy", "python"))


def test_fit_or_reuse_trains_once_then_reads_the_weights_the_table_and_the_curve(tmp_path, monkeypatch, capsys):
    import torch

    from affectlab.train import fit_or_reuse
    from affectlab.rng import capture_rng

    monkeypatch.setattr(cache, "cache_dir", lambda: tmp_path)
    learn = _tiny_learner(0)
    before = capture_rng()
    first = fit_or_reuse(learn, "tiny-fit", {"lr": 1e-2}, code="")
    assert _same_rng(capture_rng(), before)   # a fit leaves the random states as a read does: untouched
    assert not first.reused and len(first.epoch_table.rows) == 3 and len(first.curve.values) == 3
    assert first.epoch_table.rows[0][1] in capsys.readouterr().out        # it trained where the student sees it

    learn = _tiny_learner(0)
    before = capture_rng()
    again = fit_or_reuse(learn, "tiny-fit", {"lr": 1e-2}, code="")
    assert _same_rng(capture_rng(), before)
    assert again.reused and capsys.readouterr().out == ""                 # read, not trained
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))
    assert again.epoch_table == first.epoch_table and again.curve == first.curve

    fresh = fit_or_reuse(_tiny_learner(0), "tiny-fit", {"lr": 1e-2}, code="", retrain=True, quiet=True)
    assert not fresh.reused and fresh.epoch_table.without_time() == first.epoch_table.without_time()

    # another initial draw or other settings is another model: trained, never read
    assert not fit_or_reuse(_tiny_learner(1), "tiny-fit", {"lr": 1e-2}, code="", quiet=True).reused
    assert not fit_or_reuse(_tiny_learner(0), "tiny-fit", {"lr": 2e-2}, code="", quiet=True).reused
