"""After-cost trading metrics of trade signals, per asset, per cluster and per fold.

A signal is a True in the (T, N) ``signals``: a long position entered at the close of bar
t and held ``horizon`` bars (one number, or a (T, N) array: the hold of a trade entered at
t), whose result is ``net_return[t]`` (after costs, as a fraction, e.g. from
``after_cost_labels``). Trades on one asset never overlap: a signal while the asset's
previous trade is still open is not taken (:func:`take_trades`; a new trade may be entered
at the close where the previous one exits), so every trade is counted once. A signal on a
bar without a net return (its exit bar is missing, or the entry bar was forward-filled) is
not a trade; it is counted in ``n_no_exit``. Only the evaluated ``rows`` count (e.g. a
fold's test window); signals elsewhere are ignored.

Columns of every table:

- ``precision``: share of trades with a net return > 0 (NaN without trades).
- ``recall``: share of bars labelled 1 that were traded.
- ``expectancy``: mean net return per trade, as a fraction.
- ``sharpe``: annualised Sharpe ratio of the per-bar P&L, see below.
- ``net_bps``: sum of the net returns of all trades, in basis points.
- ``n_trades``: number of trades.
- ``t_stat``: t-statistic of the daily P&L (trades of one day move together, so the day,
  not the trade, is the independent unit): mean over standard error, over every evaluated
  day (days without a trade count as 0).
- ``ci_low``, ``ci_high``: 95 % moving-block bootstrap interval of the expectancy (runs of
  consecutive days drawn with replacement, each day with all its trades, a run at least the
  longest hold long: ``significance.block_days``; 2,000 draws, seeded).
- ``n_no_exit``: signals on evaluated bars that could not be traded (no net return).

Sharpe: each trade earns its net return evenly over the bars it is open (entry bar t to
t + hold - 1); the P&L of bar t is the sum over the group's assets. Its mean over standard
deviation, over the evaluated bars on which some asset of the group could trade, times
``sqrt(bars_per_year)``, is the Sharpe ratio. P&L of trades still open after the last
evaluated bar is not in the series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from huracan.errors import ConfigError
from huracan.significance import day_statistics
from huracan.validation import Fold

COLUMNS = [
    "precision",
    "recall",
    "expectancy",
    "sharpe",
    "net_bps",
    "n_trades",
    "t_stat",
    "ci_low",
    "ci_high",
    "n_no_exit",
]


def asset_metrics(
    signals: np.ndarray,
    labels: np.ndarray,
    net_return: np.ndarray,
    *,
    symbols: Sequence[str],
    bars_per_year: float,
    horizon: int | np.ndarray = 1,
    rows: np.ndarray | None = None,
    days: np.ndarray | None = None,
    n_boot: int = 2000,
) -> pd.DataFrame:
    """Metrics of each asset's trades.

    Args:
        signals: (T, N) bool, True where a long trade is entered at bar t.
        labels: (T, N) 1.0 where a trade at t would have made money after costs, 0.0
            where not, NaN where there is no trade.
        net_return: (T, N) net return of a trade entered at t, as a fraction.
        symbols: the N asset names.
        bars_per_year: bars in a year, e.g. ``panel.bars_per_year``.
        horizon: bars a trade is held (or (T, N): the hold of a trade entered at t).
        rows: grid rows evaluated, e.g. ``fold.test``; None for all.
        days: (T,) calendar day of each row, for ``t_stat`` and the interval; None: each
            row is its own day.
        n_boot: bootstrap draws of the interval (0: no interval, ``ci_*`` NaN).

    Returns:
        One row per asset (index ``asset``), columns ``COLUMNS``.
    """
    _check_symbols(symbols, signals.shape[1])
    table = asset_columns(
        signals,
        labels,
        net_return,
        bars_per_year=bars_per_year,
        horizon=horizon,
        rows=rows,
        days=days,
        n_boot=n_boot,
    )
    return pd.DataFrame(table, index=pd.Index(list(symbols), name="asset"))


def asset_columns(
    signals: np.ndarray,
    labels: np.ndarray,
    net_return: np.ndarray,
    *,
    bars_per_year: float,
    horizon: int | np.ndarray = 1,
    rows: np.ndarray | None = None,
    days: np.ndarray | None = None,
    n_boot: int = 2000,
) -> dict[str, np.ndarray]:
    """``asset_metrics``' columns as arrays, one value per asset, without the frame (what
    a caller scoring one coin at a time, the Mechanic, would only take apart again)."""
    _check_inputs(signals, labels, net_return, horizon)
    return group_metrics(
        signals, labels, net_return, rows, None, bars_per_year, horizon, days, n_boot
    )


def cluster_metrics(
    signals: np.ndarray,
    labels: np.ndarray,
    net_return: np.ndarray,
    *,
    symbols: Sequence[str],
    cluster_map: Mapping[str, int],
    bars_per_year: float,
    horizon: int | np.ndarray = 1,
    rows: np.ndarray | None = None,
    days: np.ndarray | None = None,
) -> pd.DataFrame:
    """Metrics of the pooled trades of each cluster's assets.

    Args:
        signals: (T, N) bool, True where a long trade is entered at bar t.
        labels: (T, N) after-cost labels (1.0, 0.0, NaN).
        net_return: (T, N) net return of a trade entered at t, as a fraction.
        symbols: the N asset names.
        cluster_map: symbol -> cluster id, for every symbol.
        bars_per_year: bars in a year.
        horizon: bars a trade is held (or (T, N): the hold of a trade entered at t).
        rows: grid rows evaluated; None for all.
        days: (T,) calendar day of each row; None: each row is its own day.

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
    table = group_metrics(signals, labels, net_return, rows, groups, bars_per_year, horizon, days)
    return pd.DataFrame(table, index=pd.Index(cluster_ids, name="cluster"))


def fold_metrics(
    signals: np.ndarray,
    labels: np.ndarray,
    net_return: np.ndarray,
    *,
    folds: Sequence[Fold],
    bars_per_year: float,
    horizon: int | np.ndarray = 1,
    days: np.ndarray | None = None,
) -> pd.DataFrame:
    """Metrics of all assets' pooled trades in each fold's test window.

    Args:
        signals: (T, N) bool, True where a long trade is entered at bar t.
        labels: (T, N) after-cost labels (1.0, 0.0, NaN).
        net_return: (T, N) net return of a trade entered at t, as a fraction.
        folds: the walk-forward folds; each is scored on its ``test`` rows.
        bars_per_year: bars in a year.
        horizon: bars a trade is held (or (T, N)).
        days: (T,) calendar day of each row; None: each row is its own day.

    Returns:
        One row per fold (index ``fold``), columns ``COLUMNS``.
    """
    _check_inputs(signals, labels, net_return, horizon)
    if not folds:
        raise ValueError("fold_metrics needs at least one fold")
    single = np.zeros(signals.shape[1], dtype=np.int64)
    frames = [
        pd.DataFrame(
            group_metrics(signals, labels, net_return, f.test, single, bars_per_year, horizon, days)
        )
        for f in folds
    ]
    table = pd.concat(frames, ignore_index=True)
    table.index = pd.Index([f.index for f in folds], name="fold")
    return table


def take_trades(entries: np.ndarray, horizon: int | np.ndarray) -> np.ndarray:
    """The entries taken when trades on one asset may not overlap.

    Args:
        entries: (T, N) bool, True where a trade could be entered (a signal with a result).
        horizon: bars each trade is held: one number, or (T, N) the hold of an entry at t.

    Returns:
        (T, N) bool: an entry is taken when the asset's previous taken trade has exited (at
        or before bar t); one pass over the rows with an entry, vectorised over assets.
    """
    if np.ndim(horizon) == 0 and int(horizon) == 1:
        return entries.copy()
    hold = np.broadcast_to(np.asarray(horizon, dtype=np.int64), entries.shape)
    if entries.shape[1] == 1:  # one asset (a coin's job): a plain loop over its entries
        rows = np.flatnonzero(entries[:, 0])
        taken, free = np.zeros_like(entries), 0
        for t, held in zip(rows.tolist(), hold[rows, 0].tolist(), strict=True):
            if t >= free:
                taken[t, 0], free = True, t + held
        return taken
    taken = np.zeros_like(entries)
    free = np.zeros(entries.shape[1], dtype=np.int64)  # first row a new trade may start
    for t in np.flatnonzero(entries.any(1)):
        take = entries[t] & (free <= t)
        taken[t] = take
        free = np.where(take, t + hold[t], free)
    return taken


def group_metrics(
    signals: np.ndarray,
    labels: np.ndarray,
    net_return: np.ndarray,
    rows: np.ndarray | None,
    groups: np.ndarray | None,
    bars_per_year: float,
    horizon: int | np.ndarray,
    days: np.ndarray | None = None,
    n_boot: int = 2000,
) -> dict[str, np.ndarray]:
    """The metric columns for each group of assets (None: every asset on its own).

    Args:
        days: (T,) the calendar day of each row (e.g. ``timestamps_ns // 86_400e9``), for
            ``t_stat`` and the bootstrap; None treats every row as its own day.
        n_boot: bootstrap draws of ``ci_low``/``ci_high`` (0: NaN, no bootstrap).
    """
    trades = _AssetTrades.of(signals, labels, net_return, rows, horizon)
    n = signals.shape[1]
    k = n if groups is None else int(groups.max()) + 1
    one_hot = np.eye(n) if groups is None else np.eye(k)[groups]  # (N, K)

    def by_group(values: np.ndarray) -> np.ndarray:
        return values.astype(np.float64) @ one_hot  # (..., N) -> (..., K)

    sums = _GroupSums(
        n_trades=by_group(trades.n_trades),
        wins=by_group(trades.wins),
        net_sum=by_group(trades.entry_pnl.sum(0)),
        caught=by_group(trades.caught),
        n_positive=by_group(trades.n_positive),
        n_no_exit=by_group(trades.n_no_exit),
        pnl=by_group(trades.pnl),
        tradable=by_group(trades.tradable),
        entry_pnl=by_group(trades.entry_pnl),
        trades=by_group(trades.trade),
    )
    longest = int(trades.longest.max(initial=1))
    return _group_columns(sums, trades.evaluated, longest, bars_per_year, days, n_boot)


def _set_columns(columns: np.ndarray, n_assets: int) -> np.ndarray:
    """A set's column indices: a boolean mask's marked columns; an index repeated or out of
    range is an error (it would be counted once and summed twice)."""
    columns = np.asarray(columns)
    if columns.dtype == bool:
        return np.flatnonzero(columns)
    if len(np.unique(columns)) != len(columns) or (
        len(columns) and (columns.min() < 0 or columns.max() >= n_assets)
    ):
        raise ValueError(f"a set's columns must be unique indices below {n_assets}")
    return columns


def pooled_group_metrics(
    signals: np.ndarray,
    labels: np.ndarray,
    net_return: np.ndarray,
    rows: np.ndarray | None,
    groups: Sequence[np.ndarray],
    bars_per_year: float,
    horizon: int | np.ndarray,
    days: np.ndarray | None = None,
    n_boot: int = 2000,
) -> list[dict[str, np.ndarray]]:
    """The metrics of each set of columns pooled as one group, the sets free to overlap:
    ``group_metrics`` of that set's columns alone with one group, the trades and their
    open P&L found once for every asset (both are each asset's own), not once per set.
    Bit for bit where ``horizon`` is an array (the report's books pass their (T, N)
    holds); with one whole-number horizon the return sums may differ from a call on the
    set alone in the last bits (their order of summation).

    Args:
        groups: each set's column indices, unique (e.g. a cluster's, the alt clusters',
            all); a boolean mask is taken as the columns it marks.
        The rest as ``group_metrics``.

    Returns:
        One ``group_metrics`` table (each column of length 1) per set, in order.
    """
    groups = [_set_columns(columns, signals.shape[1]) for columns in groups]
    trades = _AssetTrades.of(signals, labels, net_return, rows, horizon)
    member = np.zeros((signals.shape[1], len(groups)))  # (N, G) each set's assets
    for g, columns in enumerate(groups):
        member[columns, g] = 1.0
    # counts are whole numbers: summed exactly in any order, so every set in one product
    tradable = trades.tradable.astype(np.float64) @ member  # (T, G)
    traded = trades.trade.astype(np.float64) @ member
    counts = {
        name: getattr(trades, name).astype(np.float64) @ member
        for name in ("n_trades", "wins", "caught", "n_positive", "n_no_exit")
    }
    tables = []
    for g, columns in enumerate(groups):
        # sums of returns are not: each is the one a call on the set alone makes, its
        # (T, n) operand in that call's memory order (BLAS's order of the sum follows it):
        # a column gather (x[:, columns]) is Fortran-ordered, _open_pnl's P&L C-ordered
        entry_pnl = trades.entry_pnl[:, columns]
        ones = np.ones((len(columns), 1))
        sums = _GroupSums(
            **{name: values[g : g + 1] for name, values in counts.items()},
            net_sum=entry_pnl.sum(0) @ ones,
            pnl=np.take(trades.pnl, columns, axis=1) @ ones,
            tradable=tradable[:, g : g + 1],
            entry_pnl=np.asfortranarray(entry_pnl) @ ones,
            trades=traded[:, g : g + 1],
        )
        longest = int(trades.longest[columns].max(initial=1))
        tables.append(_group_columns(sums, trades.evaluated, longest, bars_per_year, days, n_boot))
    return tables


@dataclass
class _AssetTrades:
    """Each asset's taken trades and what the metrics sum of them over a group's assets
    (every field is the asset's own: the columns of a subset are those of the whole).

    ``evaluated`` (T,); ``tradable``, ``trade`` (T, N) bool; ``entry_pnl`` (T, N) each
    trade's net return at its entry bar; ``pnl`` (T, N) spread over its open bars; the
    (N,) counts ``n_trades``, ``wins``, ``caught``, ``n_positive``, ``n_no_exit`` and
    ``longest`` (the longest hold of a taken trade, 0 without one).
    """

    evaluated: np.ndarray
    tradable: np.ndarray
    trade: np.ndarray
    entry_pnl: np.ndarray
    pnl: np.ndarray
    n_trades: np.ndarray
    wins: np.ndarray
    caught: np.ndarray
    n_positive: np.ndarray
    n_no_exit: np.ndarray
    longest: np.ndarray

    @classmethod
    def of(
        cls,
        signals: np.ndarray,
        labels: np.ndarray,
        net_return: np.ndarray,
        rows: np.ndarray | None,
        horizon: int | np.ndarray,
    ) -> _AssetTrades:
        t_len = len(signals)
        evaluated = np.ones(t_len, dtype=bool)
        if rows is not None:
            evaluated = np.zeros(t_len, dtype=bool)
            evaluated[rows] = True
        tradable = np.isfinite(net_return) & evaluated[:, None]
        trade = take_trades(signals & tradable, horizon)
        hold = np.broadcast_to(np.asarray(horizon, dtype=np.int64), signals.shape)
        entry_pnl = np.where(trade, net_return, 0.0)  # (T, N)
        positive = (labels == 1) & evaluated[:, None]
        return cls(
            evaluated=evaluated,
            tradable=tradable,
            trade=trade,
            entry_pnl=entry_pnl,
            pnl=_open_pnl(entry_pnl, trade, hold),
            n_trades=trade.sum(0),
            wins=(trade & (net_return > 0)).sum(0),
            caught=(trade & positive).sum(0),
            n_positive=positive.sum(0),
            n_no_exit=(signals & ~tradable & evaluated[:, None]).sum(0),
            longest=np.where(trade, hold, 0).max(0, initial=0),
        )


@dataclass
class _GroupSums:
    """The sums over each group's assets (K groups): (K,) ``n_trades``, ``wins``,
    ``net_sum``, ``caught``, ``n_positive``, ``n_no_exit``; (T, K) ``pnl`` (open P&L),
    ``tradable`` (assets that could trade), ``entry_pnl`` and ``trades`` (entered)."""

    n_trades: np.ndarray
    wins: np.ndarray
    net_sum: np.ndarray
    caught: np.ndarray
    n_positive: np.ndarray
    n_no_exit: np.ndarray
    pnl: np.ndarray
    tradable: np.ndarray
    entry_pnl: np.ndarray
    trades: np.ndarray


def _group_columns(
    sums: _GroupSums,
    evaluated: np.ndarray,
    longest: int,
    bars_per_year: float,
    days: np.ndarray | None,
    n_boot: int,
) -> dict[str, np.ndarray]:
    active = sums.tradable > 0
    n_bars = active.sum(0)
    day = np.arange(len(evaluated)) if days is None else np.asarray(days)
    # the bootstrap's blocks keep the longest trade whole: its hold in days (rows without days)
    hold_days = float(longest) if days is None else longest * 365.25 / bars_per_year
    t_stat, ci_low, ci_high = day_statistics(
        day[evaluated],
        sums.entry_pnl[evaluated],
        sums.trades[evaluated],
        n_boot,
        hold_days=hold_days,
    )
    n_trades, net_sum, pnl = sums.n_trades, sums.net_sum, sums.pnl
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(active, pnl, 0.0).sum(0) / n_bars
        var = np.where(active, (pnl - mean) ** 2, 0.0).sum(0) / (n_bars - 1)
        sharpe = np.where((n_bars > 1) & (var > 0), mean / np.sqrt(var), np.nan)
        return {
            "precision": np.where(n_trades > 0, sums.wins / n_trades, np.nan),
            "recall": np.where(sums.n_positive > 0, sums.caught / sums.n_positive, np.nan),
            "expectancy": np.where(n_trades > 0, net_sum / n_trades, np.nan),
            "sharpe": sharpe * np.sqrt(bars_per_year),
            "net_bps": net_sum * 1e4,
            "n_trades": n_trades.astype(np.int64),
            "t_stat": t_stat,
            "ci_low": ci_low,
            "ci_high": ci_high,
            "n_no_exit": sums.n_no_exit.astype(np.int64),
        }


def _open_pnl(entry_pnl: np.ndarray, trade: np.ndarray, hold: np.ndarray) -> np.ndarray:
    """(T, N) per-bar P&L: each trade's net return spread evenly over its open bars."""
    t_len = len(entry_pnl)
    step = np.zeros((t_len + int(hold.max(initial=1)) + 1, entry_pnl.shape[1]))
    t_idx, a_idx = np.nonzero(trade)
    h = hold[t_idx, a_idx]
    share = entry_pnl[t_idx, a_idx] / h
    np.add.at(step, (t_idx, a_idx), share)
    np.add.at(step, (t_idx + h, a_idx), -share)
    return np.cumsum(step, axis=0)[:t_len]


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
    hold = np.asarray(horizon)
    if hold.ndim not in (0, 2) or (hold.ndim == 2 and hold.shape != signals.shape):
        raise ValueError(f"horizon must be a number or a {signals.shape} array, got {hold.shape}")
    if not np.issubdtype(hold.dtype, np.integer) and not (hold == np.round(hold)).all():
        raise ConfigError(f"horizon must be whole numbers >= 1, got {horizon}")
    if (hold < 1).any():
        raise ConfigError(f"horizon must be whole numbers >= 1, got min {hold.min()}")


def _check_symbols(symbols: Sequence[str], n_assets: int) -> None:
    if len(symbols) != n_assets:
        raise ValueError(f"{len(symbols)} symbols given for {n_assets} assets")
