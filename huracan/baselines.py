"""Simple trade signals to measure the models against, on the same folds and costs.

Every baseline is fitted, like the models, on its fold's training rows, has its cut
chosen on the fold's validation rows and trades only on the fold's test rows. A signal at
bar t uses returns up to t (known at its close) and never a net return of a test row.

- ``never_trade``: no trades (the P&L every other signal must beat: zero).
- ``always_long``: a long on every test bar of every asset that has a net return.
- ``logistic``: per coin, a logistic regression of "the trade makes money after costs" on
  the coin's last ``n_lags`` returns; per coin, the horizon and the cut are chosen
  together on validation by the heads' rule (``huracan.baseline_rule``).
- ``leader_lead_lag``: long every alt when the leader's return of the bar exceeds a cut;
  the horizon and the cut (one of ``LEADER_QUANTILES`` of the leader's validation
  returns) are chosen together on the pooled validation trades of the alts by the same
  rule, its family gate over this search (horizon h judged on every h-th validation bar,
  as for the heads); the leader itself never trades.

:func:`baseline_trades` gives each signal with the index of the horizon it is held;
:func:`baseline_signals` is the one-horizon form.

Just over 300 lines: the four plain baselines, two of them learned and chosen alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import NamedTuple

import numpy as np
from sklearn import config_context
from sklearn.linear_model import LogisticRegression

from huracan.baseline_rule import Rules
from huracan.errors import ConfigError
from huracan.family import Search
from huracan.threads import wide_workers
from huracan.thresholds import daily_sums
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
    rules: Rules,
    n_lags: int = 3,
    leader_quantiles: Sequence[float] = LEADER_QUANTILES,
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
        rules: the rule choosing each learned baseline's horizon and cut on validation
            (``baseline_rule.baseline_rules``; its ``timestamps_ns`` are the T rows'); its
            seed is also the logistic regressions' random state.
        n_lags: returns (t, t-1, ...) the logistic baseline sees.
        leader_quantiles: levels of the leader's validation returns tried as its cut.

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
    _check_inputs(returns, net_h[..., 0], leader, n_lags, rules.min_trades)
    horizons = tuple(int(h) for h in horizons)
    never = np.zeros(returns.shape, dtype=bool)
    always = always_long_signals(net_h[..., -1], folds)
    *logistic, probability = logistic_signals(returns, net_h, horizons, folds, n_lags, rules)
    trades = {
        "never_trade": (never, np.full(returns.shape, -1)),
        "always_long": (always, np.where(always, len(horizons) - 1, -1)),
        "logistic": tuple(logistic),
        "leader_lead_lag": lead_lag_signals(
            returns, net_h, horizons, folds, leader, leader_quantiles, rules
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
    n_lags: int,
    rules: Rules,
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per coin and fold: fit on train (shortest horizon; ``rules.seed`` the regressions'
    random state), choose horizon and cut on val by ``rules``, trade test where prob >=
    the cut. Returns ``(signals, horizon_index, probability)``, the probability (T, N)
    float32 on the test rows, NaN elsewhere.

    The coins' fits are independent: ``workers`` threads (None: ``threads.wide_workers``)
    share them, each coin's fits and predictions the same whatever the count.
    """
    # coin-major copies: a coin's rows are then one contiguous block to gather from
    features = np.ascontiguousarray(lagged_returns(returns, n_lags).transpose(1, 0, 2))
    first_net = np.ascontiguousarray(net_h[..., 0].T)  # (N, T): what the fits learn
    n_coins = returns.shape[1]
    fits = partial(coin_probabilities, folds=folds, seed=rules.seed)
    workers = wide_workers() if workers is None else workers
    pool = ThreadPoolExecutor(max(1, min(workers, n_coins)))
    try:
        per_coin = list(pool.map(fits, features, first_net))  # [coin][fold] (V + S,)
    finally:  # an error or Ctrl-C drops the queued fits instead of waiting for them
        pool.shutdown(cancel_futures=True)
    signals = np.zeros(returns.shape, dtype=bool)
    index = np.full(returns.shape, -1)
    probability = np.full(returns.shape, np.nan, dtype=np.float32)
    for k, fold in enumerate(folds):
        prob = np.stack([coin[k] for coin in per_coin], axis=1)  # (V + S, N)
        val_prob, test_prob = prob[: len(fold.val)], prob[len(fold.val) :]
        chosen, cut = coin_choices(
            val_prob, net_h[fold.val], fold.val, horizons, rules.named("logistic")
        )
        trade = (chosen >= 0)[None, :] & (test_prob >= cut)  # NaN (unknown features): no trade
        signals[fold.test] = trade
        index[fold.test] = np.where(trade, chosen[None, :], -1)
        probability[fold.test] = test_prob
    return signals, index, probability


def coin_probabilities(
    features: np.ndarray, net_return: np.ndarray, folds: Sequence[Fold], seed: int
) -> list[np.ndarray]:
    """One coin's P(win) on each fold's validation then test rows, fitted on the fold's
    training rows (all NaN where :func:`fit_coin` has nothing to fit).

    Args:
        features: (T, L) the coin's lagged returns; net_return: (T,) its net returns.
        folds: the walk-forward folds.
        seed: the regressions' random state.
    """
    out = []
    # the checks skipped are those of inputs fixed here (finite rows, constant parameters);
    # they are a share of so small a fit's time. The context is the thread's own
    with config_context(assume_finite=True, skip_parameter_validation=True):
        for fold in folds:
            scored = np.concatenate([fold.val, fold.test])
            model = fit_coin(features[fold.train], net_return[fold.train], seed)
            if model is None:
                out.append(np.full(len(scored), np.nan))
            else:
                out.append(predict(model, features[scored]))
    return out


def fit_coin(features: np.ndarray, net_return: np.ndarray, seed: int) -> CoinModel | None:
    """Logistic regression of net_return > 0 on standardised features; None without two
    classes to fit."""
    rows = np.isfinite(features).all(1) & np.isfinite(net_return)
    wins = net_return[rows] > 0
    if wins.all() or not wins.any():
        return None
    known = features[rows]
    mean, scale = known.mean(0), known.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    model = LogisticRegression(random_state=seed).fit((known - mean) / scale, wins)
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
    prob: np.ndarray, net_h: np.ndarray, rows: np.ndarray, horizons: tuple[int, ...], rules: Rules
) -> tuple[np.ndarray, np.ndarray]:
    """Per coin, the horizon index and probability cut from its validation trades, by
    ``rules`` (index -1 and cut +inf: no trade); each coin is one group of the rule's
    family gate, as each head is.

    Args:
        prob: (V, N) validation probabilities; net_h: (V, N, H) their net returns;
        rows: (V,) the validation rows' grid indices.
    """
    t, coins = np.nonzero(np.isfinite(prob))
    columns = np.broadcast_to(prob[t, coins][:, None], (len(t), len(horizons)))
    index, cuts, _ = rules.choose(columns, net_h[t, coins], coins, rows[t], horizons, prob.shape[1])
    return index, cuts


def lead_lag_signals(
    returns: np.ndarray,
    net_h: np.ndarray,
    horizons: tuple[int, ...],
    folds: Sequence[Fold],
    leader: int,
    quantiles: Sequence[float],
    rules: Rules,
) -> tuple[np.ndarray, np.ndarray]:
    """Long every alt on the test bars where the leader's return exceeds the fold's cut,
    held the fold's horizon: both chosen on validation by ``rules`` over the search of
    every horizon and cut (:func:`leader_search`). Returns ``(signals, horizon_index)``."""
    rules = rules.named("leader_lead_lag")
    leader_return = returns[:, leader]
    alts = np.flatnonzero(np.arange(returns.shape[1]) != leader)
    signals = np.zeros(returns.shape, dtype=bool)
    index = np.full(returns.shape, -1)
    for fold in folds:
        searches = []
        for i, h in enumerate(horizons):  # horizon h: every h-th validation bar
            rows = fold.val[fold.val % h == 0]
            alt_net = net_h[np.ix_(rows, alts, [i])][..., 0]
            search = leader_search(
                leader_return[rows], alt_net, rules.min_trades, quantiles, rules.day(rows)
            )
            searches.append([search])
        [best], [cut], _ = rules.choose_among(searches, 1, horizons)
        if best < 0:
            continue
        trade = (leader_return[fold.test] > cut)[:, None]
        signals[np.ix_(fold.test, alts)] = trade
        index[np.ix_(fold.test, alts)] = np.where(trade, best, -1)
    return signals, index


def leader_search(
    leader_return: np.ndarray,
    alt_net: np.ndarray,
    min_trades: int,
    quantiles: Sequence[float],
    day: np.ndarray | None = None,
) -> tuple[Search, np.ndarray] | None:
    """The leader rule's candidates on one horizon's validation bars, as a head's search.

    Trading every alt on the bars where the leader's return exceeds a cut earns S (summed
    net returns) over k trades. The bars with a leader return are taken in the order of
    its fall, each bar's element its alts' summed net return (a bar without one is never
    traded and no element), so that a cut trades the first bars of the order; the
    candidates are the cuts at ``quantiles`` of the leader's validation returns with
    k >= ``min_trades``. With ``day`` the standard error is that of the summed daily P&L
    over every validation day (``thresholds.daily_sums``), and the family gate's null
    shuffles the order of the bars ("the leader's return carries no information");
    without, ``sigma * sqrt(k)``
    (sigma: the per-trade standard deviation of all the alts' validation trades).

    Args:
        leader_return: (V,) the leader's return on each validation bar.
        alt_net: (V, A) the alts' net returns on those bars (NaN: no trade).
        min_trades: fewest trades a cut may rest on.
        quantiles: levels of the leader's validation returns tried as cuts.
        day: (V,) day number of each validation bar, or None.

    Returns:
        The :class:`Search` and, per element, the leader-return cut trading the bars up to
        it (NaN where no candidate cut ends there): a bar trades where the leader's return
        is > that cut. None with fewer than ``max(min_trades, 2)`` validation trades.
    """
    known = np.isfinite(leader_return)
    tradable = np.isfinite(alt_net[known])
    if tradable.sum() < max(min_trades, 2):
        return None
    # D counts every validation day, but only bars with a leader return are elements: a
    # bar without one never trades, and as a zero element the permutation null would
    # shuffle it into the candidates' positions
    n_days = 0 if day is None else len(np.unique(day))
    leader = leader_return[known]
    order = np.argsort(-leader, kind="stable")
    returns = np.where(tradable, alt_net[known], 0.0).sum(1)[order]  # per bar, in order
    n_trades = np.cumsum(tradable.sum(1)[order])
    cuts = np.quantile(leader, quantiles)  # (C,) rising
    n_bars = (leader[None, :] > cuts[:, None]).sum(1)  # bars above each cut
    # equal bar counts trade the same bars: one candidate each, at its lowest cut. Among
    # candidates of equal score the rule takes the fewest bars, as the heads do (the search
    # before the heads' rule could take another cut of the same bound)
    ends, first = np.unique(n_bars - 1, return_index=True)
    first, ends = first[ends >= 0], ends[ends >= 0]
    cut_at = np.full(len(order), np.nan)
    cut_at[ends] = cuts[first]
    enough = np.zeros(len(order), dtype=bool)
    enough[ends] = n_trades[ends] >= min_trades
    if day is None:
        total = np.cumsum(returns)
        se = alt_net[known][tradable].std() * np.sqrt(n_trades)
        return Search(returns, None, total, se, enough), cut_at
    day = np.asarray(day)[known][order]
    total, se = daily_sums(returns, day, n_days)
    return Search(returns, day, total, se, enough, n_days), cut_at


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
