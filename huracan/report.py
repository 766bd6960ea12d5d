"""Console reporting: one timed line per stage, and plain fixed-width tables."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

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


def format_table(frame: pd.DataFrame, max_rows: int = 40, floatfmt: str = ",.4g") -> str:
    """A DataFrame as a text table; long tables show their head and tail."""
    shown = frame
    if len(frame) > max_rows:
        half = max_rows // 2
        gap = pd.DataFrame(
            {c: ["..."] for c in frame.columns}, index=[f"({len(frame) - max_rows} more)"]
        )
        shown = pd.concat([frame.head(half).astype(object), gap, frame.tail(half).astype(object)])
    return shown.to_string(float_format=lambda v: format(v, floatfmt), na_rep="-", justify="right")
