"""The replay's precomputed signals equal the per-bar serving path, bar for bar.

``SignalTape`` computes every champion's inputs and probabilities once over a window;
``Fleet.signals`` rebuilds them from the last ``bars_needed`` bars at each bar. The two
must give the same rows: probabilities to float rounding (a longer history changes an
EMA's truncated start and pandas' running sums in the last bits), every decision, reason,
threshold, horizon and model path exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import run_config
from test_per_coin import SMALL

from huracan.run import train
from huracan.serve import Fleet, ServeConfig
from huracan.serve.positions import Position
from huracan.serve.tape import SignalTape
from huracan.store import LocalStore

EXACT = ["symbol", "bar_time", "horizon", "threshold", "trade", "model_path", "reasons"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tape")
    # the uncorrected search (the per-coin rule before the family gate): the tape is compared
    # on decisions that trade, which this small market's gated models do not
    rule = "thresholds.gate=search"
    cfg = run_config(tmp, *SMALL, "pipeline.champion_min_trades=0", "pipeline.report_days=0", rule)
    _, objects = train(cfg)
    return LocalStore(tmp / "artifacts"), objects["panel"]


def per_bar(fleet: Fleet, panel, t: int, positions=None) -> pd.DataFrame:
    """``Fleet.signals`` as the per-bar replay calls it: the last ``bars_needed`` bars."""
    lo = max(t + 1 - fleet.bars_needed, 0)
    step = pd.Timedelta(panel.timeframe)
    window = panel.between(panel.timestamps[lo], panel.timestamps[t] + step)
    return fleet.signals(window, positions)


def assert_same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    for column in EXACT:
        pd.testing.assert_series_equal(got[column], expected[column], check_exact=True)
    assert got["position"].tolist() == expected["position"].tolist()
    for column in ("probability", "drift"):
        a, b = got[column].to_numpy(), expected[column].to_numpy()
        assert [v is None for v in a] == [v is None for v in b], column
        values = [(x, y) for x, y in zip(a, b, strict=True) if x is not None]
        np.testing.assert_allclose(
            [x for x, _ in values], [y for _, y in values], rtol=0, atol=1e-6, err_msg=column
        )


def first_test_row(fleet: Fleet, panel) -> int:
    start = max(pd.Timestamp(m.description["test_window"][0]) for m in fleet.models.values())
    return int(panel.timestamps.searchsorted(start))


@pytest.mark.parametrize("action", ["warn", "block"])
def test_the_tape_equals_per_bar_signals(trained, action):
    store, panel = trained
    config = ServeConfig(expire_hours=None, drift_action=action, max_psi=0.5)
    fleet = Fleet.load(store, config=config)
    first = first_test_row(fleet, panel)
    end = min(first + 200, panel.n_bars)
    tape = SignalTape(fleet, panel, first, end)
    assert tape.start == first + 1 - fleet.bars_needed  # the per-bar call's own warm-up
    trades = blocked = 0
    for t in range(first, end):
        expected = per_bar(fleet, panel, t)
        got = tape.signals(t)
        assert_same(got, expected)
        trades += int(got["trade"].sum())
        blocked += sum(any(r.startswith("drift") for r in rs) for rs in got["reasons"])
    if action == "warn":
        assert trades > 10  # the decisions compared are not all "no"
    else:
        assert blocked > 0  # drift decided some of them


def test_the_tape_equals_per_bar_signals_at_the_start_of_the_data(trained):
    """Bars with less history than the warm-up: the same warm-up reasons, no drift. (From
    two days on: a window shorter than the longest return horizon fails in the feature
    builder itself, which a replay never meets: it starts after training data.)"""
    store, panel = trained
    fleet = Fleet.load(store, config=ServeConfig(expire_hours=None))
    end = fleet.bars_needed + 5
    tape = SignalTape(fleet, panel, 0, end)
    for t in [48, 49, fleet.warmup_bars - 1, fleet.warmup_bars, fleet.bars_needed - 1, end - 1]:
        assert_same(tape.signals(t), per_bar(fleet, panel, t))
    assert all(r[0].startswith("warm-up") for r in tape.signals(48)["reasons"])


def test_positions_are_applied_as_signals_applies_them(trained):
    store, panel = trained
    fleet = Fleet.load(store, config=ServeConfig(expire_hours=None))
    t = first_test_row(fleet, panel) + 3
    now = panel.timestamps[t]
    held = {
        fleet.symbols[0]: Position(now - pd.Timedelta(hours=2), now + pd.Timedelta(hours=3)),
        fleet.symbols[1]: Position(now - pd.Timedelta(hours=4), now),
    }
    tape = SignalTape(fleet, panel, t, t + 1)
    assert_same(tape.signals(t, held), per_bar(fleet, panel, t, held))


def test_a_promoted_coin_is_recomputed_from_the_next_bar(trained):
    """A new model for one coin (another coin's network under its name, a new version):
    the bars before the refresh keep the old fleet's answer, those after are the new
    fleet's per-bar answer, and only that coin is recomputed."""
    store, panel = trained
    config = ServeConfig(expire_hours=None)
    fleet = Fleet.load(store, config=config)
    first = first_test_row(fleet, panel)
    end, switch = first + 60, first + 30
    tape = SignalTape(fleet, panel, first, end)
    before = [tape.signals(t) for t in range(first, switch)]
    symbol, other = list(fleet.models)[:2]
    swapped = dataclasses.replace(
        fleet.models[symbol],
        module=fleet.models[other].module,
        model_path=f"models/{symbol}/swapped",
    )
    models = {**fleet.models, symbol: swapped}
    promoted = Fleet(models, fleet.unusable, fleet.roster, fleet.shared_encoder, config)
    assert tape.refresh(promoted, switch) == [symbol]
    changed = 0
    for t in range(switch, end):
        expected = per_bar(promoted, panel, t)
        assert_same(tape.signals(t), expected)
        old = per_bar(fleet, panel, t).set_index("symbol").loc[symbol, "probability"]
        new = expected.set_index("symbol").loc[symbol, "probability"]
        changed += old != new
    assert changed > 0  # the new network does answer differently
    for t, rows in zip(range(first, switch), before, strict=True):
        assert_same(rows, per_bar(fleet, panel, t))
