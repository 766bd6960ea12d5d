"""Decision thresholds and horizons: per head, chosen together on the validation slice.

A head trades only where its validation trades show profit after costs with a margin for
having picked the best of many cuts; otherwise it does not trade at all.
"""

from __future__ import annotations

import math

import numpy as np
from omegaconf import DictConfig

from huracan.errors import ConfigError
from huracan.family import FamilyGate, Search

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
    cut_z: float | None = None,
) -> np.ndarray:
    """Per group, the probability cut chosen on validation profit, where it is significant.

    For each group the validation samples are sorted by probability; trading the top k
    earns S_k, the sum of their net returns. Picking the best of many cuts on noise would
    find profit where there is none, so only cuts whose lower bound ``S_k - z * se_k`` is
    positive (k >= ``min_trades``) may trade, and among them the cut maximises
    ``S_k - cut_z * se_k`` (``cut_z`` None: z, the best lower bound). A smaller
    ``cut_z`` (``thresholds.cut_z``, default 1: one standard error) trades more of a
    significant edge: the lower bound itself prefers the few surest trades to the most
    profit. A group without a positive bound gets +inf: it does not trade, which is the
    honest answer when the model shows no edge after costs.

    With ``day``, ``se_k`` is the standard error of the summed daily P&L (the top k's
    returns summed per day, over every day the group has samples): trades on the same day
    move together, so the day is the unit of evidence, as in the report's t-statistic.
    Without it, trades count as independent: ``se_k = sigma * sqrt(k)``, sigma the group's
    per-sample standard deviation.

    Returns:
        (n_groups,) thresholds; a sample trades when its probability is >= its group's.
    """
    return threshold_bounds(prob, net_return, group, n_groups, min_trades, z, day, cut_z)[0]


def threshold_bounds(
    prob: np.ndarray,
    net_return: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    min_trades: int,
    z: float | np.ndarray = 1.0,
    day: np.ndarray | None = None,
    cut_z: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`choose_thresholds` and, per group, the lower bound its cut reached.

    Args:
        z: the margin, one for every group or (n_groups,) one each.

    Returns:
        ``(thresholds, bounds, scores)``, each (n_groups,): the cut, its lower bound at
        ``z`` and the ``S_k - cut_z * se_k`` that chose it, in the units of
        ``net_return`` summed over trades; -inf for a group that does not trade.
    """
    searches = head_searches(prob, net_return, group, n_groups, min_trades, day)
    return _cuts(searches, n_groups, z, cut_z)


def head_searches(
    prob: np.ndarray,
    net_return: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    min_trades: int,
    day: np.ndarray | None = None,
) -> list[tuple[Search, np.ndarray] | None]:
    """Per group, its candidate cuts (:class:`huracan.family.Search`) and the probability
    of each, falling; None for a group with too few samples."""
    if min_trades < 1:
        raise ConfigError(f"thresholds.min_trades must be >= 1, got {min_trades}")
    order = np.lexsort((-prob, group))  # by group, then by falling probability
    group, prob, net = group[order], prob[order], net_return[order]
    day = None if day is None else np.asarray(day)[order]
    starts = np.searchsorted(group, np.arange(n_groups))
    ends = np.searchsorted(group, np.arange(n_groups), side="right")
    searches: list[tuple[Search, np.ndarray] | None] = []
    for g in range(n_groups):  # one vectorised pass per head
        returns = net[starts[g] : ends[g]]
        if len(returns) < max(min_trades, 2):
            searches.append(None)
            continue
        days = None if day is None else day[starts[g] : ends[g]]
        if days is None:
            n_days = 0
            total = np.cumsum(returns)
            se = returns.std() * np.sqrt(np.arange(1, len(returns) + 1))
        else:
            n_days, terms = square_terms(returns, days)
            total, se = _sums(returns, n_days, terms)
        enough = np.arange(len(returns)) >= min_trades - 1  # k = index + 1 trades
        search = Search(returns, days, total, se, enough, n_days)
        searches.append((search, prob[starts[g] : ends[g]]))
    return searches


def _cuts(
    searches: list[tuple[Search, np.ndarray] | None],
    n_groups: int,
    z: float | np.ndarray,
    cut_z: float | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each group's best cut (:func:`best_cut`) at its margin: ``threshold_bounds``."""
    z = np.broadcast_to(np.asarray(z, dtype=float), (n_groups,))
    thresholds = np.full(n_groups, np.inf)
    bounds = np.full(n_groups, -np.inf)
    scores = np.full(n_groups, -np.inf)
    for g, entry in enumerate(searches):
        if entry is None:
            continue
        search, prob = entry
        best, bounds[g], scores[g] = best_cut(search.total, search.se, search.enough, z[g], cut_z)
        if best >= 0:
            thresholds[g] = prob[best]
    return thresholds, bounds, scores


def best_cut(
    total: np.ndarray, se: np.ndarray, enough: np.ndarray, z: float, cut_z: float | None = None
) -> tuple[int, float, float]:
    """Of the cuts earning ``total`` with standard error ``se``, the one maximising
    ``total - cut_z * se`` (``cut_z`` None: z) among those with enough trades
    (``enough``) whose lower bound ``total - z * se`` is positive.

    Returns:
        ``(index, bound, score)``: ``(-1, -inf, -inf)`` where no bound is positive.
    """
    if cut_z is not None and not cut_z >= 0:
        raise ConfigError(f"thresholds.cut_z must be >= 0 or null, got {cut_z}")
    bound = lower_bound(total, se, z)
    score = bound if cut_z is None else lower_bound(total, se, cut_z)
    score = np.where((bound > 0) & enough, score, -np.inf)
    best = int(np.argmax(score))
    if np.isinf(score[best]):
        return -1, -np.inf, -np.inf
    return best, float(bound[best]), float(score[best])


def daily_bounds(returns: np.ndarray, day: np.ndarray, z: float) -> np.ndarray:
    """``S_k - z * se_k`` for trading the first k of ``returns``, for every k
    (:func:`daily_sums`)."""
    return lower_bound(*daily_sums(returns, day), z)


def lower_bound(total: np.ndarray, se: np.ndarray, z: float) -> np.ndarray:
    """``total - z * se``, -inf where the error is infinite (under two days), any z."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(se), -np.inf, total - z * se)


def daily_sums(
    returns: np.ndarray, day: np.ndarray, n_days: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(S_k, se_k)`` for trading the first k of ``returns``, for every k.

    ``se_k`` is the standard error of the sum of the daily P&L over the D days in ``day``
    (days without a trade count as 0): ``sqrt(D * var)``, var the sample variance of the
    daily sums. Adding a trade of return r to a day holding p changes the sum of squared
    daily sums by ``2 p r + r**2``, so every k costs one cumulative sum.

    Args:
        returns: (n,) net returns in the order trades are added (falling probability).
        day: (n,) day number of each.
        n_days: D where it counts days without a trade of ``returns`` (at least the days
            in ``day``); None: the days in ``day``.

    Returns:
        (n,) sums and (n,) standard errors; the errors are +inf with fewer than two days.
    """
    days, terms = square_terms(returns, day)
    return _sums(returns, days if n_days is None else n_days, terms)


def _sums(returns: np.ndarray, n_days: int, terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`daily_sums` from the :func:`square_terms` of ``returns``."""
    total = np.cumsum(returns)
    if n_days < 2:
        return total, np.full(len(returns), np.inf)
    squares = np.cumsum(terms)
    variance = np.maximum(n_days * squares - total**2, 0.0) / (n_days - 1)
    return total, np.sqrt(variance)


def square_terms(returns: np.ndarray, day: np.ndarray) -> tuple[int, np.ndarray]:
    """The number of days D and, per trade, ``2 p r + r**2``: what adding the trade (return
    r, to a day already holding p) adds to the sum of squared daily sums."""
    days, position = np.unique(day, return_inverse=True)
    # each trade's day's sum before it: cumulative sums within each day, in trade order
    by_day = np.argsort(position, kind="stable")
    ordered = returns[by_day]
    running = np.cumsum(ordered)
    first = np.r_[True, position[by_day][1:] != position[by_day][:-1]]
    day_start = np.maximum.accumulate(np.where(first, np.arange(len(ordered)), 0))
    before = np.empty_like(returns)
    before[by_day] = running - ordered - (running[day_start] - ordered[day_start])
    return len(days), returns * (2 * before + returns)


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
    cut_z: float | None = None,
    family: FamilyGate | None = None,
    cut_margin: str = "family",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group, the horizon and cut chosen together on validation profit (the rule of
    :func:`choose_thresholds`).

    Trades held h bars overlap when entered on consecutive bars, and overlapping trades are
    neither independent nor all tradable. Horizon h is therefore judged on the samples of
    every h-th validation row only (``row % h == 0``), whose trades never overlap; its
    bound (:func:`threshold_bounds`) estimates the profit of the validation window traded
    without overlap. Of the cuts with a positive bound, the horizon and cut with the best
    ``S - cut_z * se`` win (the cut's own rule); a group with none does not trade.

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
        cut_z: the margin that chooses among cuts with a positive bound (None: z).
        family: widens each group's margin to the family-wise critical value of its
            whole search over horizons and cuts (``huracan.family``), never below
            ``z``; None: ``z`` for the best candidate, uncorrected (``gate=search``).
        cut_margin: with ``family``, the margin a candidate must clear to be chosen:
            ``family`` (the family's critical value: the gate and the cut are one test)
            or ``z`` (``thresholds.cut_margin=z``: the family's critical value only
            opens the gate, whether the group trades at all; the horizon and cut are
            then chosen among the candidates whose bound at ``z`` is positive). A group
            trades on exactly the same validation evidence either way, so the gate's
            family-wise error is the same; ``z`` lets an open gate take the cut with
            the most profit instead of the one surest to clear the family's margin.

    Returns:
        ``(horizon_index, thresholds, bounds)``, each (n_groups,); index -1 and threshold
        +inf where a group does not trade; the bound is the chosen cut's, at the group's
        margin.
    """
    searches = horizon_searches(prob, net_return, group, row, horizons, n_groups, min_trades, day)
    return choose_among(searches, n_groups, z, cut_z, family, cut_margin)


def horizon_searches(
    prob: np.ndarray,
    net_return: np.ndarray,
    group: np.ndarray,
    row: np.ndarray,
    horizons: tuple[int, ...],
    n_groups: int,
    min_trades: int,
    day: np.ndarray | None = None,
) -> list[list[tuple[Search, np.ndarray] | None]]:
    """Per horizon, each group's :func:`head_searches` on every h-th validation row (the
    arguments of :func:`choose_horizons`)."""
    searches = []
    for i, h in enumerate(horizons):
        keep = (row % h == 0) & np.isfinite(net_return[:, i])
        searches.append(
            head_searches(
                prob[keep, i],
                net_return[keep, i],
                group[keep],
                n_groups,
                min_trades,
                None if day is None else day[keep],
            )
        )
    return searches


def choose_among(
    searches: list[list[tuple[Search, np.ndarray] | None]],
    n_groups: int,
    z: float,
    cut_z: float | None = None,
    family: FamilyGate | None = None,
    cut_margin: str = "family",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`choose_horizons` on candidates already searched: per horizon, per group, a
    :class:`Search` and the cut that trades each of its first k (trading where the
    score is >= it; None: no candidate). Any rule's candidates fit, e.g. the leader
    lead-lag rule's cuts on the leader's return (``huracan.baselines``)."""
    if cut_margin not in ("family", "z"):
        raise ConfigError(f"thresholds.cut_margin must be family or z, got {cut_margin!r}")
    margin = np.full(n_groups, float(z))
    at_z = _best_over_horizons(searches, n_groups, margin, cut_z)
    if family is None:
        return at_z
    if any(e is not None and e[0].day is None for entries in searches for e in entries):
        raise ConfigError("a family-wise thresholds.gate needs thresholds.unit=day")
    # a group without a candidate at z has none at any wider margin: it does not trade,
    # and its critical value is not needed (nor, where its best t falls below it, the
    # exact value: critical_z stops at +inf); each group draws its own stream, so the
    # others' values do not move
    for g in np.flatnonzero(at_z[0] >= 0):
        found = [entry[g][0] for entry in searches if entry[g] is not None]
        margin[g] = max(z, family.critical_z(found, head=int(g), observed=largest_t(found)))
    chosen = _best_over_horizons(searches, n_groups, margin, cut_z)
    if cut_margin == "z":
        gate_open = chosen[0] >= 0
        chosen = tuple(np.where(gate_open, b, a) for a, b in zip(chosen, at_z, strict=True))
    return chosen


def largest_t(searches: list[Search]) -> float:
    """The largest ``S / se`` over the candidates of ``searches`` (+inf for a profit
    with no error): a margin at or above it lets none of them pass."""
    largest = -np.inf
    for s in searches:
        keep = s.enough & np.isfinite(s.se)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(s.se[keep] > 0, s.total[keep] / s.se[keep], np.inf * s.total[keep])
        if t.size:
            largest = max(largest, float(np.nanmax(t, initial=-np.inf)))
    return largest


def _best_over_horizons(
    searches: list, n_groups: int, margin: np.ndarray, cut_z: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group, the horizon index, cut and bound of the best candidate at ``margin``."""
    best_index = np.full(n_groups, -1)
    best_cut = np.full(n_groups, np.inf)
    best_bound = np.full(n_groups, -np.inf)
    best_score = np.full(n_groups, -np.inf)
    for i, entry in enumerate(searches):
        cuts, bounds, scores = _cuts(entry, n_groups, margin, cut_z)
        better = scores > best_score
        best_index[better], best_cut[better] = i, cuts[better]
        best_bound[better], best_score[better] = bounds[better], scores[better]
    return best_index, best_cut, best_bound


def family_gate(
    thresholds: DictConfig, horizons: tuple[int, ...], timestamps_ns: np.ndarray, seed: int
) -> FamilyGate | None:
    """The run's gate (``thresholds.gate``): a family-wise one (``family``, ``permutation``
    or ``bootstrap``, its shortest block the longest horizon in days), or None for the
    uncorrected ``search``."""
    gate = thresholds.get("gate", "search")
    if gate not in ("family", "permutation", "bootstrap", "search"):
        raise ConfigError(
            f"thresholds.gate must be family, permutation, bootstrap or search, got {gate!r}"
        )
    if gate == "search":
        return None
    bar_ns = float(np.median(np.diff(timestamps_ns))) if len(timestamps_ns) > 1 else DAY_NS
    return FamilyGate(
        alpha=thresholds.family_alpha,
        resamples=thresholds.resamples,
        hold_days=math.ceil(max(horizons) * bar_ns / DAY_NS),
        seed=seed,
        method=gate,
    )


def choose_by_rule(
    thresholds: DictConfig,
    prob: np.ndarray,
    net_return: np.ndarray,
    group: np.ndarray,
    row: np.ndarray,
    horizons: tuple[int, ...],
    n_groups: int,
    timestamps_ns: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`choose_horizons` under the run's whole rule (``thresholds``: trades, z, unit,
    cut_z, the family gate and its cut margin): one place, so that the heads, the ensemble,
    its components and the baselines choose alike. ``row``: the samples' grid rows,
    indexing ``timestamps_ns``."""
    day = validation_days(thresholds.unit, timestamps_ns[row])
    searches = horizon_searches(
        prob, net_return, group, row, horizons, n_groups, thresholds.min_trades, day
    )
    return choose_by_rule_among(thresholds, searches, n_groups, horizons, timestamps_ns, seed)


def choose_by_rule_among(
    thresholds: DictConfig,
    searches: list[list[tuple[Search, np.ndarray] | None]],
    n_groups: int,
    horizons: tuple[int, ...],
    timestamps_ns: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`choose_among` under the run's whole rule (:func:`choose_by_rule`), for a
    search its caller built (its days by ``validation_days(thresholds.unit, ...)``)."""
    return choose_among(
        searches,
        n_groups,
        thresholds.z,
        thresholds.cut_z,
        family_gate(thresholds, horizons, timestamps_ns, seed),
        thresholds.get("cut_margin", "family"),
    )
