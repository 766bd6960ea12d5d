"""Cross-sectional features: causality at every bar, ranks among the listed coins, the
trend aggregate fitted on training rows only, and the ``features`` config group."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import changed_after, run_config

from huracan.config import validate
from huracan.data import Panel, SyntheticMarket
from huracan.errors import ConfigError
from huracan.features.cross_section import cross_section_features, percentile_rank, resolve
from huracan.features.cross_section_fold import TrendAggregate, fold_features, relative_returns
from huracan.training.arrays import build_fleet_arrays
from huracan.training.folds import prepare_fold, walk_forward

# short look-backs, so that a 100-bar panel has values for every feature
SHORT = {
    "return_lookbacks": ["1bar", "3h", "6h"],
    "volume_window": "6h",
    "volatility_window": "6h",
    "relative_lookbacks": ["1bar", "4h"],
    "high_low_windows": ["8h"],
    "trend_windows": ["2h", "4h", "8h"],
    "trend_horizon": "2h",
    "trend_signals": True,
}


@pytest.fixture(scope="module")
def panel() -> Panel:
    market = SyntheticMarket(n_assets=6, years=0.012, late_listing_share=0.4, n_outages=2, seed=3)
    return market.load()


@pytest.fixture(scope="module")
def spec():
    return resolve(SHORT, 3600)


def override(value) -> str:
    """A value as a Hydra command-line override writes it."""
    if isinstance(value, list):
        return "[" + ",".join(value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a, b, equal_nan=True)


def test_every_panel_feature_is_causal_at_every_bar(panel, spec):
    """Changing the bars after t (prices, volumes, a coin leaving) changes no feature at
    any bar <= t, for every t."""
    features, names = cross_section_features(panel, spec)
    assert len(names) == features.shape[-1] == 3 + 1 + 1 + 2 + 3
    assert np.isfinite(features[-1]).any(0).all()  # every column has values
    for t in range(panel.n_bars - 1):
        other, _ = cross_section_features(changed_after(panel, t), spec)
        bad = [
            n
            for k, n in enumerate(names)
            if not same(other[: t + 1, :, k], features[: t + 1, :, k])
        ]
        assert not bad, f"bar {t}: {bad} changed"


def test_fold_features_are_causal_at_every_bar_once_fitted(panel):
    """Relative returns (fixed clusters) and the trend aggregate (fixed weights) at bar t
    use bars <= t only, for every t."""
    labels = np.array([0, 0, 1, 1, 1, -1])
    lookbacks = [1, 4]
    train = np.arange(60)
    trend = TrendAggregate([2, 4, 8], horizon=2).fit(panel.close, panel.listed, train)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = relative_returns(np.log(panel.close), panel.listed, labels, lookbacks)
    score = trend.transform(panel.close, panel.listed)
    assert np.isfinite(relative).any() and np.isfinite(score).any()
    for t in range(panel.n_bars - 1):
        changed = changed_after(panel, t)
        with np.errstate(divide="ignore", invalid="ignore"):
            other = relative_returns(np.log(changed.close), changed.listed, labels, lookbacks)
        assert same(other[: t + 1], relative[: t + 1]), f"relative return, bar {t}"
        other = trend.transform(changed.close, changed.listed)
        assert same(other[: t + 1], score[: t + 1]), f"trend, bar {t}"


def test_fold_features_fitted_on_training_rows_ignore_every_later_bar(panel, spec):
    """With the training window fixed, bars after its end change neither the trend weights
    nor any fold feature up to the changed bar."""
    labels = np.array([0, 0, 1, 1, 2, 2])
    train = np.arange(50)
    base, trend = fold_features(panel.close, panel.listed, labels, train, spec)
    assert base.shape[-1] == len(spec.fold_names) == 3
    for t in range(49, panel.n_bars - 1, 7):
        changed = changed_after(panel, t)
        other, refit = fold_features(changed.close, changed.listed, labels, train, spec)
        np.testing.assert_array_equal(refit.coef_, trend.coef_)
        assert same(other[: t + 1], base[: t + 1]), f"bar {t}"


def test_ranks_lie_in_0_1_and_leave_unlisted_coins_out(panel, spec):
    features, names = cross_section_features(panel, spec)
    ranks = features[..., [k for k, n in enumerate(names) if "_rank_" in n]]
    known = ranks[np.isfinite(ranks)]
    assert known.size and known.min() == 0.0 and known.max() == 1.0
    unlisted = ~panel.listed
    assert unlisted.any(), "the fixture lists some coins late"
    assert np.isnan(ranks[unlisted]).all()
    # on the bars where a coin is not listed, the others rank as if it did not exist
    coin = int(np.argmax(unlisted.sum(0)))
    rows = unlisted[:, coin]
    others = [s for i, s in enumerate(panel.symbols) if i != coin]
    without, _ = cross_section_features(panel.select(others), spec)
    keep = [i for i in range(panel.n_assets) if i != coin]
    rank_columns = [k for k, n in enumerate(names) if "_rank_" in n]
    assert same(features[rows][:, keep][..., rank_columns], without[rows][..., rank_columns])


def test_percentile_rank_by_hand():
    values = np.array([[1.0, np.nan, 3.0, 2.0], [np.nan, np.nan, 5.0, 9.0], [1.0, 1.0, 2.0, 0.0]])
    listed = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=bool)
    expected = [[0.0, np.nan, 1.0, np.nan], [np.nan, np.nan, 0.5, np.nan], [0.5, 0.5, 1.0, 0.0]]
    np.testing.assert_allclose(percentile_rank(values, listed), expected)


def test_relative_return_is_the_return_less_its_clusters_listed_mean():
    log_close = np.log([[1.0] * 6, [1.1, 1.3, 0.9, np.nan, 1.2, 0.8]])
    listed = np.isfinite(log_close)
    labels = np.array([0, 0, 1, 1, 2, -1])  # cluster 2 is one coin; the last has none
    out = relative_returns(log_close, listed, labels, [1])[1, :, 0]
    r = np.log([1.1, 1.3, 0.9, np.nan, 1.2, 0.8])
    everyone = np.nanmean(r)
    expected = [r[0] - r[:2].mean(), r[1] - r[:2].mean(), 0.0, np.nan]
    np.testing.assert_allclose(out, expected + [r[4] - everyone, r[5] - everyone])


def test_trend_weights_follow_training_rows_not_test_rows(panel):
    train, end = np.arange(60), 60
    trend = TrendAggregate([2, 4, 8], horizon=2).fit(panel.close, panel.listed, train)
    assert trend.n_samples_ > 0 and np.abs(trend.coef_).sum() > 0
    test_only = changed_after(panel, end - 1)
    refit = TrendAggregate([2, 4, 8], horizon=2).fit(test_only.close, test_only.listed, train)
    np.testing.assert_array_equal(refit.coef_, trend.coef_)
    inside = changed_after(panel, end - 30)
    refit = TrendAggregate([2, 4, 8], horizon=2).fit(inside.close, inside.listed, train)
    assert not np.allclose(refit.coef_, trend.coef_)
    shorter = TrendAggregate([2, 4, 8], horizon=2).fit(panel.close, panel.listed, train[:-20])
    assert not np.allclose(shorter.coef_, trend.coef_)
    once = TrendAggregate([2, 4, 8], horizon=2)
    score = once.fit_transform(panel.close, panel.listed, train)
    np.testing.assert_allclose(once.coef_, trend.coef_, rtol=1e-12)
    np.testing.assert_allclose(score, trend.transform(panel.close, panel.listed), rtol=1e-12)


def test_lookbacks_scale_to_the_timeframe():
    hourly = resolve({"return_lookbacks": ["1bar", "4h", "1d", "30d"]}, 3600)
    assert [lb.bars for lb in hourly.return_lookbacks] == [1, 4, 24, 720]
    daily = resolve({"return_lookbacks": ["1bar", "1d", "7d", "30d"]}, 86400)
    assert [(lb.label, lb.bars) for lb in daily.return_lookbacks] == [
        ("1bar", 1),
        ("7d", 7),
        ("30d", 30),
    ]
    assert daily.trend_horizon.bars == 1
    with pytest.raises(ConfigError, match="return_lookbacks: '1h' is shorter than one 24h bar"):
        resolve({"return_lookbacks": ["1h"]}, 86400)
    with pytest.raises(ConfigError, match="'soon' is not a duration"):
        resolve({"volume_window": "soon"}, 3600)
    with pytest.raises(
        ConfigError, match=r"unknown features.cross_section key\(s\) \['lookback'\]"
    ):
        resolve({"lookback": ["1d"]}, 3600)
    with pytest.raises(ConfigError, match="unknown or empty"):
        resolve({"names": ["momentum"]}, 3600)
    with pytest.raises(ConfigError, match="trend_alpha must be >= 0, got -1"):
        resolve({"trend_alpha": -1}, 3600)
    with pytest.raises(ConfigError, match="trend_horizon: '0bar' is shorter than one 1h bar"):
        resolve({"trend_horizon": "0bar"}, 3600)


@pytest.mark.parametrize("option", ["base", "cross_section", "all"])
def test_the_features_group_composes_for_each_option(tmp_path, option):
    cfg = run_config(tmp_path, f"features={option}")
    validate(cfg)
    assert cfg.features.fracdiff is True and cfg.features.clip == 5.0  # base's keys
    node = cfg.features.cross_section
    if option == "base":
        assert node is None
        return
    spec = resolve(dict(node), 3600)
    assert set(spec.names) == {
        "return_rank",
        "volume_rank",
        "volatility_rank",
        "relative_return",
        "high_low",
        "trend",
    }
    assert spec.trend_signals is (option == "all")
    assert len(spec.return_lookbacks) == (6 if option == "all" else 4)


def test_a_bad_cross_sectional_value_fails_the_config_check(tmp_path):
    cfg = run_config(
        tmp_path, "features=cross_section", "features.cross_section.volume_window=soon"
    )
    with pytest.raises(ConfigError, match="features.cross_section.volume_window: 'soon'"):
        validate(cfg)


def test_per_coin_with_cross_sectional_features_is_a_config_error(tmp_path):
    validate(run_config(tmp_path, "pipeline=per_coin"))
    cfg = run_config(tmp_path, "pipeline=per_coin", "features=cross_section")
    with pytest.raises(ConfigError, match="serves each champion from the roster's coins only"):
        validate(cfg)


def test_the_fold_sees_the_cross_sectional_channels(tmp_path):
    """build_fleet_arrays and prepare_fold add every cross-sectional column, scaled with
    the rest; rows before a change in later bars keep their inputs and weights."""
    cfg = run_config(
        tmp_path,
        "features=all",
        "data.n_assets=6",
        "data.years=0.1",
        "validation.n_folds=2",
        *[f"features.cross_section.{k}={override(v)}" for k, v in SHORT.items()],
    )
    panel = SyntheticMarket(n_assets=6, years=0.1, seed=0).load()
    arrays = build_fleet_arrays(panel, cfg)
    fold = walk_forward(cfg).split(panel)[0]
    data = prepare_fold(arrays, fold, cfg, None)
    expected = arrays.cross_section.fold_names
    assert data.feature_names[-1] == "fracdiff"
    assert data.feature_names[-1 - len(expected) : -1] == expected
    assert sum(n.startswith("xs_") for n in data.feature_names) == 10 + len(expected)
    valid = data.valid(arrays)
    t_idx, a_idx = np.nonzero(valid[fold.test])
    x = data.inputs(fold.test[t_idx], a_idx)
    assert x.shape[1] == len(data.feature_names) and np.isfinite(x).all()

    cut = fold.test[0]
    changed = build_fleet_arrays(changed_after(panel, cut), cfg)
    other = prepare_fold(changed, fold, cfg, None)
    np.testing.assert_array_equal(other.trend.coef_, data.trend.coef_)
    assert same(other.across[: cut + 1], data.across[: cut + 1])
    assert same(changed.features[: cut + 1], arrays.features[: cut + 1])
