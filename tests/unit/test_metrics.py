"""Every metric against an independent reference (scikit-learn / scipy), and on degenerate inputs."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, f1_score

from affectlab import metrics as M
from affectlab.losses import ccc_per_column, pearson_per_column


def ccc_reference(t, p):
    """CCC written from its definition with numpy's population statistics (independent of affectlab)."""
    t, p = np.asarray(t, float), np.asarray(p, float)
    return 2 * np.cov(t, p, bias=True)[0, 1] / (t.var() + p.var() + (t.mean() - p.mean()) ** 2)


@pytest.mark.parametrize("seed", range(20))
def test_ccc_and_pearson_match_references(seed):
    rng = np.random.default_rng(seed)
    n = rng.integers(2, 500)
    t = rng.uniform(-1, 1, n)
    p = 0.5 * t + rng.normal(0, 0.5, n) + rng.normal(0, 0.3)
    assert M.ccc(t, p) == pytest.approx(ccc_reference(t, p), abs=1e-6)
    assert M.pearson(t, p) == pytest.approx(pearsonr(t, p)[0], abs=1e-6)
    # the torch versions used by the losses agree with the numpy metrics
    tt, pp = torch.tensor(t), torch.tensor(p)
    assert float(ccc_per_column(pp, tt)) == pytest.approx(M.ccc(t, p), abs=1e-5)
    assert float(pearson_per_column(pp, tt)) == pytest.approx(M.pearson(t, p), abs=1e-5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=200))
def test_f1_macro_and_accuracy_match_sklearn(pairs):
    t, p = np.array(pairs).T
    labels = list(range(7))
    assert M.f1_macro(t, p, labels=labels) == pytest.approx(
        f1_score(t, p, labels=labels, average="macro", zero_division=0), abs=1e-6)
    assert M.f1_macro(t, p) == pytest.approx(f1_score(t, p, average="macro", zero_division=0), abs=1e-6)
    assert M.accuracy(t, p) == pytest.approx(accuracy_score(t, p), abs=1e-6)
    expected = 0.67 * f1_score(t, p, labels=labels, average="macro", zero_division=0) + 0.33 * accuracy_score(t, p)
    assert M.abaw_expr_score(t, p) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("seed", range(10))
def test_au_and_va_and_reaction_scores_match_references(seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, (300, 12))
    prob = np.clip(t * 0.6 + rng.uniform(0, 0.6, t.shape), 0, 1)
    pred = (prob >= 0.5).astype(int)
    f1s = [f1_score(t[:, k], pred[:, k], zero_division=0) for k in range(12)]
    assert M.au_score(t, prob, year=2022) == pytest.approx(np.mean(f1s), abs=1e-6)
    assert M.au_mean_f1(t, prob) == pytest.approx(np.mean(f1s), abs=1e-6)
    for year in (2020, 2021):  # the 2nd ABAW still scored AUs as 0.5·F1 + 0.5·total accuracy
        assert M.au_score(t, pred, year=year) == pytest.approx(0.5 * np.mean(f1s) + 0.5 * (t == pred).mean(),
                                                               abs=1e-6)
    va_t, va_p = rng.uniform(-1, 1, (200, 2)), rng.uniform(-1, 1, (200, 2))
    assert M.abaw_va_score(va_t, va_p) == pytest.approx(
        (ccc_reference(va_t[:, 0], va_p[:, 0]) + ccc_reference(va_t[:, 1], va_p[:, 1])) / 2, abs=1e-6)
    r_t, r_p = rng.uniform(0, 1, (50, 7)), rng.uniform(0, 1, (50, 7))
    assert M.reaction_pearson(r_t, r_p) == pytest.approx(np.mean([pearsonr(r_t[:, k], r_p[:, k])[0] for k in range(7)]),
                                                          abs=1e-6)


def test_scores_from_the_papers_own_pairs():
    # SE-ResNet paper (Cafarelli et al.): F1 0.33, accuracy 0.63 -> 0.67*0.33 + 0.33*0.63 = 0.429
    assert 0.67 * 0.33 + 0.33 * 0.63 == pytest.approx(0.4290, abs=1e-4)


def test_scores_accept_logits():
    logits = np.eye(7)[[0, 1, 2, 3]] * 5
    assert M.accuracy([0, 1, 2, 3], logits) == 1.0
    assert M.f1_macro([0, 1, 2, 3], logits) == 1.0


def test_degenerate_inputs_are_defined_or_clear_errors():
    assert M.ccc([0.3, 0.3], [0.3, 0.3]) == 1.0         # identical constants: perfect agreement
    assert M.ccc([0.3, 0.3], [0.1, 0.1]) == 0.0         # constant but off: no agreement
    assert M.ccc([0.5], [0.5]) == 1.0                   # length 1
    with pytest.warns(RuntimeWarning):
        assert M.pearson([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]) == 0.0  # constant prediction
    assert M.f1_macro([0, 0, 1], [0, 0, 0], labels=range(7)) == pytest.approx(
        f1_score([0, 0, 1], [0, 0, 0], labels=range(7), average="macro", zero_division=0))
    assert M.f1_macro([3], [3]) == 1.0
    for bad in ([], [np.nan]):
        with pytest.raises(ValueError):
            M.ccc(bad, bad)
    with pytest.raises(ValueError, match="values"):
        M.ccc([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="columns"):
        M.abaw_va_score(np.zeros((3, 3)), np.zeros((3, 3)))
    for value in (M.ccc([1.0], [2.0]), M.au_score([[0, 0]], [[0, 0]])):
        assert np.isfinite(value)


def test_2022_scores():
    t = np.array([0, 7, 7, 1])
    p = np.array([0, 7, 1, 1])
    assert M.abaw_expr_score(t, p, year=2022) == pytest.approx(
        f1_score(t, p, labels=range(8), average="macro", zero_division=0))


class _FakeLearner:
    """What a HeadMetric reads of a fastai Learner: its outputs, targets and ``to_detach`` (a one-process
    Learner's: detached, on the CPU; under torchrun it gathers the ranks' batches)."""

    def __init__(self, pred, y):
        self.pred, self.yb = pred, (y,)

    @staticmethod
    def to_detach(b):
        from fastai.torch_core import to_detach

        return to_detach(b)


def test_head_metric_accumulates_the_whole_set_and_masks_invalid():
    """Whole-set F1 differs from the mean of per-batch F1s; the metric must give the whole-set value."""
    rng = np.random.default_rng(0)
    t = rng.integers(0, 7, 256)
    p = np.where(rng.uniform(size=256) < 0.6, t, rng.integers(0, 7, 256))
    t_masked = t.copy()
    t_masked[::10] = -1
    metric = M.expr_f1()
    metric.reset()
    per_batch = []
    for s in range(0, 256, 32):
        logits = torch.nn.functional.one_hot(torch.tensor(p[s:s + 32]), 7).float()
        metric.accumulate(_FakeLearner({"expr": logits, "va": torch.zeros(32, 2)},
                                       {"expr": torch.tensor(t_masked[s:s + 32])}))
        keep = t_masked[s:s + 32] >= 0
        per_batch.append(f1_score(t[s:s + 32][keep], p[s:s + 32][keep], labels=range(7), average="macro",
                                  zero_division=0))
    keep = t_masked >= 0
    whole = f1_score(t[keep], p[keep], labels=range(7), average="macro", zero_division=0)
    assert metric.value == pytest.approx(whole, abs=1e-6)
    assert abs(np.mean(per_batch) - whole) > 1e-3


def test_va_metric_reads_one_column():
    rng = np.random.default_rng(1)
    t = rng.uniform(-1, 1, (64, 2)).astype(np.float32)
    p = (t + rng.normal(0, 0.3, t.shape)).astype(np.float32)
    t[:5] = -5.0
    m = M.va_ccc("arousal")
    m.reset()
    m.accumulate(_FakeLearner({"va": torch.tensor(p)}, {"va": torch.tensor(t)}))
    assert m.value == pytest.approx(ccc_reference(t[5:, 1], p[5:, 1]), abs=1e-5)
    assert m.name == "ccc_arousal"


def test_task_metrics_name_the_columns_of_the_heads_a_model_has():
    """FC_A's table shows arousal only, the joint FC's all four columns; the values are the chapter's scores."""
    names = lambda tasks, **kw: [m.name for m in M.task_metrics(tasks, **kw)]  # noqa: E731
    assert names(("arousal",)) == ["ccc_arousal"]
    assert names(("arousal", "valence", "expr")) == ["expr_f1", "expr_acc", "ccc_valence", "ccc_arousal"]
    assert names(("expr", "va")) == names(("expr", "valence", "arousal"))
    rng = np.random.default_rng(2)
    t = rng.integers(0, 8, 200)
    logits = torch.nn.functional.one_hot(torch.tensor(np.where(rng.uniform(size=200) < 0.5, t, 7)), 8).float()
    f1, acc = M.task_metrics(("expr",), n_classes=8)
    for m in (f1, acc):
        m.reset()
        m.accumulate(_FakeLearner({"expr": logits}, {"expr": torch.tensor(t)}))
    p = logits.argmax(-1).numpy()
    assert f1.value == pytest.approx(f1_score(t, p, labels=range(8), average="macro", zero_division=0))
    assert acc.value == pytest.approx(accuracy_score(t, p))
