"""The entry point: the real config composed with Hydra, and the train.py command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, make_bars
from hydra import compose, initialize_config_dir

from huracan.errors import DataError
from huracan.run import train


def config(tmp_path, *overrides):
    with initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"):
        return compose("config", overrides=[f"+output_dir={tmp_path}", "pipeline=data", *overrides])


def test_default_run_writes_gates_and_summary(tmp_path):
    summary, objects = train(config(tmp_path, "data.years=0.3"))
    assert objects["panel"].n_assets == 12
    gates = json.loads((tmp_path / "gates.json").read_text())
    assert set(gates) == set(objects["panel"].symbols)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["data"]["n_assets"] == 12 and "data" in written["timings_s"]
    assert summary["config"]["data"]["_target_"] == "huracan.data.SyntheticMarket"


def test_skipped_symbols_reach_gates_json(tmp_path, write_bars):
    bad = make_bars(n=24 * 70, seed=1)
    bad.loc[3, "high"] = 0.5
    directory = write_bars(
        {"BTC": make_bars(n=24 * 70), "ETH": bad, "SOL": make_bars(n=24 * 10, seed=2)}
    )
    out = tmp_path / "run"
    with pytest.raises(DataError, match="1 symbols passed the gates, at least 2 needed"):
        train(
            config(
                out,
                "data=csv",
                f"data.path={directory}",
                "data.on_error=skip",
                "gates.min_daily_quote_volume=null",
            )
        )
    gates = json.loads((out / "gates.json").read_text())
    assert gates["BTC"]["passed"]
    assert gates["ETH"]["skip_reasons"][0]["code"] == "bad_rows:high_below_low"
    assert gates["SOL"]["skip_reasons"][0]["code"] == "min_history"


def test_universe_without_dominant_symbols(tmp_path, write_bars):
    directory = write_bars({"SOL": make_bars(n=24 * 70), "ADA": make_bars(n=24 * 70, seed=1)})
    cfg = config(
        tmp_path / "run", "data=csv", f"data.path={directory}", "gates.min_daily_quote_volume=null"
    )
    with pytest.raises(DataError, match=r"none of the dominant symbols \['BTC', 'ETH'\]"):
        train(cfg)


def test_train_py_command_line(tmp_path, binance_1h):
    run = subprocess.run(
        [
            sys.executable,
            "train.py",
            "data=csv",
            f"data.path={binance_1h}",
            "data.symbols=[BTC,ETH,SOL]",
            "pipeline=data",
            "data.timeframe=1d",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "gates.json").exists() and (tmp_path / "summary.json").exists()
    bad = subprocess.run(
        [
            sys.executable,
            "train.py",
            "data=csv",
            "data.path=/nonexistent",
            f"hydra.run.dir={tmp_path / 'bad'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "DataError: /nonexistent: data directory does not exist" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr
