import json

import numpy as np
import pytest

from huracan.data.synthetic import SyntheticMarket
from huracan.errors import ConfigError
from huracan.factor import (
    LeaderFactor,
    MeanFactor,
    NoFactor,
    PCAFactor,
    WeightedMeanFactor,
    inject_market_factor,
    trailing_mean,
)

METHODS = ["pca", "mean", "weighted_mean", "leader"]
FACTORS = {
    "pca": PCAFactor,
    "leader": LeaderFactor,
    "mean": MeanFactor,
    "weighted_mean": WeightedMeanFactor,
    "none": NoFactor,
}


def market(seed: int = 0, **kwargs):
    """Panel, its log returns and quote volume on the returns' bars, dominant members."""
    panel = SyntheticMarket(seed=seed, **kwargs).load()
    returns = np.diff(np.log(panel.close), axis=0)
    members = list(np.asarray(panel.symbols)[panel.truth.cluster_labels == 0])
    return panel, returns, panel.quote_volume[1:], members


@pytest.fixture(scope="module")
def default_market():
    return market()


def out_of_sample_correlation(seed: int, **kwargs) -> float:
    panel, returns, _, members = market(seed, **kwargs)
    half = len(returns) // 2
    extractor = PCAFactor().fit(returns[:half], members, panel.symbols)
    factor = extractor.transform(returns[half:])[:, 0]
    return np.corrcoef(factor, panel.truth.market_factor[1:][half:])[0, 1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pca_factor_tracks_the_planted_market_factor_out_of_sample(seed):
    # Fitted on the first half, applied unchanged to the second, at default settings.
    assert out_of_sample_correlation(seed) > 0.9


def test_pca_sign_moves_with_btc(default_market):
    panel, returns, _, members = default_market
    btc = panel.index_of("BTC")
    for sign in (1.0, -1.0):
        extractor = PCAFactor().fit(sign * returns, members[::-1], panel.symbols)
        factor = extractor.transform(sign * returns)[:, 0]
        assert np.corrcoef(factor, sign * returns[:, btc])[0, 1] > 0.5
        assert 0 < extractor.explained_variance_ratio_ <= 1


@pytest.mark.parametrize("method", METHODS)
def test_factor_is_standardised_with_training_statistics(default_market, method):
    panel, returns, volume, members = default_market
    half = len(returns) // 2
    extractor = FACTORS[method]().fit(returns[:half], members, panel.symbols, volume[:half])
    factor = extractor.transform(returns, volume)[:, 0]
    assert abs(factor[:half].mean()) < 1e-9 and abs(factor[:half].std() - 1) < 1e-9
    np.testing.assert_allclose(
        factor[:half], extractor.transform(returns[:half], volume[:half])[:, 0]
    )
    assert 0.8 < factor[half:].std() < 1.25  # the test window is not re-standardised


@pytest.mark.parametrize("method", [*METHODS, "none"])
def test_transform_is_causal(default_market, method):
    panel, returns, volume, members = default_market
    extractor = FACTORS[method]().fit(returns, members, panel.symbols, volume)
    t = 3000
    changed_returns, changed_volume = returns.copy(), volume.copy()
    rng = np.random.default_rng(1)
    changed_returns[t:] = rng.standard_normal(changed_returns[t:].shape)
    changed_volume[t:] *= rng.lognormal(0, 2, changed_volume[t:].shape)
    a = extractor.transform(returns, volume)
    b = extractor.transform(changed_returns, changed_volume)
    np.testing.assert_array_equal(a[:t], b[:t])


@pytest.mark.parametrize("method", [*METHODS, "none"])
def test_fit_ignores_data_after_the_training_window(default_market, method):
    panel, returns, volume, members = default_market
    end = 4000
    changed = returns.copy()
    changed[end:] = np.random.default_rng(1).standard_normal(changed[end:].shape)
    a = FACTORS[method]().fit(returns[:end], members, panel.symbols, volume[:end])
    b = FACTORS[method]().fit(changed[:end], members, panel.symbols, volume[:end])
    assert a.to_dict() == b.to_dict()
    assert json.loads(json.dumps(a.to_dict()))["members"] == members


def test_weighted_mean_uses_only_past_volume(default_market):
    panel, returns, volume, members = default_market
    extractor = WeightedMeanFactor(volume_window=5)
    extractor.fit(returns, members, panel.symbols, volume)
    t = 1000
    changed = volume.copy()
    changed[t] *= 100.0
    a, b = extractor.transform(returns, volume), extractor.transform(returns, changed)
    np.testing.assert_array_equal(a[: t + 1], b[: t + 1])
    assert not np.array_equal(a[t + 1 : t + 6], b[t + 1 : t + 6])
    np.testing.assert_allclose(a[t + 6 :], b[t + 6 :], rtol=1e-9)  # running sums round
    with pytest.raises(ConfigError, match="quote_volume"):
        extractor.transform(returns)


def test_trailing_mean_excludes_the_current_bar():
    values = np.array([[1.0], [2.0], [np.nan], [4.0], [5.0]])
    expected = [np.nan, 1.0, 1.5, 2.0, 4.0]
    np.testing.assert_allclose(trailing_mean(values, 2)[:, 0], expected)


def test_mean_factor_is_the_members_average(default_market):
    panel, returns, _, members = default_market
    extractor = MeanFactor().fit(returns, members, panel.symbols)
    raw = returns[:, [panel.index_of(m) for m in members]].mean(axis=1)
    expected = (raw - raw.mean()) / raw.std()
    np.testing.assert_allclose(extractor.transform(returns)[:, 0], expected, atol=1e-12)


def test_none_gives_no_channels(default_market):
    panel, returns, _, members = default_market
    factor = NoFactor().fit(returns, members, panel.symbols).transform(returns)
    assert factor.shape == (len(returns), 0)
    channels = inject_market_factor(factor, panel.listed[1:])
    assert channels.values.shape == (len(returns), panel.n_assets, 0)
    assert channels.names == []


def test_pca_handles_missing_members(default_market):
    panel, returns, _, members = default_market
    gappy = returns.copy()
    eth, bnb = panel.index_of("ETH"), panel.index_of("BNB")
    gappy[:2000, eth] = np.nan  # listed late
    gappy[3000:3010] = np.nan  # an outage
    gappy[4000:4005, [c for c in range(panel.n_assets) if c != bnb]] = np.nan
    extractor = PCAFactor().fit(gappy, members, panel.symbols)
    factor = extractor.transform(gappy)[:, 0]
    missing = np.flatnonzero(np.isnan(factor))
    np.testing.assert_array_equal(missing, np.arange(3000, 3010))
    complete = PCAFactor().fit(returns[2000:], members, panel.symbols)
    np.testing.assert_allclose(extractor.loadings_, complete.loadings_, atol=0.02)


def test_member_errors(default_market):
    panel, returns, _, members = default_market
    with pytest.raises(ConfigError, match="symbols"):
        PCAFactor().fit(returns, members)
    with pytest.raises(ConfigError, match="NOPE"):
        PCAFactor().fit(returns, ["NOPE"], panel.symbols)
    with pytest.raises(ConfigError, match="column indices"):
        PCAFactor().fit(returns, [0, 99])
    with pytest.raises(ConfigError, match="n_lags"):
        PCAFactor(n_lags=-1).fit(returns, [0, 1])
    with pytest.raises(ConfigError, match="volume_window"):
        WeightedMeanFactor(volume_window=0).fit(returns, [0, 1])


def test_members_by_index_equal_members_by_symbol(default_market):
    panel, returns, _, members = default_market
    by_name = PCAFactor().fit(returns, members, panel.symbols).transform(returns)
    columns = [panel.index_of(m) for m in members]
    by_index = PCAFactor().fit(returns, columns).transform(returns)
    np.testing.assert_array_equal(by_name, by_index)


def test_injection_fills_short_gaps_and_zeroes_long_ones():
    factor = np.arange(1.0, 21.0)
    factor[[0]] = np.nan  # nothing before it: zeroed
    factor[3:6] = np.nan  # 3 bars: filled with factor[2]
    factor[10:15] = np.nan  # 5 bars: 3 filled with factor[9], then 2 zeroed
    listed = np.ones((20, 2), dtype=bool)
    listed[:4, 1] = False
    channels = inject_market_factor(factor, listed, n_lags=2, max_ffill=3)
    assert channels.values.shape == (20, 2, 3)
    assert channels.names == ["market_factor", "market_factor_lag1", "market_factor_lag2"]
    assert (channels.n_filled, channels.n_zeroed) == (6, 3)
    now = channels.values[:, 0, 0]
    np.testing.assert_array_equal(now[[0, 3, 4, 5]], [0, 3, 3, 3])
    np.testing.assert_array_equal(now[10:15], [10, 10, 10, 0, 0])
    np.testing.assert_array_equal(channels.values[2:, 0, 2], now[:-2])
    np.testing.assert_array_equal(channels.values[:2, 0, 2], [0, 0])
    assert np.isnan(channels.values[:4, 1]).all()
    np.testing.assert_array_equal(channels.values[4:, 1], channels.values[4:, 0])


def test_injection_is_causal():
    rng = np.random.default_rng(0)
    factor = rng.standard_normal(200)
    factor[rng.random(200) < 0.3] = np.nan
    listed = rng.random((200, 5)) < 0.9
    t = 120
    changed = factor.copy()
    changed[t:] = np.where(np.isnan(factor[t:]), 1.0, np.nan)  # gaps where there were none
    a = inject_market_factor(factor, listed).values
    b = inject_market_factor(changed, listed).values
    np.testing.assert_array_equal(a[:t], b[:t])


def test_injection_rejects_bad_arguments():
    with pytest.raises(ConfigError):
        inject_market_factor(np.zeros(5), np.ones((5, 2), bool), n_lags=-1)
    with pytest.raises(ValueError, match="listed"):
        inject_market_factor(np.zeros(5), np.ones((4, 2), bool))


@pytest.mark.parametrize("method", ["pca", "weighted_mean"])
def test_residual_channel_is_the_return_less_the_training_beta_times_the_factor(
    default_market, method
):
    panel, returns, volume, members = default_market
    symbols, train = list(panel.symbols), slice(0, 4000)
    fitted = FACTORS[method](residual=True).fit(returns[train], members, symbols, volume[train])
    factor = fitted.transform(returns[train], volume[train])[:, 0]
    for j in (0, len(symbols) - 1):  # a member and the last alt: OLS on the training bars
        both = np.isfinite(returns[train, j]) & np.isfinite(factor)
        beta = np.polyfit(factor[both], returns[train, j][both], 1)[0]
        assert fitted.betas_[j] == pytest.approx(beta, rel=1e-9)
    channels = fitted.channels(returns, volume, panel.listed[1:])
    assert channels.names == [
        "market_factor",
        "market_factor_lag1",
        "market_factor_lag2",
        "factor_residual",
    ]
    resid = channels.values[..., -1]
    expected = (returns - fitted.betas_ * channels.values[..., 0]) / fitted.residual_std_
    np.testing.assert_allclose(resid, expected)
    # on the training bars the residual is uncorrelated with the factor, with unit spread
    both = np.isfinite(resid[train, -1]) & np.isfinite(factor)
    assert abs(np.corrcoef(resid[train, -1][both], factor[both])[0, 1]) < 1e-6
    assert np.nanstd(resid[train, -1]) == pytest.approx(1.0, rel=0.01)
    # later bars never change an earlier bar's residual, and are not what beta is fitted on
    later = returns.copy()
    later[6000:] *= 3.0
    again = fitted.channels(later, volume, panel.listed[1:]).values[..., -1]
    np.testing.assert_array_equal(again[:6000], resid[:6000])
    refit = FACTORS[method](residual=True).fit(later[train], members, symbols, volume[train])
    np.testing.assert_array_equal(refit.betas_, fitted.betas_)


def test_residual_state_round_trips_by_symbol_in_another_column_order(default_market):
    panel, returns, volume, members = default_market
    symbols = list(panel.symbols)
    fitted = PCAFactor(residual=True).fit(returns[:4000], members, symbols)
    order = symbols[::-1]
    rebuilt = PCAFactor.from_dict(json.loads(json.dumps(fitted.to_dict())), order + ["NEW"])
    assert rebuilt.residual
    columns = [symbols.index(s) for s in order]
    extra = np.full((len(returns), 1), 0.001)
    mine = fitted.channels(returns, volume, panel.listed[1:]).values
    theirs = rebuilt.channels(
        np.hstack([returns[:, columns], extra]),
        None,
        np.hstack([panel.listed[1:, columns], np.ones((len(returns), 1), bool)]),
    ).values
    np.testing.assert_allclose(theirs[:, :-1], mine[:, columns], rtol=1e-12, atol=1e-12)
    assert np.isnan(theirs[:, -1, -1]).all()  # a coin it was not fitted on: no residual
    assert "betas" not in PCAFactor().fit(returns[:4000], members, symbols).to_dict()


@pytest.mark.parametrize("method", ["pca", "mean", "weighted_mean"])
def test_leader_channel_is_the_leaders_training_standardised_return(default_market, method):
    panel, returns, volume, members = default_market
    symbols, train = list(panel.symbols), slice(0, 4000)
    fitted = FACTORS[method](leader_channel=True).fit(
        returns[train], members, symbols, volume[train]
    )
    channels = fitted.channels(returns, volume, panel.listed[1:])
    assert channels.names == [
        "market_factor",
        "market_factor_lag1",
        "market_factor_lag2",
        "leader_return",
        "leader_return_lag1",
        "leader_return_lag2",
    ]
    btc = returns[:, symbols.index("BTC")]
    mean, std = np.nanmean(btc[train]), np.nanstd(btc[train])  # training bars only
    expected = (btc - mean) / std
    np.testing.assert_allclose(channels.values[1:, -1, 3], expected[1:])
    np.testing.assert_allclose(channels.values[3:, -1, 5], expected[1:-2])
    # the factor's own channels are those of the extractor without the leader channel
    plain = FACTORS[method]().fit(returns[train], members, symbols, volume[train])
    np.testing.assert_array_equal(
        channels.values[..., :3], plain.channels(returns, volume, panel.listed[1:]).values
    )
    # causal: later bars change no earlier channel
    later = returns.copy()
    later[6000:] *= 3.0
    again = fitted.channels(later, volume, panel.listed[1:]).values
    np.testing.assert_array_equal(again[:6000], channels.values[:6000])


def test_leader_channel_round_trips_by_symbol_and_is_off_for_leader_and_none(default_market):
    panel, returns, volume, members = default_market
    symbols = list(panel.symbols)
    fitted = PCAFactor(leader_channel=True).fit(returns[:4000], members, symbols)
    state = json.loads(json.dumps(fitted.to_dict()))
    assert state["leader_channel"]["symbol"] == "BTC"
    order = symbols[::-1]
    rebuilt = PCAFactor.from_dict(state, order)
    columns = [symbols.index(s) for s in order]
    mine = fitted.channels(returns, volume, panel.listed[1:]).values
    theirs = rebuilt.channels(returns[:, columns], None, panel.listed[1:, columns]).values
    np.testing.assert_allclose(theirs, mine[:, columns], rtol=1e-12, atol=1e-12)
    with pytest.raises(ConfigError, match="BTC"):
        PCAFactor.from_dict(state, [s for s in symbols if s != "BTC"] + ["BTC2"])
    for kind in (LeaderFactor, NoFactor):  # nothing to add: the factor is the leader, or none
        extractor = kind(leader_channel=True).fit(returns[:4000], members, symbols)
        names = extractor.channels(returns, volume, panel.listed[1:]).names
        assert not any(n.startswith("leader_return") for n in names)
