"""Decision thresholds and horizons: per head, chosen together on the validation slice.

A head trades only where its validation trades show profit after costs with a margin for
having picked the best of many cuts; otherwise it does not trade at all.
"""

from __future__ import annotations

import numpy as np

from huracan.errors import ConfigError

DAY_NS = 86_400_000_000_000


def validation_days(unit: str, timestamps_ns: np.ndarray) -> np.ndarray | None:
    """The day number of each timestamp when the bound's unit of evidence is the day
    (``thresholds.unit=day``); None when trades count as independent (``trade``)."""
    if unit not in ("day", "trade"):
        raise ConfigError(f"thresholds.unit must be day or trade, got {unit!r}")
    return np.asarray(timestamps_ns, dtype=np.int64) // DAY_NS if unit == "day" else None


def choose_thresholds(
    prob: np.ndarray,
    net_return: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    min_trades: int,
    z: float = 1.0,
    day: np.ndarray | None = None,
) -> np.ndarray:
    """Per group, the probability cut with the best lower bound on validation profit.

    For each group the validation samples are sorted by probability; trading the top k
    earns S_k, the sum of their net returns. Picking the best of many cuts on noise would
    find profit where there is none, so the cut maximises a lower bound ``S_k - z * se_k``
    over k >= ``min_trades``. A group whose best bound is not positive gets +inf: it does
    not trade, which is the honest answer when the model shows no edge after costs.

    With ``day``, ``se_k`` is the standard error of the summed daily P&L (the top k's
    returns summed per day, over every day the group has samples): trades on the same day
    move together, so the day is the unit of evidence, as in the report's t-statistic.
    Without it, trades count as independent: ``se_k = sigma * sqrt(k)``, sigma the group's
    per-sample standard deviation.

    Returns:
        (n_groups,) thresholds; a sample trades when its probability is >= its group's.
    """
    return threshold_bounds(prob, net_return, group, n_groups, min_trades, z, day)[0]


def threshold_bounds(
    prob: np.ndarray,
    net_return: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    min_trades: int,
    z: float = 1.0,
    day: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`choose_thresholds` and, per group, the lower bound its cut reached.

    Returns:
        ``(thresholds, bounds)``, each (n_groups,); the bound is in the units of
        ``net_return`` summed over trades, -inf for a group that does not trade.
    """
    if min_trades < 1:
        raise ConfigError(f"thresholds.min_trades must be >= 1, got {min_trades}")
    thresholds = np.full(n_groups, np.inf)
    bounds = np.full(n_groups, -np.inf)
    order = np.lexsort((-prob, group))  # by group, then by falling probability
    group, prob, net = group[order], prob[order], net_return[order]
    day = None if day is None else np.asarray(day)[order]
    starts = np.searchsorted(group, np.arange(n_groups))
    ends = np.searchsorted(group, np.arange(n_groups), side="right")
    for g in range(n_groups):  # one vectorised pass per head
        returns = net[starts[g] : ends[g]]
        if len(returns) < max(min_trades, 2):
            continue
        if day is None:
            k = np.arange(1, len(returns) + 1)
            bound = np.cumsum(returns) - z * returns.std() * np.sqrt(k)
        else:
            bound = daily_bounds(returns, day[starts[g] : ends[g]], z)
        best = int(np.argmax(bound[min_trades - 1 :])) + min_trades - 1
        if bound[best] > 0:
            thresholds[g] = prob[starts[g] + best]
            bounds[g] = bound[best]
    return thresholds, bounds


def daily_bounds(returns: np.ndarray, day: np.ndarray, z: float) -> np.ndarray:
    """``S_k - z * se_k`` for trading the first k of ``returns``, for every k.

    ``se_k`` is the standard error of the sum of the daily P&L over the D days in ``day``
    (days without a trade count as 0): ``sqrt(D * var)``, var the sample variance of the
    daily sums. Adding a trade of return r to a day holding p changes the sum of squared
    daily sums by ``2 p r + r**2``, so every k costs one cumulative sum.

    Args:
        returns: (n,) net returns in the order trades are added (falling probability).
        day: (n,) day number of each.
        z: margin, in standard errors.

    Returns:
        (n,) bounds; -inf for all with fewer than two days.
    """
    days, position = np.unique(day, return_inverse=True)
    n_days = len(days)
    if n_days < 2:
        return np.full(len(returns), -np.inf)
    # each trade's day's sum before it: cumulative sums within each day, in trade order
    by_day = np.argsort(position, kind="stable")
    ordered = returns[by_day]
    running = np.cumsum(ordered)
    first = np.r_[True, position[by_day][1:] != position[by_day][:-1]]
    day_start = np.maximum.accumulate(np.where(first, np.arange(len(ordered)), 0))
    before = np.empty_like(returns)
    before[by_day] = running - ordered - (running[day_start] - ordered[day_start])
    total = np.cumsum(returns)
    squares = np.cumsum(returns * (2 * before + returns))
    variance = np.maximum(n_days * squares - total**2, 0.0) / (n_days - 1)
    return total - z * np.sqrt(variance)


def choose_horizons(
    prob: np.ndarray,
    net_return: np.ndarray,
    group: np.ndarray,
    row: np.ndarray,
    horizons: tuple[int, ...],
    n_groups: int,
    min_trades: int,
    z: float = 1.0,
    day: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group, the horizon and cut with the best lower bound on validation profit.

    Trades held h bars overlap when entered on consecutive bars, and overlapping trades are
    neither independent nor all tradable. Horizon h is therefore judged on the samples of
    every h-th validation row only (``row % h == 0``), whose trades never overlap; its
    bound (:func:`threshold_bounds`) estimates the profit of the validation window traded
    without overlap. The horizon with the highest positive bound wins; a group with none
    does not trade.

    Args:
        prob: (B, H) validation probabilities, one column per horizon.
        net_return: (B, H) their net returns after costs (NaN where a horizon has none).
        group: (B,) head of each sample.
        row: (B,) grid row of each sample.
        horizons: the H horizons, in bars.
        n_groups: number of heads.
        min_trades: fewest validation trades a cut may rest on.
        z: margin of the bound, in standard errors.
        day: (B,) day number of each sample: the bound's standard error is that of daily
            P&L (see :func:`choose_thresholds`); None: trades count as independent.

    Returns:
        ``(horizon_index, thresholds, bounds)``, each (n_groups,); index -1 and threshold
        +inf where a group does not trade.
    """
    best_index = np.full(n_groups, -1)
    best_cut = np.full(n_groups, np.inf)
    best_bound = np.full(n_groups, -np.inf)
    for i, h in enumerate(horizons):
        keep = (row % h == 0) & np.isfinite(net_return[:, i])
        cuts, bounds = threshold_bounds(
            prob[keep, i],
            net_return[keep, i],
            group[keep],
            n_groups,
            min_trades,
            z,
            None if day is None else day[keep],
        )
        better = bounds > best_bound
        best_index[better], best_cut[better], best_bound[better] = i, cuts[better], bounds[better]
    return best_index, best_cut, best_bound
