"""Technical features and the per-asset scaler: causality, hand values, filled bars, state."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from huracan.data import Panel, SyntheticMarket
from huracan.errors import ConfigError
from huracan.features.scaling import PanelScaler
from huracan.features.technical import compute_features


@pytest.fixture(scope="module")
def panel() -> Panel:
    market = SyntheticMarket(n_assets=6, years=0.06, late_listing_share=0.4, n_outages=2, seed=3)
    return market.load()


def make_panel(close: np.ndarray, spread: bool = False, **fields: np.ndarray) -> Panel:
    """A panel from a (T, N) close; open = previous close, high/low = max/min of the two."""
    close = np.asarray(close, dtype=float).reshape(len(close), -1)
    open_ = np.vstack([close[:1], close[:-1]])
    bars = {
        "open": open_,
        "high": np.maximum(open_, close),
        "low": np.minimum(open_, close),
        "close": close,
        "volume": np.full_like(close, 10.0),
    }
    if spread:
        bars["spread_bps"] = np.full_like(close, 3.0)
    bars.update(fields)
    timestamps = pd.date_range("2024-01-01", periods=len(close), freq="1h", tz="UTC")
    symbols = [f"C{i}" for i in range(close.shape[1])]
    return Panel(timestamps, symbols, bars, "1h", np.zeros(close.shape, dtype=bool))


def changed_after(panel: Panel, t: int, seed: int = 0) -> Panel:
    """The panel with every bar after row t redrawn, some removed and some forward-filled."""
    rng = np.random.default_rng(seed)
    bars = {k: v.copy() for k, v in panel.bars.items()}
    later = slice(t + 1, None)
    shape = bars["close"][later].shape
    factor = np.exp(rng.normal(0, 0.05, shape))
    for name in ("open", "high", "low", "close"):
        bars[name][later] *= factor
    bars["volume"][later] *= np.exp(rng.normal(0, 1.0, shape))
    bars["spread_bps"][later] = rng.uniform(0.5, 30, shape)
    holes = np.zeros_like(panel.filled)
    holes[later] = rng.random(shape) < 0.05
    for values in bars.values():
        values[holes] = np.nan
    filled = panel.filled.copy()
    filled[later] = rng.random(shape) < 0.05
    bars["volume"][filled & ~holes] = 0.0
    return replace(panel, bars=bars, filled=filled)


def test_shapes_names_and_dtype(panel):
    features, columns = compute_features(panel)
    assert features.dtype == np.float32
    assert features.shape == (panel.n_bars, panel.n_assets, len(columns))
    assert columns[:3] == ["ret_1", "ret_4", "ret_24"]
    assert "spread_bps" in columns and "volume_z" in columns
    assert not np.isinf(features).any()
    # after warm-up, an asset listed from the start has every feature on (almost) every bar
    from_start = panel.listed[0]
    warm = features[200:, from_start][panel.listed[200:, from_start]]
    assert np.isfinite(warm).mean() > 0.97


@pytest.mark.parametrize("t", [30, 250, 480])
def test_every_feature_is_causal(panel, t):
    features, columns = compute_features(panel)
    altered, _ = compute_features(changed_after(panel, t))
    for f, name in enumerate(columns):
        np.testing.assert_array_equal(
            features[: t + 1, :, f], altered[: t + 1, :, f], err_msg=f"{name} leaks"
        )
    assert not np.array_equal(features[t + 1 :], altered[t + 1 :], equal_nan=True)


def test_assets_are_computed_independently(panel):
    features, _ = compute_features(panel)
    alone, _ = compute_features(panel.select([panel.symbols[3]]))
    np.testing.assert_allclose(alone[:, 0], features[:, 3], rtol=1e-6)


def test_warm_up_is_nan_until_the_window_is_full():
    close = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, (80, 2)), axis=0))
    features, columns = compute_features(make_panel(close), ["returns", "realized_vol"])
    ret_24 = features[..., columns.index("ret_24")]
    vol = features[..., columns.index("realized_vol")]
    assert np.isnan(ret_24[:24]).all() and np.isfinite(ret_24[24:]).all()
    assert np.isnan(vol[:24]).all() and np.isfinite(vol[24:]).all()


def test_hand_computed_values():
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 60)))
    features, columns = compute_features(
        make_panel(close), ["returns", "realized_vol", "bollinger"], {"return_horizons": [1, 3]}
    )
    log_close = np.log(close)
    np.testing.assert_allclose(features[1:, 0, 0], np.diff(log_close), rtol=1e-5)
    np.testing.assert_allclose(features[3:, 0, 1], log_close[3:] - log_close[:-3], rtol=1e-5)
    expected_vol = np.std(np.diff(log_close)[-24:], ddof=1)
    np.testing.assert_allclose(features[-1, 0, columns.index("realized_vol")], expected_vol, 1e-5)
    window = close[-20:]
    position = (close[-1] - window.mean()) / (2 * window.std())
    np.testing.assert_allclose(features[-1, 0, columns.index("bollinger_position")], position, 1e-5)


def test_rsi_atr_and_bands_on_simple_paths():
    rising = np.linspace(100, 150, 60)
    flat = np.full(60, 100.0)
    close = np.column_stack([rising, flat])
    high = close * 1.01
    low = close * 0.99
    panel = make_panel(close, high=high, low=low)
    features, columns = compute_features(panel, ["rsi", "atr", "bollinger", "macd"])
    rsi = features[..., columns.index("rsi")]
    assert np.allclose(rsi[20:, 0], 100) and np.allclose(rsi[20:, 1], 50)
    np.testing.assert_allclose(features[40:, 1, columns.index("atr")], 0.02, rtol=1e-5)
    assert np.all(features[40:, 1, columns.index("bollinger_position")] == 0)
    assert np.all(features[40:, 0, columns.index("macd")] > 0)
    assert np.all(features[40:, 1, columns.index("macd")] == 0)


def test_filled_bars_do_not_move_the_volume_z_score(panel):
    rng = np.random.default_rng(2)
    bars = {k: v.copy() for k, v in panel.bars.items()}
    filled = np.zeros_like(panel.filled)
    filled[rng.choice(np.arange(200, panel.n_bars), 40, replace=False), 0] = True
    bars["volume"][filled] = 0.0
    with_gaps = replace(panel, bars=bars, filled=filled)
    z, _ = compute_features(with_gaps, ["volume_z"])
    assert np.isnan(z[filled[:, :, None]]).all()
    assert np.nanmax(np.abs(z[:, 0])) < 8  # no spike from a zero volume
    bars_other = {k: v.copy() for k, v in bars.items()}
    bars_other["volume"][filled] = 1e12  # whatever a filled bar says, nothing else changes
    z_other, _ = compute_features(replace(with_gaps, bars=bars_other), ["volume_z"])
    np.testing.assert_array_equal(z, z_other)


def test_unknown_repeated_and_unavailable_features_are_clear_errors(panel):
    with pytest.raises(ConfigError, match="unknown feature.*'momentum'.*known features"):
        compute_features(panel, ["returns", "momentum"])
    with pytest.raises(ConfigError, match="more than once"):
        compute_features(panel, ["rsi", "rsi"])
    without_spread = replace(panel, bars={k: v for k, v in panel.bars.items() if k != "spread_bps"})
    with pytest.raises(ConfigError, match="spread_bps"):
        compute_features(without_spread, ["spread"])
    _, columns = compute_features(without_spread)
    assert "spread_bps" not in columns and len(columns) == 12


def test_windows_from_a_mapping_and_bad_windows(panel):
    _, columns = compute_features(panel, ["returns"], {"return_horizons": [2, 8]})
    assert columns == ["ret_2", "ret_8"]
    with pytest.raises(ConfigError, match="unknown feature window.*'vol'"):
        compute_features(panel, ["rsi"], {"vol": 3})
    with pytest.raises(ConfigError, match="macd_fast"):
        compute_features(panel, ["macd"], {"macd_fast": 30})
    with pytest.raises(ConfigError, match=">= 2"):
        compute_features(panel, ["rsi"], {"rsi": 1})


# --- PanelScaler ---------------------------------------------------------------------------
def test_scaler_fitted_on_the_training_window_ignores_later_data(panel):
    train_end = 400
    features, _ = compute_features(panel)
    altered, _ = compute_features(changed_after(panel, train_end))
    scaler = PanelScaler().fit(features[:train_end])
    other = PanelScaler().fit(altered[:train_end])
    np.testing.assert_array_equal(scaler.mean_, other.mean_)
    np.testing.assert_array_equal(scaler.std_, other.std_)
    np.testing.assert_array_equal(
        scaler.transform(features)[:train_end], other.transform(altered)[:train_end]
    )


def test_scaler_standardises_each_asset_and_feature():
    rng = np.random.default_rng(4)
    X = rng.normal(
        loc=[[1.0, -5.0], [100.0, 0.0], [0.0, 3.0]],
        scale=[[1, 2], [10, 0.1], [5, 1]],
        size=(500, 3, 2),
    )
    X[:50, 1] = np.nan  # listed late
    scaler = PanelScaler().fit(X)
    assert scaler.mean_.shape == scaler.std_.shape == (3, 2)
    Z = scaler.transform(X)
    assert Z.dtype == np.float32
    assert np.isnan(Z[:50, 1]).all()
    np.testing.assert_allclose(np.nanmean(Z, axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(np.nanstd(Z, axis=0), 1, atol=1e-5)


def test_scaler_handles_constant_missing_assets_and_clips():
    X = np.random.default_rng(5).normal(size=(100, 3, 2))
    X[:, 0, 0] = 7.0  # constant feature
    X[:, 2, :] = np.nan  # an asset with no training data
    scaler = PanelScaler(clip=2.0).fit(X)
    assert scaler.std_[0, 0] == 1.0 and scaler.mean_[0, 0] == 7.0
    pooled = X[:, :2, 1].ravel()
    np.testing.assert_allclose(scaler.mean_[2, 1], pooled.mean())
    np.testing.assert_allclose(scaler.std_[2, 1], pooled.std())
    Z = scaler.transform(X * 10)
    assert np.nanmax(np.abs(Z)) == 2.0
    assert np.isfinite(scaler.mean_).all() and (scaler.std_ > 0).all()


def test_scaler_state_round_trips_as_plain_data():
    X = np.random.default_rng(6).normal(size=(50, 4, 3))
    scaler = PanelScaler(clip=4.0).fit(X)
    state = scaler.state_dict()
    as_json = json.loads(json.dumps({k: np.asarray(v).tolist() for k, v in state.items()}))
    for restored in (PanelScaler.from_state_dict(state), PanelScaler.from_state_dict(as_json)):
        np.testing.assert_array_equal(restored.transform(X), scaler.transform(X))
        assert restored.clip == 4.0


def test_scaler_errors():
    with pytest.raises(NotFittedError):
        PanelScaler().transform(np.zeros((3, 2, 2)))
    scaler = PanelScaler().fit(np.random.default_rng(7).normal(size=(20, 2, 2)))
    with pytest.raises(ValueError, match="fitted on 2 x 2"):
        scaler.transform(np.zeros((5, 3, 2)))
    with pytest.raises(ValueError, match=r"\(T, N, F\)"):
        scaler.fit(np.zeros((5, 3)))


def test_a_lag_longer_than_the_rows_is_all_fill():
    from huracan.features.technical import lag

    values = np.arange(10.0).reshape(5, 2)
    assert np.isnan(lag(values, 24)).all() and lag(values, 5).shape == (5, 2)
    np.testing.assert_array_equal(lag(values, 2)[2:], values[:3])
