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
