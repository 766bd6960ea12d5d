"""Console reporting: one timed line per stage, and plain fixed-width tables."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

log = logging.getLogger("huracan")


class StageTimer:
    """Times the stages of a run; each logs one line when it ends.

    Usage::

        timer = StageTimer()
        with timer("data") as note:
            panel = source.load()
            note(f"{panel.n_assets} symbols")
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator:
        notes: list[str] = []
        start = time.perf_counter()
        yield notes.append
        elapsed = time.perf_counter() - start
        self.seconds[name] = round(elapsed, 3)
        detail = f" - {'; '.join(notes)}" if notes else ""
        log.info("[%s] %.2f s%s", name, elapsed, detail)


def format_table(frame: pd.DataFrame, max_rows: int = 40, floatfmt: str | None = None) -> str:
    """A DataFrame as a text table, one number format per column; long tables show their
    head and tail.

    Args:
        frame: the table.
        max_rows: rows shown at most.
        floatfmt: one format for every float column; None chooses per column the fixed
            decimals that give its typical value three significant digits.
    """
    shown = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_float_dtype(frame[column]):
            spec = floatfmt or column_format(frame[column].to_numpy())
            shown[column] = [format(v, spec) if np.isfinite(v) else "-" for v in frame[column]]
    if len(frame) > max_rows:
        half = max_rows // 2
        gap = pd.DataFrame(
            {c: ["..."] for c in frame.columns}, index=[f"({len(frame) - max_rows} more)"]
        )
        shown = pd.concat([shown.head(half).astype(object), gap, shown.tail(half).astype(object)])
    return shown.to_string(na_rep="-", justify="right")


def column_format(values: np.ndarray) -> str:
    """Fixed decimals for a column: three significant digits of its median magnitude."""
    magnitude = np.abs(values[np.isfinite(values) & (values != 0)])
    if not len(magnitude):
        return ",.2f"
    decimals = 2 - int(np.floor(np.log10(np.median(magnitude))))
    return f",.{min(max(decimals, 0), 8)}f"


def fmt(value: float | None, digits: int) -> str:
    """A measured value with ``digits`` decimals, or ``n/a`` for None or NaN."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def above(value: float | None, limit: float) -> bool:
    """``value > limit`` for a measured value; False for None or NaN (never a PASS)."""
    return value is not None and bool(np.isfinite(value)) and value > limit
