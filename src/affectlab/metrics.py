"""The challenges' metrics, computed over a whole evaluation set, and fastai metrics that read one head.

Every function takes ``(y_true, y_pred)`` array-likes and returns a float. Degenerate inputs give a
defined, documented value or a clear ``ValueError`` — never a silent NaN:
- empty input or NaN values -> ValueError;
- CCC with both series constant: 1.0 if they are identical (the only case where its denominator is 0);
- Pearson with a constant series: 0.0 (no linear association can be measured), with a warning;
- F1 of a class absent from both truth and prediction: 0 (scikit-learn's ``zero_division=0``), and it
  counts in the macro average when ``labels`` names it, as the ABAW scores do (every class of the edition).

Scores per ABAW edition (``year`` is the year of the competition; anything before 2020, or not a year,
is a ``ValueError``):

============  ===============================================  ==========================================
edition       expression                                       action units
============  ===============================================  ==========================================
2020, 2021    0.67·macro-F1 + 0.33·accuracy, 7 classes         0.5·mean per-AU F1 + 0.5·total accuracy
2022 and on   macro-F1 over 8 classes (the 7 + Other)          mean per-AU F1 (12 AUs)
============  ===============================================  ==========================================

Valence-arousal is the mean CCC of valence and arousal in every edition; the 3rd ABAW (2022) multi-task
score is VA + expression + AU scores of 2022 (``abaw_mtl_score``); Hume-Reaction (2023) is the mean
Pearson ρ over its 7 reactions, Hume-Vidmimic2's emotional mimicry intensity (2024, 2025) the mean over its
6 emotions. "Total accuracy" of the AUs is the share of equal entries over the whole N×K matrix, as in the
organisers' and the teams' evaluation code (the 2nd ABAW, 2021, still scored AUs this way; only from 2022 is
the score F1 alone).

Unannotated rows — Aff-Wild2's sentinels: expression −1, valence/arousal −5, AU −1 — are never scored:
the functions that can receive them filter them out (each docstring says how), and a set with nothing
left to score is a ``ValueError``.

F1 and CCC are not averages of per-batch values: a batch may miss a class entirely and its CCC uses the
batch's own means. The fastai metrics below therefore accumulate predictions over the whole validation set
(one public implementation of these papers averaged per-batch F1 — chapter 02 shows how wrong that is).
"""
from __future__ import annotations

import numbers
import warnings
from typing import Callable, Sequence

import numpy as np
from fastai.learner import Metric

from affectlab.labels import (EXPRESSIONS, EXPRESSIONS_8, INVALID_AU, INVALID_EXPR, INVALID_VA, MIMICRY_EMOTIONS,
                              REACTIONS)

__all__ = [
    "ccc", "pearson", "f1_macro", "f1_binary", "accuracy", "abaw_expr_score", "abaw_va_score", "au_score",
    "au_mean_f1", "abaw_mtl_score", "abaw_edition", "reaction_pearson", "mimicry_pearson", "HeadMetric", "expr_f1",
    "expr_accuracy", "expr_score", "va_ccc", "va_score", "au_f1", "reaction_pearson_metric",
]

FIRST_YEAR = 2020   # the 1st ABAW (FG 2020)
LAST_YEAR = 2100    # a guard against typos (20222), not a statement about the future


def abaw_edition(year) -> int:
    """``year`` checked as an ABAW year: an integer from 2020 on (any later year is accepted and scored like
    2022+). Anything else — earlier years, booleans, fractions, strings, typos such as 20222 — is a
    ``ValueError``."""
    if isinstance(year, (bool, np.bool_)) or not isinstance(year, numbers.Integral):
        raise ValueError(f"year must be an integer ABAW year (2020 or later), got {year!r}")
    year = int(year)
    if year < FIRST_YEAR:
        raise ValueError(f"year={year}: the ABAW challenges start in {FIRST_YEAR}; no score is defined before")
    if year > LAST_YEAR:
        raise ValueError(f"year={year} is not a plausible ABAW year (typo?)")
    return year


def _vector(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN")
    return a


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = _vector(y_true, "y_true"), _vector(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}")
    return t, p


def ccc(y_true, y_pred) -> float:
    """Concordance correlation coefficient 2ρσxσy / (σx² + σy² + (μx − μy)²), population statistics.

    A plain function of two real series: it filters nothing (−5 is a real number to it); the VA score
    ``abaw_va_score`` is the one that drops Aff-Wild2's unannotated −5 rows."""
    t, p = _pair(y_true, y_pred)
    mt, mp = t.mean(), p.mean()
    cov = ((t - mt) * (p - mp)).mean()
    denom = t.var() + p.var() + (mt - mp) ** 2
    if denom == 0.0:  # both constant and equal: perfect agreement
        return 1.0
    return float(2.0 * cov / denom)


def pearson(y_true, y_pred) -> float:
    """Pearson's ρ; 0.0 (with a warning) when either series is constant. Filters nothing."""
    t, p = _pair(y_true, y_pred)
    st, sp = t.std(), p.std()
    if st == 0.0 or sp == 0.0:
        warnings.warn("pearson: a constant series has no defined correlation; returning 0.0", RuntimeWarning)
        return 0.0
    return float(((t - t.mean()) * (p - p.mean())).mean() / (st * sp))


def _labels_of(y_pred) -> np.ndarray:
    """Class indices from labels [N] or scores [N, C] (argmax)."""
    a = np.asarray(y_pred)
    if a.ndim == 2:
        a = a.argmax(axis=1)
    return a.reshape(-1)


def _integers(a: np.ndarray, name: str) -> np.ndarray:
    if not np.all(a == np.round(a)):
        raise ValueError(f"{name} must hold integer class labels, got e.g. {a[a != np.round(a)][0]}")
    return a.astype(np.int64)


def _class_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Integer labels with the unannotated truth rows (−1) removed; other negative truths are refused."""
    t = _integers(_vector(y_true, "y_true"), "y_true")
    scores = np.asarray(y_pred)
    if scores.ndim == 2:
        if scores.shape[0] != t.size:
            raise ValueError(f"y_true has {t.size} labels but y_pred has {scores.shape[0]} rows")
        _matrix(scores, "y_pred")  # empty / NaN scores: argmax would hide them
    p = _integers(_vector(_labels_of(y_pred), "y_pred"), "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    if (t < INVALID_EXPR).any():
        raise ValueError(f"y_true holds negative labels other than the unannotated sentinel {INVALID_EXPR}: "
                         f"{sorted(set(t[t < INVALID_EXPR].tolist()))}")
    keep = t != INVALID_EXPR
    if not keep.any():
        raise ValueError(f"y_true has no annotated row (every label is {INVALID_EXPR})")
    return t[keep], p[keep]


def f1_macro(y_true, y_pred, labels: Sequence[int] | None = None) -> float:
    """Unweighted mean of the per-class F1 over ``labels`` (default: every class seen in truth or
    prediction). ``y_pred`` may be labels or per-class scores (argmax taken).

    Rows whose truth is −1 (unannotated) are dropped before scoring. With ``labels``, a class absent from
    both truth and prediction scores 0 and still counts in the mean — scikit-learn's
    ``f1_score(..., labels=labels, average="macro", zero_division=0)``; without ``labels`` it is left out of
    the mean, like scikit-learn without ``labels=``. The ABAW scores always pass all the edition's classes.
    """
    t, p = _class_pair(y_true, y_pred)
    classes = np.unique(np.concatenate([t, p])) if labels is None else np.asarray(list(labels))
    if classes.size == 0:
        raise ValueError("labels is empty")
    scores = []
    for c in classes:
        tp = np.sum((t == c) & (p == c))
        fp = np.sum((t != c) & (p == c))
        fn = np.sum((t == c) & (p != c))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def f1_binary(y_true, y_pred) -> float:
    """F1 of the positive class of 0/1 labels (0 when there is no true positive); −1 truths are dropped."""
    return f1_macro(y_true, y_pred, labels=[1])


def chance_f1(y_true, labels: Sequence[int] = range(7), seed: int = 0) -> float:
    """The course's one "chance" macro-F1: the best of three guesses that never look at the face — always
    the most frequent class, a uniform draw, and a draw with the classes' own frequencies (NumPy generator
    seeded with ``seed``) — over the annotated rows (truth −1 left out). A model that learnt nothing from
    the faces scores about this; every chapter's "beats chance" check compares against it."""
    t = np.asarray(y_true).astype(np.int64).ravel()
    t = t[t >= 0]
    if t.size == 0:
        raise ValueError("chance_f1: no annotated rows")
    labels = list(labels)
    rng = np.random.default_rng(seed)
    prior = np.bincount(t, minlength=max(labels) + 1)[labels] / t.size
    guesses = (np.full_like(t, np.bincount(t).argmax()), rng.choice(labels, size=t.size),
               rng.choice(labels, size=t.size, p=prior / prior.sum()))
    return max(f1_macro(t, g, labels=labels) for g in guesses)


def accuracy(y_true, y_pred) -> float:
    """Share of equal labels; rows whose truth is −1 (unannotated) are dropped before scoring."""
    t, p = _class_pair(y_true, y_pred)
    return float(np.mean(t == p))


def _expr_classes(year: int) -> int:
    return len(EXPRESSIONS_8) if year >= 2022 else len(EXPRESSIONS)


def abaw_expr_score(y_true, y_pred, year: int = 2020) -> float:
    """ABAW expression score over a whole evaluation set.

    - 2020, 2021: 0.67·macro-F1 + 0.33·accuracy over the 7 classes of ``EXPRESSIONS``;
    - 2022 and later: macro-F1 over the 8 classes of ``EXPRESSIONS_8`` (the 7 + Other = 7).

    F1 is averaged over *all* the edition's classes, as the organisers define it (ΣF1/7, ΣF1/8): a class
    absent from a short validation set — from truth and prediction alike — counts as F1 = 0 rather than
    being left out of the mean (scikit-learn's ``labels=range(C)``). ``y_pred`` is labels [N] or scores
    [N, C] with C the edition's class count (argmax taken). Rows whose truth is −1 (unannotated) are
    dropped first; labels outside the edition's classes are a ``ValueError``.
    """
    year = abaw_edition(year)
    n = _expr_classes(year)
    scores = np.asarray(y_pred)
    if scores.ndim == 2 and scores.shape[1] != n:
        raise ValueError(f"year={year}: y_pred scores must have {n} columns (one per class), got {scores.shape[1]}")
    t, p = _class_pair(y_true, y_pred)
    for name, a in (("y_true", t), ("y_pred", p)):
        if ((a < 0) | (a >= n)).any():
            raise ValueError(f"year={year}: {name} holds labels outside the edition's {n} classes 0..{n - 1}: "
                             f"{sorted(set(a[(a < 0) | (a >= n)].tolist()))}")
    f1 = f1_macro(t, p, labels=range(n))
    if year >= 2022:
        return f1
    return 0.67 * f1 + 0.33 * accuracy(t, p)


def _matrix(x, name: str, cols: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty [N, K] array, got shape {a.shape}")
    if cols is not None and a.shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns, got {a.shape[1]}")
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN")
    return a


def abaw_va_score(y_true, y_pred) -> float:
    """Mean of CCC(valence) and CCC(arousal); columns are (valence, arousal). The same in every edition.

    Rows whose truth holds −5 (unannotated) in either column are dropped before scoring; a set with no
    annotated row is a ``ValueError``."""
    t, p = _matrix(y_true, "y_true", 2), _matrix(y_pred, "y_pred", 2)
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"y_true has {t.shape[0]} rows but y_pred has {p.shape[0]}")
    keep = ~(t == INVALID_VA).any(axis=1)
    if not keep.any():
        raise ValueError(f"y_true has no annotated row (every row holds {INVALID_VA})")
    t, p = t[keep], p[keep]
    return (ccc(t[:, 0], p[:, 0]) + ccc(t[:, 1], p[:, 1])) / 2


def _au_pair(y_true, y_pred, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0/1 truth and decisions [N, K] and the mask of annotated entries (truth ≠ −1)."""
    t = _matrix(y_true, "y_true")
    p = _matrix(y_pred, "y_pred", t.shape[1])
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"y_true has {t.shape[0]} rows but y_pred has {p.shape[0]}")
    if not np.isin(t, (0, 1, INVALID_AU)).all():
        raise ValueError(f"AU y_true must hold 0, 1 or {INVALID_AU} (unannotated)")
    if not np.isin(p, (0, 1)).all():
        if (p < 0).any() or (p > 1).any():
            raise ValueError("AU y_pred must be 0/1 decisions or probabilities in [0, 1] (apply a sigmoid to logits)")
        p = p >= threshold
    annotated = t != INVALID_AU
    empty = np.flatnonzero(~annotated.any(axis=0))
    if empty.size:
        raise ValueError(f"AU column(s) {empty.tolist()} have no annotated row (all {INVALID_AU}); "
                         "pass only the AUs that are annotated")
    return t.astype(np.int64), p.astype(np.int64), annotated


def _au_f1s(t: np.ndarray, p: np.ndarray, annotated: np.ndarray) -> list[float]:
    return [f1_binary(t[annotated[:, k], k], p[annotated[:, k], k]) for k in range(t.shape[1])]


def au_mean_f1(y_true, y_pred, threshold: float = 0.5) -> float:
    """Mean over the AUs (columns) of the binary F1 of each AU — the AU score from 2022 on.

    ``y_true`` is [N, K] with 0, 1 or −1 (unannotated: that entry is dropped from its AU's F1); ``y_pred``
    is 0/1 decisions or probabilities in [0, 1], thresholded at ``threshold`` (``>=``). An AU with no true
    and no predicted positive scores 0 and counts in the mean; an AU column with no annotated entry is a
    ``ValueError``."""
    t, p, annotated = _au_pair(y_true, y_pred, threshold)
    return float(np.mean(_au_f1s(t, p, annotated)))


def au_score(y_true, y_pred, year: int = 2020, threshold: float = 0.5) -> float:
    """ABAW AU detection score over [N, K] labels (``y_pred`` probabilities are thresholded at ``threshold``):

    - 2020, 2021: 0.5·(mean per-AU F1) + 0.5·(total accuracy), the accuracy being the share of equal
      entries over the whole N×K matrix (8 AUs in 2020, 12 in 2021);
    - 2022 and later: mean per-AU F1 (12 AUs), see ``au_mean_f1``.

    Entries whose truth is −1 (unannotated) are dropped from both the F1 of their AU and the accuracy.
    The columns are scored as given: pass the edition's AUs (``AUS_ABAW2020`` / ``AUS_ABAW``)."""
    year = abaw_edition(year)
    t, p, annotated = _au_pair(y_true, y_pred, threshold)
    mean_f1 = float(np.mean(_au_f1s(t, p, annotated)))
    if year >= 2022:
        return mean_f1
    total_accuracy = float(np.mean(t[annotated] == p[annotated]))
    return 0.5 * mean_f1 + 0.5 * total_accuracy


def abaw_mtl_score(va_true, va_pred, expr_true, expr_pred, au_true, au_pred, year: int = 2022,
                   threshold: float = 0.5) -> float:
    """Multi-task score of the 3rd ABAW (2022) and later MTL challenges:
    mean CCC of valence/arousal + macro-F1 over the 8 expressions + mean F1 over the 12 AUs (range 0..3).

    The three terms are ``abaw_va_score``, ``abaw_expr_score(year=2022)`` and ``au_score(year=2022)``, each
    over the frames annotated for its task (unannotated −5 / −1 / −1 rows dropped per task, as in
    s-Aff-Wild2, where a frame may be labelled for some tasks only). Before 2022 there was no single MTL
    score: a ``ValueError``."""
    year = abaw_edition(year)
    if year < 2022:
        raise ValueError(f"year={year}: the multi-task score is defined from the 3rd ABAW (2022) on")
    return (abaw_va_score(va_true, va_pred) + abaw_expr_score(expr_true, expr_pred, year=year)
            + au_score(au_true, au_pred, year=year, threshold=threshold))


def reaction_pearson(y_true, y_pred, targets: Sequence[str] = REACTIONS) -> float:
    """Hume-Reaction score (5th ABAW, 2023): mean Pearson ρ over the 7 reaction intensities (columns, in
    ``REACTIONS`` order); with ``targets``, over those columns (``MIMICRY_EMOTIONS``: ``mimicry_pearson``).
    The datasets have no unannotated sentinel, so nothing is filtered; a constant column scores 0 (with a
    warning, see ``pearson``)."""
    t = _matrix(y_true, "y_true", len(targets))
    p = _matrix(y_pred, "y_pred", len(targets))
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"y_true has {t.shape[0]} rows but y_pred has {p.shape[0]}")
    return float(np.mean([pearson(t[:, k], p[:, k]) for k in range(t.shape[1])]))


def mimicry_pearson(y_true, y_pred) -> float:
    """Hume-Vidmimic2 score (emotional mimicry intensity, 6th and 8th ABAW): mean Pearson ρ over its 6
    emotions (columns in ``MIMICRY_EMOTIONS`` order), as the challenge and the teams' code compute it."""
    return reaction_pearson(y_true, y_pred, MIMICRY_EMOTIONS)


# --- fastai metrics ---------------------------------------------------------------------------------------

def _valid_rows(target: np.ndarray, invalid: float | None) -> np.ndarray:
    if invalid is None:
        return np.ones(len(target), dtype=bool)
    flat = target.reshape(len(target), -1)
    return ~(flat == invalid).any(axis=1)


class HeadMetric(Metric):
    """A fastai metric over the whole validation set that reads one head of a dict-output model.

    It keeps every batch's predictions and targets and applies ``fn`` once, in ``value`` — never a mean of
    per-batch values. Rows whose target holds the ``invalid`` sentinel are left out. Under ``torchrun`` the
    batches are every rank's, gathered (each rank then computes the same value over the whole set).
    """

    def __init__(self, fn: Callable, head: str, name: str, target: str | None = None, column: int | None = None,
                 invalid: float | None = None, transform: Callable | None = None):
        self.fn, self.head, self._name = fn, head, name
        self.target, self.column, self.invalid, self.transform = target or head, column, invalid, transform
        self.reset()

    # fastai's Metric protocol: reset / accumulate / value / name
    def reset(self):
        self.preds, self.targs = [], []

    def accumulate(self, learn):
        pred = learn.pred[self.head] if isinstance(learn.pred, dict) else learn.pred
        y = learn.yb[-1]
        targ = y[self.target] if isinstance(y, dict) else y
        # fastai's Learner.to_detach: under torchrun (DistributedDL) every rank's batch, gathered, with the
        # distributed sampler's padding cut off, so ``value`` scores the whole validation set on every rank
        # a Learner gathers the ranks' batches; a plain holder of one batch (chapter 02's) is read as it is
        detach = getattr(learn, "to_detach", None) or (lambda t: t.cpu())
        self.preds.append(detach(pred.detach().float()))
        self.targs.append(detach(targ.detach()))

    @property
    def value(self):
        if not self.preds:
            return None
        import torch

        pred = torch.cat(self.preds).numpy()
        targ = torch.cat(self.targs).numpy()
        if self.transform is not None:
            pred = self.transform(pred)
        if self.column is not None:
            pred, targ = pred[:, self.column], targ[:, self.column]
        keep = _valid_rows(targ, self.invalid)
        if not keep.any():
            return None
        return self.fn(targ[keep], pred[keep])

    @property
    def name(self):
        return self._name

    def __repr__(self):
        return f"HeadMetric({self._name})"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def expr_f1(head: str = "expr", n_classes: int = len(EXPRESSIONS)) -> HeadMetric:
    return HeadMetric(lambda t, p: f1_macro(t, p, labels=range(n_classes)), head, "expr_f1", invalid=INVALID_EXPR)


def expr_accuracy(head: str = "expr") -> HeadMetric:
    return HeadMetric(accuracy, head, "expr_acc", invalid=INVALID_EXPR)


def expr_score(head: str = "expr", year: int = 2020) -> HeadMetric:
    """The ABAW expression score of ``year``'s edition (2022 on: macro-F1 over the 8 classes with Other)."""
    year = abaw_edition(year)
    return HeadMetric(lambda t, p: abaw_expr_score(t, p, year=year), head, "expr_score", invalid=INVALID_EXPR)


def va_ccc(which: str, head: str = "va") -> HeadMetric:
    col = {"valence": 0, "arousal": 1}[which]
    return HeadMetric(ccc, head, f"ccc_{which}", column=col, invalid=INVALID_VA)


def va_score(head: str = "va") -> HeadMetric:
    return HeadMetric(abaw_va_score, head, "va_score", invalid=INVALID_VA)


def au_f1(head: str = "au") -> HeadMetric:
    """Mean per-AU F1 over the columns the head predicts (whatever AU set it has: REC predicts 17)."""
    return HeadMetric(au_mean_f1, head, "au_f1", invalid=INVALID_AU, transform=_sigmoid)


def task_metrics(tasks: Sequence[str], n_classes: int = len(EXPRESSIONS)) -> list[HeadMetric]:
    """The columns fastai's epoch table shows for a model predicting ``tasks`` (``"expr"``, ``"valence"``,
    ``"arousal"``, or ``"va"`` for both), each over the whole validation set: macro-F1 and accuracy of the
    expressions, CCC of each VA dimension. They watch the training; they do not change it."""
    tasks = set(tasks) | ({"valence", "arousal"} if "va" in tasks else set())
    out = [expr_f1(n_classes=n_classes), expr_accuracy()] if "expr" in tasks else []
    return out + [va_ccc(d) for d in ("valence", "arousal") if d in tasks]


def reaction_pearson_metric(head: str = "intensity", targets: Sequence[str] = REACTIONS) -> HeadMetric:
    """Mean Pearson ρ over the intensity columns ``targets`` (Hume-Reaction's 7 reactions by default; a
    video data set's ``dls.targets``). Named ``reaction_pearson`` whatever the targets: FaceRNET's recipe keeps
    the best epoch by that name."""
    from functools import partial

    return HeadMetric(partial(reaction_pearson, targets=tuple(targets)), head, "reaction_pearson")
