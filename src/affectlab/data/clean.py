"""Cleaning and balancing: the coherence filter, class weights, oversampling, the sampler.

- ``coherence_filter`` (Kuhnke et al., used by FaceChannelS) drops frames whose category and VA disagree;
- ``class_weights`` are the SE-ResNet paper's ``count(most common class) / count(class)``;
- ``oversample_classes`` / ``oversample_va_bins`` repeat rare samples (FaceChannelS);
- ``imbalanced_sampler`` is SCAN+CCI's imbalanced-dataset sampler, via torch's ``WeightedRandomSampler``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from affectlab.labels import EXPRESSIONS, INVALID_VA

HAPPINESS, SADNESS, NEUTRAL = EXPRESSIONS.index("Happiness"), EXPRESSIONS.index("Sadness"), EXPRESSIONS.index("Neutral")


def incoherent(df: pd.DataFrame) -> pd.Series:
    """The reason each row fails the coherence rules ("" = coherent). Needs expr, valence, arousal."""
    missing = [c for c in ("expr", "valence", "arousal") if c not in df]
    if missing:
        raise KeyError(f"coherence filter needs columns expr, valence, arousal; missing {missing}")
    v, a, e = df["valence"].to_numpy(float), df["arousal"].to_numpy(float), df["expr"].to_numpy()
    reason = np.full(len(df), "", dtype=object)
    invalid_va = (v == INVALID_VA) | (a == INVALID_VA) | np.isnan(v) | np.isnan(a)
    reason[(e == NEUTRAL) & (v > 0.5) & (a > 0.5)] = "Neutral with valence and arousal > 0.5"
    reason[(e == SADNESS) & (v > 0)] = "Sadness with positive valence"
    reason[(e == HAPPINESS) & (v < 0)] = "Happiness with negative valence"
    reason[invalid_va] = "invalid valence or arousal"
    return pd.Series(reason, index=df.index)


def coherence_filter(df: pd.DataFrame) -> pd.DataFrame:
    """Drop frames with invalid V or A, Happiness with negative valence, Sadness with positive valence, and
    Neutral with valence and arousal both above 0.5. Counts go to ``attrs["dropped"]`` (added to any
    already there)."""
    reason = incoherent(df)
    out = df[reason.to_numpy() == ""].reset_index(drop=True)
    dropped = dict(df.attrs.get("dropped", {}))
    for r, n in reason[reason != ""].value_counts().items():
        dropped[f"incoherent: {r}"] = int(n)
    out.attrs = {**df.attrs, "dropped": dropped}
    return out


def class_weights(labels, n_classes: int = len(EXPRESSIONS)) -> np.ndarray:
    """``count(most common class) / count(class)`` over the valid labels (>= 0); a class that never occurs
    gets weight 0 (it cannot be weighted, and must not blow up a loss)."""
    labels = np.asarray(labels)
    counts = np.bincount(labels[labels >= 0], minlength=n_classes).astype(float)
    if counts.sum() == 0:
        raise ValueError("class_weights: no valid label")
    return np.where(counts > 0, counts.max() / np.maximum(counts, 1), 0.0)


def oversample_classes(df: pd.DataFrame, col: str = "expr", seed: int = 0) -> pd.DataFrame:
    """Repeat random rows of each class (drawn with replacement) until every class has as many rows as the
    largest. Rows with an invalid label (< 0) are kept once."""
    rng = np.random.default_rng(seed)
    labels = df[col].to_numpy()
    valid = labels >= 0
    counts = pd.Series(labels[valid]).value_counts()
    extra = [rng.choice(np.flatnonzero(labels == c), counts.max() - n) for c, n in counts.items() if n < counts.max()]
    idx = np.concatenate([np.arange(len(df)), *extra]) if extra else np.arange(len(df))
    out = df.iloc[np.sort(idx, kind="stable")].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out


def va_bins(df: pd.DataFrame, bins: int = 21) -> np.ndarray:
    """The joint (valence, arousal) bin of each row on a ``bins`` x ``bins`` grid over [-1, 1]²."""
    edges = np.linspace(-1, 1, bins + 1)[1:-1]
    return np.digitize(df["valence"].to_numpy(), edges) * bins + np.digitize(df["arousal"].to_numpy(), edges)


def oversample_va_bins(df: pd.DataFrame, bins: int = 21, seed: int = 0, max_factor: int = 10) -> pd.DataFrame:
    """FaceChannelS's dimensional balancing: rows of each occupied cell of a ``bins`` x ``bins`` VA grid are
    repeated towards the count of the fullest cell, at most ``max_factor`` times a cell's own count (so a
    single outlier does not flood the set). Rows with invalid VA are kept once."""
    rng = np.random.default_rng(seed)
    valid = (df["valence"].to_numpy() != INVALID_VA) & (df["arousal"].to_numpy() != INVALID_VA)
    cell = np.where(valid, va_bins(df, bins), -1)
    counts = pd.Series(cell[valid]).value_counts()
    target = counts.max()
    extra = []
    for c, n in counts.items():
        want = min(target, max_factor * n) - n
        if want > 0:
            extra.append(rng.choice(np.flatnonzero(cell == c), want))
    idx = np.concatenate([np.arange(len(df)), *extra]) if extra else np.arange(len(df))
    out = df.iloc[np.sort(idx, kind="stable")].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out


def imbalanced_sampler(labels, num_samples: int | None = None, seed: int = 0) -> torch.utils.data.WeightedRandomSampler:
    """Draw samples with probability inversely proportional to their class's frequency (every class is
    drawn equally often in expectation). Samples with an invalid label (< 0) keep a uniform share."""
    labels = np.asarray(labels)
    valid = labels >= 0
    counts = np.bincount(labels[valid], minlength=max(int(labels.max(initial=0)) + 1, 1)).astype(float)
    n_present = max(int((counts > 0).sum()), 1)
    weights = np.full(len(labels), 1.0 / max(len(labels), 1))
    weights[valid] = valid.mean() / (n_present * counts[labels[valid]])
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double),
                                                  num_samples or len(labels), replacement=True, generator=gen)
