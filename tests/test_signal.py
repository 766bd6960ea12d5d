"""Signals from the champions: parity with the pipeline, warm-up, gaps, expiry, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import dropbox
import numpy as np
import pandas as pd
import pytest
import requests
from conftest import ROOT
from fake_dropbox import FakeDropboxAdapter
from test_per_coin import per_coin_config

import huracan.pipelines.per_coin.job as coin_job
import huracan.pipelines.per_coin.run as per_coin
from huracan.data import SyntheticMarket
from huracan.factor import (
    LeaderFactor,
    MarketFactorExtractor,
    MeanFactor,
    PCAFactor,
    WeightedMeanFactor,
)
from huracan.features.drift import psi, reference_bins
from huracan.features.technical import compute_features, warmup_bars
from huracan.run import train
from huracan.serve import SIGNAL_FIELDS, Fleet, ServeConfig
from huracan.store import LocalStore
from huracan.store.dropbox_store import DropboxStore


def train_recording(cfg) -> tuple[dict, dict, dict[str, pd.Series]]:
    """Runs the per-coin pipeline and records each job's own test-window probabilities."""
    recorded: dict[str, pd.Series] = {}
    current = {}
    run, predict = per_coin.run_coin_job, coin_job.predict

    def run_recording(job):
        current["job"] = job
        return run(job)

    def predict_recording(module, part):
        out = predict(module, part)
        job = current.get("job")
        # the job prices its test part inside (a new dict over the same timestamp array)
        if job is not None and part.get("timestamps") is job.test["timestamps"]:
            index = pd.to_datetime(part["timestamps"], utc=True)
            recorded[job.symbol] = pd.Series(out, index=index)
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(per_coin, "run_coin_job", run_recording)
        patch.setattr(coin_job, "predict", predict_recording)
        summary, objects = train(cfg)
    return summary, objects, recorded


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("signal")
    # every coin becomes a champion, so parity covers the whole universe; the uncorrected
    # search (the per-coin rule before the family gate) lets them trade on this small market
    cfg = per_coin_config(tmp, "pipeline.champion_min_trades=0", "thresholds.gate=search")
    _, objects, recorded = train_recording(cfg)
    fleet = Fleet.load(tmp / "artifacts", config=ServeConfig(expire_hours=None))
    return tmp, objects["panel"], recorded, fleet


def test_every_coin_of_the_universe_is_served(served):
    _, panel, recorded, fleet = served
    assert sorted(fleet.models) == sorted(panel.symbols) == sorted(recorded)
    assert not fleet.unusable
    assert fleet.shared_encoder["spec"]["kind"] == "autoencoder"


def test_parity_with_the_pipelines_test_predictions(served):
    _, panel, recorded, fleet = served
    full = fleet.predict(panel)
    for symbol, pipeline in recorded.items():
        ours = full.loc[pipeline.index, symbol].to_numpy()
        assert np.isfinite(ours).all(), symbol
        assert np.abs(ours - pipeline.to_numpy()).max() <= 1e-6, symbol


def test_parity_with_the_residual_channel(tmp_path):
    cfg = per_coin_config(tmp_path, "pipeline.champion_min_trades=0", "factor.residual=true")
    _, objects, recorded = train_recording(cfg)
    fleet = Fleet.load(tmp_path / "artifacts", config=ServeConfig(expire_hours=None))
    model = next(iter(fleet.models.values()))
    assert "factor_residual" in model.description["inputs"]
    full = fleet.predict(objects["panel"])
    for symbol, pipeline in recorded.items():
        ours = full.loc[pipeline.index, symbol].to_numpy()
        assert np.abs(ours - pipeline.to_numpy()).max() <= 1e-6, symbol


def test_parity_from_exactly_the_warmup_bars(served):
    _, panel, recorded, fleet = served
    times = next(iter(recorded.values())).index
    warmup = fleet.warmup_bars
    checked = 0
    for ts in [*times[::60], times[-1]]:
        end = panel.timestamps.get_loc(ts) + 1
        window = panel.between(
            panel.timestamps[end - warmup], panel.timestamps[end - 1] + pd.Timedelta("1h")
        )
        assert window.n_bars == warmup
        signals = fleet.signals(window).set_index("symbol")
        longer = fleet.signals(panel.between(None, ts + pd.Timedelta("1h"))).set_index("symbol")
        for symbol, pipeline in recorded.items():
            assert signals.loc[symbol, "bar_time"] == ts
            assert abs(signals.loc[symbol, "probability"] - pipeline[ts]) <= 1e-6, (symbol, ts)
            assert longer.loc[symbol, "probability"] == signals.loc[symbol, "probability"]
            checked += 1
    assert checked >= 6 * 8


def test_signal_rows_and_trade_rule(served):
    _, panel, _, fleet = served
    signals = fleet.signals(panel)
    assert list(signals.columns) == SIGNAL_FIELDS
    assert len(signals) == len(fleet.roster["entries"])
    for row in signals.to_dict("records"):
        model = fleet.models[row["symbol"]]
        assert row["model_path"] == model.model_path
        # the horizon the coin's job chose on validation, from its checkpoint
        assert row["horizon"] == model.horizon and row["horizon"] in (1, 4, 12, 24)
        assert row["trade"] == (not row["reasons"])
        if row["trade"]:
            assert row["probability"] >= row["threshold"] and model.roster["trade_ok"]
        elif row["probability"] is not None and row["threshold"] is not None:
            below = row["probability"] < row["threshold"]
            assert below or row["reasons"]


def test_too_few_bars_gap_and_missing_symbol_give_reasons(served):
    _, panel, _, fleet = served
    fewest = min(m.warmup for m in fleet.models.values())  # each coin needs its own
    short = panel.between(panel.timestamps[-(fewest - 1)], None)
    rows = fleet.signals(short).set_index("symbol")
    assert not rows["trade"].any() and rows["probability"].isna().all()
    assert all(r[0].startswith("warm-up") for r in rows["reasons"])
    enough = panel.between(panel.timestamps[-fewest], None)
    rows = fleet.signals(enough).set_index("symbol")
    ready = [s for s, m in fleet.models.items() if m.warmup == fewest]
    assert rows.loc[ready, "probability"].notna().all()

    coin = next(s for s in fleet.models if s not in ("BTC", "ETH", "BNB"))
    j = panel.index_of(coin)
    bars = {k: v.copy() for k, v in panel.bars.items()}
    for values in bars.values():
        values[-100:-90, j] = np.nan  # a 10-bar hole, longer than the forward fill
    gapped = replace(panel, bars=bars)
    rows = fleet.signals(gapped).set_index("symbol")
    assert pd.isna(rows.loc[coin, "probability"]) and not rows.loc[coin, "trade"]
    assert rows.loc[coin, "reasons"] == [
        f"gap: 10 of the last {fleet.models[coin].warmup} bars missing"
    ]

    filled = panel.filled.copy()
    filled[-1, j] = True
    rows = fleet.signals(replace(panel, filled=filled)).set_index("symbol")
    assert rows.loc[coin, "reasons"] == ["latest bar forward-filled: nothing traded"]

    others = [s for s in panel.symbols if s != coin]
    rows = fleet.signals(panel.select(others)).set_index("symbol")
    assert rows.loc[coin, "reasons"] == ["no bars for this symbol"]
    member = fleet.models[coin].description["factor"]["members"][0]
    rows = fleet.signals(panel.select([s for s in panel.symbols if s != member]))
    rows = rows.set_index("symbol")
    assert "market factor member" in rows.loc[coin, "reasons"][0]


def without_latest_bars(panel, symbols, how):
    """``panel`` with ``symbols``' files ending 11 bars early, or their last bar filled."""
    cols = [panel.index_of(s) for s in symbols]
    if how == "filled":
        filled = panel.filled.copy()
        filled[-1, cols] = True
        return replace(panel, filled=filled)
    bars = {name: v.copy() for name, v in panel.bars.items()}
    for values in bars.values():
        values[-11:, cols] = np.nan
    return replace(panel, bars=bars)


def test_a_factor_input_without_a_bar_blocks_the_coins_it_feeds(served):
    """The leader channel's symbol whose file ends before the latest bar (a live folder
    still updating) reads flat: every coin reading it gets a reason naming it and no
    probability. A principal-component factor reads whichever members have a bar (a member
    without one counts 0, as in training): one member missing blocks nothing, all of them
    do. A forward-filled bar is what training read too: no reason."""
    _, panel, _, fleet = served
    before = fleet.signals(panel).set_index("symbol")
    factor = fleet.models[next(iter(fleet.models))].description["factor"]
    lead, members = factor["leader_channel"]["symbol"], factor["members"]
    assert factor["method"] == "pca" and len(members) > 1, "the test needs several members"
    readers = [s for s, m in fleet.models.items() if lead in m.input_symbols and s != lead]
    assert readers, "the test needs a coin that reads the leader channel"
    latest = panel.timestamps[-1]

    other = next(m for m in members if m != lead)  # a member, not the leader channel
    rows = fleet.signals(without_latest_bars(panel, [other], "ends early")).set_index("symbol")
    for coin in [s for s in readers if s != other]:
        assert not any(": no bar of" in r for r in rows.loc[coin, "reasons"])
        assert pd.notna(rows.loc[coin, "probability"])

    rows = fleet.signals(without_latest_bars(panel, [lead], "ends early")).set_index("symbol")
    reason = f"leader channel: no bar of ['{lead}'] at {latest}"
    for coin in readers:
        assert rows.loc[coin, "reasons"][0] == reason  # then the roster's, as before
        assert reason not in before.loc[coin, "reasons"]
        assert pd.isna(rows.loc[coin, "probability"]) and not rows.loc[coin, "trade"]

    rows = fleet.signals(without_latest_bars(panel, members, "ends early")).set_index("symbol")
    for coin in [s for s in readers if s not in members]:
        assert any(r.startswith("market factor: no bar of") for r in rows.loc[coin, "reasons"])

    rows = fleet.signals(without_latest_bars(panel, members, "filled")).set_index("symbol")
    for coin in [s for s in readers if s not in members]:
        assert rows.loc[coin, "reasons"] == before.loc[coin, "reasons"]


def test_expired_champion_does_not_trade(served):
    """A champion is vouched for until the end of the windows its pointer says it was last
    scored on out of sample (here the per-coin test window, ending with the panel), not
    only until its training data's end; without such a window it expires from that end."""
    import dataclasses

    tmp, panel, _, _ = served
    fleet = Fleet.load(tmp / "artifacts", config=ServeConfig(expire_hours=24))
    rows = fleet.signals(panel)
    assert (rows["model_age_hours"] > 24).all()  # the panel ends 20 days after training
    bar = panel.timestamps[-1]
    for model in fleet.models.values():
        judged = model.judged_until(bar)
        assert judged > model.data_end and bar - judged <= pd.Timedelta(hours=24)
        assert model.judged_until(model.data_end) == model.data_end  # no window yet then
    assert not any("expired" in r for r in rows["reasons"])
    fleet.models = {s: dataclasses.replace(m, pointer=None) for s, m in fleet.models.items()}
    rows = fleet.signals(panel)
    assert not rows["trade"].any()
    assert all("expired" in r for r in rows["reasons"])


def test_top_allow_block(served):
    tmp, _, _, fleet = served
    ranked = [e["symbol"] for e in sorted(fleet.roster["entries"], key=lambda e: e["rank"])]
    assert Fleet.load(tmp / "artifacts", top=2).symbols == ranked[:2]
    chosen = Fleet.load(tmp / "artifacts", allow=ranked[:3], block=ranked[:1])
    assert chosen.symbols == ranked[1:3]


def test_a_fleet_loads_from_dropbox_through_the_store_interface(served):
    tmp, panel, _, fleet = served
    session = requests.Session()
    session.mount("https://", FakeDropboxAdapter(token="t"))
    remote = DropboxStore(
        "/huracan", client=dropbox.Dropbox(oauth2_access_token="t", session=session)
    )
    local = LocalStore(tmp / "artifacts")
    for key in local.list():
        remote.write_bytes(key, local.read_bytes(key))
    served_remote = Fleet.load(remote, config=fleet.config)
    pd.testing.assert_frame_equal(served_remote.signals(panel), fleet.signals(panel))


def test_cli_writes_json_and_prints_a_table(served, tmp_path):
    tmp, panel, _, fleet = served
    for symbol in panel.symbols:
        frame = panel.frame(symbol).reset_index()
        frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        frame.to_csv(tmp_path / f"{symbol}USDT.csv", index=False)
    out = tmp_path / "signals.json"
    cmd = [sys.executable, "-m", "huracan.signal", "--root", str(tmp / "artifacts")]
    done = subprocess.run(
        [*cmd, "--data", str(tmp_path), "--top", "3", "--expire-hours", "0", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "probability" in done.stdout and "warm-up" in done.stdout
    document = json.loads(out.read_text())
    top = [row["symbol"] for row in document["signals"]]
    assert len(top) == 3  # the warm-up is the most any of the three loaded champions needs
    assert document["warmup_bars"] == max(fleet.models[s].warmup for s in top)
    expected = fleet.signals(panel).set_index("symbol")
    for row in document["signals"]:
        assert set(row) == set(SIGNAL_FIELDS)
        # CSV round trip of the bars: the same probability
        assert abs(row["probability"] - expected.loc[row["symbol"], "probability"]) <= 1e-6
    bad = subprocess.run(
        [*cmd, "--data", str(tmp_path / "missing")], capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "does not exist" in bad.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "huracan.signal", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert helped.returncode == 0 and "--allow" in helped.stdout and "warm-up" in helped.stdout


@pytest.mark.parametrize("kind", [PCAFactor, MeanFactor, WeightedMeanFactor, LeaderFactor])
def test_market_factor_state_round_trip(kind):
    panel = SyntheticMarket(n_assets=6, years=0.1, n_clusters=2, seed=3).load()
    returns = np.diff(np.log(panel.close), axis=0, prepend=np.nan)
    fitted = kind().fit(returns[:1000], ["BTC", "ETH"], panel.symbols, panel.quote_volume[:1000])
    order = panel.symbols[::-1]  # other columns, found by name
    columns = [panel.index_of(s) for s in order]
    rebuilt = MarketFactorExtractor.from_dict(json.loads(json.dumps(fitted.to_dict())), order)
    np.testing.assert_allclose(  # other column order: other summation order
        rebuilt.transform(returns[:, columns], panel.quote_volume[:, columns]),
        fitted.transform(returns, panel.quote_volume),
    )


def test_features_from_warmup_bars_equal_full_history():
    panel = SyntheticMarket(n_assets=4, years=0.2, n_clusters=2, seed=5).load()
    full, _ = compute_features(panel)
    need = warmup_bars()
    for end in (need, 1000, panel.n_bars):
        window = panel.between(
            panel.timestamps[end - need], panel.timestamps[end - 1] + pd.Timedelta("1h")
        )
        last, _ = compute_features(window)
        np.testing.assert_allclose(last[-1], full[end - 1], rtol=1e-6, atol=1e-7)
    # one bar less than the EMAs need and the RSI no longer matches at this tolerance
    short = warmup_bars(tolerance=1e-2)
    window = panel.between(panel.timestamps[panel.n_bars - short], None)
    last, names = compute_features(window)
    rsi = names.index("rsi")
    assert abs(last[-1, :, rsi] - full[-1, :, rsi]).max() > 1e-4


def test_psi_small_for_the_same_distribution_large_for_a_shift():
    rng = np.random.default_rng(0)
    reference = reference_bins(rng.normal(size=(5000, 3)))
    assert np.allclose(np.sum(reference["shares"], axis=1), 1)
    same = psi(reference, rng.normal(size=(2000, 3)))
    shifted = psi(reference, rng.normal(size=(2000, 3)) * [1, 3, 1] + [0, 0, 1])
    assert (same < 0.02).all()
    assert shifted[0] < 0.02 and shifted[1] > 0.25 and shifted[2] > 0.25
    recent = rng.normal(size=(200, 3))
    recent[:, 2] = np.nan
    assert np.isnan(psi(reference, recent)[2]) and np.isfinite(psi(reference, recent)[:2]).all()
    assert reference_bins(np.empty((0, 3))) is None


def test_checkpoints_hold_the_training_windows_distribution(served):
    _, _, _, fleet = served
    for model in fleet.models.values():
        reference = model.description["reference"]
        n_inputs = len(model.description["inputs"])
        assert np.shape(reference["edges"]) == (n_inputs, 9)
        assert np.shape(reference["shares"]) == (n_inputs, 10)


def test_planted_volatility_change_is_flagged_as_drift(served):
    tmp, panel, _, fleet = served
    coin = next(s for s in fleet.models if s not in ("BTC", "ETH", "BNB"))
    j = panel.index_of(coin)
    start = panel.n_bars - fleet.config.drift_window
    bars = {k: v.copy() for k, v in panel.bars.items()}
    anchor = panel.close[start - 1, j]
    for field in ("open", "high", "low", "close"):  # moves four times as large, same order
        bars[field][start:, j] = anchor * (panel.bars[field][start:, j] / anchor) ** 4
    planted = replace(panel, bars=bars)
    before, after = fleet.drift(panel), fleet.drift(planted)
    assert after.loc[coin, "ret_1"] > 0.25 > before.loc[coin, "ret_1"]
    others = [s for s in fleet.models if s != coin]
    pd.testing.assert_frame_equal(after.loc[others], before.loc[others])

    warned = fleet.signals(planted).set_index("symbol")
    assert warned.loc[coin, "drift"] == pytest.approx(after.loc[coin].max(), abs=1e-6)
    assert not any(r.startswith("drift") for r in warned.loc[coin, "reasons"])
    config = ServeConfig(expire_hours=None, drift_action="block", max_psi=0.25)
    blocked = Fleet.load(tmp / "artifacts", config=config).signals(planted).set_index("symbol")
    assert not blocked.loc[coin, "trade"]
    assert f"drift: PSI {warned.loc[coin, 'drift']:.3f} > 0.25" in blocked.loc[coin, "reasons"]
    # with fewer bars than the drift window needs, no score rather than a partial one
    short = planted.between(planted.timestamps[-fleet.warmup_bars], None)
    assert fleet.signals(short)["drift"].isna().all()


@pytest.mark.slow
def test_parity_on_real_binance_bars(binance_1h, tmp_path):
    cfg = per_coin_config(
        tmp_path,
        "data=csv",
        f"data.path={binance_1h}",
        "data.symbols=[BTC,ETH,BNB,SOL,XRP,ADA]",
        "data.start=2023-03-01",  # holds the 2023-03-24 outage, longer than the forward fill
        "data.end=2023-07-01",
        "pipeline.champion_min_trades=0",
    )
    _, objects, recorded = train_recording(cfg)
    panel = objects["panel"]
    fleet = Fleet.load(tmp_path / "artifacts", config=ServeConfig(expire_hours=None))
    assert sorted(fleet.models) == sorted(recorded) == sorted(panel.symbols)
    full = fleet.predict(panel)
    warmup = fleet.warmup_bars
    times = next(iter(recorded.values())).index
    latest = {}
    for ts in [*times[::40], times[-1]]:
        end = panel.timestamps.get_loc(ts) + 1
        window = panel.between(panel.timestamps[end - warmup], ts + pd.Timedelta("1h"))
        latest[ts] = fleet.signals(window).set_index("symbol")["probability"]
    for symbol, pipeline in recorded.items():
        assert np.abs(full.loc[pipeline.index, symbol] - pipeline).max() <= 1e-6, symbol
        for ts, probability in latest.items():
            assert abs(probability[symbol] - pipeline[ts]) <= 1e-6, (symbol, ts)


def test_leader_that_is_neither_champion_nor_factor_member_is_read(tmp_path):
    """The leader channel reads a symbol that has no champion and is not a factor member:
    serving and the Mechanic's inputs still read its bars and score every champion."""
    leader = "SOL"  # an alt outside the planted dominant cluster (BTC, ETH)
    cfg = per_coin_config(
        tmp_path, "pipeline.champion_min_trades=0", f"universe.dominant_symbols=[{leader}]"
    )
    _, objects = train(cfg)
    panel = objects["panel"]
    fleet = Fleet.load(tmp_path / "artifacts", block=[leader], config=ServeConfig(None))
    states = [m.description["factor"] for m in fleet.models.values()]
    assert leader not in fleet.models and fleet.models
    assert all(s["leader_channel"]["symbol"] == leader for s in states)
    assert all(leader not in s["members"] for s in states)
    assert leader in fleet.data_symbols
    _, problems = fleet.inputs(panel)  # the Mechanic's inputs
    assert problems == {}
    signals = fleet.signals(panel)
    served = signals[signals.symbol != leader]
    assert served.probability.notna().all(), served.reasons.tolist()
    # a panel without the leader's bars: every coin says why, nothing is scored
    without = fleet.signals(panel.select([s for s in panel.symbols if s != leader]))
    assert without.probability.isna().all()
    assert all(any(leader in r for r in rs) for rs in without.reasons)


def test_a_few_bars_give_every_coin_its_warm_up_reason(served):
    """Fewer bars than the longest look-back (a lag of 24) is a warm-up reason, not a crash."""
    _, panel, _, fleet = served
    for n in (1, 5, 20):
        rows = fleet.signals(panel.between(panel.timestamps[-n], None)).set_index("symbol")
        assert rows["probability"].isna().all() and not rows["trade"].any()
        assert all(  # first the warm-up; a roster that holds a coin back says so after it
            r[0] == f"warm-up: {n} bars, {fleet.models[s].warmup} needed"
            for s, r in rows["reasons"].items()
        )


def test_input_groups_follow_the_factor_layout():
    """Markets laid out otherwise than the fixture's: a leader factor needs its leader
    only; a leader channel outside the factor's members is its own group; a level factor
    with leader loadings (1 and 0) needs the leader of the coin's cluster only."""
    from huracan.serve.model import CoinModel

    def groups(symbol, factor, tree=None):
        description = {"factor": factor} | ({"tree": tree} if tree else {})
        model = CoinModel(symbol, "", None, description, None, 1, None, 1, None, {}, "")
        return model.input_groups

    leader = {"method": "leader", "members": ["ETH", "BNB"], "leader": "BNB"}
    assert groups("SOL", leader) == (("market factor", ("BNB",)),)
    pca = {"method": "pca", "members": ["ETH", "BNB"], "leader_channel": {"symbol": "BTC"}}
    assert groups("SOL", pca) == (
        ("market factor", ("ETH", "BNB")),
        ("leader channel", ("BTC",)),
    )
    tree = {
        "levels": [
            {"members": {"0": ["ETH", "BNB"], "1": ["SOL", "AVAX", "DOT"]}},
            {
                "members": {"0": ["ETH", "BNB"], "1": ["SOL", "AVAX", "DOT"]},
                "assets": {
                    "SOL": {"loading": 1.0},
                    "AVAX": {"loading": 0.0},
                    "DOT": {"loading": 0.0},
                },
            },
        ]
    }
    assert groups("DOT", {"method": "mean", "members": ["ETH"]}, tree)[-1] == (
        "level 1 factor",
        ("SOL",),
    )
