"""After-cost trading metrics of trade signals, per asset, per cluster and per fold.

A trade is a True in the (T, N) ``signals``: a long position entered at the close of bar
t and held ``horizon`` bars, whose result is ``net_return[t]`` (after costs, as a
fraction, e.g. from ``after_cost_labels``). A signal on a bar without a net return (no
bar, the last ``horizon`` rows, a forward-filled bar) is not a trade. Only the evaluated
``rows`` count (e.g. a fold's test window); signals elsewhere are ignored.

Columns of every table:

- ``precision``: share of trades with a net return > 0 (NaN without trades).
- ``recall``: share of bars labelled 1 that were traded.
- ``expectancy``: mean net return per trade, as a fraction.
- ``sharpe``: annualised Sharpe ratio of the per-bar P&L, see below.
- ``net_bps``: sum of the net returns of all trades, in basis points.
- ``n_trades``: number of trades.

Sharpe: the group (an asset, a cluster, all assets) is run as ``horizon`` staggered books,
one per entry bar modulo ``horizon``, so that every trade of the signal is taken and each
is counted as earning its net return evenly over the bars it is open. The P&L of bar t is
then proportional to the summed net returns of the trades open at t (entered at bars
t - horizon + 1 .. t), and 0 when none is open. Its mean over standard deviation, over
the evaluated bars on which some asset of the group could trade, times
``sqrt(bars_per_year)``, is the Sharpe ratio. With ``horizon == 1`` that is simply the
series of each bar's net return where traded and 0 where not; for longer horizons the
overlap of consecutive trades shows up in the standard deviation instead of inflating
the count of independent bets. P&L of trades still open after the last evaluated bar is
not in the series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from huracan.errors import ConfigError
from huracan.validation import Fold

COLUMNS = ["precision", "recall", "expectancy", "sharpe", "net_bps", "n_trades"]


def asset_metrics(
    signals: np.ndarray,
    labels: np.ndarray,
    net_return: np.ndarray,
    *,
    symbols: Sequence[str],
    bars_per_year: float,
    horizon: int = 1,
    rows: np.ndarray | None = None,
) -> pd.DataFrame:
    """Metrics of each asset's trades.

    Args:
        signals: (T, N) bool, True where a long trade is entered at bar t.
        labels: (T, N) 1.0 where a trade at t would have made money after costs, 0.0
            where not, NaN where there is no trade.
        net_return: (T, N) net return of a trade entered at t, as a fraction.
        symbols: the N asset names.
        bars_per_year: bars in a year, e.g. ``panel.bars_per_year``.
        horizon: bars a trade is held.
        rows: grid rows evaluated, e.g. ``fold.test``; None for all.

    Returns:
        One row per asset (index ``asset``), columns ``COLUMNS``.
    """
    _check_inputs(signals, labels, net_return, horizon)
    _check_symbols(symbols, signals.shape[1])
    table = group_metrics(signals, labels, net_return, rows, None, bars_per_year, horizon)
    return pd.DataFrame(table, index=pd.Index(list(symbols), name="asset"))


def cluster_metrics(
    signals: np.ndarray,
    labels: np.ndarray,
    net_return: np.ndarray,
    *,
    symbols: Sequence[str],
    cluster_map: Mapping[str, int],
    bars_per_year: float,
    horizon: int = 1,
    rows: np.ndarray | None = None,
) -> pd.DataFrame:
    """Metrics of the pooled trades of each cluster's assets.

    Args:
        signals: (T, N) bool, True where a long trade is entered at bar t.
        labels: (T, N) after-cost labels (1.0, 0.0, NaN).
        net_return: (T, N) net return of a trade entered at t, as a fraction.
        symbols: the N asset names.
        cluster_map: symbol -> cluster id, for every symbol.
        bars_per_year: bars in a year.
        horizon: bars a trade is held.
        rows: grid rows evaluated; None for all.

    Returns:
        One row per cluster id (index ``cluster``, sorted), columns ``COLUMNS``; the
        cluster's Sharpe is that of the summed P&L of its assets.
    """
    _check_inputs(signals, labels, net_return, horizon)
    _check_symbols(symbols, signals.shape[1])
    missing = [s for s in symbols if s not in cluster_map]
    if missing:
        raise ConfigError(f"cluster_map has no cluster for {missing[:10]}")
    cluster_ids, groups = np.unique([cluster_map[s] for s in symbols], return_inverse=True)
    table = group_metrics(signals, labels, net_return, rows, groups, bars_per_year, horizon)
    return pd.DataFrame(table, index=pd.Index(cluster_ids, name="cluster"))


def fold_metrics(
    signals: np.ndarray,
    labels: np.ndarray,
    net_return: np.ndarray,
    *,
    folds: Sequence[Fold],
    bars_per_year: float,
    horizon: int = 1,
) -> pd.DataFrame:
    """Metrics of all assets' pooled trades in each fold's test window.

    Args:
        signals: (T, N) bool, True where a long trade is entered at bar t.
        labels: (T, N) after-cost labels (1.0, 0.0, NaN).
        net_return: (T, N) net return of a trade entered at t, as a fraction.
        folds: the walk-forward folds; each is scored on its ``test`` rows.
        bars_per_year: bars in a year.
        horizon: bars a trade is held.

    Returns:
        One row per fold (index ``fold``), columns ``COLUMNS``.
    """
    _check_inputs(signals, labels, net_return, horizon)
    if not folds:
        raise ValueError("fold_metrics needs at least one fold")
    single = np.zeros(signals.shape[1], dtype=np.int64)
    frames = [
        pd.DataFrame(
            group_metrics(signals, labels, net_return, f.test, single, bars_per_year, horizon)
        )
        for f in folds
    ]
    table = pd.concat(frames, ignore_index=True)
    table.index = pd.Index([f.index for f in folds], name="fold")
    return table


def group_metrics(
    signals: np.ndarray,
    labels: np.ndarray,
    net_return: np.ndarray,
    rows: np.ndarray | None,
    groups: np.ndarray | None,
    bars_per_year: float,
    horizon: int,
) -> dict[str, np.ndarray]:
    """The metric columns for each group of assets (None: every asset on its own)."""
    evaluated = np.ones(len(signals), dtype=bool)
    if rows is not None:
        evaluated = np.zeros(len(signals), dtype=bool)
        evaluated[rows] = True
    tradable = np.isfinite(net_return) & evaluated[:, None]
    trade = signals & tradable
    entry_pnl = np.where(trade, net_return, 0.0)  # (T, N)
    open_pnl = entry_pnl.copy()
    for offset in range(1, horizon):  # trades entered up to horizon - 1 bars ago are open
        open_pnl[offset:] += entry_pnl[:-offset]
    positive = (labels == 1) & evaluated[:, None]

    if groups is not None:
        one_hot = np.zeros((len(groups), groups.max() + 1))
        one_hot[np.arange(len(groups)), groups] = 1.0

    def by_group(values: np.ndarray) -> np.ndarray:
        values = values.astype(np.float64)
        return values if groups is None else values @ one_hot  # (..., N) -> (..., K)

    n_trades = by_group(trade.sum(0))
    wins = by_group((trade & (net_return > 0)).sum(0))
    net_sum = by_group(entry_pnl.sum(0))
    caught = by_group((trade & positive).sum(0))
    n_positive = by_group(positive.sum(0))
    pnl = by_group(open_pnl)  # (T, K)
    active = by_group(tradable) > 0
    n_bars = active.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(active, pnl, 0.0).sum(0) / n_bars
        var = np.where(active, (pnl - mean) ** 2, 0.0).sum(0) / (n_bars - 1)
        sharpe = np.where((n_bars > 1) & (var > 0), mean / np.sqrt(var), np.nan)
        return {
            "precision": np.where(n_trades > 0, wins / n_trades, np.nan),
            "recall": np.where(n_positive > 0, caught / n_positive, np.nan),
            "expectancy": np.where(n_trades > 0, net_sum / n_trades, np.nan),
            "sharpe": sharpe * np.sqrt(bars_per_year),
            "net_bps": net_sum * 1e4,
            "n_trades": n_trades.astype(np.int64),
        }


def _check_inputs(
    signals: np.ndarray, labels: np.ndarray, net_return: np.ndarray, horizon: int
) -> None:
    if signals.dtype != bool:
        raise ValueError(f"signals must be a bool array, got dtype {signals.dtype}")
    if not signals.ndim == 2 or not signals.shape == labels.shape == net_return.shape:
        raise ValueError(
            f"signals {signals.shape}, labels {labels.shape} and net_return "
            f"{net_return.shape} must share one (T, N) shape"
        )
    if int(horizon) != horizon or horizon < 1:
        raise ConfigError(f"horizon must be a whole number >= 1, got {horizon}")


def _check_symbols(symbols: Sequence[str], n_assets: int) -> None:
    if len(symbols) != n_assets:
        raise ValueError(f"{len(symbols)} symbols given for {n_assets} assets")
