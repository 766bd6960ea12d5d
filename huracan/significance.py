"""Is an out-of-sample result more than luck? Daily P&L, its t-statistic, a moving-block
bootstrap interval of expectancy, and the deflated Sharpe ratio of the best of many trials.

Trades entered on the same day move together (one market, overlapping holding periods), so
the unit of independent evidence here is the day, not the trade: the t-statistic is that of
the daily P&L. Days are not independent either: a trade held h days ties its entry day's
P&L to the prices of the next h days, and volatility regimes last for weeks. The bootstrap
therefore resamples runs of consecutive days (``block_days``), not single days.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.stats import norm

EULER_GAMMA = 0.5772156649015329


def daily_pnl(
    trade_day: np.ndarray, trade_return: np.ndarray, days: np.ndarray | None = None
) -> np.ndarray:
    """Sum of the trades' returns per calendar day.

    Args:
        trade_day: (n,) int64 day number of each trade, e.g. the entry's
            ``timestamp_ns // (86_400 * 10**9)``.
        trade_return: (n,) net return of each trade, as a fraction.
        days: every evaluated day number, so that a day without trades counts as 0 P&L;
            None for the days that appear in ``trade_day``.

    Returns:
        The P&L of each day of ``days`` (sorted, unique), as a fraction.

    Raises:
        ValueError: arrays of different lengths, or a trade on a day not in ``days``.
    """
    trade_day = np.asarray(trade_day, dtype=np.int64)
    trade_return = np.asarray(trade_return, dtype=np.float64)
    if trade_day.shape != trade_return.shape:
        raise ValueError(
            f"trade_day {trade_day.shape} and trade_return {trade_return.shape} differ in shape"
        )
    days = np.unique(trade_day if days is None else np.asarray(days, dtype=np.int64))
    position = np.searchsorted(days, trade_day)
    outside = (position == len(days)) | (days[np.minimum(position, len(days) - 1)] != trade_day)
    if len(trade_day) and (len(days) == 0 or outside.any()):
        raise ValueError(f"trade on day {trade_day[outside][0]}, which is not in days")
    return np.bincount(position, weights=trade_return, minlength=len(days))


def t_stat(daily: np.ndarray) -> float:
    """t-statistic of the mean daily P&L: mean / (std(ddof=1) / sqrt(n)).

    Returns:
        NaN with fewer than two days or no variation.
    """
    daily = np.asarray(daily, dtype=np.float64)
    if len(daily) < 2:
        return float("nan")
    std = daily.std(ddof=1)
    if not std > 0:
        return float("nan")
    return float(daily.mean() / (std / np.sqrt(len(daily))))


def block_days(n_days: int, hold_days: float = 0.0) -> int:
    """Block length of the moving-block bootstrap, in days.

    ``max(ceil(hold_days) + 1, ceil(n_days ** (1 / 3)))``, at most ``n_days // 2``:

    - ``ceil(hold_days) + 1``: the days one trade's P&L can touch (its entry day and every
      day it may still be open), so a block keeps every pair of days that share a trade;
    - ``n_days ** (1 / 3)``: the usual growth rate of the block for the bootstrap of a mean
      (Hall, Horowitz & Jing 1995; Lahiri 2003), so longer series keep longer stretches of
      a persistent regime together;
    - at most half the days: each replicate is made of at least two blocks, or the interval
      would collapse onto the sample itself (a series shorter than two holds cannot keep
      whole holds together; its interval is then too narrow, and says so by being short).

    Args:
        n_days: days in the series.
        hold_days: the longest hold of a trade, in days (0: one-day trades).
    """
    longest = max(int(np.ceil(hold_days)) + 1, int(np.ceil(n_days ** (1 / 3) - 1e-9)))
    return max(1, min(longest, n_days // 2))


@lru_cache(maxsize=8)
def block_draws(n_days: int, block: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_days) how often each day is drawn by a circular moving-block bootstrap.

    Each replicate chains ``ceil(n_days / block)`` blocks of ``block`` consecutive days,
    each starting on a uniformly drawn day and wrapping from the last day to the first
    (Politis & Romano 1992, so every day is drawn equally often), the last block cut so
    that the replicate holds ``n_days`` days. ``block=1`` is the bootstrap of single days.

    The draws are a function of the arguments alone, so they are kept (read-only) for the
    next call with the same ones: the Mechanic scores hundreds of coins on one holdout.
    """
    n_blocks = -(-n_days // block)
    starts = np.random.default_rng(seed).integers(0, n_days, (n_boot, n_blocks))
    lengths = np.full(n_blocks, block)
    lengths[-1] = n_days - block * (n_blocks - 1)
    # +1 where a block starts, -1 after its last day, on two laps of the days (the wrap)
    steps = np.zeros((n_boot, 2 * n_days + 1), np.int32)
    replicate = np.arange(n_boot)[:, None]
    np.add.at(steps, (replicate, starts), 1)
    np.add.at(steps, (replicate, starts + lengths), -1)
    laps = np.cumsum(steps[:, : 2 * n_days], axis=1)
    draws = laps[:, :n_days] + laps[:, n_days:]
    draws.setflags(write=False)
    return draws


def bootstrap_expectancy_ci(
    trade_day: np.ndarray,
    trade_return: np.ndarray,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    hold_days: float = 0.0,
) -> tuple[float, float]:
    """Moving-block bootstrap interval of expectancy (mean return per trade) of one series.

    The distinct trade days, in order, are resampled in blocks of ``block_days`` days
    (``block_draws``); each replicate takes all trades of every drawn day and scores
    total return / total trades. The interval is the ``alpha / 2`` and ``1 - alpha / 2``
    percentiles of the replicates.

    Args:
        trade_day: (n,) int64 day number of each trade.
        trade_return: (n,) net return of each trade, as a fraction.
        n_boot: bootstrap replicates.
        alpha: 1 - coverage (0.05: a 95% interval).
        seed: random seed.
        hold_days: the longest hold of a trade, in days (sets the block, ``block_days``).

    Returns:
        (low, high), or (NaN, NaN) without trades.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    trade_day = np.asarray(trade_day, dtype=np.int64)
    if len(np.unique(trade_day)) < 2:
        return float("nan"), float("nan")
    trade_return = np.asarray(trade_return, dtype=np.float64)[:, None]
    _, low, high = day_statistics(
        trade_day, trade_return, np.ones_like(trade_return), n_boot, seed, alpha, hold_days
    )
    return float(low[0]), float(high[0])


def day_statistics(
    day: np.ndarray,
    pnl: np.ndarray,
    trades: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    hold_days: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: t-statistic of daily P&L and the moving-block bootstrap 95 % interval of
    expectancy, for K groups at once (one set of block draws shared by all groups).

    Args:
        day: (R,) day number of each evaluated row (or trade).
        pnl: (R, K) net return of the trades entered at each row, per group.
        trades: (R, K) trades entered at each row, per group.
        n_boot: bootstrap replicates; each chains blocks of ``block_days`` consecutive
            days (of the distinct days, in order) until it holds as many days as there
            are (``block_draws``), and scores total return / trades; 0 for the
            t-statistic alone (the interval NaN).
        seed: random seed.
        alpha: 1 - coverage of the interval.
        hold_days: the longest hold of a trade, in days: the block keeps it whole.

    Returns:
        ``(t_stat, ci_low, ci_high)``, each (K,); NaN where it cannot be formed.
    """
    _, inverse = np.unique(day, return_inverse=True)
    n_days = int(inverse.max()) + 1 if len(day) else 0
    k = pnl.shape[1]
    nan = np.full(k, np.nan)
    if n_days < 2:
        return nan, nan.copy(), nan.copy()
    daily = np.zeros((n_days, k))
    count = np.zeros((n_days, k))
    np.add.at(daily, inverse, pnl)
    np.add.at(count, inverse, trades)
    std = daily.std(0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_stat = np.where(std > 0, daily.mean(0) / (std / np.sqrt(n_days)), np.nan)
    if n_boot < 1:
        return t_stat, nan, nan.copy()
    draws = block_draws(n_days, block_days(n_days, hold_days), n_boot, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        expectancy = (draws @ daily) / (draws @ count)  # (n_boot, K), NaN when no trade drawn
    has = count.sum(0) > 0
    low, high = nan.copy(), nan.copy()
    if has.any():
        levels = [100 * alpha / 2, 100 * (1 - alpha / 2)]
        low[has], high[has] = np.nanpercentile(expectancy[:, has], levels, axis=0)
    return t_stat, low, high


def expected_max_sharpe(sharpes_of_trials: np.ndarray) -> float:
    """Expected maximum Sharpe ratio of N trials whose true Sharpe is 0.

    ``sqrt(V) * ((1 - g) * Phi^-1(1 - 1/N) + g * Phi^-1(1 - 1/(N e)))`` with V the
    variance (ddof=1) of the trials' Sharpe ratios and g the Euler-Mascheroni constant
    (Bailey & López de Prado 2014, eq. 2). Every entry counts as a trial; V is taken over
    the finite ones. 0 with fewer than two trials (nothing was selected).
    """
    sharpes = np.asarray(sharpes_of_trials, dtype=np.float64)
    finite = sharpes[np.isfinite(sharpes)]
    n_trials = len(sharpes)
    if n_trials < 2 or len(finite) < 2:
        return 0.0
    quantiles = norm.ppf([1 - 1 / n_trials, 1 - 1 / (n_trials * np.e)])
    return float(
        finite.std(ddof=1) * ((1 - EULER_GAMMA) * quantiles[0] + EULER_GAMMA * quantiles[1])
    )


def deflated_sharpe_ratio(
    sharpe: float,
    sharpes_of_trials: np.ndarray,
    n_obs: int,
    skew: float = 0.0,
    kurtosis: float = 3.0,
) -> float:
    """Deflated Sharpe ratio (Bailey & López de Prado 2014).

    The probability that the true Sharpe ratio exceeds the expected maximum Sharpe ratio
    ``SR0`` of the trials under the null of no skill (``expected_max_sharpe``): the
    probabilistic Sharpe ratio against ``SR0``,
    ``Phi((SR - SR0) * sqrt(n_obs - 1) / sqrt(1 - skew * SR + (kurtosis - 1) / 4 * SR^2))``.

    Units: every Sharpe ratio is per observation (mean / std of one bar's or one day's
    return), not annualised; divide an annualised one by ``sqrt(periods_per_year)``.

    Args:
        sharpe: Sharpe ratio of the selected trial, per observation.
        sharpes_of_trials: per-observation Sharpe ratios of all trials (the selected one
            included); a NaN entry (e.g. a trial without trades) still counts as a trial.
        n_obs: observations behind ``sharpe``.
        skew: skewness of the selected trial's returns.
        kurtosis: kurtosis (not excess: 3 for normal returns) of its returns.

    Returns:
        DSR in [0, 1]; NaN when ``sharpe`` is not finite, ``n_obs < 2`` or the variance
        term is not positive.
    """
    if not np.isfinite(sharpe) or n_obs < 2:
        return float("nan")
    variance_term = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2
    if not variance_term > 0:
        return float("nan")
    benchmark = expected_max_sharpe(sharpes_of_trials)
    return float(norm.cdf((sharpe - benchmark) * np.sqrt(n_obs - 1) / np.sqrt(variance_term)))
