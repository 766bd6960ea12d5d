"""Why a coin of the per-coin run gets no job: the windows its bars miss, said in the
panel's own bars (daily, 4h, hourly) and dates, and for a warm-up, the input that needs it.

A coin has a job when it has validation and test bars with every input (``Split.valid``).
Each input is known from some bar of the coin's life on: a rolling feature after its
window, the FFD log price after its window (or never, where no order ``d`` could be fitted
on the training rows: its ADF test needs the window, its lags and ``min_obs`` observations
of training bars, and the reason says how many the coin has), the factor channels where
the factor is. The latest of those is the coin's warm-up; a coin whose bars up to a
window's end are fewer is told how many it has and how many it needs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from huracan.data import Panel


def history_gap(panel: Panel, split, j: int) -> str:
    """Why coin ``j`` has no validation or no test bars with every input (then no job), or
    "" when it has both: its bars end before the window, start after it, do not reach far
    enough back for the features' warm-up, or hold too few training bars for the FFD
    order's ADF test (with the bars it has and needs)."""
    fold = split.fold
    has_val = bool(split.valid[fold.val, j].any())
    if has_val and split.valid[fold.test, j].any():
        return ""
    window, rows = ("test", fold.test) if has_val else ("validation", fold.val)
    if not len(rows):
        return f"no {window} window (validation.val_fraction is 0)"
    bars = np.flatnonzero(np.isfinite(panel.close[:, j]))
    if not bars.size:
        return "no bars"
    when = [panel.timestamps[r].strftime("%Y-%m-%d %H:%M") for r in (bars[0], bars[-1], rows[0])]
    if bars[-1] < rows[0]:
        return f"no {window} bars: its last bar is {when[1]}, the window starts {when[2]}"
    if bars[0] > rows[-1]:
        return f"no {window} bars: its first bar is {when[0]}, after the window"
    clusters = split.data.clusters
    if clusters.tree is not None and panel.symbols[j] in clusters.excluded:
        # cluster=hierarchy: a coin outside the tree has no level channels to learn from
        why = clusters.excluded[panel.symbols[j]]
        return f"not in the level tree (clustering left it out: {why})"
    return shortfall(panel, split, j, int(bars[0]), int(rows[-1]), window)


def shortfall(panel: Panel, split, j: int, first: int, last: int, window: str) -> str:
    """Why coin ``j``'s bars from its first (row ``first``) to the end of ``window`` (row
    ``last``) hold no bar with every input, what is missing first (the roster keeps a
    reason's first 200 characters), e.g. "history too short for the features' warm-up:
    needs 170 daily bars: a warm-up of 169 bars for volume_z, then 1 validation bar; has
    57, from 2022-01-10 to the validation window's end 2022-03-07; so no validation bars
    with every input"."""
    unit = bar_unit(panel.timeframe)
    have = last - first + 1
    dates = (
        f"from {panel.timestamps[first]:%Y-%m-%d} to the {window} window's end "
        f"{panel.timestamps[last]:%Y-%m-%d}"
    )
    missing = f"no {window} bars with every input"
    starts = input_starts(split.data, j, first)
    never = [name for name, row in starts.items() if row is None]
    if never:
        return f"{never_known(split, j, never)}; so {missing} ({have} {unit} bars {dates})"
    slowest = max(starts, key=starts.get)
    warmup = starts[slowest] - first  # bars of its life before the input is first known
    if warmup < have:  # every input is known in time: the label or the head is missing
        return (
            f"{missing}: every input is known after {warmup} bars, but no label or head "
            f"({have} {unit} bars {dates})"
        )
    span = "" if unit == "daily" else f" ({warmup * panel.bar_seconds / 86400:.3g} days)"
    return (
        f"history too short for the features' warm-up: needs {warmup + 1} {unit} bars: a "
        f"warm-up of {warmup} bars{span} for {slowest}, then 1 {window} bar; has {have}, "
        f"{dates}; so {missing}"
    )


def input_starts(data, j: int, first: int) -> dict[str, int | None]:
    """Each model input of coin ``j`` (``feature_names`` then ``channel_names``) and the
    first row from ``first`` on where it is known; None where it never is."""
    columns = [data.features[first:, j, :]]
    if data.across is not None:
        columns.append(data.across[first:, j, :])
    if data.ffd is not None:
        columns.append(data.ffd[first:, j, None])
    if data.channels is not None:
        columns.append(data.channels[first:, j, :])
    known = np.isfinite(np.concatenate(columns, axis=1))  # (T - first, F + C)
    names = list(data.feature_names) + list(data.channel_names if data.channels is not None else [])
    rows = np.where(known.any(axis=0), known.argmax(axis=0) + first, -1)
    return {name: (None if row < 0 else int(row)) for name, row in zip(names, rows, strict=True)}


def never_known(split, j: int, names: list[str]) -> str:
    """Why inputs ``names`` of coin ``j`` have no value at any bar: the FFD log price says
    what its fit on the training window found (the training bars its ADF test needs and
    the coin has, then the fit's own reason)."""
    fracdiff = split.data.fracdiff
    fitted = fracdiff.skip_reasons_ if fracdiff is not None else {}
    if "fracdiff" not in names or j not in fitted:
        return f"{', '.join(names)} never known"
    end = split.fold.train_times[-1]
    others = [name for name in names if name != "fracdiff"]
    also = f" ({', '.join(others)} never known too)" if others else ""
    bars = getattr(fracdiff, "skip_bars_", {}).get(j)
    need = (
        f"its FFD order's ADF test needs {bars[1]} training bars, the coin has {bars[0]}"
        if bars
        else "its FFD order could not be fitted"
    )
    return f"fracdiff never known: {need} (training window to {end:%Y-%m-%d}: {fitted[j]}){also}"


def bar_unit(timeframe: str) -> str:
    """The bars' name in a reason: ``daily`` and ``hourly``, else the timeframe (``4h``)."""
    names = {pd.Timedelta("1d"): "daily", pd.Timedelta("1h"): "hourly"}
    return names.get(pd.Timedelta(timeframe), timeframe)
