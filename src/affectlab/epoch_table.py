"""The epoch table fastai prints while a model trains — epoch, train and validation loss, the metrics, time —
kept with the model, so a chapter that reuses a cached model shows the training it did.

``affectlab.train.fit`` attaches ``KeepEpochTable`` to every fit: ``learn.epoch_table`` then holds each row as
fastai printed it (or would have, under ``quiet``). A recipe stores it beside the weights in ``data/cache``
(``to_tensor`` / ``from_tensor``: the cache holds tensors only); ``show`` prints it again.
``affectlab.train.fit_or_reuse`` does both for any Learner: it trains, or reads what a fit of exactly that
Learner stored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import torch
from fastai.callback.core import Callback


@dataclass
class EpochTable:
    """One training's epoch table: its ``columns`` (fastai's ``recorder.metric_names``) and one row per
    epoch, each value as fastai printed it (losses and metrics to 6 decimals, the time as mm:ss)."""
    columns: list[str]
    rows: list[list[str]]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.columns)

    def show(self, title: str | None = None) -> None:
        """The table as fastai shows it: HTML in a notebook, text in a terminal."""
        try:
            from IPython import get_ipython
            from IPython.display import display
            in_notebook = get_ipython() is not None
        except ImportError:
            in_notebook = False
        if title:
            print(title)
        if in_notebook:
            display(self.frame().style.hide(axis="index"))
        else:
            print(self.frame().to_string(index=False))

    def without_time(self) -> list[list[str]]:
        """The rows without the time column (what a retraining at the same seed reproduces)."""
        keep = [i for i, c in enumerate(self.columns) if c != "time"]
        return [[row[i] for i in keep] for row in self.rows]

    def to_tensor(self) -> torch.Tensor:
        return torch.tensor(list(json.dumps({"columns": self.columns, "rows": self.rows}).encode()), dtype=torch.uint8)

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> "EpochTable":
        doc = json.loads(bytes(t.tolist()).decode())
        return cls(list(doc["columns"]), [list(r) for r in doc["rows"]])


def _printed(value) -> str:
    # as fastai's ProgressCallback._write_stats formats a row
    return f"{value:.6f}" if isinstance(value, float) else str(value)


class KeepEpochTable(Callback):
    """Keeps every row fastai's Recorder logs, shown or not (``learn.no_logging`` silences the printing only),
    as ``learn.epoch_table``. Runs after ``ProgressCallback`` (order 60), which installs the printing logger."""
    order = 61

    def before_fit(self):
        self.rows: list[list[str]] = []
        self._printer = self.learn.logger

        def log(row):
            self.rows.append([_printed(v) for v in row])
            self._printer(row)
        self.learn.logger = self._log = log

    def after_fit(self):
        if self.learn.logger is self._log:     # ProgressCallback, when present, has put back its own already
            self.learn.logger = self._printer
        self.learn.epoch_table = EpochTable([str(c) for c in self.learn.recorder.metric_names], self.rows)


class SayHowLong(Callback):
    """After the first epoch, says about how long the whole fit takes (that epoch's time × the epochs): a long
    training a chapter starts on its own (the face model's pre-training) tells the student what the wait is.
    fastai's bar shows the time left of one epoch only. Prints; changes nothing the fit computes."""
    order = 62

    def __init__(self, what: str = "training"):
        self.what = what

    def before_fit(self):
        import time

        self._start = time.perf_counter()

    def after_epoch(self):
        import time

        if self.epoch == 0 and self.n_epoch > 1:
            took = time.perf_counter() - self._start
            total = took * self.n_epoch
            print(f"{self.what}: the first epoch took {took:.0f} s; all {self.n_epoch} epochs take about "
                  f"{total / 60:.1f} min here", flush=True)


def plot_learning_curve(curve, ax=None, title: str = "learning curve"):
    """Training loss per batch and validation loss per epoch of a ``train.fit_or_reuse`` curve (a trained or a
    reused model alike)."""
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    ax.plot(np.arange(len(curve.losses)), curve.losses, alpha=0.6, label="train (batch)")
    per_epoch = len(curve.losses) / max(len(curve.values), 1)
    ax.plot([(i + 1) * per_epoch for i in range(len(curve.values))], [v[1] for v in curve.values], "o-",
            label="valid")
    ax.set(title=title, xlabel="batch", ylabel="loss")
    ax.legend()
    return ax
