"""pipeline=per_coin end to end: artifact layout, resumability, champions, roster, faults."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import dropbox.dropbox_client
import jsonschema
import numpy as np
import pandas as pd
import pytest
import requests
import torch
from conftest import ROOT, make_bars, run_config
from fake_dropbox import FakeDropboxAdapter
from safetensors.torch import load

from huracan.coin_rule import cut_rule
from huracan.errors import DataError
from huracan.models.batches import StackedGroupSampler
from huracan.registry.artifacts import is_complete
from huracan.registry.champions import decide
from huracan.registry.roster import (
    ROSTER_SCHEMA,
    load_roster,
    rank_entries,
    roster_entry,
    select,
    write_roster,
)
from huracan.roster import main as roster_main
from huracan.run import train
from huracan.store import LocalStore, StoreError, content_hash

SMALL = [
    "pipeline=per_coin",
    "data.n_assets=6",
    "data.n_clusters=2",
    "data.years=0.4",
    "cluster.n_clusters=2",
    "pipeline.test_days=20",
    "pipeline.run_id=20240101",
    "encoder.max_epochs=2",
    "head.max_epochs=3",
    "trainer.enable_progress_bar=false",
    "gates.min_history_days=10",
    "thresholds.min_trades=5",
    "pipeline.champion_min_trades=3",
]

SEARCH = ["thresholds.gate=search"]


def per_coin_config(tmp_path, *overrides):
    base = SMALL
    if "data=csv" in overrides:
        base = [o for o in SMALL if not o.startswith("data.")]
    return run_config(tmp_path, *base, *overrides)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("per_coin")
    # the uncorrected search (the per-coin rule before the family gate): these tests follow
    # champions across runs, and on this small market none passes the family gate (the gate
    # is tested in test_per_coin_gate.py)
    summary, _ = train(per_coin_config(tmp, *SEARCH))
    return tmp, summary


def test_artifact_layout(first_run):
    tmp, summary = first_run
    root = tmp / "artifacts"
    symbols = summary["data"]["symbols"]
    for symbol in symbols:
        version = root / "models" / symbol / "baseline_20240101"
        names = {p.name for p in version.iterdir()}
        assert names == {
            "weights.safetensors",
            "checkpoint.json",
            "metrics.json",
            "costs.json",
            "features.json",
            "manifest.json",
        }
        manifest = json.loads((version / "manifest.json").read_text())
        assert set(manifest["files"]) == names - {"manifest.json"}
        assert all(len(f["content_hash"]) == 64 for f in manifest["files"].values())
        costs = json.loads((version / "costs.json").read_text())
        assert {"slippage_bps_per_sigma", "fit_date", "window_start", "method"} <= set(costs)
        assert costs["method"] == "quoted"  # the synthetic market quotes its spreads
        # calibrated on the bars right before the test window, never inside it
        test_start = summary["per_coin"]["test_window"][0]
        assert pd.Timestamp(costs["window_end"]) < pd.Timestamp(test_start)
        assert costs["fit_date"] == pd.Timestamp(test_start).isoformat()
        # the labels and threshold: calibrated up to the end of the training window
        train_end = json.loads((version / "features.json").read_text())["train_end"]
        assert costs["training_fit"]["window_end"] == pd.Timestamp(train_end).isoformat()
        # the round trip is fee on both sides + spread + the slippage reported, once
        assert costs["expected_round_trip_bps"] == pytest.approx(
            2 * costs["fee_bps"] + costs["base_spread_bps"] + costs["expected_slip_bps"]
        )
        metrics = json.loads((version / "metrics.json").read_text())
        assert isinstance(metrics["n_trades"], int)
        if metrics["n_trades"]:  # the slippage reported is the slippage charged
            charged = metrics["avg_cost_bps"] - 2 * costs["fee_bps"] - costs["base_spread_bps"]
            assert metrics["avg_slip_bps"] == pytest.approx(charged)
        assert load((version / "weights.safetensors").read_bytes())  # safetensors, no pickle
        job = summary["per_coin"]["jobs"][symbol]
        if (root / "champions" / f"{symbol}.json").exists():
            assert job["n_trades"] >= 3
        else:  # too few out-of-sample trades to become a champion
            assert job["n_trades"] < 3 and f"made {job['n_trades']} trades < 3" in job["champion"]
    assert (root / "meta" / "shared_encoder.safetensors").exists()
    encoder = json.loads((root / "meta" / "shared_encoder.json").read_text())
    assert encoder["spec"]["kind"] == "autoencoder"
    bank = json.loads((root / "meta" / "feature_bank.json").read_text())
    assert set(bank["per_coin"]) == set(symbols)
    assert "market_factor" in next(iter(bank["per_coin"].values()))
    roster = json.loads((root / "champions" / "roster.json").read_text())
    jsonschema.validate(roster, ROSTER_SCHEMA)
    champions = {p.stem for p in (root / "champions").glob("[A-Z]*.json")} - {"roster"}
    entries = roster["entries"]
    assert sorted(e["symbol"] for e in entries) == sorted(symbols)  # every coin, always
    assert [e["rank"] for e in entries] == list(range(1, len(entries) + 1))
    ok = [e["trade_ok"] for e in entries]
    assert ok == sorted(ok, reverse=True)  # tradable ones first
    for entry in entries:
        assert entry["trade_ok"] == (not entry["reasons"])
        assert ("no_champion" in entry["reasons"]) == (entry["symbol"] not in champions)
        if entry["symbol"] not in champions:  # and why: this run's model did not qualify
            assert {"no_trades_in_test", "few_trades_in_test"} & set(entry["reasons"])
        if entry["symbol"] in champions:
            assert entry["model_path"] == f"models/{entry['symbol']}/baseline_20240101"
            assert isinstance(entry["n_trades"], int)
    assert summary["per_coin"]["counts"]["completed"] == len(symbols)


def test_every_coins_checkpoint_stores_its_cut_rule_under_the_family_gate(tmp_path):
    """Under the default family gate a real per-coin job stores the rule it chose its cut
    by (``cut_rule``) in its checkpoint.json: what the Mechanic hands ``choose_coin_cut``
    from a stored champion's description (``mechanic.coin``). Its own run: ``first_run``
    is under the uncorrected search."""
    tmp = tmp_path
    cfg = per_coin_config(tmp)
    summary, _ = train(cfg)
    assert cfg.thresholds.gate == "family"  # the default
    for symbol in summary["data"]["symbols"]:
        version = tmp / "artifacts" / "models" / symbol / "baseline_20240101"
        stored = json.loads((version / "checkpoint.json").read_text())["cut_rule"]
        assert stored == cut_rule(cfg.thresholds, cfg.seed, symbol)
        assert stored["thresholds"]["gate"] == "family"


def test_the_report_window_is_never_selected_on(first_run):
    """The last report_days of the test window: the metrics that choose the champion and
    set trade_ok end before it; the roster's figures are those of the report window."""
    tmp, summary = first_run
    per_coin = summary["per_coin"]
    selection, report = per_coin["selection_window"], per_coin["report_window"]
    assert selection[0] == per_coin["test_window"][0] and report[1] == per_coin["test_window"][1]
    assert pd.Timestamp(report[0]) - pd.Timestamp(selection[1]) == pd.Timedelta(hours=1)
    assert pd.Timestamp(per_coin["test_window"][1]) - pd.Timestamp(report[0]) == pd.Timedelta(
        days=7, hours=-1
    )
    root = tmp / "artifacts"
    roster = {
        e["symbol"]: e for e in json.loads((root / "champions/roster.json").read_text())["entries"]
    }
    for symbol in summary["data"]["symbols"]:
        metrics = json.loads(
            (root / "models" / symbol / "baseline_20240101/metrics.json").read_text()
        )
        assert pd.Timestamp(metrics["window"][1]) <= pd.Timestamp(selection[1])
        assert pd.Timestamp(metrics["report"]["window"][0]) >= pd.Timestamp(report[0])
        pointer = root / "champions" / f"{symbol}.json"
        if pointer.exists():
            champion = json.loads(pointer.read_text())
            assert champion["window"] == selection
            assert champion["metrics"]["n_trades"] == metrics["n_trades"]
            assert champion["report"]["n_trades"] == metrics["report"]["n_trades"]
            entry = roster[symbol]
            assert entry["figures"] == "report"
            assert entry["n_trades"] == metrics["report"]["n_trades"]
            assert entry["selection"]["n_trades"] == metrics["n_trades"]


def test_the_baselines_stand_beside_every_coins_model(first_run):
    """Each coin's metrics carry the four baselines in both windows; the summary pools
    them over coins, and each roster entry names them for its coin."""
    tmp, summary = first_run
    per_coin, root = summary["per_coin"], tmp / "artifacts"
    names = {"never_trade", "always_long", "logistic", "leader_lead_lag"}
    roster = {
        e["symbol"]: e for e in json.loads((root / "champions/roster.json").read_text())["entries"]
    }
    totals = dict.fromkeys(names, 0.0)
    for symbol in summary["data"]["symbols"]:
        metrics = json.loads(
            (root / "models" / symbol / "baseline_20240101/metrics.json").read_text()
        )
        assert set(metrics["baselines"]) == set(metrics["report"]["baselines"]) == names
        report = metrics["report"]["baselines"]
        assert report["never_trade"]["n_trades"] == 0
        if symbol == "BTC":  # the leader's rule trades the alts only
            assert report["leader_lead_lag"]["n_trades"] == 0
        for name in names:
            totals[name] += report[name]["net_bps"]
            days = report[name]["daily_bps"]
            assert all(d >= per_coin["report_window"][0][:10] for d in days)
        # in the window of the entry's own figures
        shown = report if roster[symbol]["figures"] == "report" else metrics["baselines"]
        assert roster[symbol]["baselines_net_bps"] == {k: v["net_bps"] for k, v in shown.items()}
    assert per_coin["judged_window"] == "report"
    for name in names:
        assert per_coin["baselines"][name]["net_bps"] == pytest.approx(totals[name], abs=1e-3)
    assert {c["result"] for c in per_coin["criteria"]} <= {"PASS", "FAIL"}


def test_rerun_with_the_same_run_id_resumes(first_run):
    tmp, _ = first_run
    store = LocalStore(tmp / "artifacts")
    (tmp / "artifacts" / "models" / "ETH" / "baseline_20240101" / "manifest.json").unlink()
    assert not is_complete(store, "models/ETH/baseline_20240101")
    summary, _ = train(per_coin_config(tmp, *SEARCH))
    jobs = summary["per_coin"]["jobs"]
    assert jobs["ETH"]["reason"] == ""  # redone
    assert all(j["reason"] == "cached" for s, j in jobs.items() if s != "ETH")
    assert is_complete(store, "models/ETH/baseline_20240101")


def test_a_new_run_challenges_the_champions(first_run):
    tmp, _ = first_run
    before = {
        p.name: json.loads(p.read_text())
        for p in (tmp / "artifacts" / "champions").glob("[A-Z]*.json")
        if p.name != "roster.json"
    }
    summary, _ = train(per_coin_config(tmp, "pipeline.run_id=20240102", "seed=1", *SEARCH))
    after = tmp / "artifacts" / "champions"
    for name, old in before.items():
        new = json.loads((after / name).read_text())
        version = new["model_path"]
        assert is_complete(LocalStore(tmp / "artifacts"), version)
        if version != old["model_path"]:  # replaced only by a strictly better challenger
            assert new["metrics"]["sharpe"] > old["metrics"]["sharpe"]
            assert new["metrics"]["net_pnl_bps"] > old["metrics"]["net_pnl_bps"]
            assert new["previous_model_path"] == old["model_path"]
    roster = load_roster(LocalStore(tmp / "artifacts"))
    assert roster["run_id"] == "20240102"


def test_champion_rule():
    challenger = {"sharpe": 2.0, "net_pnl_bps": 100.0, "n_trades": 30}
    assert decide(challenger, None, 10).replace
    assert not decide({**challenger, "n_trades": 5}, None, 10).replace
    assert decide(challenger, {"sharpe": 1.0, "net_pnl_bps": 50.0}, 10).replace
    assert not decide(challenger, {"sharpe": 3.0, "net_pnl_bps": 50.0}, 10).replace
    assert not decide(challenger, {"sharpe": 1.0, "net_pnl_bps": 150.0}, 10).replace
    assert decide(challenger, {"sharpe": None, "net_pnl_bps": 0.0}, 10).replace


def test_roster_reader_cli(first_run):
    tmp, summary = first_run
    roster = load_roster(LocalStore(tmp / "artifacts"))
    tradable = [e["symbol"] for e in select(roster)]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "huracan.roster",
            "top",
            "2",
            "--json",
            "--root",
            str(tmp / "artifacts"),
            "--block",
            tradable[0] if tradable else "NONE",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    chosen = json.loads(run.stdout)
    assert len(chosen) == min(2, max(len(tradable) - 1, 0))
    assert all(e["trade_ok"] and e["symbol"] != tradable[0] for e in chosen)
    allowed = select(roster, allow=tradable[-1:], include_not_ok=True)
    assert [e["symbol"] for e in allowed] == tradable[-1:]


def test_roster_writer_validates_the_schema(tmp_path):
    bad = {
        "symbol": "BTC",
        "model_path": "nowhere",
        "spread_bps": 1.0,
        "fee_bps": 7.5,
        "avg_slip_bps": 0.5,
        "last_7d_net_bps": 0.0,
        "trade_ok": True,
    }
    with pytest.raises(DataError, match="the roster of run x: breaks the roster schema"):
        write_roster(LocalStore(tmp_path), [bad], "x")
    assert not (tmp_path / "champions" / "roster.json").exists()


def test_short_history_and_corrupt_files_are_recorded_skips(tmp_path, write_bars):
    n = 24 * 120
    directory = write_bars(
        {
            "BTC": make_bars(n=n, seed=1),
            "ETH": make_bars(n=n, seed=2),
            "SOL": make_bars(n=n, seed=3),
            "NEW": make_bars(n=24 * 20, seed=4),
        }
    )
    (directory / "BAD.csv").write_text("timestamp,open,high,low,close,volume\nnot,a,real,row,x,y\n")
    cfg = per_coin_config(
        tmp_path,
        "data=csv",
        f"data.path={directory}",
        "data.on_error=skip",
        "gates.min_history_days=30",
        "gates.min_daily_quote_volume=null",
    )
    summary, _ = train(cfg)
    jobs = summary["per_coin"]["jobs"]
    assert jobs["NEW"]["status"] == "skipped" and "min_history" in jobs["NEW"]["reason"]
    assert jobs["BAD"]["status"] == "skipped" and "bad_rows" in jobs["BAD"]["reason"]
    roster = {e["symbol"]: e for e in summary["per_coin"]["roster"]}
    assert set(roster) == {"BTC", "ETH", "SOL", "NEW", "BAD"}
    assert "gate:min_history" in roster["NEW"]["reasons"] and not roster["NEW"]["trade_ok"]
    assert any(r.startswith("gate:bad_rows") for r in roster["BAD"]["reasons"])


def test_a_failing_job_leaves_champions_and_roster_consistent(tmp_path, monkeypatch):
    import huracan.pipelines.per_coin.job as coin_job

    real = coin_job.write_version

    def fail_for_eth(store, prefix, files, meta):
        if meta["symbol"] == "ETH":  # half the files written, then the job dies
            store.write_bytes(f"{prefix}/weights.safetensors", files["weights.safetensors"])
            raise OSError("disk full")
        return real(store, prefix, files, meta)

    monkeypatch.setattr(coin_job, "write_version", fail_for_eth)
    summary, _ = train(per_coin_config(tmp_path))
    assert summary["per_coin"]["jobs"]["ETH"]["status"] == "failed"
    assert "disk full" in summary["per_coin"]["jobs"]["ETH"]["reason"]
    assert "disk full" in (tmp_path / "run" / "logs" / "ETH.log").read_text()
    store = LocalStore(tmp_path / "artifacts")
    assert not store.exists("champions/ETH.json")
    assert not is_complete(store, "models/ETH/baseline_20240101")
    [eth] = [e for e in load_roster(store)["entries"] if e["symbol"] == "ETH"]
    assert not eth["trade_ok"] and eth["model_path"] is None
    assert eth["reasons"][:2] == ["failed:OSError: disk full", "no_champion"]
    assert summary["per_coin"]["counts"]["completed"] == 5


def fake_dropbox(monkeypatch) -> FakeDropboxAdapter:
    """The real Dropbox SDK, with its HTTP transport answered by an in-memory Dropbox."""
    adapter = FakeDropboxAdapter()

    def create_session(*args, **kwargs):
        session = requests.Session()
        session.mount("https://", adapter)
        return session

    monkeypatch.setattr(dropbox.dropbox_client, "create_session", create_session)
    monkeypatch.setenv("DROPBOX_ACCESS_TOKEN", "test-token")
    monkeypatch.delenv("DROPBOX_REFRESH_TOKEN", raising=False)
    return adapter


def test_per_coin_run_on_dropbox(tmp_path, monkeypatch):
    adapter = fake_dropbox(monkeypatch)
    summary, _ = train(
        per_coin_config(
            tmp_path,
            "store=dropbox",
            "store.root=/huracan",
            "store.backoff_s=0",
            "head.stack_above=0",  # the stacked head batches of large fleets, end to end
        )
    )
    assert summary["per_coin"]["store"] == "dropbox:/huracan"
    assert summary["per_coin"]["counts"]["completed"] == 6
    stored = set(adapter.files)
    assert "/huracan/champions/roster.json" in stored
    assert "/huracan/models/BTC/baseline_20240101/manifest.json" in stored


def test_dropbox_outage_is_a_recorded_failure(tmp_path, monkeypatch):
    adapter = fake_dropbox(monkeypatch)
    adapter.fail_next(10_000, status=503)
    with pytest.raises(StoreError):
        train(
            per_coin_config(
                tmp_path,
                "store=dropbox",
                "store.root=/huracan",
                "store.backoff_s=0",
                "store.max_retries=1",
            )
        )
    assert not any(path.endswith("roster.json") for path in adapter.files)


@pytest.mark.parametrize("queue", [["queue.workers=2"], ["queue=dask", "queue.workers=2"]])
def test_jobs_run_in_worker_processes(tmp_path, queue):
    summary, _ = train(per_coin_config(tmp_path, *queue))
    assert summary["per_coin"]["counts"]["completed"] == 6
    assert LocalStore(tmp_path / "artifacts").exists("champions/roster.json")


def test_champions_from_another_window_are_rescored_only_out_of_sample(first_run):
    tmp, _ = first_run
    store = LocalStore(tmp / "artifacts")
    # a later window (the last 10 days): the champions trained before it are re-scored
    later, _ = train(
        per_coin_config(tmp, "pipeline.run_id=20240103", "pipeline.test_days=10", *SEARCH)
    )
    notes = {s: j["champion_note"] for s, j in later["per_coin"]["jobs"].items()}
    assert any("re-scored" in (n or "") for n in notes.values())
    window = later["per_coin"]["test_window"]
    for pointer in store.list("champions"):
        if pointer.endswith("roster.json"):
            continue
        champion = store.read_json(pointer)
        assert champion["window"][0][:10] == window[0][:10]  # scored on the current window
    # an earlier window (the last 40 days) overlaps the champions' training data
    earlier, _ = train(
        per_coin_config(tmp, "pipeline.run_id=20240104", "pipeline.test_days=40", *SEARCH)
    )
    jobs = earlier["per_coin"]["jobs"].values()
    notes = [j["champion_note"] or "" for j in jobs]
    assert any("both scored on" in n for n in notes)  # only the bars after its labels
    assert not any("re-scored on this window" in n for n in notes)
    # a run whose window ends before the champions' last labels cannot score them: kept
    before = {p: store.read_json(p) for p in store.list("champions") if "roster" not in p}
    shorter, _ = train(
        per_coin_config(tmp, "pipeline.run_id=20240105", "data.years=0.25", "seed=2", *SEARCH)
    )
    for key, old in before.items():
        job = shorter["per_coin"]["jobs"][old["symbol"]]
        assert "past this whole test window" in job["champion_note"]
        assert job["champion"].startswith("champion kept unscored")
        assert store.read_json(key)["model_path"] == old["model_path"]
    roster = {e["symbol"]: e for e in load_roster(store)["entries"]}
    for old in before.values():
        assert "champion_not_rescored" in roster[old["symbol"]]["reasons"]


def test_gates_do_not_look_at_out_of_sample_bars(tmp_path, write_bars):
    """NEW has 40 days of bars, 20 of them before the 20-day test window."""
    n = 24 * 120
    directory = write_bars(
        {
            "BTC": make_bars(n=n, seed=1),
            "ETH": make_bars(n=n, seed=2),
            "SOL": make_bars(n=n, seed=3),
            "NEW": make_bars(n=24 * 40, start="2024-03-21", seed=4),
        }
    )
    common = [
        "data=csv",
        f"data.path={directory}",
        "gates.min_history_days=30",
        "gates.min_daily_quote_volume=null",
    ]
    strict, _ = train(per_coin_config(tmp_path / "a", *common))
    assert strict["per_coin"]["jobs"]["NEW"]["status"] == "skipped"
    assert "min_history" in strict["per_coin"]["jobs"]["NEW"]["reason"]
    whole, _ = train(per_coin_config(tmp_path / "b", *common, "gates.until=null"))
    assert "gates" not in whole["per_coin"]["jobs"]["NEW"]["reason"]  # passed its gates


def roster_with(tmp_path, entry: dict | None = None, raw: bytes | None = None):
    root = tmp_path / "art"
    (root / "champions").mkdir(parents=True)
    path = root / "champions" / "roster.json"
    if raw is None:
        good = {
            "symbol": "BTC",
            "model_path": "models/BTC/baseline_20240101",
            "rank": 1,
            "spread_bps": 1.0,
            "fee_bps": 7.5,
            "avg_slip_bps": 0.5,
            "last_7d_net_bps": 0.0,
            "trade_ok": True,
            "reasons": [],
        }
        raw = json.dumps(
            {"generated_at": "x", "run_id": "r", "entries": [{**good, **(entry or {})}]}
        ).encode()
    path.write_bytes(raw)
    return root, path


@pytest.mark.parametrize(
    ("case", "entry", "raw", "message"),
    [
        ("truncated", None, b'{"generated_at": "x", "entr', "not valid JSON"),
        ("not json", None, b"\x00\x01binary", "not valid JSON"),
        ("schema", {"trade_ok": "yes"}, None, "schema violation at entries/0/trade_ok"),
        ("dotdot", {"model_path": "models/../../etc"}, None, "schema violation"),
        ("reasons", {"reasons": "none"}, None, "schema violation at entries/0/reasons"),
        ("v1..2", {"model_path": "models/BTC/baseline_v1..2"}, None, "schema violation"),
    ],
)
def test_roster_reader_bad_inputs_are_one_line_naming_the_file(
    tmp_path, capsys, case, entry, raw, message
):
    root, path = roster_with(tmp_path, entry, raw)
    assert roster_main(["top", "3", "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and message in err, err


def test_roster_reader_missing_root_and_bad_n(tmp_path, capsys):
    assert roster_main(["top", "3", "--root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere" in err and "does not exist" in err
    root, _ = roster_with(tmp_path)
    for n in ("0", "-1"):
        with pytest.raises(SystemExit) as exit_info:
            roster_main(["top", n, "--root", str(root)])
        assert exit_info.value.code == 2
        assert "N must be >= 1" in capsys.readouterr().err
    assert roster_main(["top", "1", "--json", "--root", str(root)]) == 0
    assert [e["symbol"] for e in json.loads(capsys.readouterr().out)] == ["BTC"]


def test_roster_entry_reasons():
    costs = {"base_spread_bps": 1.0, "fee_bps": 7.5, "expected_round_trip_bps": 20.0}
    window = ["2024-01-01", "2024-01-31"]
    champion = {
        "model_path": "models/X/baseline_1",
        "window": window,
        "metrics": {"n_trades": 12, "val_trades": 30, "net_pnl_bps": 50.0, "sharpe": 1.0},
    }
    common = {
        "costs": costs,
        "test_window": window,
        "gate_codes": [],
        "job_status": "completed",
        "job_reason": "",
        "daily_quote_volume": 1e7,
        "max_round_trip_bps": 40.0,
        "min_trades": 10,
    }
    ok = roster_entry("X", champion=champion, **common)
    assert ok["trade_ok"] and ok["reasons"] == [] and ok["n_trades"] == 12
    assert roster_entry("X", champion=None, **common)["reasons"] == ["no_champion"]
    silent = {"n_trades": 0, "val_trades": 0, "net_pnl_bps": None}
    lost = roster_entry("X", champion=None, **common, run_metrics=silent)
    assert lost["reasons"] == ["no_champion", "no_trades_in_test", "no_edge_on_validation"]
    assert lost["n_trades"] == 0 and lost["model_path"] is None
    quiet = {**champion, "metrics": {**champion["metrics"], "n_trades": 0, "val_trades": 0}}
    expensive = {**common, "costs": {**costs, "expected_round_trip_bps": 55.0}}
    assert roster_entry("X", champion=quiet, **expensive)["reasons"] == [
        "no_trades_in_test",
        "no_edge_on_validation",
        "cost_above_limit",
    ]
    stale = {**champion, "window": ["2023-01-01", "2023-01-31"]}
    assert roster_entry("X", champion=stale, **common)["reasons"] == ["champion_not_rescored"]
    failed = {**common, "job_status": "failed", "job_reason": "ValueError: boom\ntraceback"}
    assert roster_entry("X", champion=None, **failed)["reasons"] == [
        "failed:ValueError: boom",
        "no_champion",
    ]
    gated = {**common, "job_status": "skipped", "gate_codes": ["min_history"]}
    assert roster_entry("X", champion=None, **gated)["reasons"] == [
        "gate:min_history",
        "no_champion",
    ]
    entries = rank_entries(
        [
            roster_entry("A", champion=None, **common),
            roster_entry("B", champion=champion, **common),
        ]
    )
    assert [(e["symbol"], e["rank"]) for e in entries] == [("B", 1), ("A", 2)]


def test_the_champions_own_horizon_decides_what_is_out_of_sample(first_run, tmp_path):
    """A champion whose checkpoint says its labels ran 100,000 bars on cannot be scored."""
    tmp, _ = first_run
    shutil.copytree(tmp / "artifacts", tmp_path / "artifacts")
    store = LocalStore(tmp_path / "artifacts")
    pointers = [k for k in store.list("champions") if "roster" not in k]
    for key in pointers:
        prefix = store.read_json(key)["model_path"]
        description = store.read_json(f"{prefix}/checkpoint.json")
        description["config"]["labels"]["horizon"] = 100_000  # past any window of the run
        checkpoint = json.dumps(description).encode()
        store.write_bytes(f"{prefix}/checkpoint.json", checkpoint)
        # a version as written (its manifest agrees), so that the signal service loads it
        manifest = store.read_json(f"{prefix}/manifest.json")
        manifest["files"]["checkpoint.json"]["content_hash"] = content_hash(checkpoint)
        store.write_bytes(f"{prefix}/manifest.json", json.dumps(manifest).encode())
    before = {k: store.read_json(k)["model_path"] for k in pointers}
    # a window of its own: other tests re-point the shared run's champions to theirs
    later, _ = train(per_coin_config(tmp_path, "pipeline.run_id=20240109", "pipeline.test_days=12"))
    for key, model_path in before.items():
        job = later["per_coin"]["jobs"][key.split("/")[-1].removesuffix(".json")]
        assert "past this whole test window" in job["champion_note"]
        assert store.read_json(key)["model_path"] == model_path  # kept, not replaced


def test_ticks_are_the_first_source_of_costs(first_run, tmp_path):
    """BTC's trades pay 3 bps in the calibration window: that is its spread, method ticks."""
    _, summary = first_run
    test_start = pd.Timestamp(summary["per_coin"]["test_window"][0])
    n = 5000
    received = (test_start - pd.Timedelta(days=2)).value + np.arange(n) * 1_000_000_000
    mid = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 1e-4, n)))
    sold = np.arange(n) % 2 == 0
    ticks = tmp_path / "ticks"
    ticks.mkdir()
    pd.DataFrame({"local_ts_ns": received, "bid": mid * 0.9999, "ask": mid * 1.0001}).to_csv(
        ticks / "spot_btcusdt_bbo.csv.gz", index=False
    )
    price = mid * (1 + np.where(sold, -1, 1) * 1.5e-4)
    pd.DataFrame(
        {"local_ts_ns": received + 50_000_000, "price": price, "is_buyer_maker": sold}
    ).to_csv(ticks / "spot_btcusdt_trades.csv.gz", index=False)
    train(per_coin_config(tmp_path, f"pipeline.costs.ticks_dir={ticks}"))
    store = LocalStore(tmp_path / "artifacts")
    btc = store.read_json("models/BTC/baseline_20240101/costs.json")
    assert btc["method"] == "ticks" and btc["base_spread_bps"] == pytest.approx(3.0, rel=1e-3)
    assert pd.Timestamp(btc["window_end"]) < test_start
    eth = store.read_json("models/ETH/baseline_20240101/costs.json")
    assert eth["method"] == "quoted"


def test_stacked_batches_skip_groups_without_samples():
    """A coin with no training bars (listed inside the test window) has no row in a batch."""
    group = torch.tensor([0, 0, 2, 2, 2])  # group 1 has no samples
    sampler = StackedGroupSampler(group, per_group=2)
    batches = list(sampler)
    assert [tuple(b.shape) for b in batches] == [(2, 2), (2, 2)] and len(sampler) == 2
    assert [group[b[:, 0]].tolist() for b in batches] == [[0, 2], [0, 2]]
    assert sorted(set(int(i) for b in batches for i in b.flatten())) == list(range(5))
