"""Console reporting: one timed line per stage, and plain fixed-width tables."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from huracan.errors import INTERRUPTS, Interrupted

log = logging.getLogger("huracan")

INTERRUPTED = "INTERRUPTED"  # marker file of a run folder whose outputs are incomplete
_running: list[str] = []  # the stages under way, outermost first (for an interrupt's line)
_interrupt = INTERRUPTS
_stopped: list[str] = []  # the stage the first interrupt stopped
_finished: list[str] = []  # the last stage that ended


def _check_interrupt() -> None:
    """Raises an interrupt whose own raise was lost (a signal landing in a finaliser): the
    signal handler records it in ``INTERRUPTS`` first."""
    if _interrupt:
        raise Interrupted(_interrupt[0])


def current_stage() -> str | None:
    """The stage an interrupt stopped, else the innermost stage under way (``fold 3/5``);
    None between stages."""
    if _stopped:
        return _stopped[0]
    return _running[-1] if _running else None


def where_stopped() -> str:
    """``at fold 3/5`` (inside a stage), ``after data`` (between stages), or ``at start``."""
    stage = current_stage()
    if stage:
        return f"at {stage}"
    return f"after {_finished[0]}" if _finished else "at start"


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
        _check_interrupt()
        _running.append(name)
        try:
            yield notes.append
        finally:
            if _interrupt and not _stopped:  # the innermost stage it stopped
                _stopped.append(name)
            _running.remove(name)
            _finished[:] = [name]
        _check_interrupt()
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
