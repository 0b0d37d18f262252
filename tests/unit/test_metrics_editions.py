"""The ABAW scores per edition, each against an independent reference (scikit-learn, scipy, a CCC written
here from its definition), on random inputs and on degenerate ones; unannotated rows; the year argument."""
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, f1_score

from affectlab import metrics as M

EDITIONS_7 = (2020, 2021)            # 0.67·F1 + 0.33·acc over 7 expressions; 0.5·F1 + 0.5·acc for AUs
EDITIONS_8 = (2022, 2023, 2024, 2031)  # F1 over 8 expressions; mean F1 over the AUs


def ccc_reference(t, p):
    """CCC from its definition: 2·cov / (var_t + var_p + (mean_t − mean_p)²), population statistics."""
    t, p = np.asarray(t, float), np.asarray(p, float)
    cov = np.mean((t - t.mean()) * (p - p.mean()))
    return 2 * cov / (np.var(t) + np.var(p) + (t.mean() - p.mean()) ** 2)


def expr_reference(t, p, year):
    n = 7 if year < 2022 else 8
    f1 = f1_score(t, p, labels=list(range(n)), average="macro", zero_division=0)
    return 0.67 * f1 + 0.33 * accuracy_score(t, p) if year < 2022 else f1


def au_reference(t, p, year):
    """The teams' formula: mean of sklearn's per-AU binary F1; accuracy over all N×K entries."""
    f1 = np.mean([f1_score(t[:, k], p[:, k], zero_division=0) for k in range(t.shape[1])])
    return 0.5 * f1 + 0.5 * accuracy_score(t.ravel(), p.ravel()) if year < 2022 else f1


# --- the year argument ------------------------------------------------------------------------------------

@pytest.mark.parametrize("year", [2020, 2021, 2022, 2023, 2024, 2025, 2031, np.int64(2023)])
def test_every_year_from_2020_is_accepted(year):
    assert M.abaw_edition(year) == int(year)
    assert np.isfinite(M.abaw_expr_score([0, 1], [0, 1], year=year))
    assert np.isfinite(M.au_score([[0, 1]], [[0, 1]], year=year))


@pytest.mark.parametrize("year", [2019, 2000, 0, -2021, 20222, 2021.5, 2021.0, "2021", None, True])
def test_nonsense_years_are_clear_errors(year):
    for call in (lambda: M.abaw_expr_score([0, 1], [0, 1], year=year),
                 lambda: M.au_score([[0, 1]], [[0, 1]], year=year),
                 lambda: M.abaw_mtl_score([[0, 0]], [[0, 0]], [0], [0], [[1]], [[1]], year=year)):
        with pytest.raises(ValueError, match="year"):
            call()


@pytest.mark.parametrize("year", EDITIONS_7)
def test_no_multitask_score_before_2022(year):
    with pytest.raises(ValueError, match="2022"):
        M.abaw_mtl_score([[0, 0]], [[0, 0]], [0], [0], [[1]], [[1]], year=year)


# --- expression -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("year", EDITIONS_7 + EDITIONS_8)
def test_expression_score_matches_sklearn(seed, year):
    rng = np.random.default_rng(seed)
    n_cls = 7 if year < 2022 else 8
    n = int(rng.integers(5, 400))
    t = rng.integers(0, n_cls, n)
    scores = rng.normal(size=(n, n_cls)) + 2.0 * np.eye(n_cls)[t] * rng.uniform(0, 1.5)
    p = scores.argmax(1)
    expected = expr_reference(t, p, year)
    assert M.abaw_expr_score(t, p, year=year) == pytest.approx(expected, abs=1e-9)
    assert M.abaw_expr_score(t, scores, year=year) == pytest.approx(expected, abs=1e-9)  # argmax of scores


def test_expression_formula_changes_in_2022():
    t = np.array([0, 1, 2, 3, 4, 5, 6, 0, 0, 4])
    p = np.array([0, 1, 2, 3, 4, 5, 0, 0, 4, 4])
    f1_7 = f1_score(t, p, labels=range(7), average="macro", zero_division=0)
    assert M.abaw_expr_score(t, p, year=2021) == pytest.approx(0.67 * f1_7 + 0.33 * 0.8)
    assert M.abaw_expr_score(t, p, year=2020) == M.abaw_expr_score(t, p, year=2021)
    # 2022: F1 alone, over 8 classes — Other (7) counts in the mean even where nobody shows it
    assert M.abaw_expr_score(t, p, year=2022) == pytest.approx(f1_7 * 7 / 8)


def test_absent_class_counts_as_zero_in_the_edition_average():
    """A short validation set without Fear (3) and Sadness (5): the ABAW convention (ΣF1 over all the
    edition's classes / C) keeps them as F1 = 0; scikit-learn without ``labels=`` would drop them and
    average over the classes it saw only."""
    t = np.array([0, 1, 1, 2, 4, 4, 6])
    p = np.array([0, 1, 4, 2, 4, 4, 6])
    seen = f1_score(t, p, average="macro", zero_division=0)                     # over {0, 1, 2, 4, 6}
    edition = f1_score(t, p, labels=range(7), average="macro", zero_division=0)  # over all 7
    assert edition == pytest.approx(seen * 5 / 7)
    assert M.f1_macro(t, p, labels=range(7)) == pytest.approx(edition)
    assert M.f1_macro(t, p) == pytest.approx(seen)
    assert M.abaw_expr_score(t, p, year=2021) == pytest.approx(0.67 * edition + 0.33 * accuracy_score(t, p))
    assert M.abaw_expr_score(t, p, year=2022) == pytest.approx(seen * 5 / 8)
    # a class only predicted (never true) is an F1 of 0 as well, in both conventions
    assert M.f1_macro([0, 0], [0, 3], labels=range(7)) == pytest.approx(
        f1_score([0, 0], [0, 3], labels=range(7), average="macro", zero_division=0))


@pytest.mark.parametrize("year", EDITIONS_7 + EDITIONS_8)
@pytest.mark.parametrize("constant", [0, 4])
def test_constant_expression_prediction(year, constant):
    rng = np.random.default_rng(constant)
    t = rng.integers(0, 7, 300)
    p = np.full_like(t, constant)
    assert M.abaw_expr_score(t, p, year=year) == pytest.approx(expr_reference(t, p, year), abs=1e-9)


@pytest.mark.parametrize("year", EDITIONS_7 + EDITIONS_8)
def test_unannotated_expression_rows_are_dropped(year):
    rng = np.random.default_rng(year)
    n_cls = 7 if year < 2022 else 8
    t = rng.integers(0, n_cls, 200)
    p = np.where(rng.uniform(size=200) < 0.5, t, rng.integers(0, n_cls, 200))
    masked = t.copy()
    masked[rng.uniform(size=200) < 0.3] = -1
    keep = masked >= 0
    assert M.abaw_expr_score(masked, p, year=year) == pytest.approx(expr_reference(t[keep], p[keep], year))
    assert M.accuracy(masked, p) == pytest.approx(accuracy_score(t[keep], p[keep]))
    assert M.f1_macro(masked, p) == pytest.approx(f1_score(t[keep], p[keep], average="macro", zero_division=0))
    with pytest.raises(ValueError, match="no annotated"):
        M.abaw_expr_score(np.full(5, -1), np.zeros(5), year=year)


def test_expression_labels_outside_the_edition_are_refused():
    with pytest.raises(ValueError, match="classes"):
        M.abaw_expr_score([0, 7], [0, 7], year=2021)       # Other does not exist before 2022
    with pytest.raises(ValueError, match="classes"):
        M.abaw_expr_score([0, 1], [0, 8], year=2022)
    with pytest.raises(ValueError, match="columns"):
        M.abaw_expr_score([0, 1], np.eye(8)[[0, 1]], year=2021)
    with pytest.raises(ValueError, match="negative"):
        M.accuracy([0, -2], [0, 1])
    with pytest.raises(ValueError, match="integer"):
        M.f1_macro([0, 1.5], [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        M.abaw_expr_score([0, 1], [[0.0] * 7, [np.nan] * 7])


# --- action units ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("year", EDITIONS_7 + EDITIONS_8)
def test_au_score_matches_the_reference_formula(seed, year):
    rng = np.random.default_rng(seed)
    k = 8 if year == 2020 else 12
    n = int(rng.integers(2, 400))
    t = (rng.uniform(size=(n, k)) < rng.uniform(0.05, 0.6, k)).astype(int)
    prob = np.clip(0.5 * t + rng.uniform(0, 0.7, t.shape), 0, 1)
    pred = (prob >= 0.5).astype(int)
    assert M.au_score(t, prob, year=year) == pytest.approx(au_reference(t, pred, year), abs=1e-9)
    assert M.au_score(t, pred, year=year) == pytest.approx(au_reference(t, pred, year), abs=1e-9)
    # another threshold is applied to probabilities
    assert M.au_score(t, prob, year=year, threshold=0.3) == pytest.approx(
        au_reference(t, (prob >= 0.3).astype(int), year), abs=1e-9)


def test_2021_au_score_keeps_the_accuracy_term():
    """The bug: ``year >= 2021`` returned the mean F1 alone. The 2nd ABAW (2021) scored AUs as
    0.5·mean F1 + 0.5·total accuracy, like 2020; the score became F1 alone in 2022."""
    rng = np.random.default_rng(2021)
    t = (rng.uniform(size=(500, 12)) < 0.25).astype(int)
    p = np.where(rng.uniform(size=t.shape) < 0.75, t, 1 - t)
    f1 = np.mean([f1_score(t[:, k], p[:, k]) for k in range(12)])
    acc = accuracy_score(t.ravel(), p.ravel())
    assert M.au_score(t, p, year=2021) == pytest.approx(0.5 * f1 + 0.5 * acc)
    assert M.au_score(t, p, year=2021) - f1 > 0.05   # what the old code returned was visibly lower
    assert M.au_score(t, p, year=2022) == pytest.approx(f1)
    assert M.au_mean_f1(t, p) == pytest.approx(f1)


@pytest.mark.parametrize("year", EDITIONS_7 + EDITIONS_8)
def test_au_degenerate_columns(year):
    rng = np.random.default_rng(0)
    t = rng.integers(0, 2, (50, 4))
    t[:, 0] = 1                         # an AU present in every frame
    t[:, 1] = 0                         # an AU absent from every frame
    p = rng.integers(0, 2, (50, 4))
    for p0, p1 in [(1, 0), (0, 1), (1, 1), (0, 0)]:
        q = p.copy()
        q[:, 0], q[:, 1] = p0, p1       # constant predictions on both
        assert M.au_score(t, q, year=year) == pytest.approx(au_reference(t, q, year), abs=1e-9)
    # all-one truth and all-one prediction: F1 = 1; all-zero truth and prediction: F1 = 0 (nothing to find)
    ones, zeros = np.ones((10, 1), int), np.zeros((10, 1), int)
    assert M.au_mean_f1(ones, ones) == 1.0
    assert M.au_mean_f1(zeros, zeros) == 0.0
    assert M.au_score(zeros, zeros, year=2021) == pytest.approx(0.5)   # accuracy 1, F1 0
    assert M.au_score(ones, zeros, year=2021) == 0.0


@pytest.mark.parametrize("year", EDITIONS_7 + EDITIONS_8)
def test_unannotated_au_entries_are_dropped(year):
    rng = np.random.default_rng(year)
    t = rng.integers(0, 2, (300, 12))
    p = np.where(rng.uniform(size=t.shape) < 0.7, t, 1 - t)
    masked = t.copy()
    masked[rng.uniform(size=300) < 0.2] = -1            # whole unannotated frames (Aff-Wild2)
    masked[rng.uniform(size=t.shape) < 0.05] = -1       # and single entries
    ok = masked >= 0
    f1 = np.mean([f1_score(t[ok[:, k], k], p[ok[:, k], k], zero_division=0) for k in range(12)])
    expected = f1 if year >= 2022 else 0.5 * f1 + 0.5 * accuracy_score(t[ok], p[ok])
    assert M.au_score(masked, p, year=year) == pytest.approx(expected, abs=1e-9)
    masked[:, 3] = -1
    with pytest.raises(ValueError, match="no annotated"):
        M.au_score(masked, p, year=year)


def test_au_inputs_are_checked():
    with pytest.raises(ValueError, match="sigmoid"):
        M.au_score([[0, 1]], [[-2.0, 3.0]])                 # logits, not probabilities
    with pytest.raises(ValueError, match="0, 1"):
        M.au_score([[0, 2]], [[0, 1]])
    with pytest.raises(ValueError, match="columns"):
        M.au_score(np.zeros((3, 12)), np.zeros((3, 8)))
    with pytest.raises(ValueError, match="rows"):
        M.au_score(np.zeros((3, 2)), np.zeros((4, 2)))


# --- valence-arousal, multi-task, Hume-Reaction -----------------------------------------------------------

@pytest.mark.parametrize("seed", range(8))
def test_va_score_matches_the_ccc_definition(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 500))
    t = rng.uniform(-1, 1, (n, 2))
    p = np.clip(0.6 * t + rng.normal(0, 0.4, t.shape) + rng.normal(0, 0.2, 2), -1, 1)
    expected = (ccc_reference(t[:, 0], p[:, 0]) + ccc_reference(t[:, 1], p[:, 1])) / 2
    assert M.abaw_va_score(t, p) == pytest.approx(expected, abs=1e-9)
    masked = t.copy()
    drop = rng.uniform(size=n) < 0.3
    drop[0] = False
    masked[drop] = -5.0
    expected = (ccc_reference(t[~drop, 0], p[~drop, 0]) + ccc_reference(t[~drop, 1], p[~drop, 1])) / 2
    assert M.abaw_va_score(masked, p) == pytest.approx(expected, abs=1e-9)


def test_va_degenerate_inputs():
    t = np.random.default_rng(0).uniform(-1, 1, (100, 2))
    assert M.abaw_va_score(t, np.zeros_like(t)) == 0.0         # constant prediction: no concordance
    assert M.abaw_va_score(t, t) == pytest.approx(1.0)
    assert M.abaw_va_score(np.full((4, 2), 0.2), np.full((4, 2), 0.2)) == 1.0
    with pytest.raises(ValueError, match="no annotated"):
        M.abaw_va_score(np.full((4, 2), -5.0), np.zeros((4, 2)))
    one_missing = t.copy()
    one_missing[:10, 1] = -5.0                                   # either column marks the row
    assert M.abaw_va_score(one_missing, t) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("year", [2022, 2024])
def test_multitask_score_is_the_sum_of_the_2022_scores(seed, year):
    rng = np.random.default_rng(seed)
    n = 300
    va_t = rng.uniform(-1, 1, (n, 2))
    va_p = np.clip(va_t + rng.normal(0, 0.5, va_t.shape), -1, 1)
    ex_t = rng.integers(0, 8, n)
    ex_s = rng.normal(size=(n, 8)) + 1.5 * np.eye(8)[ex_t]
    au_t = rng.integers(0, 2, (n, 12))
    au_prob = np.clip(0.5 * au_t + rng.uniform(0, 0.7, au_t.shape), 0, 1)
    # s-Aff-Wild2: frames labelled for some tasks only
    va_m, ex_m, au_m = va_t.copy(), ex_t.copy(), au_t.copy()
    va_m[rng.uniform(size=n) < 0.2] = -5.0
    ex_m[rng.uniform(size=n) < 0.2] = -1
    au_m[rng.uniform(size=n) < 0.2] = -1
    v, e, a = (va_m != -5).all(1), ex_m >= 0, (au_m >= 0).all(1)
    expected = ((ccc_reference(va_t[v, 0], va_p[v, 0]) + ccc_reference(va_t[v, 1], va_p[v, 1])) / 2
                + f1_score(ex_t[e], ex_s[e].argmax(1), labels=range(8), average="macro", zero_division=0)
                + np.mean([f1_score(au_t[a, k], au_prob[a, k] >= 0.5, zero_division=0) for k in range(12)]))
    got = M.abaw_mtl_score(va_true=va_m, va_pred=va_p, expr_true=ex_m, expr_pred=ex_s, au_true=au_m,
                           au_pred=au_prob, year=year)
    assert got == pytest.approx(expected, abs=1e-9)
    assert got == pytest.approx(M.abaw_va_score(va_m, va_p) + M.abaw_expr_score(ex_m, ex_s, year=2022)
                                + M.au_score(au_m, au_prob, year=2022))
    assert -1 <= got <= 3


@pytest.mark.parametrize("seed", range(8))
def test_reaction_pearson_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 300))
    t = rng.uniform(0, 1, (n, 7))
    p = 0.4 * t + rng.uniform(0, 1, (n, 7))
    assert M.reaction_pearson(t, p) == pytest.approx(np.mean([pearsonr(t[:, k], p[:, k])[0] for k in range(7)]),
                                                      abs=1e-9)


def test_reaction_pearson_degenerate_inputs():
    rng = np.random.default_rng(0)
    t, p = rng.uniform(0, 1, (40, 7)), rng.uniform(0, 1, (40, 7))
    p[:, 2] = 0.5                                              # a constant prediction for one reaction
    others = [pearsonr(t[:, k], p[:, k])[0] for k in range(7) if k != 2]
    with pytest.warns(RuntimeWarning):
        assert M.reaction_pearson(t, p) == pytest.approx(sum(others) / 7)   # the constant one counts as 0
    with pytest.raises(ValueError, match="columns"):
        M.reaction_pearson(t[:, :6], p[:, :6])
    with pytest.raises(ValueError, match="rows"):
        M.reaction_pearson(t, p[:30])


def test_au_f1_metric_is_the_mean_f1_over_the_heads_aus():
    """The fastai ``au_f1`` (REC, 17 AUs) stays the mean per-AU F1, whatever the edition scores."""
    class Learner:
        def __init__(self, pred, y):
            self.pred, self.yb = pred, (y,)

    rng = np.random.default_rng(3)
    t = rng.integers(0, 2, (64, 17))
    logits = rng.normal(size=(64, 17)) + 2 * (t - 0.5)
    t_masked = t.copy()
    t_masked[:8] = -1
    m = M.au_f1()
    m.reset()
    m.accumulate(Learner({"au": torch.tensor(logits)}, {"au": torch.tensor(t_masked)}))
    pred = (1 / (1 + np.exp(-logits)) >= 0.5).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.mean([f1_score(t[8:, k], pred[8:, k], zero_division=0) for k in range(17)])
    assert m.value == pytest.approx(expected, abs=1e-6)
