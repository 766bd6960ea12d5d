"""A store no name can break, pointers that prove their coin, live tools that fail closed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, make_bars
from test_per_coin import per_coin_config, roster_with

from huracan.data import CsvSource
from huracan.data.files import scan_directory
from huracan.doctor import main as doctor
from huracan.errors import ConfigError, DataError
from huracan.names import MAX_SEGMENT, check_segment
from huracan.registry.artifacts import champion_key
from huracan.registry.champions import challenge, usable_champion
from huracan.registry.roster import ROSTER_KEY, roster_entry
from huracan.roster import main as roster_main
from huracan.run import train
from huracan.serve import Fleet, ServeConfig
from huracan.signal import main as signal
from huracan.store import LocalStore
from huracan.store.lock import read_lock

VERSION = "baseline_20240101"  # per_coin_config's run id


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A per-coin root where every coin has a champion (copied by each test)."""
    tmp = tmp_path_factory.mktemp("live_inputs")
    _, objects = train(per_coin_config(tmp, "pipeline.champion_min_trades=0"))
    return tmp / "artifacts", objects["panel"]


@pytest.fixture
def root(trained, tmp_path):
    shutil.copytree(trained[0], tmp_path / "artifacts")
    return tmp_path / "artifacts"


def an_alt(panel) -> str:
    return next(s for s in panel.symbols if s not in ("BTC", "ETH", "BNB"))


def write_bars(panel, folder, spoil: str | None = None):
    """The panel as ``<SYMBOL>.csv`` files; ``spoil``'s last close emptied."""
    folder.mkdir(exist_ok=True)
    for symbol in panel.symbols:
        frame = panel.frame(symbol).reset_index()
        frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        if symbol == spoil:
            frame.loc[len(frame) - 1, "close"] = np.nan
        frame.to_csv(folder / f"{symbol}.csv", index=False)
    return folder


def one_line_error(capsys, code: int) -> str:
    out = capsys.readouterr()
    assert code == 2, out
    assert out.err.count("\n") == 1 and out.err.startswith("error: "), out.err
    assert "Traceback" not in out.err + out.out
    return out.err


# --- names --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("v1..2", "holds '..'"),
        ("..", "holds '..'"),
        ("a/b", "separator"),
        ("a\\b", "separator"),
        ("a\x07b", "control character"),
        ("x" * (MAX_SEGMENT + 1), f"longer than {MAX_SEGMENT}"),
        (".hidden", "not 1 or more"),
        ("", "not 1 or more"),
    ],
)
def test_one_rule_for_every_name_that_becomes_a_folder(name, why):
    with pytest.raises(ConfigError, match=f"pipeline.run_id .* is not a safe name: it .*{why}"):
        check_segment(name, "pipeline.run_id")


def test_safe_names_pass():
    for name in ("20240101", "baseline_v1.2", "mechanic_20240101T1200", "1INCH", "x" * MAX_SEGMENT):
        assert check_segment(name, "name") == name


def test_run_id_with_two_dots_is_refused_before_the_data_is_read(tmp_path):
    with pytest.raises(ConfigError, match=r"pipeline.run_id 'v1..2' is not a safe name"):
        train(per_coin_config(tmp_path, "pipeline.run_id='v1..2'"))
    assert not (tmp_path / "run" / "gates.json").exists()
    assert not (tmp_path / "artifacts").exists()


def test_a_file_name_with_two_dots_gives_no_symbol(tmp_path):
    for symbol in ("BTC", "ETH"):
        make_bars(seed=1).to_csv(tmp_path / f"{symbol}.csv", index=False)
    make_bars(seed=2).to_csv(tmp_path / "XRP..X.csv.gz", index=False)
    found, problems = scan_directory(tmp_path)
    assert sorted(found) == ["BTC", "ETH"]
    [problem] = problems.values()
    assert "XRP..X.csv.gz: unsafe file name" in str(problem) and "holds '..'" in str(problem)
    with pytest.raises(DataError, match="unsafe file name"):
        CsvSource(str(tmp_path)).load()
    assert CsvSource(str(tmp_path), on_error="skip").load().symbols == ["BTC", "ETH"]


def break_with_dots(store: LocalStore, symbols: list[str]) -> None:
    """The audit's broken root: versions and pointers of run v1..2, its roster rejected."""
    for symbol in symbols:
        prefix = f"models/{symbol}/{VERSION}"
        for key in store.list(prefix):
            store.write_bytes(key.replace(VERSION, "baseline_v1..2"), store.read_bytes(key))
        pointer = store.read_json(champion_key(symbol))
        store.write_json(champion_key(symbol), pointer | {"model_path": prefix + "..2"})
    store.write_json("runs/v1..2/inputs.json", {"run_id": "v1..2"})
    roster = store.read_json(ROSTER_KEY)
    for entry in roster["entries"]:
        entry["model_path"] = f"models/{entry['symbol']}/baseline_v1..2"
    store.write_json(ROSTER_KEY, roster)


def test_doctor_moves_a_broken_root_aside_and_the_next_run_trains(trained, tmp_path, capsys):
    tmp_source, panel = trained
    shutil.copytree(tmp_source, tmp_path / "artifacts")
    store = LocalStore(tmp_path / "artifacts")
    symbols = panel.symbols
    break_with_dots(store, symbols)
    bad_pointer = store.read_json(champion_key(symbols[0]))["model_path"]
    assert bad_pointer.endswith("..2")
    kept = {k: store.read_bytes(k) for k in store.list(f"models/{symbols[0]}/{VERSION}")}
    broken_files = [k for k in store.list("models") if "baseline_v1..2" in k]
    with pytest.raises(
        DataError, match=r"roster.json: breaks the roster schema at entries/\d+/model_path"
    ):
        Fleet.load(store)

    assert doctor([str(store.root)]) == 1
    report = capsys.readouterr().out
    for symbol in symbols:
        assert f"broken: models/{symbol}/baseline_v1..2: model version with an unsafe name" in (
            report
        )
        assert f"broken: champions/{symbol}.json: model_path" in report
    assert "broken: runs/v1..2: run with an unsafe run id" in report
    assert f"broken: {ROSTER_KEY}: breaks the roster schema" in report

    assert doctor([str(store.root), "--fix"]) == 0
    moved = [line for line in capsys.readouterr().out.splitlines() if line.startswith("moved: ")]
    assert f"moved: {champion_key(symbols[0])} -> quarantine/" in "\n".join(moved)
    # the versions' files, the pointers, the run's file and the roster
    assert len(moved) == len(broken_files) + len(symbols) + 2
    assert doctor([str(store.root)]) == 0
    assert "nothing wrong" in capsys.readouterr().out
    assert {k: store.read_bytes(k) for k in kept} == kept  # the good version untouched
    assert read_lock(store).get("released_at")  # the lock is marked released, never deleted

    # the next run on the repaired root trains and writes a roster the schema accepts
    train(per_coin_config(tmp_path, "pipeline.champion_min_trades=0", "pipeline.run_id=v2"))
    fleet = Fleet.load(store, config=ServeConfig(expire_hours=None))
    assert sorted(fleet.models) == sorted(symbols) and not fleet.unusable


# --- pointers prove their coin ---------------------------------------------------------------
def test_a_pointer_to_another_coins_version_is_refused(trained, root):
    _, panel = trained
    store, coin = LocalStore(root), an_alt(panel)
    pointer = store.read_json(champion_key(coin))
    store.write_json(champion_key(coin), pointer | {"model_path": f"models/BTC/{VERSION}"})
    fleet = Fleet.load(store, config=ServeConfig(expire_hours=None))
    assert coin not in fleet.models and sorted(fleet.models) == sorted(set(panel.symbols) - {coin})
    assert f"points at models/BTC/{VERSION}, a version of BTC, not {coin}" in fleet.unusable[coin]
    rows = fleet.signals(panel).set_index("symbol")
    assert not rows.loc[coin, "trade"] and "a version of BTC" in rows.loc[coin, "reasons"][0]
    assert rows.drop(index=coin)["probability"].notna().all()  # the others still served

    champion, problem = usable_champion(store, coin)
    assert champion is None and "a version of BTC" in problem
    entry = roster_entry(
        coin,
        champion=None,
        costs={},
        test_window=["a", "b"],
        gate_codes=[],
        job_status="completed",
        job_reason="",
        daily_quote_volume=None,
        max_round_trip_bps=40,
        min_trades=0,
        champion_problem=problem,
    )
    assert not entry["trade_ok"] and entry["model_path"] is None
    assert entry["reasons"][0].startswith("champion_unusable:champions/")

    # training: another coin's pointer is never scored or kept, the coin's own model wins
    def never(_):
        raise AssertionError("another coin's model must not be rescored")

    metrics = {"sharpe": 1.0, "net_pnl_bps": 10.0, "n_trades": 5, "window": ["a", "b"]}
    result = challenge(store, coin, f"models/{coin}/{VERSION}", ["a", "b"], metrics, {}, 0, never)
    assert result["replaced"] and "a version of BTC" in result["note"]
    assert store.read_json(champion_key(coin))["model_path"] == f"models/{coin}/{VERSION}"


def test_a_version_copied_under_another_coin_is_refused_by_its_manifest(trained, root):
    _, panel = trained
    store, coin = LocalStore(root), an_alt(panel)
    for key in store.list(f"models/BTC/{VERSION}"):
        store.write_bytes(key.replace("models/BTC/", f"models/{coin}/copy_"), store.read_bytes(key))
    pointer = store.read_json(champion_key(coin))
    store.write_json(champion_key(coin), pointer | {"model_path": f"models/{coin}/copy_{VERSION}"})
    fleet = Fleet.load(store)
    assert f"manifest.json names symbol 'BTC', not {coin}" in fleet.unusable[coin]


# --- the signal CLI fails closed -------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "said"),
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: "", "not valid JSON"),
        (lambda text: "\x89PNG\x00\x01", "not valid JSON"),
        (lambda text: json.dumps({"entries": []}), "'generated_at' is a required property"),
        (
            lambda text: text.replace('"trade_ok": true', '"trade_ok": "yes"').replace(
                '"trade_ok": false', '"trade_ok": "no"'
            ),
            "trade_ok",
        ),
        (
            lambda text: json.dumps(
                json.loads(text) | {"entries": json.loads(text)["entries"] * 2}
            ),
            "more than once",
        ),
    ],
    ids=["truncated", "empty", "binary", "schema", "field type", "duplicate"],
)
def test_a_malformed_roster_is_one_line_and_exit_2(root, tmp_path, capsys, content, said):
    path = root / ROSTER_KEY
    path.write_text(content(path.read_text()), errors="surrogateescape")
    code = signal(["--root", str(root), "--data", str(tmp_path)])
    message = one_line_error(capsys, code)
    assert "champions/roster.json" in message and said in message


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("[1, 2]", "a JSON list, not a pointer object"),
        ('{"model_path": 3}', "model_path 3 is not models/<SYMBOL>/<version>"),
        ('{"model_path": "models/X/../BTC/v"}', "is not models/<SYMBOL>/<version>"),
        ('{"model_pa', "not a JSON pointer"),
    ],
)
def test_a_malformed_pointer_is_one_line_and_exit_2(trained, root, tmp_path, capsys, content, said):
    coin = an_alt(trained[1])
    (root / champion_key(coin)).write_text(content)
    code = signal(["--root", str(root), "--data", str(tmp_path)])
    message = one_line_error(capsys, code)
    assert f"champions/{coin}.json" in message and said in message


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--top", "0"], "top must be >= 1"),
        (["--top", "-1"], "top must be >= 1"),
        (["--top", "abc"], "invalid int value"),
        (["--expire-hours", "-5"], "expire_hours must be >= 0"),
        (["--expire-hours", "nan"], "expire_hours must be >= 0"),
        (["--max-psi", "nan"], "max_psi must be finite and > 0"),
        (["--max-psi", "inf"], "max_psi must be finite and > 0"),
        (["--max-psi", "0"], "max_psi must be finite and > 0"),
        (["--drift-action", "stop"], "invalid choice"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(root, tmp_path, capsys, flags, said):
    with pytest.raises(SystemExit) as exited:
        code = signal(["--root", str(root), "--data", str(tmp_path), *flags])
        raise SystemExit(code)
    message = one_line_error(capsys, exited.value.code)
    assert said in message


def test_a_malformed_roster_through_the_real_command(root, tmp_path):
    (root / ROSTER_KEY).write_text('{"generated_at": "x", "run_id": "v", "entries": [')
    done = subprocess.run(
        [sys.executable, "-m", "huracan.signal", "--root", str(root), "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "roster.json: not valid JSON" in done.stderr


def test_a_bad_last_bar_stops_its_coin_only(trained, root, tmp_path, capsys):
    _, panel = trained
    coin = an_alt(panel)
    folder = write_bars(panel, tmp_path / "bars", spoil=coin)
    out = tmp_path / "signals.json"
    flags = ["--expire-hours", "0", "--out", str(out)]
    assert signal(["--root", str(root), "--data", str(folder), *flags]) == 0, capsys.readouterr()
    rows = {row["symbol"]: row for row in json.loads(out.read_text())["signals"]}
    assert rows[coin]["trade"] is False and rows[coin]["probability"] is None
    assert rows[coin]["reasons"][0].startswith(f"bad bars: {folder / coin}.csv, row ")
    assert "close is empty" in rows[coin]["reasons"][0]
    others = [row for symbol, row in rows.items() if symbol != coin]
    assert others and all(row["probability"] is not None for row in others)
    last = panel.timestamps[-1].isoformat()
    assert all(row["bar_time"] == last for row in rows.values())
    # a bad bar of a market factor member: no coin trades, each says which file and row
    folder = write_bars(panel, tmp_path / "member", spoil="BTC")
    assert signal(["--root", str(root), "--data", str(folder), *flags]) == 0, capsys.readouterr()
    rows = json.loads(out.read_text())["signals"]
    assert not any(row["trade"] for row in rows)
    assert all(f"{folder / 'BTC'}.csv, row " in row["reasons"][0] for row in rows)


def test_a_bar_in_progress_is_never_taken_as_closed(trained):
    tmp_source, panel = trained
    fleet = Fleet.load(tmp_source, config=ServeConfig(expire_hours=None))
    last, before = panel.timestamps[-1], panel.timestamps[-2]
    for now, latest in [
        (last + pd.Timedelta("59min"), before),  # the last bar is still open
        (last + pd.Timedelta("1h"), last),  # it closed at the turn of the hour
        (last - pd.Timedelta("2h"), panel.timestamps[-4]),  # bars opening after now: future
    ]:
        rows = fleet.signals(panel, now=now)
        assert (rows["bar_time"] == latest).all(), now
    closed = fleet.signals(panel.between(None, last), now=last + pd.Timedelta("1h"))
    pd.testing.assert_frame_equal(fleet.signals(panel, now=last + pd.Timedelta("59min")), closed)
    with pytest.raises(DataError, match="no bar of 1h has closed"):
        fleet.signals(panel, now=panel.timestamps[0])


def test_the_roster_reader_refuses_a_duplicated_entry(tmp_path, capsys):
    root, path = roster_with(tmp_path)
    roster = json.loads(path.read_text())
    path.write_text(json.dumps(roster | {"entries": roster["entries"] * 2}))
    assert roster_main(["top", "3", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: lists BTC more than once" in err
