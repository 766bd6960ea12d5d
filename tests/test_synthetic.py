"""The synthetic market: planted structure is really there, and exposed as truth."""

from __future__ import annotations

import numpy as np
import pytest

from huracan.data import SyntheticMarket


@pytest.fixture(scope="module")
def market():
    return SyntheticMarket(seed=3).load()


def log_returns(panel):
    return np.diff(np.log(panel.close), axis=0)


def test_default_shape_and_names(market):
    assert market.n_assets == 12 and market.n_bars == 8760 and market.timeframe == "1h"
    assert market.symbols[:2] == ["BTC", "ETH"]
    assert set(market.truth.cluster_labels) == {0, 1, 2}
    assert market.truth.cluster_labels[:2].tolist() == [0, 0]
    assert (market.high >= np.maximum(market.open, market.close)).all()
    assert (market.low <= np.minimum(market.open, market.close)).all()
    assert market.spread_bps is not None and (market.volume > 0).all()


def test_same_seed_same_market():
    a, b = SyntheticMarket(seed=7).load(), SyntheticMarket(seed=7).load()
    c = SyntheticMarket(seed=8).load()
    np.testing.assert_array_equal(a.close, b.close)
    assert not np.allclose(a.close, c.close)


def test_leader_lagged_return_predicts_alts(market):
    r = log_returns(market)
    btc_prev, nxt = r[:-1, 0], r[1:]
    lead_corr = np.array([np.corrcoef(btc_prev, nxt[:, j])[0, 1] for j in range(12)])
    alts = market.truth.cluster_labels != 0
    assert lead_corr[alts].min() > 0.1  # followers: real lead-lag
    assert abs(lead_corr[0]) < 0.05  # the leader itself is unpredictable


def test_oracle_expected_return_is_informative(market):
    r = log_returns(market)
    expected = market.truth.expected_return[:-1]  # known at t for bar t+1
    alts = np.flatnonzero(market.truth.cluster_labels != 0)
    corr = [np.corrcoef(expected[:, j], r[:, j])[0, 1] for j in alts]
    assert min(corr) > 0.15
    assert np.isnan(market.truth.expected_return[-1]).all()


def test_planted_clusters_correlate_more_within_than_across(market):
    corr = np.corrcoef(log_returns(market).T)
    labels = market.truth.cluster_labels
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(12, dtype=bool)
    assert corr[same & off_diagonal].min() > corr[~same].max()


def test_fat_tails_and_volatility_regimes(market):
    r = log_returns(market)[:, 0]
    kurtosis = np.mean((r - r.mean()) ** 4) / np.var(r) ** 2
    assert kurtosis > 4  # Student-t shocks and regimes: fatter than normal (3)
    assert len(np.unique(market.truth.regime_vol)) == 2


def test_liquidity_tiers_order_volume_and_spread(market):
    tiers = market.truth.tiers
    qv = np.median(market.quote_volume, axis=0)
    spread = np.median(market.spread_bps, axis=0)
    assert qv[tiers == 1].min() > qv[tiers == 3].max()
    assert spread[tiers == 1].max() < spread[tiers == 3].min()


def test_late_listings_and_outages():
    panel = SyntheticMarket(n_assets=20, late_listing_share=0.5, n_outages=5, seed=1).load()
    listed = panel.listed
    late = ~listed[0]
    assert late.sum() >= 5 and not late[:2].any()  # BTC and ETH are never late
    first = listed.argmax(0)
    assert (listed[first[late].min() :, late].sum(0) > 0).all()
    reasons = {d.reason for d in panel.drops}
    assert reasons & {"forward_filled", "gap_too_long"}


def test_large_universe():
    panel = SyntheticMarket(n_assets=400, years=0.05, n_clusters=8).load()
    assert panel.close.shape == (438, 400) and len(set(panel.symbols)) == 400
    assert np.bincount(panel.truth.cluster_labels).min() == 50


def test_invalid_parameters():
    with pytest.raises(ValueError, match="n_clusters"):
        SyntheticMarket(n_assets=3, n_clusters=4).load()


def test_a_market_without_any_edge_and_without_a_spread_column(market):
    """``majors_follow_share=(0, 0)`` with ``follow_share=(0, 0)`` leaves no lead at all
    (the oracle expects 0 everywhere); ``spread_column=False`` drops only the spread."""
    null = SyntheticMarket(
        seed=3, follow_share=(0.0, 0.0), majors_follow_share=(0.0, 0.0), spread_column=False
    ).load()
    assert (null.truth.follow_share == 0).all()
    assert np.nan_to_num(null.truth.expected_return).max() == 0
    assert null.spread_bps is None
    assert market.truth.follow_share[1] > 0  # the default keeps the majors' faint lead
    plain = SyntheticMarket(seed=3, spread_column=False).load()
    np.testing.assert_array_equal(plain.close, market.close)  # the same market otherwise
