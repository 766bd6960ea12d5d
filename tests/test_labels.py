"""Labels after costs, triple barriers and energy weights, checked on hand-made bars."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from huracan.costs import CostModel
from huracan.data import Panel, SyntheticMarket
from huracan.errors import ConfigError
from huracan.features.labels import (
    after_cost_labels,
    energy_weights,
    forward_return,
    triple_barrier_labels,
)

NO_SLIP = CostModel(fee_bps=5.0, spread_bps=3.0, slippage_bps_per_sigma=0.0)


def make_panel(close: list | np.ndarray, spread_bps: float | None = 2.0) -> Panel:
    close = np.asarray(close, dtype=float).reshape(len(close), -1)
    bars = {
        "open": close,
        "high": close,
        "low": close,
        "close": close,
        "volume": np.ones_like(close),
    }
    if spread_bps is not None:
        bars["spread_bps"] = np.full_like(close, spread_bps)
    timestamps = pd.date_range("2024-01-01", periods=len(close), freq="1h", tz="UTC")
    symbols = [f"C{i}" for i in range(close.shape[1])]
    return Panel(timestamps, symbols, bars, "1h", np.zeros(close.shape, dtype=bool))


def test_after_cost_labels_match_a_hand_computed_example():
    panel = make_panel([100.0, 101.0, 100.5, 103.0, 103.0])
    label, net = after_cost_labels(panel, horizon=1, cost_model=NO_SLIP)
    cost = (2 * 5.0 + 2.0) / 1e4  # two fees + the data's spread (2 bps, not the default 3)
    expected = np.array([101 / 100, 100.5 / 101, 103 / 100.5, 1.0]) - 1 - cost
    np.testing.assert_allclose(net[:4, 0], expected)
    np.testing.assert_array_equal(label[:4, 0], [1.0, 0.0, 1.0, 0.0])
    assert np.isnan(net[4, 0]) and np.isnan(label[4, 0])

    label2, net2 = after_cost_labels(panel, horizon=2, cost_model=NO_SLIP)
    np.testing.assert_allclose(
        net2[:3, 0], np.array([100.5 / 100, 103 / 101, 103 / 100.5]) - 1 - cost
    )
    np.testing.assert_array_equal(label2[:3, 0], [1.0, 1.0, 1.0])
    assert np.isnan(net2[3:]).all() and np.isnan(label2[3:]).all()


def test_costs_use_configured_spread_and_volatility_slippage():
    panel = make_panel([100.0, 102.0, 101.0], spread_bps=None)
    model = CostModel(fee_bps=5.0, spread_bps=3.0, slippage_bps_per_sigma=2.0)
    volatility = np.full((3, 1), 0.01)  # 1 % per bar: 2 bps slippage per side
    _, net = after_cost_labels(panel, 1, model, volatility=volatility)
    cost = (2 * 5.0 + 3.0 + 2 * 2.0) / 1e4
    np.testing.assert_allclose(net[:2, 0], [0.02 - cost, 101 / 102 - 1 - cost])


def test_no_label_on_filled_or_missing_bars():
    panel = make_panel(np.column_stack([[100.0, 101, 102, 103, 104], [np.nan, 10, 11, 12, 13]]))
    filled = panel.filled.copy()
    filled[2, 0] = True
    label, net = after_cost_labels(replace(panel, filled=filled), 1, NO_SLIP)
    assert np.isnan(label[2, 0]) and np.isnan(net[2, 0])
    assert np.isnan(label[0, 1])  # not listed yet
    assert np.isfinite(label[[0, 1, 3], 0]).all() and np.isfinite(label[1:4, 1]).all()


def test_labels_are_consistent_with_the_forward_return_on_a_synthetic_market():
    panel = SyntheticMarket(n_assets=4, years=0.05, seed=1).load()
    label, net = after_cost_labels(panel, 3)
    gross = forward_return(panel.close, 3)
    assert np.all(net[np.isfinite(net)] < gross[np.isfinite(net)])  # costs are never free
    np.testing.assert_array_equal(label[np.isfinite(net)], (net[np.isfinite(net)] > 0))
    assert np.isnan(net[-3:]).all()


def test_triple_barrier_on_hand_made_paths():
    close = np.column_stack(
        [
            [100.0, 100.5, 101.2, 99.0, 99.0],  # up 1.2 % at offset 2: upper barrier
            [100.0, 99.5, 98.9, 102.0, 102.0],  # down 1.1 % at offset 2: lower barrier
            [100.0, 100.5, 99.5, 100.3, 100.3],  # inside the barriers until the vertical one
        ]
    )
    panel = make_panel(close, spread_bps=0.0)
    volatility = np.full_like(close, 0.01)
    free = CostModel(fee_bps=0.0, spread_bps=0.0, slippage_bps_per_sigma=0.0)
    label, net, held = triple_barrier_labels(panel, 3, 1.0, 1.0, free, volatility=volatility)
    np.testing.assert_array_equal(label[0], [1.0, -1.0, 0.0])
    np.testing.assert_array_equal(held[0], [2, 2, 3])
    np.testing.assert_allclose(net[0], [0.012, -0.011, 0.003])
    assert np.isnan(label[-1]).all()  # nothing after the last bar

    _, net_costly, _ = triple_barrier_labels(panel, 3, 1.0, 1.0, NO_SLIP, volatility=volatility)
    np.testing.assert_allclose(net_costly[0], net[0] - 10e-4)  # two fees, data spread 0


def test_triple_barrier_is_vectorised_like_a_per_asset_run():
    panel = SyntheticMarket(n_assets=5, years=0.05, seed=2, late_listing_share=0.5).load()
    label, net, held = triple_barrier_labels(panel, 12, 1.5, 1.0)
    for j in (0, 4):
        alone = triple_barrier_labels(panel.select([panel.symbols[j]]), 12, 1.5, 1.0)
        np.testing.assert_array_equal(alone[0][:, 0], label[:, j])
        np.testing.assert_array_equal(alone[2][:, 0], held[:, j])
    assert set(np.unique(label[np.isfinite(label)])) == {-1.0, 0.0, 1.0}
    assert np.nanmax(held) == 12


def test_energy_weights_grow_with_the_size_of_the_move():
    moves = np.linspace(-0.05, 0.05, 101).reshape(-1, 1)
    volatility = np.full_like(moves, 0.01)
    moves[3], volatility[5] = np.nan, np.nan
    weights = energy_weights(moves, volatility, min_weight=0.5, max_weight=3.0)
    valid = np.isfinite(moves) & np.isfinite(volatility)
    assert np.all(weights[~valid] == 0)
    np.testing.assert_allclose(weights[valid].mean(), 1.0)
    size = np.abs(moves[valid])
    order = np.argsort(size)
    assert np.all(np.diff(weights[valid][order]) >= -1e-12)  # never smaller for bigger moves
    assert weights[valid].max() / weights[valid].min() == pytest.approx(3.0 / 0.5)
    np.testing.assert_allclose(weights[10], weights[90])  # up and down moves alike


def test_energy_weights_scale_with_volatility_and_horizon():
    move = np.full((2, 1), 0.02)
    vol = np.array([[0.01], [0.02]])
    weights = energy_weights(move, vol, horizon=4, min_weight=0.01, max_weight=100)
    assert weights[0, 0] == pytest.approx(2 * weights[1, 0])  # calm bar: the move counts more


def test_bad_arguments_are_clear_errors():
    panel = make_panel([100.0, 101.0, 102.0])
    with pytest.raises(ConfigError, match="horizon"):
        after_cost_labels(panel, horizon=0)
    with pytest.raises(ConfigError, match="horizon"):
        after_cost_labels(panel, horizon=3)
    with pytest.raises(ConfigError, match="barrier"):
        triple_barrier_labels(panel, 1, upper=0.0)
    with pytest.raises(ConfigError, match="min_weight"):
        energy_weights(np.zeros((2, 1)), np.ones((2, 1)), min_weight=2, max_weight=1)
