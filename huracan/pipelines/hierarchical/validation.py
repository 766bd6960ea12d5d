"""The heads' after-cost figures on the validation slices, pooled over folds.

What a hyperparameter search may optimise (``optimized_metric: validation.sharpe``): it
never reads a test bar, so the test figures of the trial a sweep chooses stay out of
sample. Each head trades its validation samples at the horizon and cut it chose there,
counted as the cut was chosen (every h-th bar, so trades held h bars never overlap);
each fold's daily P&L covers every day of its validation slice (0 without a trade), and
the folds' days are pooled.

These figures are optimistic: the cut was chosen on the same slice, and the heads' early
stopping watched its loss. They rank trials against each other; they are not a result.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from huracan import significance
from huracan.report import fmt

DAY_NS = 86_400 * 10**9
DAYS_PER_YEAR = 365.25


def validation_daily_bps(
    prob: np.ndarray,
    net_h: np.ndarray,
    group: np.ndarray,
    row: np.ndarray,
    timestamps_ns: np.ndarray,
    choice: tuple[np.ndarray, np.ndarray],
    horizons: tuple[int, ...],
) -> tuple[dict[str, float], int]:
    """A fold's validation P&L per day (bps) and trades, at each head's chosen cut.

    Args:
        prob: (B, H) validation probabilities, one column per horizon.
        net_h: (B, H) their net returns after costs, as fractions (NaN: none).
        group: (B,) head of each sample.
        row: (B,) grid row of each sample.
        timestamps_ns: (B,) UTC time of each sample.
        choice: per head, the horizon index (-1: does not trade) and the cut chosen on
            validation (``thresholds.choose_horizons``).
        horizons: the H horizons, in bars.
    """
    index, cuts = choice
    chosen = index[group]  # (B,)
    column = np.maximum(chosen, 0)
    samples = np.arange(len(group))
    net = net_h[samples, column]
    hold = np.asarray(horizons)[column]
    trades = (
        (chosen >= 0)
        & (prob[samples, column] >= cuts[group])
        & (row % hold == 0)
        & np.isfinite(net)
    )
    day = np.asarray(timestamps_ns, dtype=np.int64) // DAY_NS
    days = np.unique(day)
    pnl = significance.daily_pnl(day[trades], net[trades], days)
    daily = {
        f"{pd.Timestamp(int(d), unit='D'):%Y-%m-%d}": round(float(v) * 1e4, 4)
        for d, v in zip(days, pnl, strict=True)
    }
    return daily, int(trades.sum())


def pooled_validation(folds: list[dict]) -> dict:
    """The folds' validation figures pooled: ``net_bps``, ``n_trades``, ``days``, ``t_stat``
    and ``sharpe`` (annualised, of the daily P&L; 0 where no head traded, so a search
    ranks never trading above losing; None where the P&L varies too little to tell)."""
    daily = np.concatenate([list(f["validation_daily_bps"].values()) for f in folds])
    n_trades = sum(f["validation_trades"] for f in folds)
    std = daily.std(ddof=1) if len(daily) > 1 else np.nan
    if n_trades == 0:
        sharpe = 0.0
    elif std > 0:
        sharpe = float(daily.mean() / std * np.sqrt(DAYS_PER_YEAR))
    else:
        sharpe = None
    t = significance.t_stat(daily)
    return {
        "net_bps": round(float(daily.sum()), 4),
        "n_trades": int(n_trades),
        "days": len(daily),
        "t_stat": float(t) if np.isfinite(t) else None,
        "sharpe": sharpe,
    }


def describe(figures: dict) -> str:
    """One line for the console."""
    return (
        f"{fmt(figures['net_bps'], 1)} bps net, {figures['n_trades']} trades over "
        f"{figures['days']} days, Sharpe {fmt(figures['sharpe'], 2)}, t {fmt(figures['t_stat'], 2)}"
    )
