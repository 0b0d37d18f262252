"""``python -m affectlab.fit``'s GPU settings do what they say: ``--deterministic`` switches cuDNN's deterministic
mode and torch's deterministic algorithms on for the fit (benchmark mode without it) and puts the settings
back after the fit; the profile's ``fp16`` adds or removes fastai's mixed precision on CUDA and says it
cannot apply on a CPU."""
import pytest
import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision

from affectlab import fit


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from affectlab.data.synth import make_world

    return make_world(tmp_path_factory.mktemp("world") / "tiny", preset="tiny", seed=0, progress=False)


class RecordFlags(Callback):
    def before_train(self):
        self.flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
                      torch.are_deterministic_algorithms_enabled())


@pytest.mark.slow
@pytest.mark.parametrize("deterministic", [True, False])
def test_deterministic_flag_holds_during_the_fit_only(tiny_world, tmp_path, deterministic):
    rec = RecordFlags()
    args = ["facechannel", "--smoke", "--device", "cpu", "--data-root", str(tiny_world), "--out", str(tmp_path)]
    assert fit.run(args + (["--deterministic"] if deterministic else []), extra_cbs=[rec]) == 0
    assert rec.flags == (deterministic, not deterministic, deterministic)
    # afterwards as the recipe's set_seed left them (the chapters' deterministic cuDNN), algorithms unrestricted
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
            torch.are_deterministic_algorithms_enabled()) == (True, False, False)


def _learner():
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner

    return Learner(DataLoaders.from_dsets([], [], bs=1, device="cpu"), torch.nn.Linear(2, 2),
                   loss_func=torch.nn.MSELoss())


def test_fp16_setting_adds_or_removes_mixed_precision():
    mixed = lambda learn: any(isinstance(cb, MixedPrecision) for cb in learn.cbs)   # noqa: E731
    learn = _learner()
    assert fit._precision(learn, True, cuda=True) is None and mixed(learn)
    assert fit._precision(learn, True, cuda=True) is None and sum(isinstance(c, MixedPrecision) for c in learn.cbs) == 1
    assert fit._precision(learn, False, cuda=True) is None and not mixed(learn)
    note = fit._precision(learn, True, cuda=False)
    assert "CUDA only" in note and "float32" in note and not mixed(learn)
