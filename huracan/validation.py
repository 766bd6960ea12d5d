"""Walk-forward folds on the panel's time grid: expanding windows, purge and embargo.

Folds are cut on rows of the panel's grid, which are its sorted unique timestamps, so all
assets of one timestamp always land on the same side. The last ``n_folds * test_size``
rows form ``n_folds`` consecutive test windows; fold k trains on everything before its
test window (an expanding window), with a validation slice at the end::

    rows:  0 ................................................................ T
    fold k [ train ...................... ]~purge~[ val ]~purge~[ test k ]

The validation slice is ``val_fraction`` of a fold's usable rows, at least the last
``min_val_days`` days of them where that is set: an early fold's short window otherwise
gives its heads a few days of evidence, often too few for a family-wise gate over their
whole search to open even on a real edge (``docs/gate.md``). The floor moves the split between
training and validation rows inside the fold's own window; the test windows and every
later fold whose fraction already holds that many days stay as they are.

Purge: the label of row t is known only at the close of bar t + horizon; its window is
``[t, t + horizon]``. A training row whose window reaches the validation slice, and a
validation row whose window reaches the test window, would carry information from the
rows it is compared with, so the ``purge`` rows (at least the horizon) before each are
dropped. With ``purge == horizon``, the last training row is ``val[0] - horizon - 1``.

Embargo: the usual rule (López de Prado) keeps training rows that come *right after* a
test window out of training, since serially correlated data just after the window tells
about the window itself. In an expanding walk-forward every training row of a fold comes
before that fold's own test window, so for the window a model is scored on the rule holds
by construction. Later folds do train across earlier test windows; the ``embargo`` rows
right after each earlier test window are left out of their training and validation rows
too, so that no model is fitted on the bars right after any window that is scored out of
sample, whichever fold's predictions are later pooled or compared. This costs
``embargo`` rows per earlier fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from huracan.data.panel import Panel
from huracan.errors import ConfigError, DataError


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: row positions on the panel's grid and their timestamps.

    Attributes:
        index: fold number; 0 has the shortest training window.
        train: sorted grid rows to fit on.
        val: sorted grid rows for early stopping and threshold choice (may be empty).
        test: grid rows scored out of sample (one contiguous window).
        train_times: timestamps of ``train``.
        val_times: timestamps of ``val``.
        test_times: timestamps of ``test``.
    """

    index: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_times: pd.DatetimeIndex
    val_times: pd.DatetimeIndex
    test_times: pd.DatetimeIndex


class WalkForward:
    """Expanding-window walk-forward splits with purge and embargo.

    Args:
        n_folds: number of test windows.
        horizon: label horizon in bars (a label at t uses bars up to t + horizon).
        purge: rows dropped before the validation slice and before the test window;
            None uses the horizon, which is also its minimum.
        embargo: rows after each test window that later folds do not train on; None uses
            the purge.
        val_fraction: share of each fold's usable training rows kept, at their end, as
            its validation slice; 0 for none.
        test_size: rows per test window; None splits the grid in ``n_folds + 1`` equal
            parts, the first being the first fold's training window.
        min_val_days: the fewest days a validation slice covers (its rows are the usable
            rows of the last ``min_val_days`` days, where ``val_fraction`` gives fewer);
            None or 0 for no floor.
    """

    def __init__(
        self,
        n_folds: int = 5,
        horizon: int = 1,
        purge: int | None = None,
        embargo: int | None = None,
        val_fraction: float = 0.2,
        test_size: int | None = None,
        min_val_days: float | None = None,
    ):
        self.n_folds = n_folds
        self.horizon = horizon
        self.purge = purge
        self.embargo = embargo
        self.val_fraction = val_fraction
        self.test_size = test_size
        self.min_val_days = min_val_days

    def split(self, grid: pd.DatetimeIndex | Panel) -> list[Fold]:
        """Cuts the grid into folds.

        Args:
            grid: the panel (or its timestamps): sorted unique timestamps, one per row.

        Returns:
            ``n_folds`` folds in time order.

        Raises:
            ConfigError: bad parameters, or too few bars for the folds asked for.
            DataError: timestamps that are not sorted and unique.
        """
        grid = _as_grid(grid)
        purge, embargo = self.gaps()
        floor = _DayFloor(check_min_val_days(self.min_val_days, self.val_fraction))
        n_bars = len(grid)
        test_size, first_test = self._test_layout(n_bars)
        embargoed = np.zeros(n_bars, dtype=bool)
        folds = []
        for k in range(self.n_folds):  # one step per fold; each covers all its rows at once
            test_start = first_test + k * test_size
            usable = test_start - purge  # rows whose labels end before the test window
            n_val = max(int(round(self.val_fraction * max(usable, 0))), floor(grid, usable))
            train_end = usable - n_val - purge if n_val else usable
            train = np.arange(max(train_end, 0))
            val = np.arange(usable - n_val, usable) if n_val else np.arange(0)
            train, val = train[~embargoed[train]], val[~embargoed[val]]
            if len(train) == 0 or (self.val_fraction > 0 and len(val) == 0):
                floor_note = f", validation.min_val_days {floor.days}" if floor.days else ""
                raise ConfigError(
                    f"{n_bars} bars ({grid[0]} to {grid[-1]}) are too few for "
                    f"{self.n_folds} folds: fold {k} would get {len(train)} training and "
                    f"{len(val)} validation rows (test windows of {test_size} bars, purge "
                    f"{purge}, embargo {embargo}{floor_note}); use fewer folds or a longer "
                    "history"
                )
            test = np.arange(test_start, test_start + test_size)
            folds.append(Fold(k, train, val, test, grid[train], grid[val], grid[test]))
            embargoed[test_start + test_size : test_start + test_size + embargo] = True
        return folds

    def first_test_bar(self, grid: pd.DatetimeIndex | Panel) -> pd.Timestamp:
        """The first out-of-sample bar of the split, without cutting the folds."""
        grid = _as_grid(grid)
        self.gaps()
        return grid[self._test_layout(len(grid))[1]]

    def test_starts(self, grid: pd.DatetimeIndex | Panel) -> list[pd.Timestamp]:
        """The first bar of each fold's test window, without cutting the folds."""
        grid = _as_grid(grid)
        self.gaps()
        test_size, first_test = self._test_layout(len(grid))
        return [grid[first_test + k * test_size] for k in range(self.n_folds)]

    def _test_layout(self, n_bars: int) -> tuple[int, int]:
        """Rows per test window, and the row where the first test window starts."""
        test_size = self.test_size or n_bars // (self.n_folds + 1)
        first_test = n_bars - self.n_folds * test_size
        if test_size < 1 or first_test < 1:
            raise ConfigError(
                f"{n_bars} bars cannot hold {self.n_folds} test windows of {test_size} bars "
                "and a training window before them; use fewer folds or a longer history"
            )
        return test_size, first_test

    def gaps(self) -> tuple[int, int]:
        """``(purge, embargo)`` in rows, the parameters checked (ConfigError)."""
        if int(self.n_folds) != self.n_folds or self.n_folds < 1:
            raise ConfigError(f"n_folds must be a whole number >= 1, got {self.n_folds}")
        if int(self.horizon) != self.horizon or self.horizon < 1:
            raise ConfigError(f"horizon must be a whole number >= 1, got {self.horizon}")
        purge = self.horizon if self.purge is None else self.purge
        if purge < self.horizon:
            raise ConfigError(
                f"purge ({purge}) must be at least the label horizon ({self.horizon}), or "
                "training labels would overlap the test window"
            )
        embargo = purge if self.embargo is None else self.embargo
        if embargo < 0:
            raise ConfigError(f"embargo must be >= 0, got {embargo}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.test_size is not None and self.test_size < 1:
            raise ConfigError(f"test_size must be >= 1, got {self.test_size}")
        return int(purge), int(embargo)


def check_min_val_days(days: float | None, val_fraction: float) -> float:
    """``validation.min_val_days`` as a number of days (0 for none).

    Raises:
        ConfigError: a value that is not a number >= 0, or a floor without a
            validation slice (``val_fraction`` 0).
    """
    if days is None:
        return 0.0
    if isinstance(days, bool) or not isinstance(days, int | float) or not days >= 0:
        raise ConfigError(f"validation.min_val_days must be a number of days >= 0, got {days!r}")
    if days > 0 and val_fraction == 0:
        raise ConfigError(
            f"validation.min_val_days ({days}) needs a validation slice: "
            "validation.val_fraction is 0"
        )
    return float(days)


@dataclass(frozen=True)
class _DayFloor:
    """The rows a validation slice needs to cover ``days`` days (0: no floor)."""

    days: float

    def __call__(self, grid: pd.DatetimeIndex, usable: int) -> int:
        """Of the first ``usable`` rows of ``grid``, how many lie in the last ``days``
        days: those after ``grid[usable - 1] - days``."""
        if not self.days or usable < 1:
            return 0
        start = grid[usable - 1] - pd.Timedelta(days=self.days)
        return usable - int(grid[:usable].searchsorted(start, side="right"))


def long_rows(
    rows: np.ndarray, grid: pd.DatetimeIndex, long_timestamps: pd.DatetimeIndex | np.ndarray
) -> np.ndarray:
    """Positions, in a long table, of the rows that fall on the given grid rows.

    Args:
        rows: grid row positions, e.g. ``fold.train``.
        grid: the panel's timestamps.
        long_timestamps: timestamp of each row of a long (timestamp, asset) table sorted
            by timestamp, e.g. ``panel.to_long().index.get_level_values("timestamp")``.

    Returns:
        Sorted positions of the long rows whose timestamp is one of ``grid[rows]``.

    Raises:
        DataError: long timestamps that are unsorted or not on the grid.
    """
    long_timestamps = pd.DatetimeIndex(long_timestamps)
    if not long_timestamps.is_monotonic_increasing:
        raise DataError("long table", "rows must be sorted by (timestamp, asset)")
    grid_row = _as_grid(grid).get_indexer(long_timestamps)
    off_grid = np.flatnonzero(grid_row < 0)
    if len(off_grid):
        raise DataError(
            "long table",
            f"timestamp {long_timestamps[off_grid[0]]} is not on the panel's grid",
            row=int(off_grid[0]),
        )
    selected = np.zeros(len(grid), dtype=bool)
    selected[rows] = True
    return np.flatnonzero(selected[grid_row])


def _as_grid(grid: pd.DatetimeIndex | Panel) -> pd.DatetimeIndex:
    grid = pd.DatetimeIndex(grid.timestamps if isinstance(grid, Panel) else grid)
    if not (grid.is_monotonic_increasing and grid.is_unique):
        raise DataError("timestamps", "folds need the panel's grid: sorted, unique timestamps")
    return grid
