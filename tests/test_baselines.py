"""Baseline signals: planted structure is traded out of sample, noise is not, no leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from sklearn.linear_model import LogisticRegression

from huracan.baseline_rule import baseline_rules
from huracan.baselines import (
    LEADER_QUANTILES,
    baseline_signals,
    baseline_trades,
    lagged_returns,
    leader_search,
    logistic_signals,
)
from huracan.errors import ConfigError
from huracan.thresholds import choose_among
from huracan.validation import WalkForward

COST = 0.0005
HOUR_NS = 3_600 * 10**9


def rules_of(n_bars: int = 3000, **thresholds) -> dict:
    """The keyword ``rules`` of hourly bars: the config's min_trades, z and cut_z, trades
    counted as independent and no family gate (the rule these tests were written for;
    tests/test_baseline_rule.py covers the family gate)."""
    rule = {"min_trades": 20, "z": 2.0, "cut_z": 1.0, "unit": "trade", "gate": "search"}
    thresholds = OmegaConf.create({**rule, **thresholds})
    return {"rules": baseline_rules(thresholds, "heads", np.arange(n_bars) * HOUR_NS, 0)}


RULES = rules_of()


def market(
    n_bars: int = 3000,
    n_assets: int = 6,
    follow: float = 0.0,
    persistence: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns and next-bar net returns; alts follow the leader's (column 0) last return
    by ``follow``, every asset follows its own last return by ``persistence``."""
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0, 0.01, (n_bars, n_assets))
    returns = shocks.copy()
    for t in range(1, n_bars):
        returns[t] += persistence * returns[t - 1]
        returns[t, 1:] += follow * returns[t - 1, 0]
    returns[0] = np.nan
    net = np.full_like(returns, np.nan)
    net[:-1] = returns[1:] - COST  # a long at the close of t earns bar t+1's return
    return returns, net


def folds_of(n_bars: int = 3000):
    grid = pd.date_range("2024-01-01", periods=n_bars, freq="1h")
    return WalkForward(n_folds=3, horizon=1).split(grid)


def test_lagged_returns_line_up_bar_t_with_its_own_past():
    returns = np.arange(5.0)[:, None]
    lagged = lagged_returns(returns, 3)[:, 0]  # (T, L)
    assert np.array_equal(lagged[4], [4.0, 3.0, 2.0])
    assert np.isnan(lagged[1, 2]) and lagged[1, 1] == 0.0


def test_plain_baselines_and_trades_only_on_test_rows():
    returns, net = market(seed=1)
    folds = folds_of()
    signals = baseline_signals(returns, net, folds, 0, **RULES)
    test = np.zeros(len(returns), dtype=bool)
    test[np.concatenate([f.test for f in folds])] = True
    assert not signals["never_trade"].any()
    assert np.array_equal(signals["always_long"], test[:, None] & np.isfinite(net))
    for name, signal in signals.items():
        assert signal.shape == returns.shape and signal.dtype == bool, name
        assert not signal[~test].any(), name


def test_lead_lag_trades_a_planted_lead_profitably_out_of_sample():
    returns, net = market(follow=0.5, seed=2)
    folds = folds_of()
    signal = baseline_signals(returns, net, folds, 0, **RULES)["leader_lead_lag"]
    assert not signal[:, 0].any()  # the leader itself never trades
    for fold in folds:
        traded = signal[fold.test]
        assert traded.sum() >= RULES["rules"].min_trades, fold.index
        assert np.nanmean(net[fold.test][traded]) > 2 * COST, fold.index
    # every alt is long on the same bars: those where the leader rose enough
    assert (signal[:, 1:] == signal[:, 1:2]).all()


def test_leader_cut_takes_more_of_a_significant_lead_with_a_smaller_cut_z():
    returns, net = market(follow=0.1, seed=4)
    leader, alts = returns[1:1500, 0], net[1:1500, 1:]
    sigma = alts[np.isfinite(alts)].std()
    cuts = {}
    for cut_z in (None, 1.0):  # None: the best lower bound at z = 2
        search = leader_search(leader, alts, 20, LEADER_QUANTILES)
        _, [cut], [bound] = choose_among([[search]], 1, 2.0, cut_z)
        traded = alts[leader > cut]
        # the bound is the chosen cut's own at z = 2, and positive: still a significant lead
        assert bound == pytest.approx(traded.sum() - 2.0 * sigma * np.sqrt(traded.size))
        assert bound > 0
        cuts[cut_z] = cut
    assert cuts[1.0] < cuts[None]
    # too few validation trades: no candidate, so no cut, in the same three values
    assert leader_search(leader[:2], alts[:2], 20, LEADER_QUANTILES) is None
    assert [v[0] for v in choose_among([[None]], 1, 2.0, 1.0)] == [-1, np.inf, -np.inf]


def test_the_baselines_choose_their_cuts_by_cut_z():
    returns, net = market(follow=0.1, seed=4)
    trades = {
        cut_z: baseline_trades(
            returns, net[..., None], (1,), folds_of(), 0, **rules_of(cut_z=cut_z)
        )
        for cut_z in (None, 0.0)
    }
    lead_lag = {k: v["leader_lead_lag"][0].sum() for k, v in trades.items()}
    assert lead_lag[0.0] > lead_lag[None] > 0


def test_logistic_trades_planted_persistence_profitably_out_of_sample():
    returns, net = market(persistence=0.3, seed=3)
    folds = folds_of()
    signal = baseline_signals(returns, net, folds, 0, **RULES)["logistic"]
    tested = np.concatenate([f.test for f in folds])
    assert signal[tested].any(0).all()  # every coin found its edge
    assert np.nanmean(net[signal]) > 2 * COST
    assert np.nanmean(net[signal]) > np.nanmean(net[tested])  # better than always long


def test_logistic_is_bit_identical_on_any_number_of_threads():
    returns, net = market(n_assets=7, persistence=0.2, seed=6)
    net[:900, 4] = np.nan  # a coin listed late: nothing to fit in the first fold
    net[:, 5] = np.abs(net[:, 5])  # a coin that always wins: no second class to fit
    net_h = np.stack([net, np.roll(net, -1, axis=0)], axis=-1)
    folds = folds_of()
    serial = logistic_signals(returns, net_h, (1, 2), folds, 3, RULES["rules"], workers=1)
    assert serial[0].any()  # the comparison covers trades, not only empty signals
    for workers in (2, 3, 16):
        threaded = logistic_signals(returns, net_h, (1, 2), folds, 3, RULES["rules"], workers)
        for one, many in zip(serial, threaded, strict=True):
            assert one.dtype == many.dtype and one.tobytes() == many.tobytes(), workers


def test_logistic_probability_is_a_plain_fit_of_the_coins_training_rows():
    returns, net = market(n_assets=3, persistence=0.2, seed=7)
    folds = folds_of()
    rules = RULES["rules"]
    probability = logistic_signals(returns, net[..., None], (1,), folds, 3, rules)[2]
    features = lagged_returns(returns, 3)
    for fold in folds:
        for coin in range(3):
            x, y = features[fold.train, coin], net[fold.train, coin]
            rows = np.isfinite(x).all(1) & np.isfinite(y)
            mean, scale = x[rows].mean(0), x[rows].std(0)
            model = LogisticRegression(random_state=rules.seed)
            model.fit((x[rows] - mean) / scale, y[rows] > 0)
            test = features[fold.test, coin]
            expected = model.predict_proba((test - mean) / scale)[:, 1].astype(np.float32)
            assert np.array_equal(probability[fold.test, coin], expected)
    tested = np.concatenate([f.test for f in folds])
    assert np.isnan(np.delete(probability, tested, axis=0)).all()  # the test rows only


@pytest.mark.parametrize("seed", [4, 5])
def test_on_noise_the_learned_baselines_almost_never_trade(seed):
    returns, net = market(seed=seed)
    folds = folds_of()
    signals = baseline_signals(returns, net, folds, 0, **RULES)
    tested = np.concatenate([f.test for f in folds])
    assert signals["leader_lead_lag"][tested].mean() < 0.01
    # each of the 18 coin-fold heads takes the best of ~700 cuts: about 5% trade on noise
    heads_trading = np.array([signals["logistic"][f.test].any(0) for f in folds]).sum()
    assert heads_trading <= 3


def test_data_after_bar_t_never_changes_a_signal_at_t():
    returns, net = market(n_bars=3000, follow=0.5, persistence=0.2, seed=6)
    folds = folds_of()
    before = baseline_signals(returns, net, folds, 0, **RULES)
    rng = np.random.default_rng(7)
    for t in (folds[0].test[300], folds[1].val[-1], folds[2].test[0] - 1):
        later_returns, later_net = returns.copy(), net.copy()
        later_returns[t + 1 :] = rng.normal(0, 0.03, later_returns[t + 1 :].shape)
        finite = np.isfinite(later_net[t + 1 :])
        later_net[t + 1 :][finite] = rng.normal(0, 0.03, finite.sum())
        after = baseline_signals(later_returns, later_net, folds, 0, **RULES)
        for name in before:
            assert np.array_equal(before[name][: t + 1], after[name][: t + 1]), (name, t)
        for name in ("logistic", "leader_lead_lag"):  # the perturbation did bite later on
            assert not np.array_equal(before[name][t + 1 :], after[name][t + 1 :]), (name, t)


def test_test_window_outcomes_never_change_that_windows_signals():
    returns, net = market(follow=0.5, persistence=0.2, seed=8)
    folds = folds_of()
    before = baseline_signals(returns, net, folds, 0, **RULES)
    rng = np.random.default_rng(9)
    for fold in folds:
        outcomes = net.copy()
        start = fold.test[0]
        finite = np.isfinite(outcomes[start:])
        outcomes[start:][finite] = rng.normal(0, 0.03, finite.sum())
        after = baseline_signals(returns, outcomes, folds, 0, **RULES)
        for name in before:
            assert np.array_equal(before[name][fold.test], after[name][fold.test]), name
        if fold.index == 0:  # later folds train on it, so they may change: they do
            assert not np.array_equal(before["logistic"], after["logistic"])


def test_lead_lag_chooses_the_horizon_whose_edge_pays_the_costs():
    """Alts follow the leader's last four returns a little each: one bar's edge is below
    the 20 bps round trip, four bars' is above; the rule must hold four bars."""
    rng = np.random.default_rng(10)
    n_bars, cost = 8000, 0.002
    returns = rng.normal(0, 0.01, (n_bars, 6))
    for lag in range(1, 5):
        returns[lag:, 1:] += 0.08 * returns[:-lag, :1]
    returns[0] = np.nan
    horizons = (1, 4)
    net_h = np.full((n_bars, 6, 2), np.nan)
    for i, h in enumerate(horizons):
        forward = np.stack([returns[1 + k : n_bars - h + 1 + k] for k in range(h)]).sum(0)
        net_h[: n_bars - h, :, i] = forward - cost
    grid = pd.date_range("2024-01-01", periods=n_bars, freq="1h")
    folds = WalkForward(n_folds=3, horizon=1, purge=4).split(grid)
    trades = baseline_trades(returns, net_h, horizons, folds, 0, **rules_of(n_bars))
    signals, index = trades["leader_lead_lag"]
    assert signals[:, 1:].any() and not signals[:, 0].any()
    assert set(np.unique(index[signals])) == {1}  # held 4 bars, never 1
    assert (index[~signals] == -1).all()
    assert np.nanmean(net_h[..., 1][signals]) > 0  # and it pays out of sample
    # the premise: after the leader's top-decile bars one bar loses, four bars earn
    top = returns[:, 0] > np.nanquantile(returns[:, 0], 0.9)
    assert np.nanmean(net_h[top, 1:, 0]) < 0 < np.nanmean(net_h[top, 1:, 1])


def test_bad_inputs_name_the_value():
    returns, net = market(n_bars=300)
    folds = folds_of(300)
    rules = rules_of(300)
    with pytest.raises(ValueError, match=r"\(300, 6\)"):
        baseline_signals(returns, net[:, :5], folds, 0, **rules)
    with pytest.raises(ValueError, match="leader column 6"):
        baseline_signals(returns, net, folds, 6, **rules)
    with pytest.raises(ConfigError, match="n_lags"):
        baseline_signals(returns, net, folds, 0, n_lags=0, **rules)
    with pytest.raises(ConfigError, match="min_trades"):
        baseline_signals(returns, net, folds, 0, **rules_of(300, min_trades=0))
