"""pipeline=mechanic on the synthetic market: per_coin on the first 10 months, the
Mechanic with the next month appended, a regime change planted in that month.

SOL (planted cluster 2, a lagged follower) moves to cluster 1 on 2023-11-05, follows the
leader at once from then on and is 2.5 times as volatile. ``features.fracdiff=false``:
the FFD level is a persistent input whose PSI over a month is large for every coin, so
it would hide which coin changed.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import run_config
from safetensors.torch import load

from huracan.data import SyntheticMarket
from huracan.errors import ConfigError, DataError
from huracan.pipelines.mechanic.coin import Market, Waiting, coin_parts, judged_until, skipped
from huracan.registry.artifacts import is_complete, versions
from huracan.registry.roster import load_roster
from huracan.run import train
from huracan.serve import Fleet, ServeConfig
from huracan.store import LocalStore, content_hash
from huracan.store.lock import StoreLocked, read_lock, store_lock

MARKET = [
    "debug=fast",
    "data.n_assets=6",
    "data.n_clusters=3",
    "cluster.n_clusters=3",
    "data.years=1.0",
    "data.regime_change={at: '2023-11-05', symbol: SOL, to_cluster: 1, vol_multiplier: 2.5}",
    "features.fracdiff=false",
    "trainer.enable_progress_bar=false",
    "thresholds.min_trades=5",
    # ten days of fine-tuning validation are too few for the day-clustered bound to let a
    # challenger trade; these tests are about promotion and recovery, not that rule
    "thresholds.unit=trade",
    # and so the uncorrected search (the family gate needs days): the rule these champions
    # were written for; the per-coin gate is tested in test_per_coin_gate.py
    "thresholds.gate=search",
    # one horizon: promotion and recovery are the subject here; champions of several
    # horizons are tested in test_per_coin_horizons.py
    "labels.horizons=[1]",
]
MECHANIC = [
    "pipeline=mechanic",
    *MARKET,
    "data.end=2023-12-01",
    "mechanic.val_fraction=0.4",
    "mechanic.champion_min_trades=3",
    "mechanic.keep_versions=1",
    "drift.max_psi=1.0",
    "drift.min_cluster_ari=0.9",
    "drift.cluster_window_days=20",
]


class Killed(BaseException):
    """The process dies here."""


def config(tmp, *overrides):
    return run_config(tmp, *overrides)


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.seen = []

    def emit(self, record):
        self.seen.append(record)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The per-coin run on the first 10 months (its artifacts are copied by each test)."""
    tmp = tmp_path_factory.mktemp("trained")
    train(
        config(
            tmp,
            "pipeline=per_coin",
            *MARKET,
            "data.end=2023-11-01",
            "pipeline.run_id=base",
            "pipeline.test_days=20",
            "pipeline.report_days=0",  # champions chosen on all 20 days: more of them
            "pipeline.champion_min_trades=3",
        )
    )
    return tmp / "artifacts"


def copy_root(trained, tmp):
    shutil.copytree(trained, tmp / "artifacts")
    return LocalStore(tmp / "artifacts")


@pytest.fixture(scope="module")
def mechanic(trained, tmp_path_factory):
    """Two cycles of the Mechanic, no wait between them."""
    tmp = tmp_path_factory.mktemp("mechanic")
    store = copy_root(trained, tmp)
    before = {k: store.read_json(k) for k in store.list("champions")}
    encoder = content_hash(store.read_bytes("meta/shared_encoder.safetensors"))
    cfg = config(tmp, *MECHANIC, "mechanic.max_cycles=2", "mechanic.every_hours=0")
    records = Records()
    logging.getLogger("huracan").addHandler(records)
    try:
        summary, objects = train(cfg)
    finally:
        logging.getLogger("huracan").removeHandler(records)
    summary["warnings"] = [r.getMessage() for r in records.seen if r.levelno >= logging.WARNING]
    report = json.loads((tmp / "run" / "mechanic.json").read_text())
    return tmp, store, before, encoder, summary, objects["panel"], report


def test_the_first_months_are_the_same_market():
    cut = SyntheticMarket(n_assets=6, n_clusters=3, end="2023-11-01").load()
    planted = SyntheticMarket(
        n_assets=6,
        n_clusters=3,
        end="2023-11-05",
        regime_change={"at": "2023-11-05", "symbol": "SOL", "to_cluster": 1},
    ).load()
    assert np.array_equal(cut.close, planted.close[: cut.n_bars], equal_nan=True)
    change = {"at": "2023-11-05", "symbol": "SOL", "to_cluster": 1}
    plain, moved = (
        SyntheticMarket(n_assets=6, n_clusters=3, end="2023-11-10", regime_change=c).load()
        for c in (None, change)
    )
    after = plain.timestamps >= pd.Timestamp("2023-11-05", tz="UTC")
    sol = plain.index_of("SOL")
    others = [j for j in range(6) if j != sol]
    assert np.array_equal(plain.close[:, others], moved.close[:, others])
    assert np.array_equal(plain.close[~after, sol], moved.close[~after, sol])
    assert not np.isclose(plain.close[after, sol], moved.close[after, sol]).any()
    with pytest.raises(ConfigError, match="regime_change.symbol 'DOGE'"):
        SyntheticMarket(n_assets=6, regime_change={"at": 0.5, "symbol": "DOGE", "to_cluster": 0})
    with pytest.raises(ConfigError, match="unknown keys \\['when'\\]"):
        SyntheticMarket(regime_change={"at": 0.5, "symbol": "SOL", "to_cluster": 0, "when": 1})


def test_the_encoder_is_untouched(mechanic):
    _, store, _, encoder, _, _, report = mechanic
    assert content_hash(store.read_bytes("meta/shared_encoder.safetensors")) == encoder
    assert report["shared_encoder_hash"] == encoder
    challengers = [c for c in report["coins"].values() if c.get("challenger_path")]
    assert challengers
    for coin in challengers:
        champion = load(store.read_bytes(f"{coin['champion_path']}/weights.safetensors"))
        new = load(store.read_bytes(f"{coin['challenger_path']}/weights.safetensors"))
        encoder_keys = [k for k in new if k.startswith("encoder.")]
        assert encoder_keys and all((new[k] == champion[k]).all() for k in encoder_keys)
        assert any(not (new[k] == champion[k]).all() for k in new if k.startswith("head."))


def test_promotions_only_where_the_challenger_is_better_on_the_holdout(mechanic):
    tmp, store, before, _, _, panel, report = mechanic
    [first, _] = report["cycles"]
    assert first["counts"]["promoted"] >= 1 and first["counts"]["kept"] >= 1
    holdout_start = pd.Timestamp(report["holdout_window"][0])
    assert holdout_start == panel.timestamps[-1] - pd.Timedelta(days=7) + pd.Timedelta("1h")
    fleet = Fleet.load(store, config=ServeConfig(expire_hours=None))
    probability = fleet.predict(panel)
    for symbol, coin in report["coins"].items():
        pointer = store.read_json(f"champions/{symbol}.json") if coin["champion"] else None
        if coin["status"] == "skipped":
            continue
        ours, theirs = coin["challenger"], coin["champion"]
        better = (
            ours["n_trades"] >= 3
            and (ours["sharpe"] or -np.inf) > (theirs["sharpe"] or -np.inf)
            and ours["net_pnl_bps"] > theirs["net_pnl_bps"]
        )
        assert (coin["status"] == "promoted") == better, symbol
        expected = coin["challenger_path"] if better else coin["champion_path"]
        assert pointer["model_path"] == expected
        assert pointer["window"] == report["holdout_window"]
        # neither model saw a holdout bar: their data (and labels) end before it
        for path in (coin["champion_path"], coin["challenger_path"]):
            data_end = pd.Timestamp(store.read_json(f"{path}/checkpoint.json")["data_end"])
            assert data_end + pd.Timedelta("1h") < holdout_start
        # the champion now serving trades on the holdout as many times as it was scored
        p = probability[symbol][probability.index >= holdout_start].iloc[:-1]  # labelled bars
        threshold = store.read_json(f"{expected}/checkpoint.json")["thresholds"][0]
        scored = ours if better else theirs
        assert int((p >= (np.inf if threshold is None else threshold)).sum()) == scored["n_trades"]
    roster = load_roster(store)
    assert {e["model_path"] for e in roster["entries"] if e["model_path"]} == {
        store.read_json(k)["model_path"]
        for k in store.list("champions")
        if k != "champions/roster.json"
    }


def test_the_planted_regime_change_is_flagged_by_both_drift_checks(mechanic):
    _, store, _, _, _, _, report = mechanic
    drift = {s: c["drift"]["psi"] for s, c in report["coins"].items() if c.get("drift")}
    assert max(drift, key=drift.get) == "SOL"
    assert report["cycles"][0]["queued_for_retraining"] == ["SOL"]
    assert "SOL" in report["queued_for_retraining"]  # the second cycle's (on the same bars)
    assert report["coins"]["SOL"]["drift"]["input"] in {
        "realized_vol",
        "parkinson_vol",
        "garman_klass_vol",
        "atr",
    }
    clusters = report["cluster_drift"]
    assert "SOL" in clusters["moved"]
    assert clusters["ari"] < 0.9 and clusters["retrain_due"] and report["full_retrain_due"]
    warnings = [w for w in mechanic[4]["warnings"] if w.startswith("cluster drift")]
    assert len(warnings) == 2 and "a full retrain is due" in warnings[0] and "SOL" in warnings[0]
    history = store.read_json("meta/cluster_history.json")["entries"]
    assert len(history) == 2  # one per re-clustering: two cycles
    assert history[-1]["moved"] == clusters["moved"]


def test_the_second_cycle_on_the_same_bars_changes_no_pointer(mechanic):
    _, store, before, _, summary, _, report = mechanic
    assert [c["cycle"] for c in summary["mechanic"]["cycles"]] == [1, 2]
    first, second = report["cycles"]
    assert report["cycle"] == 2 and second["counts"]["promoted"] == 0
    assert second["counts"]["kept"] == first["counts"]["kept"]
    again = [c for c in report["coins"].values() if c["reasons"][0].startswith("already the")]
    assert len(again) == first["counts"]["promoted"]  # its own version: nothing new to learn
    for symbol, coin in report["coins"].items():
        if coin["status"] == "kept":  # the same challenger, re-scored from its stored files
            pointer = store.read_json(f"champions/{symbol}.json")
            assert pointer["model_path"] == coin["champion_path"]
            assert pointer["metrics"]["sharpe"] == coin["champion"]["sharpe"]


def test_a_promoted_champion_is_not_judged_again_on_the_holdout_that_promoted_it(
    mechanic, tmp_path
):
    """Three days on, the cycle's 7-day holdout overlaps the one on which the first cycle
    promoted its champions by four days: those coins are compared on the bars after it."""
    previous, *_ = mechanic
    store = copy_root(previous / "artifacts", tmp_path)
    pointers = {k: store.read_json(k) for k in store.list("champions") if "roster" not in k}
    promoted = {
        p["symbol"]: pd.Timestamp(
            store.read_json(f"{p['model_path']}/checkpoint.json")["test_window"][1]
        )
        for p in pointers.values()
        if "mechanic_" in p["model_path"]
    }
    assert promoted
    overrides = [o for o in MECHANIC if not o.startswith("data.end=")]
    train(config(tmp_path, *overrides, "data.end=2023-12-04", "mechanic.min_new_bars=50"))
    later = json.loads((tmp_path / "run" / "mechanic.json").read_text())
    cycle_start = pd.Timestamp(later["holdout_window"][0])
    for symbol, judged in promoted.items():
        assert judged > cycle_start + pd.Timedelta(days=3)  # the overlap at issue
        coin = later["coins"][symbol]
        assert coin["status"] != "skipped", coin["reasons"]
        holdout = coin["holdout"]
        assert holdout["judged_until"] == str(judged)
        assert pd.Timestamp(holdout["window"][0]) == judged + pd.Timedelta("1h")
        reused = int((judged - cycle_start) / pd.Timedelta("1h")) + 1
        assert holdout["reused_bars_excluded"] == reused
        for side in ("champion", "challenger"):  # both scored on the fresh bars only
            assert coin[side]["window"] == holdout["window"]
    others = [c for s, c in later["coins"].items() if s not in promoted and c.get("holdout")]
    assert others  # champions of the per-coin run: its selection window ended long before
    for coin in others:
        assert coin["holdout"]["reused_bars_excluded"] == 0
        assert pd.Timestamp(coin["holdout"]["window"][0]) == cycle_start


def test_the_window_a_champion_was_judged_on_is_its_promotion_window():
    selection, report = ["2024-01-01", "2024-01-20"], ["2024-01-21", "2024-01-27"]
    per_coin = {"selection_window": selection, "report_window": report}
    per_coin["test_window"] = [selection[0], report[1]]
    assert judged_until(SimpleNamespace(description=per_coin)) == pd.Timestamp("2024-01-20")
    # a Mechanic version inherits its ancestor's windows; its own holdout is its test_window
    tuned = {**per_coin, "test_window": ["2024-02-01", "2024-02-07"], "finetuned_from": "m"}
    assert judged_until(SimpleNamespace(description=tuned)) == pd.Timestamp("2024-02-07")
    older = {"test_window": ["2024-01-01", "2024-01-27"]}  # no selection window recorded
    assert judged_until(SimpleNamespace(description=older)) == pd.Timestamp("2024-01-27")
    assert judged_until(SimpleNamespace(description={})) is None


def test_the_mechanic_holds_the_store_lock(trained, tmp_path):
    store = copy_root(trained, tmp_path)
    with store_lock(store, "someone else"):
        with pytest.raises(StoreLocked, match="someone else"):
            train(config(tmp_path, *MECHANIC))
    assert store.read_json("champions/roster.json")["run_id"] == "base"  # untouched


def test_old_versions_are_purged_but_never_the_champions(mechanic):
    _, store, before, _, _, _, report = mechanic
    for key, pointer in before.items():
        if key == "champions/roster.json":
            continue
        symbol = pointer["symbol"]
        now = store.read_json(key)["model_path"]
        kept = versions(store, symbol)
        assert now in kept and is_complete(store, now)
        if now != pointer["model_path"]:  # promoted: keep_versions=1 drops the old one
            assert kept == [now]
            assert pointer["model_path"] in report["cycles"][0]["purged"]
    assert versions(store, "BTC") == ["models/BTC/baseline_base"]  # no champion, one version


def outcome(store) -> dict:
    out = {}
    for key in store.list("champions"):
        value = store.read_json(key)
        value.pop("updated_at", None)
        value.pop("generated_at", None)
        out[key] = value
    return out


@pytest.mark.parametrize("point", ["champion pointer", "roster"])
def test_a_killed_mechanic_leaves_valid_pointers_and_resumes(
    mechanic, trained, tmp_path, monkeypatch, point
):
    _, clean_store, before, _, _, _, _ = mechanic
    promoted = [
        key
        for key, pointer in before.items()
        if key != "champions/roster.json"
        and clean_store.read_json(key)["model_path"] != pointer["model_path"]
    ]
    key = promoted[0] if point == "champion pointer" else "champions/roster.json"
    store = copy_root(trained, tmp_path)
    real, seen = LocalStore.write_bytes, []

    def write_bytes(self, name, data):
        if name == key and not seen:
            seen.append(name)
            raise Killed(name)
        real(self, name, data)

    monkeypatch.setattr(LocalStore, "write_bytes", write_bytes)
    with pytest.raises(Killed):
        train(config(tmp_path, *MECHANIC))
    monkeypatch.undo()
    for name in store.list("champions"):  # every pointer names a complete version
        if name != "champions/roster.json":
            assert is_complete(store, store.read_json(name)["model_path"])
    for entry in load_roster(store)["entries"]:
        assert entry["model_path"] is None or is_complete(store, entry["model_path"])
    train(config(tmp_path, *MECHANIC))
    assert outcome(store) == outcome(clean_store)


def test_bad_options_stop_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="max_cycles"):
        train(config(tmp_path, *MECHANIC, "mechanic.max_cycles=0"))
    with pytest.raises(ConfigError, match="mechanic.holdout_dayz"):
        train(config(tmp_path, *MECHANIC, "+mechanic.holdout_dayz=3"))


def test_a_waiting_loop_says_when_it_runs_next_and_releases_its_lock_on_sigterm(trained, tmp_path):
    """``max_cycles=2 every_hours=1``: after cycle 1 the loop logs its next cycle's time and
    waits; SIGTERM then ends it with exit 130 and the store's lock released."""
    store = copy_root(trained, tmp_path)
    run = subprocess.Popen(
        [sys.executable, "-m", "huracan", "mechanic", *MECHANIC[1:]]
        + [f"store.root={tmp_path / 'artifacts'}", "~logger", "hydra.run.dir=run"]
        + ["mechanic.max_cycles=2", "mechanic.every_hours=1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = tmp_path / "run" / "train.log"
    deadline = time.monotonic() + 300
    while run.poll() is None and not (log.exists() and "next cycle (2 of 2) at" in log.read_text()):
        assert time.monotonic() < deadline, "no 'next cycle' line"
        time.sleep(0.2)
    assert not read_lock(store).get("released_at")  # held while the loop waits
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, err[-2000:]
    assert "Traceback" not in out + err
    assert read_lock(store).get("released_at")
    with store_lock(store, "next run"):  # free for the next writer at once
        pass


def test_a_truncated_roster_stops_the_mechanic_in_one_line(trained, tmp_path):
    store = copy_root(trained, tmp_path)
    text = store.read_bytes("champions/roster.json")
    store.write_bytes("champions/roster.json", text[: len(text) // 2])
    with pytest.raises(DataError, match=r"champions/roster.json: not valid JSON") as err:
        train(config(tmp_path, *MECHANIC))
    assert "\n" not in str(err.value)


def test_a_pointer_to_another_coins_version_is_skipped_not_tuned(trained, tmp_path):
    store = copy_root(trained, tmp_path)
    coin = next(
        k.removeprefix("champions/").removesuffix(".json")
        for k in store.list("champions")
        if k not in ("champions/roster.json", "champions/BTC.json")
    )
    foreign = store.read_json(f"champions/{coin}.json") | {"model_path": "models/BTC/baseline_base"}
    store.write_json(f"champions/{coin}.json", foreign)
    train(config(tmp_path, *MECHANIC))
    report = json.loads((tmp_path / "run" / "mechanic.json").read_text())
    assert report["coins"][coin]["status"] == "skipped"
    assert "a version of BTC, not " + coin in report["coins"][coin]["reasons"][0]
    assert any(c["status"] != "skipped" for s, c in report["coins"].items() if s != coin)
    [entry] = [e for e in load_roster(store)["entries"] if e["symbol"] == coin]
    assert not entry["trade_ok"] and entry["model_path"] is None
    assert entry["reasons"][0].startswith("champion_unusable:champions/")


def test_a_champion_not_due_a_rescore_keeps_its_roster_verdict(trained, tmp_path):
    """A cycle with too few new bars for any coin scores nobody: every champion stays on
    the roster as the per-coin run judged it (no ``champion_not_rescored``)."""
    store = copy_root(trained, tmp_path)
    before = {e["symbol"]: e for e in load_roster(store)["entries"]}
    train(config(tmp_path, *MECHANIC, "mechanic.min_new_bars=1000000"))
    report = json.loads((tmp_path / "run" / "mechanic.json").read_text())
    waiting = [s for s, c in report["coins"].items() if c["status"] == "skipped" and c["waiting"]]
    assert waiting and all(c["status"] == "skipped" for c in report["coins"].values())
    after = {e["symbol"]: e for e in load_roster(store)["entries"]}
    assert any(before[s]["trade_ok"] for s in waiting)
    for symbol in waiting:
        assert "champion_not_rescored" not in after[symbol]["reasons"]
        assert after[symbol]["trade_ok"] == before[symbol]["trade_ok"], after[symbol]["reasons"]


def _coin_market(n_bars: int, coin_bars: int, holdout_start: int):
    """Two coins on ``n_bars`` hourly bars; coin A has inputs on its first ``coin_bars``."""
    stamps = pd.date_range("2024-01-01", periods=n_bars, freq="h", tz="UTC")
    x = np.ones((n_bars, 3))
    x[coin_bars:] = np.nan
    panel = SimpleNamespace(
        n_bars=n_bars, timestamps=stamps, index_of=["A", "B"].index, close=np.ones((n_bars, 2))
    )
    arrays = SimpleNamespace(horizons=(1,), net_h=np.zeros((n_bars, 2, 1)))
    market = SimpleNamespace(
        panel=panel,
        arrays=arrays,
        inputs={"A": (x, np.ones((n_bars, 2)))},
        tune_end=holdout_start,
        holdout_start=holdout_start,
    )
    market.labelled_bars = Market.labelled_bars.func(market)  # the real property's rule
    return market, stamps


@pytest.mark.parametrize(
    ("trained_to", "coin_bars", "holdout", "judged", "waiting"),
    [
        (199, 400, 290, None, True),  # 90 new bars in the whole market: time will tell
        (99, 150, 290, None, False),  # 190 in the market, 50 of its own: its bars stopped
        (99, 400, 320, 399, True),  # promoted on the last bar: no newer bar anywhere yet
        (99, 331, 320, 330, False),  # newer holdout bars in the market, none of its own
    ],
)
def test_only_time_makes_a_skip_waiting(trained_to, coin_bars, holdout, judged, waiting):
    """``Waiting`` (the champion keeps its roster verdict) only where the market itself
    lacks the bars; where the market has them and the coin does not, a plain reason."""
    market, stamps = _coin_market(400, coin_bars, holdout_start=holdout)
    windows = {} if judged is None else {"test_window": [str(stamps[300]), str(stamps[judged])]}
    model = SimpleNamespace(
        symbol="A",
        horizon=1,
        data_end=stamps[trained_to],
        description={**windows, "finetuned_from": "m"},
    )
    why = coin_parts(model, market, SimpleNamespace(min_new_bars=100, val_fraction=0.2))
    assert isinstance(why, str), why
    assert isinstance(why, Waiting) is waiting, why
    assert skipped(why)["waiting"] is waiting
