"""The replay's Mechanic cycles on its loaded fleet and its arrays and inputs computed
once (``replay.reuse_inputs``): the same values as computed on the bars up to each cycle,
and the same replay as each cycle loading and computing everything again."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import test_replay
from omegaconf import OmegaConf
from test_replay import MECHANIC, replay

import huracan.pipelines.mechanic.coin as mechanic_coin
from huracan.pipelines.mechanic.run import compute_inputs
from huracan.pipelines.replay.book import FleetCosts, fleet_costs
from huracan.pipelines.replay.cycles import CycleInputs
from huracan.registry import champions
from huracan.serve import Fleet, ServeConfig


@pytest.fixture(scope="module")
def trained_before(tmp_path_factory):
    """``test_replay``'s per-coin run on the bars before the replayed days."""
    return test_replay.trained_before.__wrapped__(tmp_path_factory)


@pytest.fixture(scope="module")
def market(trained_before):
    """The replay's bars and the per-coin run's fleet."""
    tmp, store, _ = trained_before
    _, objects = replay(tmp, "plain", *MECHANIC, "replay.mechanic=false")
    return objects["panel"], Fleet.load(store, config=ServeConfig(expire_hours=None))


def test_cut_arrays_and_inputs_equal_those_of_the_bars_up_to_t(market):
    panel, fleet = market
    trained = OmegaConf.create(next(iter(fleet.models.values())).config)
    horizons = tuple(sorted({int(m.horizon) for m in fleet.models.values()}))
    cache = CycleInputs(panel)
    for t in (panel.n_bars - 50, panel.n_bars - 1, panel.n_bars // 2):
        upto = panel.between(None, panel.timestamps[t] + pd.Timedelta(panel.timeframe))
        arrays, (inputs, problems) = cache(upto, fleet, trained, horizons)
        want, (want_inputs, want_problems) = compute_inputs(upto, fleet, trained, horizons)
        for name, value in vars(want).items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(getattr(arrays, name), value, err_msg=name)
            else:
                assert getattr(arrays, name) == value, name
        assert problems == want_problems and inputs.keys() == want_inputs.keys()
        for symbol, (x, channels) in want_inputs.items():
            np.testing.assert_array_equal(inputs[symbol][0], x, err_msg=symbol)
            np.testing.assert_array_equal(inputs[symbol][1], channels, err_msg=symbol)
        # a label of the last rows would read bars after t: none is there
        assert np.isnan(arrays.net_h[-1]).all()


def test_costs_calibrated_when_first_priced_equal_the_fleet_calibration(market):
    panel, fleet = market
    row = panel.n_bars - 30
    lazy = FleetCosts(panel, fleet.models, row)
    symbol = next(iter(fleet.models))
    assert lazy[symbol] == fleet_costs(panel, {symbol: fleet.models[symbol]}, row)[symbol]
    assert list(lazy._costs) == [symbol]  # the others not calibrated yet
    assert dict(lazy) == fleet_costs(panel, fleet.models, row)
    assert "NOT_A_COIN" not in lazy


def without_timing(cycle: dict) -> dict:
    """A cycle's record without its wall times and the clock time of its clustering."""
    cycle = {k: v for k, v in cycle.items() if k != "seconds"}
    cycle["cluster_drift"] = {k: v for k, v in cycle["cluster_drift"].items() if k != "at"}
    return cycle


@pytest.mark.parametrize("promote", [True, False])
def test_cycles_on_the_loaded_fleet_replay_as_reloading_ones(trained_before, monkeypatch, promote):
    """With every challenger promoted (what a promotion changes) and with the champion
    rule (kept champions: their pointers get new figures, their models are kept)."""
    tmp, _, _ = trained_before
    choose = mechanic_coin.choose_threshold
    monkeypatch.setattr(  # challengers trade: promoted models enter
        mechanic_coin, "choose_threshold", lambda *a: {**choose(*a), "threshold": 0.5}
    )
    if promote:
        monkeypatch.setattr(champions, "decide", lambda *_: champions.Decision(True, "test"))
    options = [*MECHANIC, "replay.respect_trade_ok=false"]
    runs = (f"reused_{promote}", f"reloaded_{promote}")
    summary, _ = replay(tmp, runs[0], *options)
    replay(tmp, runs[1], *options, "replay.reuse_inputs=false")
    decisions = pd.read_csv(tmp / runs[0] / "mechanic_decisions.csv")
    if promote:
        assert summary["replay"]["promotions"] >= 2
    else:
        assert (decisions["status"] == "kept").sum() >= 2
    reused, reloaded = (tmp / name for name in runs)
    for name in ("trades.csv", "mechanic_decisions.csv", "coins.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(reused / name), pd.read_csv(reloaded / name), obj=name
        )
    equity = [
        pd.read_csv(d / "equity.csv").drop(columns=["wall_s", "signals_s"])
        for d in (reused, reloaded)
    ]
    pd.testing.assert_frame_equal(*equity)
    cycles = [json.loads((d / "mechanic.json").read_text())["cycles"] for d in (reused, reloaded)]
    assert [without_timing(c) for c in cycles[0]] == [without_timing(c) for c in cycles[1]]
