"""What a model learns to predict: trades after costs, triple barriers, energy weights.

A trade is a long position entered at the close of bar t and closed ``horizon`` bars
later (or at a barrier). It pays the round trip of ``CostModel``: fees, the spread of bar t
(from the data, else the configured one) and slippage scaled by the volatility known at t.
A trade cannot be entered on a forward-filled bar (nothing traded there), so such bars
have no label. All functions work on (T, N) arrays of every asset at once.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import rankdata

from huracan.costs import CostModel
from huracan.data.panel import Panel
from huracan.errors import ConfigError
from huracan.features.technical import realized_volatility


def forward_return(close: np.ndarray, horizon: int = 1) -> np.ndarray:
    """Simple return from the close of bar t to the close of bar t + horizon.

    Args:
        close: (T, N) close prices.
        horizon: bars held.

    Returns:
        (T, N) ``close[t + h] / close[t] - 1``; NaN where either bar is missing, so always
        in the last ``horizon`` rows.
    """
    _check_horizon(horizon, len(close))
    out = np.full_like(close, np.nan)
    out[:-horizon] = close[horizon:] / close[:-horizon] - 1
    return out


def after_cost_labels(
    panel: Panel,
    horizon: int = 1,
    cost_model: CostModel | None = None,
    volatility: np.ndarray | None = None,
    vol_window: int = 24,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels a bar 1 when a long trade entered at its close makes money after costs.

    Args:
        panel: the fleet's bars.
        horizon: bars the trade is held.
        cost_model: fees, default spread and slippage; None uses ``CostModel()``.
        volatility: (T, N) per-bar volatility for slippage; None uses the realised
            volatility over ``vol_window`` bars (from two returns on, so that only the
            first two bars of a listing trade without slippage).
        vol_window: window of that realised volatility.

    Returns:
        ``(label, net_return)``, both (T, N) float64: label 1.0 where the net return is
        positive, 0.0 where it is not, NaN where there is no trade (no bar at t or t + h,
        or a forward-filled bar at t); net return as a fraction, after the round trip.
    """
    cost = round_trip(panel, cost_model, volatility, vol_window)
    net = forward_return(panel.close, horizon) - cost
    net[panel.filled] = np.nan
    label = np.where(np.isnan(net), np.nan, (net > 0).astype(np.float64))
    return label, net


MIN_CROSS_SECTION = 3  # coins a bar needs for "better than the others" to mean anything
TARGETS = ("absolute", "cross_section", "cross_section_rank")


def cross_section_labels(net: np.ndarray, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels a bar by how a long trade entered there did against the other coins' trades
    entered at the same bar: what a book that ranks coins against each other needs.

    The cross-section of bar t is every coin with a net return at t (a bar at t and at
    t + h, not forward-filled): the label reads the future only as the label itself does,
    up to t + h, and no other bar's.

    Args:
        net: (T, N) net return after costs of a long trade entered at each bar, NaN where
            none (``after_cost_labels``' second value, one horizon).
        target: ``cross_section``: 1.0 above the bar's median net return, 0.0 below, 0.5
            at it; ``cross_section_rank``: the coin's percentile rank in the bar, 0.0 the
            worst to 1.0 the best (ties averaged), a soft label for the same BCE.

    Returns:
        ``(label, relative)``, both (T, N): the label, and the net return less the bar's
        median (the move behind the energy weights); NaN where the coin has no trade or
        the bar has fewer than ``MIN_CROSS_SECTION`` coins with one.
    """
    if target not in TARGETS[1:]:
        raise ConfigError(
            f"labels.target={target!r} is no cross-sectional target (one of {list(TARGETS[1:])})"
        )
    count = np.isfinite(net).sum(1, keepdims=True)
    enough = np.isfinite(net) & (count >= MIN_CROSS_SECTION)
    with warnings.catch_warnings():  # a bar without any trade has no median: NaN, as meant
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(net, axis=1, keepdims=True)
    relative = np.where(enough, net - median, np.nan)
    if target == "cross_section":
        label = np.where(relative > 0, 1.0, np.where(relative < 0, 0.0, 0.5))
    else:
        rank = rankdata(net, axis=1, nan_policy="omit")  # 1 .. count, NaN stays NaN
        with np.errstate(invalid="ignore", divide="ignore"):
            label = (rank - 1) / (count - 1)
    return np.where(enough, label, np.nan), relative


def triple_barrier_labels(
    panel: Panel,
    horizon: int,
    upper: float = 2.0,
    lower: float = 2.0,
    cost_model: CostModel | None = None,
    volatility: np.ndarray | None = None,
    vol_window: int = 24,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which barrier a long trade entered at bar t meets first.

    The barriers sit at ``close[t] * (1 + upper * vol[t])`` and
    ``close[t] * (1 - lower * vol[t])``, with ``vol`` the per-bar volatility known at t; the
    vertical barrier is ``horizon`` bars later. Barriers are checked on closes; a missing
    bar before any barrier is met leaves the trade unlabelled.

    Args:
        panel: the fleet's bars.
        horizon: the vertical barrier, in bars.
        upper: distance of the profit-taking barrier, in per-bar volatilities.
        lower: distance of the stop-loss barrier, in per-bar volatilities.
        cost_model: costs of the round trip; None uses ``CostModel()``.
        volatility: (T, N) per-bar volatility; None uses the realised volatility over
            ``vol_window`` bars.
        vol_window: window of that realised volatility.

    Returns:
        ``(label, net_return, bars_held)``, each (T, N) float64: label +1 (upper barrier
        first), -1 (lower first) or 0 (vertical barrier), NaN where there is no trade; net
        return of the trade closed at its barrier, after costs; bars until that barrier.
    """
    _check_horizon(horizon, panel.n_bars)
    if not (upper > 0 and lower > 0):
        raise ConfigError(f"barrier widths must be > 0, got upper={upper}, lower={lower}")
    close = panel.close
    if volatility is None:
        volatility = realized_volatility(close, vol_window, min_periods=2)
    ceiling = close * (1 + upper * volatility)
    floor = close * (1 - lower * volatility)
    label = np.full_like(close, np.nan)
    exit_price = np.full_like(close, np.nan)
    bars_held = np.full_like(close, np.nan)
    waiting = ~np.isnan(close) & (volatility > 0) & ~panel.filled
    later = np.full_like(close, np.nan)
    for offset in range(1, horizon + 1):  # a loop over offsets; each step covers all bars
        later[:-offset] = close[offset:]
        later[-offset:] = np.nan
        waiting &= ~np.isnan(later)
        up = waiting & (later >= ceiling)
        down = waiting & (later <= floor)
        label[up], label[down] = 1.0, -1.0
        hit = up | down
        exit_price[hit], bars_held[hit] = later[hit], offset
        waiting &= ~hit
    label[waiting], exit_price[waiting], bars_held[waiting] = 0.0, later[waiting], horizon
    net = exit_price / close - 1 - round_trip(panel, cost_model, volatility, vol_window)
    return label, net, bars_held


def energy_weights(
    trade_return: np.ndarray,
    volatility: np.ndarray,
    horizon: int = 1,
    min_weight: float = 0.25,
    max_weight: float = 4.0,
) -> np.ndarray:
    """Sample weights that grow with the size of the move, so that noise counts less.

    The raw weight is the move in volatilities over the horizon,
    ``|trade_return| / (volatility * sqrt(horizon))``, clipped to
    ``[min_weight, max_weight]`` and divided by its mean over the rows that have one. Pass
    the training window only, so that the normalisation sees no later data.

    Args:
        trade_return: (T, N) return of each trade, e.g. ``forward_return(close, h)``.
        volatility: (T, N) per-bar volatility known at t.
        horizon: bars the trade is held.
        min_weight: floor of the raw weight (small moves still count a little).
        max_weight: cap of the raw weight (one crash does not dominate).

    Returns:
        (T, N) float64 weights with mean 1 over valid rows, 0 where the return or the
        volatility is missing.
    """
    if not 0 < min_weight <= max_weight:
        raise ConfigError(
            f"need 0 < min_weight <= max_weight, got min_weight={min_weight}, "
            f"max_weight={max_weight}"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        move = np.abs(trade_return) / (volatility * np.sqrt(horizon))
    valid = np.isfinite(move)
    weights = np.where(valid, np.clip(np.where(valid, move, 0.0), min_weight, max_weight), 0.0)
    if valid.any():
        weights /= weights[valid].mean()
    return weights


def round_trip(
    panel: Panel,
    cost_model: CostModel | None,
    volatility: np.ndarray | None,
    vol_window: int,
) -> np.ndarray:
    """Round-trip cost of a trade entered at each bar, as a fraction."""
    if volatility is None:
        volatility = realized_volatility(panel.close, vol_window, min_periods=2)
    cost_model = CostModel() if cost_model is None else cost_model
    return np.asarray(cost_model.round_trip_bps(panel.spread_bps, volatility)) * 1e-4


def _check_horizon(horizon: int, n_bars: int) -> None:
    if int(horizon) != horizon or not 1 <= horizon < n_bars:
        raise ConfigError(f"label horizon must be a whole number in [1, {n_bars}), got {horizon}")
