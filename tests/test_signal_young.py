"""A coin listed recently is served from its first bar: where the bars read begin before
it, its inputs are those training computed (EMAs, windows and FFD started there too), so
it needs only its inputs' first values, not the warm-up of a history cut short."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import run_config
from test_signal import train_recording
from test_signal_tape import assert_same, per_bar

from huracan.data import SyntheticMarket
from huracan.serve import Fleet, ServeConfig
from huracan.serve.tape import SignalTape

# the per-coin run's hourly defaults on daily bars (the EMAs' 363-bar warm-up: a year of
# them), its validation a tenth of the training window, so that the young coin's training
# bars hold the FFD order's ADF test (191 daily bars)
DAILY = [
    "pipeline=per_coin",
    "data=csv",
    "cluster.n_clusters=2",
    "cluster.min_overlap=60",
    "validation.val_fraction=0.1",
    "pipeline.run_id=young",
    "pipeline.champion_min_trades=0",
    "pipeline.report_days=0",
    "encoder.max_epochs=1",
    "head.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "thresholds.min_trades=5",
    "thresholds.gate=search",
]
YOUNG, LIFE = "SOL", 345  # listed 345 days before the market's last bar


@pytest.fixture(scope="module")
def young(tmp_path_factory):
    """The per-coin run on two years of a daily market whose SOL is listed 345 days before
    its end (files in the input contract), its recorded test probabilities and fleet."""
    tmp = tmp_path_factory.mktemp("young")
    market = SyntheticMarket(n_assets=6, n_clusters=2, years=2.0, timeframe="1d", seed=4)
    panel = market.load()
    (tmp / "bars").mkdir()
    for symbol in panel.symbols:
        frame = panel.frame(symbol)[["open", "high", "low", "close", "volume"]]
        if symbol == YOUNG:
            frame = frame.iloc[-LIFE:]
        frame.reset_index().to_csv(tmp / "bars" / f"{symbol}.csv", index=False)
    cfg = run_config(tmp, *DAILY, f"data.path={tmp / 'bars'}")
    _, objects, recorded = train_recording(cfg)
    fleet = Fleet.load(tmp / "artifacts", config=ServeConfig(expire_hours=None))
    assert YOUNG in recorded and YOUNG in fleet.models, sorted(recorded)
    return objects["panel"], recorded, fleet, [YOUNG]


def listing_row(panel, symbol: str) -> int:
    return int(np.argmax(np.isfinite(panel.close[:, panel.index_of(symbol)])))


def test_a_young_coin_is_served_what_the_pipeline_scored(young):
    """Every test bar of a coin listed late, with fewer bars since its listing than the
    warm-up (the rule before refused it: ``warm-up: N bars since listing, 363 needed``):
    the signal on the bars up to that bar is the per-coin job's own probability."""
    panel, recorded, fleet, late = young
    assert late, "no late-listed coin got a champion"
    checked = 0
    for symbol in late:
        model, first = fleet.models[symbol], listing_row(panel, symbol)
        for ts, expected in recorded[symbol].items():
            t = panel.timestamps.get_loc(ts)
            assert t - first + 1 < model.warmup  # younger than the full warm-up
            row = per_bar(fleet, panel, t).set_index("symbol").loc[symbol]
            assert not any(r.startswith(("warm-up", "gap")) for r in row["reasons"]), row
            assert abs(row["probability"] - expected) <= 1e-6, (symbol, ts)
            checked += 1
    assert checked >= 20


def test_a_coin_too_young_for_its_inputs_says_what_it_has_and_needs(young):
    """Before its slowest input has a value, the reason counts the coin's bars and days
    and names that input; from that bar on it has a probability."""
    panel, _, fleet, late = young
    symbol = late[0]
    need, slowest = fleet.models[symbol].first_values
    first = listing_row(panel, symbol)
    early = per_bar(fleet, panel, first + need - 2).set_index("symbol").loc[symbol]
    when = panel.timestamps[first]
    assert early["reasons"][0] == (
        f"warm-up: {need - 1} bars of 1d ({need - 1} days) since its first bar "
        f"{when:%Y-%m-%d %H:%M}; its inputs need {need} ({slowest})"
    )
    assert early["probability"] is None or pd.isna(early["probability"])
    ready = per_bar(fleet, panel, first + need - 1).set_index("symbol").loc[symbol]
    assert not any(r.startswith("warm-up") for r in ready["reasons"]), ready
    assert np.isfinite(ready["probability"])


def test_a_history_cut_short_still_needs_the_whole_warm_up(young):
    """The same coin in bars that begin with its own first bar (so may cut its history
    short: every coin's begins there) or that hold bars of it before a hole: the whole
    warm-up is needed."""
    panel, recorded, fleet, late = young
    symbol = late[0]
    model, first = fleet.models[symbol], listing_row(panel, symbol)
    t = panel.timestamps.get_loc(recorded[symbol].index[-1])
    cut = panel.between(panel.timestamps[first], panel.timestamps[t] + pd.Timedelta("1d"))
    row = fleet.signals(cut).set_index("symbol").loc[symbol]
    assert row["reasons"][0] == f"warm-up: {t - first + 1} bars, {model.warmup} needed"
    bars = {k: v.copy() for k, v in panel.bars.items()}
    j = panel.index_of(symbol)
    for values in bars.values():
        values[first + 20 : first + 30, j] = np.nan  # an early hole, longer than the fill
    gapped = per_bar(fleet, replace(panel, bars=bars), t).set_index("symbol").loc[symbol]
    assert gapped["reasons"][0].startswith("gap: ")


def test_the_tape_serves_young_coins_as_the_per_bar_call(young):
    """The replay's tape decides as the per-bar call does, also while a coin is young."""
    panel, recorded, fleet, late = young
    first = min(listing_row(panel, s) for s in late)
    end = panel.timestamps.get_loc(recorded[late[0]].index[-1]) + 1
    tape = SignalTape(fleet, panel, first, end)
    for t in range(first, end, 7):
        assert_same(tape.signals(t), per_bar(fleet, panel, t))
