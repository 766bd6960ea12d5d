"""Per-symbol after-cost metrics, with what the trades paid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from huracan.metrics import asset_columns, take_trades

SYMBOL_COLUMNS = [
    "n_trades",
    "hit_rate",
    "sharpe",
    "net_return",
    "net_bps",
    "expectancy",
    "t_stat",
    "ci_low",
    "ci_high",
    "gross_bps",
    "last_7d_net_bps",
    "avg_cost_bps",
    "avg_slip_bps",
]


def symbol_metrics(
    signals: np.ndarray,
    net_return: np.ndarray,
    gross_return: np.ndarray,
    *,
    symbols: Sequence[str],
    timestamps: pd.DatetimeIndex,
    bars_per_year: float,
    horizon: int = 1,
    rows: np.ndarray | None = None,
    cost_bps: np.ndarray | None = None,
    slippage_bps: np.ndarray | None = None,
    n_boot: int = 2000,
) -> pd.DataFrame:
    """After-cost trading metrics of each symbol, with what its trades paid.

    Trades, hit rate and Sharpe are those of ``huracan.metrics.asset_metrics`` (a trade is
    a signal on an evaluated bar with a net return, while no earlier trade of the symbol is
    open; Sharpe of the per-bar P&L, annualised).

    Args:
        signals: (T, N) bool, True where a long trade is entered at bar t.
        net_return: (T, N) return of a trade entered at t after costs, as a fraction.
        gross_return: (T, N) the same before costs.
        symbols: the N asset names.
        timestamps: the T bar times.
        bars_per_year: bars in a year, e.g. ``panel.bars_per_year``.
        horizon: bars a trade is held.
        rows: grid rows evaluated, e.g. ``fold.test``; None for all.
        cost_bps: (T, N) round-trip cost of a trade entered at t in bps; None takes
            ``(gross_return - net_return) * 1e4``.
        slippage_bps: (T, N) the slippage part of that cost (both sides, e.g.
            ``CostModel.slippage_bps(volatility)``); None leaves ``avg_slip_bps`` NaN.
        n_boot: bootstrap draws of the interval (0: ``ci_low``/``ci_high`` NaN).

    Returns:
        One row per symbol (index ``symbol``), columns ``SYMBOL_COLUMNS``: ``n_trades``;
        ``hit_rate`` (share of trades with a net return > 0); ``sharpe``; ``net_return``
        (sum of net returns, a fraction) and ``net_bps`` (the same in bps); ``expectancy``
        (mean net return per trade, a fraction), ``t_stat`` of the daily P&L and ``ci_low``,
        ``ci_high`` its moving-block bootstrap 95 % interval (``huracan.metrics``); ``gross_bps``
        (sum before costs); ``last_7d_net_bps`` (net bps of the trades entered in the last
        7 days of the evaluated bars); ``avg_cost_bps`` and ``avg_slip_bps`` (mean round
        trip cost and its slippage part over the trades). NaN where there are no trades.
    """
    shape = np.shape(signals)
    arrays = {"gross_return": gross_return, "cost_bps": cost_bps, "slippage_bps": slippage_bps}
    for name, values in arrays.items():
        if values is not None and np.shape(values) != shape:
            raise ValueError(f"{name} has shape {np.shape(values)}, signals {shape}")
    if len(timestamps) != shape[0]:
        raise ValueError(f"{len(timestamps)} timestamps given for {shape[0]} bars")
    if len(symbols) != shape[1]:
        raise ValueError(f"{len(symbols)} symbols given for {shape[1]} assets")
    columns = symbol_columns(
        signals,
        net_return,
        gross_return,
        timestamps=timestamps,
        bars_per_year=bars_per_year,
        horizon=horizon,
        rows=rows,
        cost_bps=cost_bps,
        slippage_bps=slippage_bps,
        n_boot=n_boot,
    )
    return pd.DataFrame(columns, index=pd.Index(list(symbols), name="symbol"))


def symbol_columns(
    signals: np.ndarray,
    net_return: np.ndarray,
    gross_return: np.ndarray,
    *,
    timestamps: pd.DatetimeIndex,
    bars_per_year: float,
    horizon: int = 1,
    rows: np.ndarray | None = None,
    cost_bps: np.ndarray | None = None,
    slippage_bps: np.ndarray | None = None,
    n_boot: int = 2000,
) -> dict[str, np.ndarray]:
    """``symbol_metrics``' columns (``SYMBOL_COLUMNS``) as arrays, one value per symbol,
    without the frame: what ``scoring.evaluate`` reads for one coin (the same arguments,
    checked by ``symbol_metrics``)."""
    labels = np.where(np.isfinite(net_return), (net_return > 0).astype(np.float64), np.nan)
    table = asset_columns(
        signals,
        labels,
        net_return,
        bars_per_year=bars_per_year,
        horizon=horizon,
        rows=rows,
        # calendar days: trades on one day move together (and runs of days, not bars, are
        # what the bootstrap resamples)
        days=pd.DatetimeIndex(timestamps).as_unit("ns").asi8 // 86_400_000_000_000,
        n_boot=n_boot,
    )
    shape = np.shape(signals)
    evaluated = np.zeros(shape[0], dtype=bool)
    evaluated[np.arange(shape[0]) if rows is None else rows] = True
    trade = take_trades(signals & np.isfinite(net_return) & evaluated[:, None], horizon)
    times = pd.DatetimeIndex(timestamps)
    recent = evaluated & (times > times[evaluated].max() - pd.Timedelta(days=7))
    cost_bps = (gross_return - net_return) * 1e4 if cost_bps is None else cost_bps
    return {
        "n_trades": table["n_trades"],
        "hit_rate": table["precision"],
        "sharpe": table["sharpe"],
        "net_return": table["net_bps"] / 1e4,
        "net_bps": table["net_bps"],
        **{k: table[k] for k in ("expectancy", "t_stat", "ci_low", "ci_high")},
        "gross_bps": np.where(trade, gross_return, 0.0).sum(0) * 1e4,
        "last_7d_net_bps": np.where(trade & recent[:, None], net_return, 0.0).sum(0) * 1e4,
        "avg_cost_bps": _mean_over(trade, cost_bps),
        "avg_slip_bps": _mean_over(trade, slippage_bps),
    }


def _mean_over(mask: np.ndarray, values: np.ndarray | None) -> np.ndarray:
    """Column means of ``values`` where ``mask`` holds and the value is known; NaN if none."""
    if values is None:
        return np.full(mask.shape[1], np.nan)
    keep = mask & np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(keep, values, 0.0).sum(0) / keep.sum(0)
