"""A training resumed from its checkpoint ends exactly where an uninterrupted one does (weights, metrics,
random states), through ``make_learner`` + ``fit_one_cycle`` with a shuffled, augmented loader and dropout."""
import contextlib
import random
import warnings

import fastai.callback.progress  # noqa: F401  (Learner.no_bar)
import numpy as np
import pytest
import torch
from fastai.callback.core import Callback
from torch import nn

from affectlab import checkpoint as ckpt
from affectlab.checkpoint import checkpointing
from affectlab.data.loaders import BatchSource, _dls
from affectlab.losses import masked_cross_entropy
from affectlab.metrics import expr_accuracy, expr_f1
from affectlab.train import make_learner, set_seed

pytestmark = pytest.mark.slow

EPOCHS = 4


class Net(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.5))
        self.head = nn.Linear(4 * width, 7)

    def forward(self, x):
        return {"expr": self.head(self.body(x))}


def _loss(p, y):
    return masked_cross_entropy(p["expr"], y["expr"])


def _dataloaders(sampler=None, n_train=96, n_valid=40, seed=0):
    g = torch.Generator().manual_seed(1234)          # the data never depends on the run's seed
    imgs = torch.randint(0, 256, (n_train + n_valid, 12, 12, 3), generator=g, dtype=torch.uint8)
    expr = torch.randint(0, 7, (n_train + n_valid,), generator=g)
    imgs[expr == 3, :6] = 255                        # something learnable

    def src(lo, hi):
        part = imgs[lo:hi]
        return BatchSource(hi - lo, lambda idx: (part[torch.as_tensor(idx)],), {"expr": expr[lo:hi]})

    train = src(0, n_train)
    if sampler == "balanced":
        from affectlab.data.clean import imbalanced_sampler
        sampler = imbalanced_sampler(expr[:n_train].numpy(), seed=seed)
    return _dls(train, src(n_train, n_train + n_valid), bs=16, augment=True, sampler=sampler, device="cpu",
                num_workers=0, seed=seed)


class Kill(Callback):
    """Stands for a killed process: raises KeyboardInterrupt (which fastai does not catch) at ``event`` of
    epoch ``epoch`` (after its ``iter``-th batch for 'after_batch')."""
    order = 99

    def __init__(self, event, epoch, it=0):
        self.event, self.at_epoch, self.it = event, epoch, it

    def before_epoch(self):
        if self.event == "before_epoch" and self.epoch == self.at_epoch:
            raise KeyboardInterrupt

    def after_batch(self):
        if self.event == "after_batch" and self.training and self.epoch == self.at_epoch and self.iter == self.it:
            raise KeyboardInterrupt


class CountBatches(Callback):
    def __init__(self):
        self.n = 0

    def after_batch(self):
        self.n += self.training


def _draws(dls):
    """What code after the training would draw next, from every generator."""
    return (torch.rand(4).tolist(), np.random.rand(3).tolist(), random.random(),
            dls.train.rng.random(), torch.rand(2, generator=dls.train.gen).tolist())


def run(folder=None, key=None, kill=None, seed=0, learners=1, sampler=None, epochs=EPOCHS, lr=1e-2, bar=False,
        cbs_factory=list):
    """A 'chapter': seed, data, ``learners`` trainings one after another (each its own model), then the
    random draws code after them would see. Returns (per-learner results, draws, counters, checkpoints)."""
    set_seed(seed)
    dls = _dataloaders(sampler, seed=seed)
    ctx = checkpointing(folder, key if key is not None else {"seed": seed}) if folder else contextlib.nullcontext()
    results, counters, cbs = [], [], []
    with ctx:
        for i in range(learners):
            learn = make_learner(dls, Net(), _loss, [expr_f1(), expr_accuracy()], device="cpu", fp16=False)
            counter = CountBatches()
            extra = [counter, *cbs_factory()] + ([Kill(*kill[1:])] if kill and kill[0] == i else [])
            with contextlib.nullcontext() if bar else learn.no_bar():
                learn.fit_one_cycle(epochs, lr, cbs=extra)
            results.append({"weights": {k: v.clone() for k, v in learn.model.state_dict().items()},
                            "values": [list(v) for v in learn.recorder.values],
                            "valid": list(learn.validate()),
                            "lrs": list(learn.recorder.lrs)})
            counters.append(counter.n)
            cbs.append(next((c for c in learn.cbs if isinstance(c, ckpt.Checkpoint)), None))
    return results, _draws(dls), counters, cbs


def assert_same(a, b):
    for ra, rb in zip(a, b, strict=True):
        assert list(ra["weights"]) == list(rb["weights"])
        for k in ra["weights"]:
            assert torch.equal(ra["weights"][k], rb["weights"][k]), k
        assert ra["values"] == rb["values"]
        assert ra["valid"] == rb["valid"]
        assert ra["lrs"] == rb["lrs"]


@pytest.fixture(scope="module")
def baseline():
    """The uninterrupted run, without any checkpointing."""
    return run(learners=2)


@pytest.mark.parametrize("kill", [(0, "before_epoch", 2), (0, "after_batch", 2, 1), (1, "before_epoch", 1),
                                  (1, "after_batch", 3, 2)],
                         ids=["learner0-after-epoch2", "learner0-mid-epoch3", "learner1-after-epoch1",
                              "learner1-mid-last-epoch"])
def test_resumed_training_equals_uninterrupted(tmp_path, baseline, kill):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, kill=kill, learners=2)
    assert list(tmp_path.glob("*.pt"))
    results, draws, counters, cbs = run(tmp_path, learners=2)
    assert_same(results, baseline[0])
    assert draws == baseline[1]
    n_batches = baseline[2][0] // EPOCHS
    done = kill[2]                     # epochs finished and checkpointed before the kill
    if kill[0] == 0:
        assert [c.last_action for c in cbs] == ["resumed" if done else "fresh", "fresh"]
        assert counters == [(EPOCHS - done) * n_batches, EPOCHS * n_batches]
    else:
        assert [c.last_action for c in cbs] == ["skipped", "resumed"]
        assert counters == [0, (EPOCHS - done) * n_batches]


def test_resume_with_a_balanced_sampler(tmp_path):
    """The sampler's own generator is saved and restored too."""
    base = run(sampler="balanced")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, kill=(0, "before_epoch", 2), sampler="balanced")
    resumed = run(tmp_path, sampler="balanced")
    assert resumed[3][0].last_action == "resumed"
    assert_same(resumed[0], base[0])
    assert resumed[1] == base[1]


def test_resume_without_the_loaders_rng_would_differ(tmp_path, baseline, monkeypatch):
    """The test above can fail: restoring all but the DataLoader's generators gives other weights."""
    real = ckpt.restore_rng
    monkeypatch.setattr(ckpt, "restore_rng", lambda state, dls=None: real(state, None))
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, kill=(0, "before_epoch", 2))
    results, draws, _, cbs = run(tmp_path)
    assert cbs[0].last_action == "resumed"
    assert not all(torch.equal(v, baseline[0][0]["weights"][k]) for k, v in results[0]["weights"].items())


class ValidateEachEpoch(Callback):
    """Calls ``learn.validate()`` after every epoch, inside the fit (fastai sends it before_fit ... after_fit)."""
    order, busy = 70, False

    def after_epoch(self):
        if not self.busy:
            self.busy = True
            self.learn.validate()
            self.busy = False


@pytest.mark.parametrize("case", ["progress-bar", "validate-inside-the-fit"])
def test_resume_with_a_progress_bar_or_a_validate_inside_the_fit(tmp_path, case):
    """fastprogress's bar counts from epoch 0 (it sees the finished epochs go by); a ``validate()`` inside the
    fit sends the fit's events and resets ``learn.epoch``: neither is taken for one of the checkpoint's fits."""
    kw = {"bar": True} if case == "progress-bar" else {"cbs_factory": lambda: [ValidateEachEpoch()]}
    base = run(**kw)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, kill=(0, "before_epoch", 2), **kw)
    resumed = run(tmp_path, **kw)
    assert resumed[3][0].last_action == "resumed" and resumed[3][0].n_fit == 1
    assert_same(resumed[0], base[0])
    assert resumed[1] == base[1]
    skipped = run(tmp_path, **kw)
    assert skipped[3][0].last_action == "skipped"
    assert_same(skipped[0], base[0])


def test_complete_checkpoint_skips_training_and_restores_random_state(tmp_path, baseline):
    first = run(tmp_path, learners=2)
    assert [c.last_action for c in first[3]] == ["fresh", "fresh"]
    assert_same(first[0], baseline[0])          # checkpointing itself changes nothing
    assert first[1] == baseline[1]
    again = run(tmp_path, learners=2)
    assert [c.last_action for c in again[3]] == ["skipped", "skipped"]
    assert again[2] == [0, 0]                   # not one training batch
    assert_same(again[0], baseline[0])
    assert again[1] == baseline[1]              # later code draws what it drew after the real training


def test_other_parameters_start_afresh(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, kill=(0, "before_epoch", 2), key={"seed": 0, "setting": "a"})
    other_key = run(tmp_path, key={"seed": 0, "setting": "b"})
    assert other_key[3][0].last_action == "fresh" and other_key[2][0] == EPOCHS * 6
    other_seed = run(tmp_path, seed=1, key={"seed": 0, "setting": "a"})   # same key, other seed: other run
    assert other_seed[3][0].last_action == "fresh"
    other_lr = run(tmp_path, lr=3e-3, key={"seed": 0, "setting": "a"})
    assert other_lr[3][0].last_action == "fresh"
    same = run(tmp_path, key={"seed": 0, "setting": "a"})
    assert same[3][0].last_action == "resumed"
    assert len(list(tmp_path.glob("*.pt"))) == 4


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "pickle"])
def test_corrupt_checkpoint_warns_and_trains_afresh(tmp_path, baseline, damage):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, kill=(0, "before_epoch", 2))
    (path,) = tmp_path.glob("*.pt")
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"\x00not a checkpoint" * 100)
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:   # a pickle that would run code if unpickled: refused by weights_only
        import pickle

        class Evil:
            def __reduce__(self):
                return (print, ("unpickled!",))

        path.write_bytes(pickle.dumps({"format": ckpt.FORMAT, "x": Evil()}, protocol=2))
    with pytest.warns(UserWarning, match="unusable"):
        results, draws, counters, cbs = run(tmp_path, learners=1)
    assert cbs[0].last_action == "fresh"
    assert_same(results, baseline[0][:1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run(tmp_path)[3][0].last_action == "skipped"   # the fresh run rewrote it whole


def test_checkpoint_file_loads_with_weights_only(tmp_path):
    run(tmp_path, epochs=1)
    (path,) = tmp_path.glob("*.pt")
    ck = torch.load(path, map_location="cpu", weights_only=True)
    assert ck["format"] == ckpt.FORMAT
    assert isinstance(ck["rng"]["python"]["state"], torch.Tensor)
    assert isinstance(ck["rng"]["numpy"]["key"], torch.Tensor)
    assert {"0.rng", "0.gen", "1.rng", "1.gen"} <= set(ck["rng"]["loaders"])
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_best_model_tracker_resumes_with_its_best(tmp_path):
    """SaveModelCallback keeps the best epoch and reloads it after the fit: its ``best`` is restored, and it
    never sees (nor re-saves) the finished epochs again."""
    from fastai.callback.tracker import SaveModelCallback
    from fastai.learner import ValueMetric

    def fit(folder, kill=None):
        set_seed(0)
        dls = _dataloaders()
        ctx = checkpointing(folder, {"s": 0}) if folder else contextlib.nullcontext()
        holder = []
        score = ValueMetric(lambda: [0.1, 0.9, 0.2, 0.3][holder[0].epoch], "score")  # best: epoch 1
        with ctx:
            learn = make_learner(dls, Net(), _loss, [score], device="cpu", fp16=False, path=tmp_path / "work",
                                 cbs=[SaveModelCallback(monitor="score", comp=np.greater, fname="best")])
            holder.append(learn)
            with learn.no_bar(), learn.no_logging():
                learn.fit_one_cycle(EPOCHS, 1e-2, cbs=[Kill("before_epoch", *kill)] if kill else None)
        return {k: v.clone() for k, v in learn.model.state_dict().items()}, learn

    base, _ = fit(None)
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "ck", kill=(3,))
    resumed, learn = fit(tmp_path / "ck")
    assert all(torch.equal(v, base[k]) for k, v in resumed.items())
    skipped, _ = fit(tmp_path / "ck")
    assert all(torch.equal(v, base[k]) for k, v in skipped.items())


def test_fit_resumable_lr_find_and_validate(tmp_path):
    from affectlab.train import fit_resumable

    def learner():
        set_seed(0)
        return make_learner(_dataloaders(), Net(), _loss, [expr_f1()], device="cpu", fp16=False, path=tmp_path)

    learn = learner()
    with learn.no_bar(), learn.no_logging():
        learn.lr_find(num_it=5, show_plot=False)        # never checkpointed
        learn.validate()
    assert not list(tmp_path.rglob("*.pt"))

    learn = learner()
    with learn.no_bar(), learn.no_logging():
        fit_resumable(learn, 2, 1e-2, tmp_path / "ck", {"run": 1})
        first = {k: v.clone() for k, v in learn.model.state_dict().items()}
        learn.validate()                               # validation after the fit writes nothing
    (path,) = (tmp_path / "ck").glob("*.pt")
    stamp = path.stat().st_mtime_ns
    learn = learner()
    with learn.no_bar(), learn.no_logging():
        fit_resumable(learn, 2, 1e-2, tmp_path / "ck", {"run": 1})
    cb = next(c for c in learn.cbs if isinstance(c, ckpt.Checkpoint))
    assert cb.last_action == "skipped" and path.stat().st_mtime_ns == stamp
    assert all(torch.equal(v, first[k]) for k, v in learn.model.state_dict().items())
