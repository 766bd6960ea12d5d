"""Factor-style evaluation of a score: cross-sectional rank IC, quintile returns and a
long-short book, each with its t (Qlib's and alphalens' view of a signal, beside the P&L).

A score is a (T, N) array, higher meaning "better to hold"; NaN where there is none. It is
compared with a realised (T, N) net return of a long trade entered at each bar (after
costs, as a fraction: ``FleetArrays.net_h`` of one horizon), over the evaluated rows only.

- Rank IC: per bar, the Spearman correlation between score and return over the assets
  that have both (at least ``MIN_ASSETS``).
- Quintiles: per bar, the assets with both ranked into five groups by score (as
  ``pandas.qcut``, so as alphalens); the mean net return of each group per bar, averaged
  over bars; top minus bottom is the spread.
- The t of the IC and spread series: a trade held ``h`` bars makes the series of
  consecutive bars overlap by ``h - 1`` bars, so the t is Newey-West's (HAC, Bartlett
  kernel, ``h - 1`` lags, statsmodels, small-sample corrected: for ``h = 1`` it is the
  plain t of the mean). Every bar is kept (no sampling of every h-th bar).
- The long-short book (:func:`long_short_book`): each rebalance, long the top-k and short
  the bottom-k by score, equal weight, held until the next rebalance; its daily P&L, net
  Sharpe, t and moving-block bootstrap interval (``huracan.significance``).

Cross-checked against alphalens-reloaded (rank IC, quantiles; it runs under pandas 3) in
``tests/test_evaluation.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import statsmodels.api as sm

from huracan import significance
from huracan.errors import ConfigError

MIN_ASSETS = 3  # a rank correlation over fewer assets says nothing
N_QUANTILES = 5
DAYS_PER_YEAR = 365  # crypto trades every calendar day


@dataclass
class BookConfig:
    """``book``: which book ``results.csv`` holds, and the long-short book's shape.

    Args:
        kind: ``long_only`` (the model's trades, what the bot trades) or ``long_short``
            (its rows are added to results.csv).
        k: coins held long and coins held short at each rebalance.
        rebalance: bars between rebalances, one of ``labels.horizons``; None: the longest.
        score: what the long-short book and the rank IC rank by: ``horizon``, the score of
            the rebalance horizon (each horizon's IC its own score's); ``mean_rank``, the
            mean over horizons of each score's percentile rank among the bar's assets
            (:func:`mean_rank`), one score for every horizon.
    """

    kind: Literal["long_only", "long_short"] = "long_only"
    k: int = 5
    rebalance: int | None = None
    score: Literal["horizon", "mean_rank"] = "horizon"

    def horizon(self, horizons: tuple[int, ...]) -> int:
        """The rebalance period in bars, checked against the run's label horizons.

        Raises:
            ConfigError: ``k`` below 1, or ``rebalance`` not a label horizon.
        """
        if self.k < 1:
            raise ConfigError(f"book.k must be >= 1, got {self.k}")
        rebalance = max(horizons) if self.rebalance is None else self.rebalance
        if rebalance not in horizons:
            raise ConfigError(
                f"book.rebalance={rebalance} is not one of labels.horizons {list(horizons)} "
                "(a position's return and costs are that horizon's labels)"
            )
        return int(rebalance)


def _masked(score: np.ndarray, realised: np.ndarray, rows: np.ndarray | None):
    """Score and return of the evaluated rows, each NaN where either is."""
    if score.shape != realised.shape:
        raise ValueError(f"score {score.shape} and realised {realised.shape} differ in shape")
    if rows is not None:
        score, realised = score[rows], realised[rows]
    both = np.isfinite(score) & np.isfinite(realised)
    return np.where(both, score, np.nan), np.where(both, realised, np.nan), both


def rank_ic(score: np.ndarray, realised: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Per-bar cross-sectional Spearman correlation of score and realised return.

    Args:
        score: (T, N) score, NaN where none.
        realised: (T, N) realised return, NaN where none.
        rows: evaluated rows (sorted); None for all.

    Returns:
        (R,) the rank IC of each evaluated row; NaN where fewer than ``MIN_ASSETS`` assets
        have both, or where either side does not vary.
    """
    return _rank_ic(*_masked(score, realised, rows))


def _rank_ic(score: np.ndarray, realised: np.ndarray, both: np.ndarray) -> np.ndarray:
    count = both.sum(1)
    # average ranks of ties, as spearmanr; NaN stays NaN
    rank_s, rank_r = row_ranks(score), row_ranks(realised)
    middle = (count[:, None] + 1) / 2  # the mean rank of n assets, ties averaged or not
    rank_s, rank_r = rank_s - middle, rank_r - middle
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = np.nansum(rank_s * rank_r, axis=1)
        norm = np.sqrt(np.nansum(rank_s**2, axis=1) * np.nansum(rank_r**2, axis=1))
        ic = cov / norm
    return np.where((count >= MIN_ASSETS) & (norm > 0), ic, np.nan)


def row_ranks(values: np.ndarray) -> np.ndarray:
    """(R, N) each value's rank among its row's non-NaN values, 1 to their count, ties
    averaged, NaN where NaN: ``scipy.stats.rankdata(values, axis=1, nan_policy="omit")``,
    the same float64 values (whole and half numbers, exact), in pandas' compiled row
    ranking (a little faster than scipy's; ``bench/bench_report.py`` times the IC section).
    """
    return pd.DataFrame(values).rank(axis=1).to_numpy(dtype=np.float64)


def hac_t(series: np.ndarray, horizon: int) -> float:
    """t of the mean of a per-bar series whose neighbours overlap by ``horizon - 1`` bars.

    Newey-West with ``horizon - 1`` lags (statsmodels, small-sample corrected), over the
    finite entries in order. NaN with fewer than two or no variation.
    """
    values = np.asarray(series, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2 or not values.std() > 0:
        return float("nan")
    lags = min(max(int(horizon) - 1, 0), len(values) - 2)
    fit = sm.OLS(values, np.ones(len(values))).fit(
        cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": True}
    )
    return float(fit.tvalues[0])


def ic_summary(ic: np.ndarray, horizon: int) -> dict:
    """Mean, std, IR (mean / std) and HAC t of an IC series; ``n_bars`` it is taken over."""
    finite = ic[np.isfinite(ic)]
    if len(finite) < 2:
        return {"ic_mean": None, "ic_std": None, "ic_ir": None, "ic_t": None, "n_bars": 0}
    std = float(finite.std(ddof=1))
    return {
        "ic_mean": float(finite.mean()),
        "ic_std": std,
        "ic_ir": float(finite.mean() / std) if std > 0 else None,
        "ic_t": _none_if_nan(hac_t(finite, horizon)),
        "n_bars": int(len(finite)),
    }


def quantile_returns(
    score: np.ndarray,
    realised: np.ndarray,
    rows: np.ndarray | None = None,
    n_quantiles: int = N_QUANTILES,
) -> np.ndarray:
    """Per bar, the mean realised return of each score quantile.

    Each bar's assets with both score and return are cut into ``n_quantiles`` groups at
    the score's quantiles (``pandas.qcut``: right-closed bins, the lowest included), group
    1 the lowest scores.

    Returns:
        (R, n_quantiles) mean return of each group per evaluated row; NaN for a row with
        fewer than ``n_quantiles`` assets, or a group left empty by ties.
    """
    return _quantile_returns(*_masked(score, realised, rows), n_quantiles)


def _quantile_returns(
    score: np.ndarray, realised: np.ndarray, both: np.ndarray, n_quantiles: int
) -> np.ndarray:
    enough = both.sum(1) >= n_quantiles
    score = np.where(enough[:, None], score, np.nan)
    out = np.full((len(score), n_quantiles), np.nan)
    if not enough.any():
        return out
    levels = np.arange(1, n_quantiles) / n_quantiles
    edges = row_nanquantiles(score[enough], levels)  # (R', Q - 1)
    group = np.full(score.shape, -1)
    ranked = score[enough]
    above = np.zeros(ranked.shape, dtype=np.int64)
    for edge in edges.T:  # the edges below each score, an edge at a time: no (R, N, Q) grid
        above += ranked > edge[:, None]
    group[enough] = above
    group[~np.isfinite(score)] = -1
    for q in range(n_quantiles):
        member = group == q
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, q] = np.where(member, realised, 0.0).sum(1) / member.sum(1)
    return out


def row_nanquantiles(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """(R, L) each row's quantiles at ``levels`` over its finite values: exactly
    ``np.nanquantile(values, levels, axis=1).T`` (numpy's ``linear`` method, the same
    float operations), in one sort instead of one call per row (the per-row calls were
    most of the report's time with many strategies on hourly bars).

    Args:
        values: (R, N) with at least one finite value per row.
        levels: (L,) quantile levels in [0, 1].
    """
    ordered = np.sort(values, axis=1)  # NaN sort last
    last = np.isfinite(values).sum(1)[:, None] - 1  # (R, 1) the last finite value's index
    virtual = last * levels  # (R, L): numpy's virtual index for ``linear``
    floor = np.floor(virtual)
    rows = np.arange(len(values))[:, None]
    a = ordered[rows, np.minimum(floor, last).astype(np.intp)]
    b = ordered[rows, np.minimum(floor + 1, last).astype(np.intp)]
    gamma = virtual - floor  # where both ends are the last value, a == b: any gamma
    diff = b - a
    # numpy's _lerp: from the nearer end, so the result is monotone in gamma
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


def quantile_summary(per_bar: np.ndarray, horizon: int) -> dict:
    """Mean return of each quantile over bars, and the top-minus-bottom spread, in bps,
    with the spread's HAC t."""
    spread = per_bar[:, -1] - per_bar[:, 0]
    finite = np.isfinite(spread)
    with np.errstate(invalid="ignore"):
        means = [
            np.nanmean(column) if np.isfinite(column).any() else np.nan for column in per_bar.T
        ]
    return {
        "quantile_bps": [_none_if_nan(m * 1e4) for m in means],
        "spread_bps": _none_if_nan(spread[finite].mean() * 1e4) if finite.any() else None,
        "spread_t": _none_if_nan(hac_t(spread, horizon)),
        "spread_bars": int(finite.sum()),
    }


def factor_summary(score: np.ndarray, realised: np.ndarray, rows: np.ndarray, horizon: int) -> dict:
    """Rank IC and quintile figures of one score at one horizon (JSON-ready)."""
    masked = _masked(score, realised, rows)  # shared by both figures
    return {
        **ic_summary(_rank_ic(*masked), horizon),
        **quantile_summary(_quantile_returns(*masked, N_QUANTILES), horizon),
    }


def percentile_rank(score: np.ndarray) -> np.ndarray:
    """(T, N) each score's rank among its bar's finite scores, 0 the lowest to 1 the
    highest (ties averaged); NaN where none, 0.5 for a bar's only score."""
    rank = row_ranks(score)
    count = np.isfinite(score).sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = (rank - 1) / (count - 1)
    return np.where(count > 1, fraction, np.where(np.isfinite(score), 0.5, np.nan))


def mean_rank(scores: np.ndarray) -> np.ndarray:
    """(T, N) the mean over horizons of each (H, T, N) score's per-bar percentile rank:
    the heads of every horizon vote on the same ordering of coins, each with its ranks,
    not its probabilities (whose levels differ by horizon). NaN where any horizon has no
    score."""
    return np.mean([percentile_rank(score) for score in scores], axis=0)


def rebalance_rows(rows: np.ndarray, every: int) -> np.ndarray:
    """Every ``every``-th evaluated row, restarting at the first row of each run of
    consecutive rows (a test window): the grid depends on no row after the one it picks."""
    rows = np.unique(rows)
    if len(rows) == 0:
        return rows
    starts = np.flatnonzero(np.diff(rows, prepend=rows[0] - 2) != 1)
    first = np.repeat(rows[starts], np.diff(np.append(starts, len(rows))))
    return rows[(rows - first) % every == 0]


@dataclass
class LongShort:
    """A long-short book's positions and returns, one entry per rebalance row.

    Attributes:
        rows: (M,) rebalance rows (those without 2 assets to hold are left out).
        long, short: (M, N) bool, the assets held long and short from each.
        returns: (M,) net return of the book over each hold, on one unit of gross capital
            (each position weighs 1 / (2k)), after both legs' costs: a position pays its
            round trip when it opens, none while it is held on.
        long_returns, short_returns, costs: (M,) each leg's net and the costs paid, on the
            same unit (``returns = long_returns + short_returns``).
        held_on: (M, N) bool, the positions also held on the same side from the previous
            rebalance (``rebalance`` bars before): kept, not sold and bought again.
        held_on_costs: (M,) what those positions would have paid had each rebalance sold
            and bought everything again (the upper bound a naive book pays), on that unit.
    """

    rows: np.ndarray
    long: np.ndarray
    short: np.ndarray
    returns: np.ndarray
    long_returns: np.ndarray
    short_returns: np.ndarray
    costs: np.ndarray
    held_on: np.ndarray
    held_on_costs: np.ndarray


def long_short_positions(
    score: np.ndarray,
    net_long: np.ndarray,
    cost: np.ndarray,
    rows: np.ndarray,
    rebalance: int,
    k: int,
) -> LongShort:
    """Each rebalance, long the top-k and short the bottom-k by score, equal weight.

    A position is a round trip held ``rebalance`` bars: a long nets ``net_long`` (the
    horizon's after-cost return of a long trade entered at that bar); a short pays the
    same per-side costs, so it nets ``-(net_long + cost) - cost``. The eligible assets at
    a rebalance are those with a score and a net return (as every book of this project
    scores only trades with a result); with fewer than ``2k`` of them, k is half of them.
    Ties in score rank by column order. The book trades only what changes: a position held
    on the same side from the previous rebalance (the hold just before, in the same test
    window) pays no second round trip, so a position pays one entry and one exit however
    many rebalances it is kept (``held_on_costs`` is what a book trading everything again
    would pay on top).

    Args:
        score: (T, N) score, NaN where none.
        net_long: (T, N) net return of a long trade entered at t and held ``rebalance``
            bars, after its round-trip costs.
        cost: (T, N) that round trip's cost, as a fraction.
        rows: evaluated rows (e.g. the test rows of every fold).
        rebalance: bars between rebalances (each position is held that long).
        k: assets held on each side.
    """
    at = rebalance_rows(rows, rebalance)
    eligible = np.isfinite(score[at]) & np.isfinite(net_long[at]) & np.isfinite(cost[at])
    ranked = np.where(eligible, score[at], np.inf)  # ineligible sort last
    position = np.argsort(np.argsort(ranked, axis=1, kind="stable"), axis=1)  # 0 = lowest
    n = eligible.sum(1, keepdims=True)
    side = np.minimum(k, n // 2)
    short = eligible & (position < side)
    long = eligible & (position >= n - side) & (side > 0)
    held = side[:, 0] > 0
    at, long, short, side = at[held], long[held], short[held], side[held]
    weight = 1.0 / (2 * side)  # (M, 1)
    net, paid = net_long[at], cost[at]
    follows = np.zeros(len(at), dtype=bool)  # the previous rebalance is this hold's start
    follows[1:] = np.diff(at) == rebalance
    held_on = np.zeros_like(long)
    held_on[1:] = ((long[1:] & long[:-1]) | (short[1:] & short[:-1])) & follows[1:, None]
    kept = np.where(held_on, paid, 0.0)  # a kept position's round trip, added back
    long_returns = (np.where(long, net + kept, 0.0) * weight).sum(1)
    short_returns = (np.where(short, -net - 2 * paid + kept, 0.0) * weight).sum(1)
    costs = (np.where((long | short) & ~held_on, paid, 0.0) * weight).sum(1)
    return LongShort(
        held_on=held_on,
        held_on_costs=(kept * weight).sum(1),
        rows=at,
        long=long,
        short=short,
        returns=long_returns + short_returns,
        long_returns=long_returns,
        short_returns=short_returns,
        costs=costs,
    )


def book_statistics(
    entry_day: np.ndarray,
    returns: np.ndarray,
    days: np.ndarray,
    hold_days: float,
    seed: int = 0,
) -> dict:
    """Daily P&L, net Sharpe, t and interval of a book's returns booked on their entry day.

    Args:
        entry_day: (M,) day number of each entry.
        returns: (M,) its net return, as a fraction.
        days: every evaluated day number (a day without an entry counts as 0).
        hold_days: the hold in days (sets the bootstrap's block).

    Returns:
        ``net_bps`` (summed), ``n_entries``, ``mean_bps`` (per entry), ``sharpe``
        (annualised over ``DAYS_PER_YEAR`` days from the daily P&L), ``t_stat`` of the
        daily P&L, ``ci_low_bps`` and ``ci_high_bps`` (95 % moving-block bootstrap of the
        mean per entry, ``significance.day_statistics``), and the daily P&L in bps.
    """
    days = np.unique(days)
    daily = significance.daily_pnl(entry_day, returns, days)
    day = np.concatenate([entry_day, days])
    pnl = np.concatenate([returns, np.zeros(len(days))])[:, None]
    entries = np.concatenate([np.ones(len(returns)), np.zeros(len(days))])[:, None]
    t, low, high = significance.day_statistics(day, pnl, entries, seed=seed, hold_days=hold_days)
    std = daily.std(ddof=1) if len(daily) > 1 else np.nan
    sharpe = daily.mean() / std * np.sqrt(DAYS_PER_YEAR) if std > 0 else np.nan
    return {
        "net_bps": float(returns.sum() * 1e4),
        "n_entries": int(len(returns)),
        "mean_bps": _none_if_nan(returns.mean() * 1e4) if len(returns) else None,
        "sharpe": _none_if_nan(sharpe),
        "t_stat": _none_if_nan(t[0]),
        "ci_low_bps": _none_if_nan(low[0] * 1e4),
        "ci_high_bps": _none_if_nan(high[0] * 1e4),
        "daily_bps": daily * 1e4,
    }


def long_short_book(
    score: np.ndarray,
    net_long: np.ndarray,
    cost: np.ndarray,
    rows: np.ndarray,
    day: np.ndarray,
    rebalance: int,
    k: int,
    bars_per_day: float,
) -> dict:
    """The long-short book of a score (:func:`long_short_positions`) and its statistics
    (:func:`book_statistics`), plus each leg's and the costs' sums in bps, ``side_mean``
    and ``side_min`` (the assets held on each side per rebalance: ``k``, or half the
    eligible assets rounded down where fewer than ``2k`` are; over the rebalances held,
    those with fewer than 2 eligible assets left out), ``turnover``
    (the mean share of positions not held on from the previous rebalance) and
    ``net_bps_every_round_trip`` (the net of a naive book that sells and buys every
    position again at each rebalance: the upper bound on its costs).

    Args:
        day: (T,) day number of each row.
        bars_per_day: bars in a day (the hold in days sets the bootstrap's block).
    """
    book = long_short_positions(score, net_long, cost, rows, rebalance, k)
    stats = book_statistics(day[book.rows], book.returns, day[rows], rebalance / bars_per_day)
    positions = (book.long | book.short).sum(1)
    turnover = 1 - book.held_on.sum(1) / np.maximum(positions, 1)
    side = book.long.sum(1)
    return {
        "k": int(k),
        "side_mean": float(side.mean()) if len(side) else None,
        "side_min": int(side.min()) if len(side) else None,
        "rebalance": int(rebalance),
        **stats,
        "long_bps": float(book.long_returns.sum() * 1e4),
        "short_bps": float(book.short_returns.sum() * 1e4),
        "cost_bps": float(book.costs.sum() * 1e4),
        "turnover": _none_if_nan(turnover.mean()) if len(turnover) else None,
        "net_bps_every_round_trip": float((book.returns - book.held_on_costs).sum() * 1e4),
    }


def _none_if_nan(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
