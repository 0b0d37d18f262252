"""``--resume``: a run killed after epoch k and resumed ends on the numbers of an uninterrupted run (same
machine): the metrics to 1e-6 and the same final weights."""
import json

import pytest
from fastai.callback.core import Callback

from affectlab import fit

pytestmark = pytest.mark.slow

KILL_AT = 2     # the run dies as epoch 2 (0-based) starts: epochs 0 and 1 are checkpointed
ARGS = ["facechannel", "--profile", "quick", "--device", "cpu", "--set", "epochs=3", "max_train_frames=96",
        "batch_size=16"]


class Kill(Callback):
    """Stands for a killed process: KeyboardInterrupt (which fastai does not catch) as epoch ``at`` starts."""
    order = 99

    def __init__(self, at):
        self.at = at

    def before_epoch(self):
        if self.epoch == self.at:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from affectlab.data.synth import make_world

    return make_world(tmp_path_factory.mktemp("world") / "tiny", preset="tiny", seed=0, progress=False)


class CountEpochs(Callback):
    def __init__(self):
        self.n = 0

    def after_epoch(self):
        self.n += 1


def _doc(out):
    return json.loads((out / "fit_facechannel.json").read_text())


def test_killed_then_resumed_equals_uninterrupted(world, tmp_path, capsys):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert fit.main([*ARGS, "--data-root", str(world), "--out", str(whole)]) == 0
    with pytest.raises(KeyboardInterrupt):
        fit.run([*ARGS, "--data-root", str(world), "--out", str(broken)], extra_cbs=[Kill(KILL_AT)])
    assert not (broken / "fit_facechannel.json").exists()
    # the same command again refuses to overwrite the interrupted run; --resume continues it
    assert fit.main([*ARGS, "--data-root", str(world), "--out", str(broken)]) == 2
    # --resume with another configuration is refused before training (it would train afresh otherwise)
    assert fit.main([*ARGS, "lr=0.02", "--data-root", str(world), "--out", str(broken), "--resume"]) == 2
    assert "no checkpoint of this configuration" in capsys.readouterr().err
    count = CountEpochs()
    assert fit.run([*ARGS, "--data-root", str(world), "--out", str(broken), "--resume"], extra_cbs=[count]) == 0
    assert count.n == 3 - KILL_AT          # only the epochs the killed run did not finish were trained
    assert "resuming learner00-FaceChannel-fit0" in capsys.readouterr().out
    a, b = _doc(whole), _doc(broken)
    assert len(a["records"]) == len(b["records"]) == 4
    for ra, rb in zip(a["records"], b["records"]):
        assert ra["metric"] == rb["metric"] and abs(ra["value"] - rb["value"]) <= 1e-6, (ra, rb)
    assert a["param_digests"] == b["param_digests"]
    assert a["last_loss"] == pytest.approx(b["last_loss"], abs=1e-6)
    # the resumed run's epoch log continues the interrupted one: one row per epoch in all
    assert (broken / "log.csv").read_text().count("\n") == (whole / "log.csv").read_text().count("\n")
    # --resume of the finished run says so and trains nothing: its results stay as they are
    before = (broken / "fit_facechannel.json").read_text()
    count = CountEpochs()
    assert fit.run([*ARGS, "--data-root", str(world), "--out", str(broken), "--resume"], extra_cbs=[count]) == 0
    assert count.n == 0 and "is finished" in capsys.readouterr().out
    assert (broken / "fit_facechannel.json").read_text() == before
