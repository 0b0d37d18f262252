"""What a reader dropped and why: counts by reason, and the file and line of every dropped row.

Every reader returns its frame with ``df.attrs["dropped"]`` (reason -> count) and
``df.attrs["dropped_rows"]``, a :class:`DroppedRows` whose ``table`` has one row per dropped label row
(``reason``, ``file``, ``line``; ``line`` is empty when the row is not a line of a text file, e.g. an image).
``dropped_rows(df)`` returns that table. A reader that finds nothing usable raises :func:`no_usable_rows`.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

import pandas as pd

COLUMNS = ("reason", "file", "line")


class DroppedRows:
    """The detail table carried in ``df.attrs``.

    Wrapped, not a bare DataFrame: pandas compares attrs with ``==`` when it concatenates or merges (a
    DataFrame there raises "truth value is ambiguous") and deep-copies them after every operation (slow for
    a table of 100k dropped AffectNet rows). The table is never changed after the reader made it.
    """

    __slots__ = ("table",)

    def __init__(self, records: Iterable[tuple] = ()):
        self.table = pd.DataFrame(list(records), columns=list(COLUMNS)).astype({"line": "Int64"})

    def __deepcopy__(self, memo):
        return self

    def __eq__(self, other) -> bool:
        return self is other

    __hash__ = object.__hash__

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return f"DroppedRows({len(self.table)} rows)"


class Drops:
    """Accumulates a reader's drops; ``attach(df)`` writes them into ``df.attrs``."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self._rows: list[tuple] = []

    def add(self, reason: str, file: str | os.PathLike, lines: int | Iterable[int] | None = None,
            n: int | None = None) -> None:
        """Count dropped rows of ``file``: one per entry of ``lines`` (a line number or several), or ``n``
        rows without a line number (``n=1`` when neither is given)."""
        if lines is None:
            line_list = [None] * (1 if n is None else int(n))
        elif isinstance(lines, int):
            line_list = [lines]
        else:
            line_list = [int(x) for x in lines]
        if not line_list:
            return
        self.counts[reason] = self.counts.get(reason, 0) + len(line_list)
        self._rows.extend((reason, str(file), ln) for ln in line_list)

    def merge(self, attrs: dict) -> None:
        """Add the drops already recorded in another frame's attrs (e.g. a per-task read)."""
        for reason, n in attrs.get("dropped", {}).items():
            self.counts[reason] = self.counts.get(reason, 0) + int(n)
        detail = attrs.get("dropped_rows")
        if isinstance(detail, DroppedRows):
            self._rows.extend(detail.table.itertuples(index=False, name=None))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def attach(self, df: pd.DataFrame) -> pd.DataFrame:
        df.attrs["dropped"] = dict(self.counts)
        df.attrs["dropped_rows"] = DroppedRows(self._rows)
        return df


def dropped_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The file and line of every row a reader dropped (columns ``reason``, ``file``, ``line``)."""
    detail = df.attrs.get("dropped_rows")
    return detail.table.copy() if isinstance(detail, DroppedRows) else DroppedRows().table


def no_usable_rows(root, looked_for: Iterable[str], found: Iterable[str] = (), drops: Drops | None = None,
                   what: str = "rows") -> ValueError:
    """The error a reader raises instead of returning an empty frame under a root that exists."""
    found = list(found)
    msg = (f"{root}: no usable {what}. Looked for: {'; '.join(looked_for)}. "
           f"Found: {', '.join(found[:12]) + (' ...' if len(found) > 12 else '') if found else 'nothing of that'}.")
    if drops is not None and drops.counts:
        msg += " Dropped: " + ", ".join(f"{r}: {n}" for r, n in drops.counts.items()) + "."
    return ValueError(msg)
