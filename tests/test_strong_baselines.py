"""The stronger baselines: causal scores, cuts chosen on validation only, a repeatable
LightGBM, planted cross-sectional structure traded out of sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from huracan.baseline_rule import baseline_rules
from huracan.errors import ConfigError
from huracan.strong_baselines import (
    BaselineOptions,
    check_options,
    cross_section_trades,
    lightgbm_trades,
    lookback_bars,
    pooled_choice,
    top_k_mask,
)
from huracan.validation import WalkForward

COST = 0.002
HORIZONS = (1, 3)
DAY = 86_400 * 10**9
# the config's min_trades, z and cut_z on daily evidence, one bar a day, no family gate
# (the rule these tests were written for; tests/test_baseline_rule.py covers the gate)
RULES = baseline_rules(
    OmegaConf.create({"min_trades": 20, "z": 2.0, "cut_z": 1.0, "unit": "day", "gate": "search"}),
    "heads",
    np.arange(1500) * DAY,
    0,
)
OPTIONS = BaselineOptions(extra=["momentum", "reversal"], top_k=3, momentum_days=[7, 28])
LGBM = {"num_boost_round": 30, "num_leaves": 7, "min_data_in_leaf": 20, "bagging_fraction": 0.5}
LGBM |= {"bagging_freq": 1, "feature_fraction": 0.8}


def daily_market(n_bars: int = 1500, n_coins: int = 12, reversal: float = 0.0, seed: int = 0):
    """Log closes and (T, N, H) net returns of longs held 1 and 3 days; with ``reversal``
    each coin's next return gives back that share of its last return less the market's."""
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0, 0.03, (n_bars, n_coins))
    returns = shocks.copy()
    for t in range(1, n_bars):
        last = returns[t - 1] - returns[t - 1].mean()
        returns[t] -= reversal * last
    log_close = np.cumsum(returns, axis=0)
    return log_close, net_returns(log_close)


def net_returns(log_close: np.ndarray) -> np.ndarray:
    close = np.exp(log_close)
    net_h = np.full((*close.shape, len(HORIZONS)), np.nan)
    for i, h in enumerate(HORIZONS):
        net_h[:-h, :, i] = close[h:] / close[:-h] - 1 - COST
    return net_h


def folds_of(n_bars: int = 1500):
    grid = pd.date_range("2020-01-01", periods=n_bars, freq="1D")
    return WalkForward(n_folds=3, horizon=max(HORIZONS)).split(grid)


def labels_of(net_h: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(net_h), np.nan, (net_h > 0).astype(float))


def cross_section(log_close, net_h, folds, options=OPTIONS):
    return cross_section_trades(log_close, net_h, HORIZONS, folds, options, DAY, RULES)


def lgbm(features, net_h, folds, seed=0):
    return lightgbm_trades(
        lambda fold: features, labels_of(net_h), net_h, HORIZONS, folds, RULES, LGBM, seed
    )


def lagged_features(log_close: np.ndarray) -> np.ndarray:
    """(T, N, 3): the last 1- and 3-day returns and the last day's return less the mean."""
    one = np.full_like(log_close, np.nan)
    one[1:] = np.diff(log_close, axis=0)
    three = np.full_like(log_close, np.nan)
    three[3:] = log_close[3:] - log_close[:-3]
    relative = one - one.mean(axis=1, keepdims=True)
    return np.stack([one, three, relative], axis=-1).astype(np.float32)


def test_top_k_and_lookbacks_in_bars_of_the_timeframe():
    score = np.array([[0.3, np.nan, 0.1, 0.3, -1.0], [np.nan] * 5])
    assert top_k_mask(score, 2).tolist() == [[True, False, False, True, False], [False] * 5]
    assert lookback_bars(7, DAY) == 7
    assert lookback_bars(7, 4 * 3600e9) == 42
    assert lookback_bars(1, 3600e9) == 24
    assert lookback_bars(0.01, DAY) == 1
    with pytest.raises(ConfigError, match="unknown"):
        check_options(BaselineOptions(extra=["momentum", "carry"]))
    with pytest.raises(ConfigError, match="top_k"):
        check_options(BaselineOptions(top_k=0))


def test_reversal_trades_planted_reversal_profitably_out_of_sample():
    log_close, net_h = daily_market(reversal=0.3, seed=1)
    folds = folds_of()
    trades, scores = cross_section(log_close, net_h, folds)
    signals, index = trades["reversal"]
    tested = np.concatenate([f.test for f in folds])
    assert signals[tested].any() and not signals[np.setdiff1d(np.arange(1500), tested)].any()
    assert (signals.sum(1) <= OPTIONS.top_k).all()
    held = np.take_along_axis(net_h, np.maximum(index, 0)[..., None], -1)[..., 0]
    assert np.nanmean(held[signals]) > 0  # after costs, out of sample
    # the score is minus the last day's return, on test rows only
    expected = -(log_close[tested] - log_close[tested - 1])
    np.testing.assert_allclose(scores["reversal"][tested], expected, rtol=1e-6)
    assert np.isnan(scores["reversal"][: folds[0].test[0]]).all()
    assert set(scores) == {"momentum_7d", "momentum_28d", "reversal"}


def test_data_after_bar_t_never_changes_a_signal_or_score_at_t():
    log_close, net_h = daily_market(reversal=0.3, seed=4)
    folds = folds_of()
    features = lagged_features(log_close)
    before, before_scores = cross_section(log_close, net_h, folds)
    lgbm_before = lgbm(features, net_h, folds)
    rng = np.random.default_rng(5)
    for t in (folds[0].test[100], folds[1].val[-1], folds[2].test[0] - 1):
        later = log_close.copy()
        later[t + 1 :] += np.cumsum(rng.normal(0, 0.05, later[t + 1 :].shape), axis=0)
        later_net = net_returns(later)
        after, after_scores = cross_section(later, later_net, folds)
        for name in before:
            assert np.array_equal(before[name][0][: t + 1], after[name][0][: t + 1]), (name, t)
            np.testing.assert_array_equal(before_scores[name][: t + 1], after_scores[name][: t + 1])
        assert any(not np.array_equal(before[n][0], after[n][0]) for n in before)  # it bit
        lgbm_after = lgbm(lagged_features(later), later_net, folds)
        for part_before, part_after in zip(lgbm_before, lgbm_after, strict=True):
            rows = (slice(None), slice(0, t + 1)) if part_before.ndim == 3 else slice(0, t + 1)
            np.testing.assert_array_equal(part_before[rows], part_after[rows])
        assert not np.array_equal(np.nan_to_num(lgbm_before[2]), np.nan_to_num(lgbm_after[2]))


def test_cuts_are_chosen_on_validation_only():
    """Replacing every test-window outcome changes no trade of that window."""
    log_close, net_h = daily_market(reversal=0.3, seed=6)
    folds = folds_of()
    features = lagged_features(log_close)
    before, _ = cross_section(log_close, net_h, folds)
    lgbm_before = lgbm(features, net_h, folds)
    rng = np.random.default_rng(7)
    for fold in folds:
        outcomes = net_h.copy()
        start = fold.test[0]
        finite = np.isfinite(outcomes[start:])
        outcomes[start:][finite] = rng.normal(0, 0.05, finite.sum())
        after, _ = cross_section(log_close, outcomes, folds)
        for name in before:
            assert np.array_equal(before[name][0][fold.test], after[name][0][fold.test]), name
        lgbm_after = lgbm(features, outcomes, folds)
        assert np.array_equal(lgbm_before[0][fold.test], lgbm_after[0][fold.test])


def test_lightgbm_is_deterministic_and_learns_a_planted_reversal():
    log_close, net_h = daily_market(reversal=0.3, seed=8)
    folds = folds_of()
    features = lagged_features(log_close)
    first = lgbm(features, net_h, folds, seed=3)
    again = lgbm(features, net_h, folds, seed=3)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    signals, index, probability = first
    tested = np.concatenate([f.test for f in folds])
    assert probability.shape == (len(HORIZONS), *log_close.shape)
    assert np.isfinite(probability[:, tested]).mean() > 0.9
    assert np.isnan(probability[:, : folds[0].test[0]]).all()
    assert signals[tested].any()
    held = np.take_along_axis(net_h, np.maximum(index, 0)[..., None], -1)[..., 0]
    assert np.nanmean(held[signals]) > 0
    other = lgbm(features, net_h, folds, seed=4)[2]  # the seed reaches the bagging
    assert not np.array_equal(np.nan_to_num(probability), np.nan_to_num(other))


def test_a_horizon_without_a_model_does_not_veto_the_others():
    """LightGBM skips a horizon whose training labels have one class: its scores are NaN.
    The pooled choice picks among the other horizons as if that one were not offered."""
    rng = np.random.default_rng(3)
    v, n = 400, 6
    score = rng.uniform(size=(v, n))
    net = np.where(score > 0.5, 0.004, -0.004) + rng.normal(0, 0.002, (v, n))
    alone = pooled_choice(score[..., None], net[..., None], np.arange(v), (1,), RULES)
    assert alone[0] == 0  # the planted score trades at its one horizon
    prob = np.stack([score, np.full((v, n), np.nan)], axis=-1)
    both = pooled_choice(prob, np.stack([net, net], axis=-1), np.arange(v), (1, 4), RULES)
    assert both == alone
    prob = np.stack([np.full((v, n), np.nan), score], axis=-1)  # the index maps back
    later = pooled_choice(prob, np.stack([net, net], axis=-1), np.arange(v), (4, 1), RULES)
    assert later == (1, alone[1])
    nothing = np.full((v, n, 2), np.nan)
    assert pooled_choice(nothing, nothing, np.arange(v), (1, 4), RULES) == (-1, np.inf)
