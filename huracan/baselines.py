"""Simple trade signals to measure the models against, on the same folds and costs.

Every baseline is fitted, like the models, on its fold's training rows, has its cut
chosen on the fold's validation rows and trades only on the fold's test rows. A signal at
bar t uses returns up to t (known at its close) and never a net return of a test row.

- ``never_trade``: no trades (the P&L every other signal must beat: zero).
- ``always_long``: a long on every test bar of every asset that has a net return.
- ``logistic``: per coin, a logistic regression of "the trade makes money after costs" on
  the coin's last ``n_lags`` returns; per coin, the horizon and the cut are chosen
  together on validation by ``choose_horizons``, the rule the heads use.
- ``leader_lead_lag``: long every alt when the leader's return of the bar exceeds a cut;
  the horizon and the cut are chosen together on the pooled validation trades of the alts
  (horizon h judged on every h-th validation bar, as for the heads); the leader itself
  never trades.

:func:`baseline_trades` gives each signal with the index of the horizon it is held;
:func:`baseline_signals` is the one-horizon form.

Just over 300 lines: four baselines share one validation rule (horizon and threshold
chosen like the heads'), and splitting them would split that rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from sklearn.linear_model import LogisticRegression

from huracan.errors import ConfigError
from huracan.thresholds import best_cut, choose_horizons
from huracan.validation import Fold

LEADER_QUANTILES = tuple(np.linspace(0.0, 0.98, 50))


class CoinModel(NamedTuple):
    """One coin's fitted logistic regression and the training rows' feature scaling."""

    model: LogisticRegression
    mean: np.ndarray
    scale: np.ndarray


def baseline_signals(
    returns: np.ndarray, net_return: np.ndarray, folds: Sequence[Fold], leader: int, **options
) -> dict[str, np.ndarray]:
    """The baselines' trade signals on the folds' test rows, for one horizon.

    Args:
        returns: (T, N) log return of bar t (NaN where missing).
        net_return: (T, N) after-cost net return of a long entered at the close of t and
            held the label horizon (NaN where there is no trade).
        folds: the walk-forward folds; each baseline is fitted per fold.
        leader: column of the leading asset (e.g. BTC).
        options: the keyword options of :func:`baseline_trades`.

    Returns:
        ``never_trade``, ``always_long``, ``logistic``, ``leader_lead_lag``: each (T, N)
        bool, True where a long is entered at bar t; False outside the test rows.
    """
    net_h = np.asarray(net_return)[..., None]
    trades = baseline_trades(returns, net_h, (1,), folds, leader, **options)
    return {name: signals for name, (signals, _) in trades.items()}


def baseline_trades(
    returns: np.ndarray,
    net_h: np.ndarray,
    horizons: Sequence[int],
    folds: Sequence[Fold],
    leader: int,
    **options,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`scored_baseline_trades` without the scores."""
    return scored_baseline_trades(returns, net_h, horizons, folds, leader, **options)[0]


def scored_baseline_trades(
    returns: np.ndarray,
    net_h: np.ndarray,
    horizons: Sequence[int],
    folds: Sequence[Fold],
    leader: int,
    *,
    min_trades: int,
    z: float,
    n_lags: int = 3,
    seed: int = 0,
    leader_quantiles: Sequence[float] = LEADER_QUANTILES,
    day: np.ndarray | None = None,
    cut_z: float | None = None,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """The baselines' trades on the folds' test rows, each held a horizon of ``horizons``,
    and the continuous score behind each learned one.

    Args:
        returns: (T, N) log return of bar t (NaN where missing).
        net_h: (T, N, H) net return of a long entered at the close of t and held
            ``horizons[i]`` bars; the shortest horizon's slice (first) is what the
            logistic regression learns.
        horizons: the H horizons in bars, shortest first.
        folds: the walk-forward folds; each baseline is fitted per fold.
        leader: column of the leading asset (e.g. BTC).
        min_trades: fewest validation trades a cut may rest on (``thresholds.min_trades``).
        z: margin of the cut's lower bound on validation profit (``thresholds.z``).
        n_lags: returns (t, t-1, ...) the logistic baseline sees.
        seed: random state of the logistic regressions.
        leader_quantiles: levels of the leader's validation returns tried as its cut.
        day: (T,) day number of each row: the cuts' lower bounds rest on daily P&L, as the
            heads' do (``thresholds.unit=day``); None: on trades counted as independent.
        cut_z: the margin choosing among cuts with a positive bound (``thresholds.cut_z``).

    Returns:
        Per baseline ``(signals, horizon_index)``, each (T, N): where a long is entered
        and the index into ``horizons`` of how long it is held (-1 where no trade).
        ``always_long`` holds the longest horizon; the learned ones choose per fold on
        validation. And the scores: ``logistic``'s (T, N) float32 probability on the test
        rows (NaN elsewhere).
    """
    net_h = np.asarray(net_h)
    if net_h.ndim != 3 or net_h.shape[-1] != len(horizons):
        raise ValueError(f"net_h {net_h.shape} must be (T, N, {len(horizons)}): one per horizon")
    _check_inputs(returns, net_h[..., 0], leader, n_lags, min_trades)
    horizons = tuple(int(h) for h in horizons)
    never = np.zeros(returns.shape, dtype=bool)
    always = always_long_signals(net_h[..., -1], folds)
    *logistic, probability = logistic_signals(
        returns, net_h, horizons, folds, min_trades, z, n_lags, seed, day, cut_z
    )
    trades = {
        "never_trade": (never, np.full(returns.shape, -1)),
        "always_long": (always, np.where(always, len(horizons) - 1, -1)),
        "logistic": tuple(logistic),
        "leader_lead_lag": lead_lag_signals(
            returns, net_h, horizons, folds, leader, min_trades, z, leader_quantiles, day, cut_z
        ),
    }
    return trades, {"logistic": probability}


def always_long_signals(net_return: np.ndarray, folds: Sequence[Fold]) -> np.ndarray:
    """(T, N) a long on every test bar of every asset that has a net return."""
    test = np.zeros(len(net_return), dtype=bool)
    for fold in folds:
        test[fold.test] = True
    return test[:, None] & np.isfinite(net_return)


def lagged_returns(returns: np.ndarray, n_lags: int) -> np.ndarray:
    """(T, N, n_lags): the returns of bars t, t-1, ..., t-n_lags+1 (NaN before the start)."""
    lagged = np.full((*returns.shape, n_lags), np.nan)
    for lag in range(n_lags):
        lagged[lag:, :, lag] = returns[: len(returns) - lag]
    return lagged


def logistic_signals(
    returns: np.ndarray,
    net_h: np.ndarray,
    horizons: tuple[int, ...],
    folds: Sequence[Fold],
    min_trades: int,
    z: float,
    n_lags: int,
    seed: int,
    day: np.ndarray | None = None,
    cut_z: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per coin and fold: fit on train (shortest horizon), choose horizon and cut on val,
    trade test where prob >= the cut. Returns ``(signals, horizon_index, probability)``,
    the probability (T, N) float32 on the test rows, NaN elsewhere."""
    features = lagged_returns(returns, n_lags)  # (T, N, L)
    n_coins = returns.shape[1]
    signals = np.zeros(returns.shape, dtype=bool)
    index = np.full(returns.shape, -1)
    probability = np.full(returns.shape, np.nan, dtype=np.float32)
    for fold in folds:
        val_prob = np.full((len(fold.val), n_coins), np.nan)
        test_prob = np.full((len(fold.test), n_coins), np.nan)
        for coin in range(n_coins):  # one small fit per coin
            model = fit_coin(features[fold.train, coin], net_h[fold.train, coin, 0], seed)
            if model is not None:
                val_prob[:, coin] = predict(model, features[fold.val, coin])
                test_prob[:, coin] = predict(model, features[fold.test, coin])
        val_day = None if day is None else day[fold.val]
        chosen, cut = coin_choices(
            val_prob, net_h[fold.val], fold.val, horizons, min_trades, z, val_day, cut_z
        )
        trade = (chosen >= 0)[None, :] & (test_prob >= cut)  # NaN (unknown features): no trade
        signals[fold.test] = trade
        index[fold.test] = np.where(trade, chosen[None, :], -1)
        probability[fold.test] = test_prob
    return signals, index, probability


def fit_coin(features: np.ndarray, net_return: np.ndarray, seed: int) -> CoinModel | None:
    """Logistic regression of net_return > 0 on standardised features; None without two
    classes to fit."""
    rows = np.isfinite(features).all(1) & np.isfinite(net_return)
    wins = net_return[rows] > 0
    if wins.all() or not wins.any():
        return None
    mean, scale = features[rows].mean(0), features[rows].std(0)
    scale = np.where(scale > 0, scale, 1.0)
    model = LogisticRegression(random_state=seed).fit((features[rows] - mean) / scale, wins)
    return CoinModel(model, mean, scale)


def predict(coin: CoinModel, features: np.ndarray) -> np.ndarray:
    """P(win) for each row; NaN where a feature is unknown."""
    prob = np.full(len(features), np.nan)
    known = np.isfinite(features).all(1)
    if known.any():
        scaled = (features[known] - coin.mean) / coin.scale
        prob[known] = coin.model.predict_proba(scaled)[:, 1]
    return prob


def coin_choices(
    prob: np.ndarray,
    net_h: np.ndarray,
    rows: np.ndarray,
    horizons: tuple[int, ...],
    min_trades: int,
    z: float,
    day: np.ndarray | None = None,
    cut_z: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per coin, the horizon index and probability cut from its validation trades, by
    ``choose_horizons`` (index -1 and cut +inf: no trade).

    Args:
        prob: (V, N) validation probabilities; net_h: (V, N, H) their net returns;
        rows: (V,) the validation rows' grid indices; day: (V,) their day numbers or None.
    """
    t, coins = np.nonzero(np.isfinite(prob))
    columns = np.broadcast_to(prob[t, coins][:, None], (len(t), len(horizons)))
    index, cuts, _ = choose_horizons(
        columns,
        net_h[t, coins],
        coins,
        rows[t],
        horizons,
        prob.shape[1],
        min_trades,
        z,
        None if day is None else day[t],
        cut_z,
    )
    return index, cuts


def lead_lag_signals(
    returns: np.ndarray,
    net_h: np.ndarray,
    horizons: tuple[int, ...],
    folds: Sequence[Fold],
    leader: int,
    min_trades: int,
    z: float,
    quantiles: Sequence[float],
    day: np.ndarray | None = None,
    cut_z: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Long every alt on the test bars where the leader's return exceeds the fold's cut,
    held the fold's horizon. Returns ``(signals, horizon_index)``."""
    leader_return = returns[:, leader]
    alts = np.flatnonzero(np.arange(returns.shape[1]) != leader)
    signals = np.zeros(returns.shape, dtype=bool)
    index = np.full(returns.shape, -1)
    for fold in folds:
        best, best_cut, best_score = -1, np.inf, -np.inf
        for i, h in enumerate(horizons):  # horizon h: every h-th validation bar
            rows = fold.val[fold.val % h == 0]
            cut, _, score = leader_cut(
                leader_return[rows],
                net_h[np.ix_(rows, alts, [i])][..., 0],
                min_trades,
                z,
                quantiles,
                None if day is None else day[rows],
                cut_z,
            )
            if score > best_score:
                best, best_cut, best_score = i, cut, score
        if best < 0:
            continue
        trade = (leader_return[fold.test] > best_cut)[:, None]
        signals[np.ix_(fold.test, alts)] = trade
        index[np.ix_(fold.test, alts)] = np.where(trade, best, -1)
    return signals, index


def leader_cut(
    leader_return: np.ndarray,
    alt_net: np.ndarray,
    min_trades: int,
    z: float,
    quantiles: Sequence[float],
    day: np.ndarray | None = None,
    cut_z: float | None = None,
) -> tuple[float, float, float]:
    """The leader-return cut on the alts' validation profit, by the heads' rule.

    Trading every alt on the validation bars where the leader's return exceeds a cut
    earns S (summed net returns) over k trades; as in ``choose_thresholds`` only cuts of
    k >= ``min_trades`` with ``S - z * se`` positive may trade, and the one with the
    best ``S - cut_z * se`` wins: with ``day``, se is the standard error of the summed
    daily P&L; without, ``sigma * sqrt(k)`` (sigma: the per-trade standard deviation of
    all the alts' validation trades).

    Returns:
        ``(cut, bound, score)`` (``thresholds.best_cut``); ``(+inf, -inf, -inf)`` when
        no bound is positive.

    Args:
        leader_return: (V,) the leader's return on each validation bar.
        alt_net: (V, A) the alts' net returns on those bars (NaN: no trade).
        min_trades: fewest trades a cut may rest on.
        z: margin of the lower bound.
        quantiles: levels of the leader's validation returns tried as cuts.
        day: (V,) day number of each validation bar, or None.
        cut_z: the margin choosing among cuts with a positive bound (None: z).
    """
    tradable = np.isfinite(alt_net) & np.isfinite(leader_return)[:, None]
    if tradable.sum() < max(min_trades, 2):
        return np.inf, -np.inf, -np.inf
    sigma = alt_net[tradable].std()
    bar_sum = np.where(tradable, alt_net, 0.0).sum(1)  # (V,)
    bar_count = tradable.sum(1)
    cuts = np.quantile(leader_return[np.isfinite(leader_return)], quantiles)  # (C,)
    above = (leader_return[None, :] > cuts[:, None]).astype(np.float64)  # (C, V)
    n_trades = above @ bar_count
    if day is None:
        se = sigma * np.sqrt(n_trades)
    else:  # (C, D) daily P&L of each cut, over every validation day
        days, position = np.unique(day, return_inverse=True)
        daily = (above * bar_sum) @ (position[:, None] == np.arange(len(days)))
        se = np.sqrt(len(days) * daily.var(1, ddof=1)) if len(days) > 1 else np.inf
    best, bound, score = best_cut(above @ bar_sum, se, n_trades >= min_trades, z, cut_z)
    return (float(cuts[best]), bound, score) if best >= 0 else (np.inf, -np.inf, -np.inf)


def _check_inputs(
    returns: np.ndarray, net_return: np.ndarray, leader: int, n_lags: int, min_trades: int
) -> None:
    if returns.ndim != 2 or returns.shape != net_return.shape:
        raise ValueError(
            f"returns {returns.shape} and net_return {net_return.shape} must share one (T, N) shape"
        )
    if not 0 <= leader < returns.shape[1]:
        raise ValueError(f"leader column {leader} is not among the {returns.shape[1]} assets")
    if int(n_lags) != n_lags or n_lags < 1:
        raise ConfigError(f"n_lags must be a whole number >= 1, got {n_lags}")
    if min_trades < 1:
        raise ConfigError(f"thresholds.min_trades must be >= 1, got {min_trades}")
