"""The challenges' metrics, computed over a whole evaluation set, and fastai metrics that read one head.

Every function takes ``(y_true, y_pred)`` array-likes and returns a float. Degenerate inputs give a
defined, documented value or a clear ``ValueError`` — never a silent NaN:
- empty input or NaN values -> ValueError;
- CCC with both series constant: 1.0 if they are identical (the only case where its denominator is 0);
- Pearson with a constant series: 0.0 (no linear association can be measured), with a warning;
- F1 of a class absent from both truth and prediction: 0 (scikit-learn's ``zero_division=0``), and it
  counts in the macro average when ``labels`` names it, as the ABAW scores do (all 7 classes).

F1 and CCC are not averages of per-batch values: a batch may miss a class entirely and its CCC uses the
batch's own means. The fastai metrics below therefore accumulate predictions over the whole validation set
(one public implementation of these papers averaged per-batch F1 — chapter 02 shows how wrong that is).
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
from fastai.learner import Metric

from affectlab.labels import EXPRESSIONS, INVALID_AU, INVALID_EXPR, INVALID_VA, REACTIONS

__all__ = [
    "ccc", "pearson", "f1_macro", "f1_binary", "accuracy", "abaw_expr_score", "abaw_va_score", "au_score",
    "reaction_pearson", "HeadMetric", "expr_f1", "expr_accuracy", "expr_score", "va_ccc", "va_score",
    "au_f1", "reaction_pearson_metric",
]


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
    """Concordance correlation coefficient 2ρσxσy / (σx² + σy² + (μx − μy)²), population statistics."""
    t, p = _pair(y_true, y_pred)
    mt, mp = t.mean(), p.mean()
    cov = ((t - mt) * (p - mp)).mean()
    denom = t.var() + p.var() + (mt - mp) ** 2
    if denom == 0.0:  # both constant and equal: perfect agreement
        return 1.0
    return float(2.0 * cov / denom)


def pearson(y_true, y_pred) -> float:
    """Pearson's ρ; 0.0 (with a warning) when either series is constant."""
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


def _class_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = _vector(y_true, "y_true").astype(np.int64)
    p = _vector(_labels_of(y_pred), "y_pred").astype(np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    return t, p


def f1_macro(y_true, y_pred, labels: Sequence[int] | None = None) -> float:
    """Unweighted mean of the per-class F1 over ``labels`` (default: every class seen in truth or
    prediction). ``y_pred`` may be labels or per-class scores (argmax taken)."""
    t, p = _class_pair(y_true, y_pred)
    classes = np.unique(np.concatenate([t, p])) if labels is None else np.asarray(labels)
    scores = []
    for c in classes:
        tp = np.sum((t == c) & (p == c))
        fp = np.sum((t != c) & (p == c))
        fn = np.sum((t == c) & (p != c))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def f1_binary(y_true, y_pred) -> float:
    """F1 of the positive class of 0/1 labels (0 when there is no true or predicted positive)."""
    return f1_macro(y_true, y_pred, labels=[1])


def accuracy(y_true, y_pred) -> float:
    t, p = _class_pair(y_true, y_pred)
    return float(np.mean(t == p))


def abaw_expr_score(y_true, y_pred, year: int = 2020) -> float:
    """ABAW expression score: 2020 = 0.67·macro-F1 + 0.33·accuracy over the 7 classes;
    2022+ = macro-F1 over the 8 classes (with Other)."""
    if year >= 2022:
        return f1_macro(y_true, y_pred, labels=range(len(EXPRESSIONS) + 1))
    labels = range(len(EXPRESSIONS))
    return 0.67 * f1_macro(y_true, y_pred, labels=labels) + 0.33 * accuracy(y_true, y_pred)


def _matrix(x, name: str, cols: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty [N, K] array, got shape {a.shape}")
    if cols is not None and a.shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns, got {a.shape[1]}")
    return a


def abaw_va_score(y_true, y_pred) -> float:
    """Mean of CCC(valence) and CCC(arousal); columns are (valence, arousal)."""
    t, p = _matrix(y_true, "y_true", 2), _matrix(y_pred, "y_pred", 2)
    return (ccc(t[:, 0], p[:, 0]) + ccc(t[:, 1], p[:, 1])) / 2


def au_score(y_true, y_pred, year: int = 2020, threshold: float = 0.5) -> float:
    """AU detection score over [N, K] 0/1 labels (``y_pred`` probabilities are thresholded):
    2020 = 0.5·mean per-AU F1 + 0.5·accuracy over all N·K decisions; 2021+ = mean per-AU F1."""
    t = _matrix(y_true, "y_true")
    p = _matrix(y_pred, "y_pred", t.shape[1])
    p = (p >= threshold).astype(np.int64) if not np.isin(p, (0, 1)).all() else p.astype(np.int64)
    mean_f1 = float(np.mean([f1_binary(t[:, k], p[:, k]) for k in range(t.shape[1])]))
    if year >= 2021:
        return mean_f1
    return 0.5 * mean_f1 + 0.5 * float(np.mean(t.astype(np.int64) == p))


def reaction_pearson(y_true, y_pred) -> float:
    """Hume-Reaction score: mean Pearson ρ over the 7 reaction intensities (columns)."""
    t = _matrix(y_true, "y_true", len(REACTIONS))
    p = _matrix(y_pred, "y_pred", len(REACTIONS))
    return float(np.mean([pearson(t[:, k], p[:, k]) for k in range(t.shape[1])]))


# --- fastai metrics ---------------------------------------------------------------------------------------

def _valid_rows(target: np.ndarray, invalid: float | None) -> np.ndarray:
    if invalid is None:
        return np.ones(len(target), dtype=bool)
    flat = target.reshape(len(target), -1)
    return ~(flat == invalid).any(axis=1)


class HeadMetric(Metric):
    """A fastai metric over the whole validation set that reads one head of a dict-output model.

    It keeps every batch's predictions and targets and applies ``fn`` once, in ``value`` — never a mean of
    per-batch values. Rows whose target holds the ``invalid`` sentinel are left out.
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
        self.preds.append(pred.detach().float().cpu())
        self.targs.append(targ.detach().cpu())

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


def expr_score(head: str = "expr") -> HeadMetric:
    return HeadMetric(abaw_expr_score, head, "expr_score", invalid=INVALID_EXPR)


def va_ccc(which: str, head: str = "va") -> HeadMetric:
    col = {"valence": 0, "arousal": 1}[which]
    return HeadMetric(ccc, head, f"ccc_{which}", column=col, invalid=INVALID_VA)


def va_score(head: str = "va") -> HeadMetric:
    return HeadMetric(abaw_va_score, head, "va_score", invalid=INVALID_VA)


def au_f1(head: str = "au") -> HeadMetric:
    return HeadMetric(lambda t, p: au_score(t, p, year=2021), head, "au_f1", invalid=INVALID_AU,
                      transform=_sigmoid)


def reaction_pearson_metric(head: str = "intensity") -> HeadMetric:
    return HeadMetric(reaction_pearson, head, "reaction_pearson")
