"""pipeline=replay: parity with the per-coin test window, positions, resume, store safety.

The per-coin run trains on the embedded synthetic market and records each coin's job as
it priced its test window (``price_test``) and the probabilities it scored there; the
per-coin trades are rebuilt from those exactly as ``scoring.evaluate`` counts them
(``take_trades`` at the coin's horizon), and checked against the stored ``metrics.json``.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import run_config
from test_per_coin import SMALL as PER_COIN

import huracan.pipelines.mechanic.coin as mechanic_coin
import huracan.pipelines.per_coin.job as coin_job
import huracan.pipelines.per_coin.run as per_coin
import huracan.registry.champions as champions
from huracan.config import build
from huracan.errors import ConfigError
from huracan.metrics import take_trades
from huracan.pipelines.replay import ReplayPipeline
from huracan.registry.roster import load_roster
from huracan.replay import main as replay_main
from huracan.run import train
from huracan.serve import Fleet, ServeConfig
from huracan.serve.positions import Position, open_positions
from huracan.signal import main as signal_main
from huracan.store import LocalStore
from huracan.store.lock import StoreLocked, read_lock, store_lock

# the per-coin run's market and model options, without its pipeline's own
# the uncorrected search (the per-coin rule before the family gate): these tests are about
# the replay's parity with the per-coin trades, which needs champions that trade on this
# small market; the gate is tested in test_per_coin_gate.py
SMALL = [*PER_COIN, "thresholds.gate=search"]
MARKET = [o for o in SMALL if o != "pipeline=per_coin" and not o.startswith("pipeline.")]
PARITY = ["replay.mechanic=false", "replay.expire_hours=null", "replay.respect_trade_ok=false"]


class Killed(BaseException):
    """The process dies here."""


def trained_recording(cfg) -> tuple[dict, dict]:
    """Runs the per-coin pipeline; returns each coin's priced test job and its test-window
    probabilities (the exported model's, as the job scored them)."""
    jobs, probabilities, current = {}, {}, {}
    run, price, predict = per_coin.run_coin_job, coin_job.price_test, coin_job.predict

    def run_recording(job):
        current["job"] = job
        return run(job)

    def price_recording(job):
        priced = price(job)
        jobs[job.symbol] = priced
        return priced

    def predict_recording(module, part):
        out = predict(module, part)
        job = current.get("job")
        if job is not None and part.get("timestamps") is job.test["timestamps"]:
            probabilities[job.symbol] = out
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(per_coin, "run_coin_job", run_recording)
        patch.setattr(coin_job, "price_test", price_recording)
        patch.setattr(coin_job, "predict", predict_recording)
        train(cfg)
    return jobs, probabilities


def per_coin_trades(store: LocalStore, jobs: dict, probabilities: dict) -> pd.DataFrame:
    """Every champion's test-window trades as its per-coin job counted them (a coin whose
    model lost on its test window gets no champion, so nothing to replay)."""
    rows = []
    for symbol, job in jobs.items():
        champion = (
            store.read_json(f"champions/{symbol}.json")
            if store.exists(f"champions/{symbol}.json")
            else None
        )
        metrics = store.read_json(f"{job.model_prefix}/metrics.json")
        if champion is None or champion["model_path"] != job.model_prefix:
            continue
        if metrics["threshold"] is None:
            continue
        horizon = int(metrics["horizon"])
        held = job.held(horizon)
        net = held.test["gross"] - held.test["cost_bps"] / 1e4
        signals = probabilities[symbol] >= metrics["threshold"]
        taken = take_trades((signals & np.isfinite(net))[:, None], horizon)[:, 0]
        stamps = pd.to_datetime(held.test["timestamps"][taken], utc=True)
        for entry, value in zip(stamps, net[taken], strict=True):
            rows.append(
                {
                    "symbol": symbol,
                    "entry_time": entry,
                    "exit_time": entry + pd.Timedelta(hours=horizon),
                    "net_bps": value * 1e4,
                }
            )
    frame = pd.DataFrame(rows, columns=["symbol", "entry_time", "exit_time", "net_bps"])
    return frame.sort_values(["symbol", "entry_time"]).reset_index(drop=True)


def replay_trades(run_dir) -> pd.DataFrame:
    trades = pd.read_csv(run_dir / "trades.csv")
    for column in ("entry_time", "exit_time"):
        trades[column] = pd.to_datetime(trades[column], utc=True).dt.as_unit("ns")
    return trades.sort_values(["symbol", "entry_time"]).reset_index(drop=True)


def replay(tmp, name: str, *overrides: str):
    cfg = run_config(tmp, "pipeline=replay", *MARKET, f"++output_dir={tmp / name}", *overrides)
    return train(cfg)


def tree_hashes(root) -> dict[str, str]:
    """Every artifact's hash; the lock file is the lock's own (taking and releasing it
    writes it: its generation only grows)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "lock.json"
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replay")
    cfg = run_config(tmp, *SMALL, "pipeline.champion_min_trades=0", "pipeline.report_days=0")
    jobs, probabilities = trained_recording(cfg)
    store = LocalStore(tmp / "artifacts")
    return tmp, store, per_coin_trades(store, jobs, probabilities)


@pytest.fixture(scope="module")
def parity_run(trained):
    tmp, store, expected = trained
    summary, objects = replay(tmp, "parity", *PARITY)
    return tmp, summary, objects


def test_replay_reproduces_the_per_coin_test_window_trades(trained, parity_run):
    tmp, store, expected = trained
    _, summary, _ = parity_run
    got = replay_trades(tmp / "parity")
    assert len(expected) > 20  # the parity means something: several coins trade
    assert expected["symbol"].nunique() >= 2
    pd.testing.assert_series_equal(got["symbol"], expected["symbol"])
    pd.testing.assert_series_equal(got["entry_time"], expected["entry_time"])
    pd.testing.assert_series_equal(got["exit_time"], expected["exit_time"])
    # the same floating-point operations on the same prices and costs
    np.testing.assert_array_equal(got["net_bps"].to_numpy(), expected["net_bps"].to_numpy())
    # and what the per-coin report stored: trades, net bps, daily P&L per coin
    coins = pd.read_csv(tmp / "parity" / "coins.csv", index_col="symbol")
    for symbol in coins.index:
        champion = store.read_json(f"champions/{symbol}.json")
        metrics = store.read_json(f"{champion['model_path']}/metrics.json")
        assert coins.loc[symbol, "n_trades"] == metrics["n_trades"], symbol
        assert coins.loc[symbol, "net_bps"] == pytest.approx(metrics["net_bps"], abs=1e-3)
        mine = got[got.symbol == symbol]
        daily = mine.groupby(mine.entry_time.dt.strftime("%Y-%m-%d"))["net_bps"].sum()
        assert daily.round(4).to_dict() == pytest.approx(metrics["daily_bps"], abs=1e-3)
    window = summary["replay"]["window"]
    assert window == metrics["window"]  # the per-coin run's own test window, by default


def test_replay_outputs_and_summary(trained, parity_run):
    tmp, _, _ = trained
    _, summary, _ = parity_run
    out = tmp / "parity"
    for name in ("trades.csv", "equity.csv", "coins.csv", "mechanic.json", "equity.png"):
        assert (out / name).stat().st_size > 0, name
    equity = pd.read_csv(out / "equity.csv")
    report = summary["replay"]
    assert len(equity) == report["bars"] and (equity["wall_s"] > 0).all()
    assert (equity["signals_s"] <= equity["wall_s"]).all()
    trades = pd.read_csv(out / "trades.csv")
    assert equity["realized_bps"].iloc[-1] == pytest.approx(trades["net_bps"].sum(), abs=1e-3)
    assert (trades["net_bps"] < trades["gross_bps"]).all()  # every trade paid its costs
    model, always = report["strategies"]["model"], report["strategies"]["always_long"]
    assert model["n_trades"] == len(trades) and always["n_trades"] > 0
    assert report["strategies"]["never_trade"]["net_bps"] == 0.0
    assert {"t_stat", "ci_low_bps", "ci_high_bps"} <= set(model)
    for criterion in report["criteria"]:
        assert criterion["result"] == ("PASS" if criterion["passed"] else "FAIL")
    if model["t_stat"] is not None:
        assert criterion["passed"] is not None


def test_roster_gate_and_expiry_are_honoured(trained, parity_run):
    tmp, store, _ = trained
    # the roster's word and the serving default expiry (168 h after the training data)
    replay(tmp, "live", "replay.mechanic=false", "replay.end=2023-05-16")
    trades = replay_trades(tmp / "live")
    roster = {e["symbol"]: e for e in load_roster(store)["entries"]}
    fleet = Fleet.load(store, config=ServeConfig(expire_hours=None))
    for symbol, coin in trades.groupby("symbol"):
        assert roster[symbol]["trade_ok"], symbol
        expires = fleet.models[symbol].data_end + pd.Timedelta(hours=168)
        assert (coin["entry_time"] <= expires).all(), symbol
    parity = replay_trades(tmp / "parity")
    parity = parity[parity.exit_time < pd.Timestamp("2023-05-16", tz="UTC")]
    assert len(trades) < len(parity)  # nine days: longer than the week before expiry


def test_a_replay_inside_the_training_data_is_refused(trained):
    tmp, _, _ = trained
    with pytest.raises(ConfigError, match="inside the training data"):
        replay(tmp, "early", *PARITY, "replay.start=2023-03-01")


def test_a_killed_replay_resumes_to_the_same_trades(trained, parity_run, monkeypatch):
    tmp, _, _ = trained
    real, calls = Fleet.decisions, []

    def dying(self, *args):  # the rules every bar's signals go through, either path
        calls.append(1)
        if len(calls) == 60:
            raise Killed
        return real(self, *args)

    options = [*PARITY, "replay.checkpoint_every=7", "replay.end=2023-05-12"]
    monkeypatch.setattr(Fleet, "decisions", dying)
    with pytest.raises(Killed):
        replay(tmp, "resumed", *options)
    state = json.loads((tmp / "resumed" / "replay_state.json").read_text())
    assert 0 < state["next_row"] - state["first_row"] < 60  # stopped part-way
    monkeypatch.undo()
    replay(tmp, "resumed", *options)
    parity = replay_trades(tmp / "parity")
    closed = parity[parity.exit_time < pd.Timestamp("2023-05-12", tz="UTC")]
    assert len(closed) > 5
    pd.testing.assert_frame_equal(replay_trades(tmp / "resumed"), closed.reset_index(drop=True))
    # another replay's options in the same directory: refused, not mixed
    with pytest.raises(ConfigError, match="other data, store or options"):
        replay(tmp, "resumed", *options[:-1], "replay.end=2023-05-13")


def test_the_per_bar_path_gives_the_same_trades(trained, parity_run):
    """``replay.precompute=false``: ``Fleet.signals`` on the last ``bars_needed`` bars at
    every bar, as a bot calls it; the same trades as the precomputed default."""
    tmp, _, _ = trained
    summary, _ = replay(tmp, "per_bar", *PARITY, "replay.precompute=false", "replay.end=2023-05-12")
    parity = replay_trades(tmp / "parity")
    closed = parity[parity.exit_time < pd.Timestamp("2023-05-12", tz="UTC")]
    assert len(closed) > 5
    pd.testing.assert_frame_equal(replay_trades(tmp / "per_bar"), closed.reset_index(drop=True))
    assert summary["replay"]["precompute"] is False


def test_position_state_in_signals(trained):
    tmp, store, _ = trained
    _, objects = replay(tmp, "positions", *PARITY, "replay.end=2023-05-08")
    panel = objects["panel"]
    fleet = Fleet.load(store, config=ServeConfig(expire_hours=None))
    flat = fleet.signals(panel)
    assert all(p["state"] in ("flat", "open") for p in flat["position"])
    for row in flat.to_dict("records"):  # nothing held: an entry is a new open position
        assert (row["position"]["state"] == "open") == row["trade"]
        assert not row["position"]["exit_now"]
    symbol = flat["symbol"].iloc[0]
    now = panel.timestamps[-1]
    held = {symbol: Position(now - pd.Timedelta(hours=2), now + pd.Timedelta(hours=3))}
    signals = fleet.signals(panel, held).set_index("symbol")
    assert not signals.loc[symbol, "trade"]
    assert any("position open" in r for r in signals.loc[symbol, "reasons"])
    assert signals.loc[symbol, "position"]["exit_due"] == held[symbol].exit_due.isoformat()
    # due at this bar: it exits now, and the coin may enter again at the same close
    due = {symbol: Position(now - pd.Timedelta(hours=4), now)}
    again = fleet.signals(panel, due).set_index("symbol")
    assert again.loc[symbol, "position"]["exit_now"]
    assert again.loc[symbol, "trade"] == flat.set_index("symbol").loc[symbol, "trade"]
    assert symbol in open_positions(signals.reset_index())


def test_signal_cli_keeps_positions_between_calls(trained, parity_run, tmp_path, capsys):
    _, store, _ = trained
    panel = parity_run[2]["panel"]  # the market the run trained on
    positions, out = tmp_path / "positions.json", tmp_path / "signals.json"
    data = tmp_path / "bars"
    data.mkdir()
    for symbol in panel.symbols:
        frame = panel.frame(symbol).reset_index()
        frame["timestamp"] = frame["timestamp"].map(pd.Timestamp.isoformat)
        frame.to_csv(data / f"{symbol}.csv", index=False)
    argv = ["--root", str(store.root), "--data", str(data), "--expire-hours", "0"]
    assert signal_main([*argv, "--positions", str(positions), "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert "new long" in document["trade_means"]
    entered = {s["symbol"] for s in document["signals"] if s["trade"]}
    held = json.loads(positions.read_text())["positions"]
    assert set(held) == entered
    # the same bar again with those positions held: nothing enters twice
    assert signal_main([*argv, "--positions", str(positions), "--out", str(out)]) == 0
    again = json.loads(out.read_text())["signals"]
    assert not any(s["trade"] for s in again if s["symbol"] in entered)
    assert all(s["position"]["state"] == "open" for s in again if s["symbol"] in entered)
    positions.write_text('{"positions": {"BTC": {"entry_time": "soon"}}}')
    assert signal_main([*argv, "--positions", str(positions)]) == 2
    assert "not a positions file" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained_before(tmp_path_factory):
    """A per-coin run on the bars before 2023-05-01: the Mechanic may judge its champions
    on the bars after it (the test window's bars judged them already, so a Mechanic there
    skips every coin: ``test_mechanic.py``, the holdout that promoted a champion)."""
    tmp = tmp_path_factory.mktemp("replay_after")
    cfg = run_config(
        tmp,
        *SMALL,
        "pipeline.champion_min_trades=0",
        "pipeline.report_days=0",
        "data.end=2023-05-01",
    )
    train(cfg)
    return tmp, LocalStore(tmp / "artifacts"), None


MECHANIC = [
    "replay.expire_hours=null",
    "replay.start=2023-05-01",
    "replay.end=2023-05-04",
    "mechanic.every_hours=24",
    "mechanic.holdout_days=1",
    "mechanic.min_new_bars=10",
    "mechanic.max_epochs=1",
    "mechanic.champion_min_trades=0",
]


def test_a_dry_run_with_the_mechanic_never_writes_the_source_store(trained_before, monkeypatch):
    tmp, store, _ = trained_before
    before = tree_hashes(store.root)
    # every challenger wins (the subject is what the replay does with a promotion)
    monkeypatch.setattr(champions, "decide", lambda *_: champions.Decision(True, "test"))
    summary, _ = replay(tmp, "dry", *MECHANIC)
    assert tree_hashes(store.root) == before
    report = summary["replay"]
    assert report["mechanic_cycles"] == 2 and not report["promote"]
    cycles = json.loads((tmp / "dry" / "mechanic.json").read_text())["cycles"]
    decisions = pd.read_csv(tmp / "dry" / "mechanic_decisions.csv")
    assert set(decisions["status"]) <= {"promoted", "kept", "skipped"}
    # a promotion trades from the bar after its cycle; entries before use the old champion
    trades = replay_trades(tmp / "dry")
    copy = LocalStore(tmp / "dry" / "store")
    promoted = 0
    for cycle in cycles:
        after = pd.Timestamp(cycle["after_bar"])
        for symbol, coin in cycle["coins"].items():
            if coin["status"] != "promoted":
                continue
            promoted += 1
            assert cycle["serving"][symbol] == coin["challenger_path"]
            assert copy.read_json(f"champions/{symbol}.json")["model_path"] != coin["champion_path"]
            mine = trades[trades.symbol == symbol]
            assert (mine[mine.entry_time <= after]["model_path"] != coin["challenger_path"]).all()
    assert promoted >= 2 and report["promotions"] == promoted
    # every entry is the model serving at its bar: the newest cycle before it, else the start
    for trade in trades.itertuples():
        before_entry = [c for c in cycles if pd.Timestamp(c["after_bar"]) < trade.entry_time]
        if before_entry:
            assert trade.model_path == before_entry[-1]["serving"][trade.symbol]


def test_promotions_reach_the_precomputed_signals_as_the_per_bar_ones(trained_before, monkeypatch):
    """After a cycle the tape recomputes the promoted coins from the next bar: the same
    trades as ``Fleet.signals`` at every bar with the reloaded fleet."""
    tmp, _, _ = trained_before
    monkeypatch.setattr(champions, "decide", lambda *_: champions.Decision(True, "test"))
    choose = mechanic_coin.choose_threshold

    def trading(*args):  # a cut every challenger trades at: promoted models enter
        return {**choose(*args), "threshold": 0.5}

    # the threshold rule both fine-tunes (batched and one fit per coin) go through
    monkeypatch.setattr(mechanic_coin, "choose_threshold", trading)
    options = [*MECHANIC, "replay.respect_trade_ok=false"]
    summary, _ = replay(tmp, "promoted_tape", *options)
    replay(tmp, "promoted_per_bar", *options, "replay.precompute=false")
    assert summary["replay"]["promotions"] >= 2
    tape, per_bar = (pd.read_csv(tmp / name / "trades.csv") for name in PROMOTED_RUNS)
    pd.testing.assert_frame_equal(tape, per_bar)
    cycles = json.loads((tmp / "promoted_tape" / "mechanic.json").read_text())["cycles"]
    challengers = {
        coin["challenger_path"]
        for cycle in cycles
        for coin in cycle["coins"].values()
        if coin["status"] == "promoted"
    }
    assert challengers & set(tape["model_path"])  # promoted models did trade


PROMOTED_RUNS = ("promoted_tape", "promoted_per_bar")


def test_promote_holds_the_store_lock(trained, tmp_path):
    _, store, _ = trained
    with store_lock(store, "someone else"):
        with pytest.raises(StoreLocked, match="someone else"):
            replay(tmp_path, "locked", *PARITY, f"store.root={store.root}", "replay.promote=true")


@pytest.mark.slow
def test_replay_parity_on_real_binance_bars(binance_1h, tmp_path):
    data = [
        "data=csv",
        f"data.path={binance_1h}",
        "data.symbols=[BTC,ETH,BNB,SOL,XRP,ADA]",
        "data.start=2023-03-01",
        "data.end=2023-07-01",
        "thresholds.z=-2",  # a cut for every coin: the parity needs trades, not an edge
    ]
    small = [o for o in SMALL if not o.startswith("data.")]
    cfg = run_config(
        tmp_path, *small, *data, "pipeline.champion_min_trades=0", "pipeline.report_days=0"
    )
    jobs, probabilities = trained_recording(cfg)
    store = LocalStore(tmp_path / "artifacts")
    expected = per_coin_trades(store, jobs, probabilities)
    market = [o for o in MARKET if not o.startswith("data.")]
    train(
        run_config(
            tmp_path, "pipeline=replay", *market, *data, f"++output_dir={tmp_path / 'r'}", *PARITY
        )
    )
    got = replay_trades(tmp_path / "r")
    assert len(expected) > 0
    pd.testing.assert_frame_equal(
        got[["symbol", "entry_time", "exit_time", "net_bps"]], expected, check_exact=True
    )


def test_the_command_line_replays_and_resumes(trained, parity_run, tmp_path, capsys):
    tmp, store, _ = trained
    argv = [
        "--root",
        str(store.root),
        "--out",
        str(tmp_path / "cli"),
        "--no-mechanic",
        "--end",
        "2023-05-10",
        *MARKET,
        "replay.expire_hours=null",
        "replay.respect_trade_ok=false",
    ]
    assert replay_main(argv) == 0
    printed = capsys.readouterr().out
    assert "never_trade" in printed and "outputs in" in printed
    got = replay_trades(tmp_path / "cli")
    parity = replay_trades(tmp / "parity")
    closed = parity[parity.exit_time < pd.Timestamp("2023-05-10", tz="UTC")]
    pd.testing.assert_frame_equal(got, closed.reset_index(drop=True))
    assert replay_main([*argv[:-2], "replay.drift_action=ignore"]) == 2
    assert capsys.readouterr().err.startswith("error: replay.drift_action")


def test_bars_after_t_change_nothing_before_t(trained, parity_run):
    """The same market cut short at 2023-05-12 (``data.end``): every trade that closed
    before the cut is the same, so no bar after a decision reached it."""
    tmp, _, _ = trained
    replay(tmp, "cut", *PARITY, "data.end=2023-05-12")
    cut = pd.Timestamp("2023-05-12", tz="UTC")
    parity = replay_trades(tmp / "parity")
    closed = parity[parity.exit_time < cut].reset_index(drop=True)
    assert len(closed) > 5
    pd.testing.assert_frame_equal(replay_trades(tmp / "cut"), closed)


def test_promote_writes_the_promotions_into_the_store_itself(trained_before, tmp_path, monkeypatch):
    _, source, _ = trained_before
    shutil.copytree(source.root, tmp_path / "artifacts")
    store = LocalStore(tmp_path / "artifacts")
    monkeypatch.setattr(champions, "decide", lambda *_: champions.Decision(True, "test"))
    summary, _ = replay(tmp_path, "promoted", *MECHANIC, "replay.promote=true")
    assert summary["replay"]["promotions"] > 0
    assert not (tmp_path / "promoted" / "store").exists()  # no copy: the store itself
    assert read_lock(store).get("released_at")  # released at the end
    cycles = json.loads((tmp_path / "promoted" / "mechanic.json").read_text())["cycles"]
    for symbol, path in cycles[-1]["serving"].items():
        assert store.read_json(f"champions/{symbol}.json")["model_path"] == path


def test_promote_fences_every_store_the_run_builds(tmp_path):
    """With ``replay.promote`` the Mechanic's cycles build their stores from ``cfg.store``:
    the session's lock puts its fence there, so a replay whose lock was taken writes no
    more (as ``pipeline=mechanic``)."""
    cfg = run_config(tmp_path, "pipeline=replay", *MARKET, "replay.promote=true")
    with ReplayPipeline().session(cfg):
        assert build(cfg.store).fence is not None
    assert "fence" not in cfg.store
