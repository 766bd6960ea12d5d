"""What a per-coin run refuses before any work: unsafe run ids, an unreachable or
unauthorised store, credentials on the command line."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import dropbox.dropbox_client
import numpy as np
import pandas as pd
import pytest
import requests
from conftest import ROOT
from fake_dropbox import FakeDropboxAdapter
from test_per_coin_resume import config

from huracan.credentials import refuse_secrets
from huracan.errors import ConfigError
from huracan.run import train
from huracan.store import StoreError


@pytest.mark.parametrize("run_id", ["../escape", "a/b", ".hidden", "x y", "a\\\\b", "v1..2"])
def test_unsafe_run_ids_are_refused_before_the_data_is_read(tmp_path, run_id):
    with pytest.raises(ConfigError, match="pipeline.run_id .* is not a safe name"):
        train(config(tmp_path, f"pipeline.run_id='{run_id}'"))
    assert not (tmp_path / "run" / "gates.json").exists()
    assert not (tmp_path / "artifacts").exists()


def dropbox_run(tmp_path, monkeypatch, token: str) -> FakeDropboxAdapter:
    adapter = FakeDropboxAdapter()

    def create_session(*args, **kwargs):
        session = requests.Session()
        session.mount("https://", adapter)
        return session

    monkeypatch.setattr(dropbox.dropbox_client, "create_session", create_session)
    monkeypatch.setenv("DROPBOX_ACCESS_TOKEN", token)
    monkeypatch.delenv("DROPBOX_REFRESH_TOKEN", raising=False)
    return adapter


def dropbox_config(tmp_path):
    return config(
        tmp_path, "store=dropbox", "store.root=/huracan", "store.max_retries=1", "store.backoff_s=0"
    )


def test_rejected_dropbox_credentials_stop_the_run_before_the_data(tmp_path, monkeypatch):
    adapter = dropbox_run(tmp_path, monkeypatch, "expired-token")
    with pytest.raises(ConfigError, match="Dropbox authentication failed") as err:
        train(dropbox_config(tmp_path))
    assert "expired-token" not in str(err.value)
    assert not (tmp_path / "run" / "gates.json").exists() and not adapter.files


def test_unreachable_dropbox_stops_the_run_before_the_data(tmp_path, monkeypatch):
    adapter = dropbox_run(tmp_path, monkeypatch, "test-token")
    adapter.drop_next(100)
    with pytest.raises(StoreError, match="failed after 2 attempts: ConnectionError"):
        train(dropbox_config(tmp_path))
    assert not (tmp_path / "run" / "gates.json").exists() and not adapter.files


@pytest.mark.parametrize(
    "override",
    [
        "+store.access_token=sl.s3cr3t",
        "++store.refresh_token=s3cr3t",
        "+store.app_secret=s3cr3t",
        "+data.api_key=s3cr3t",
        "~store.password=s3cr3t",
    ],
)
def test_credentials_on_the_command_line_are_refused(override):
    with pytest.raises(ConfigError) as err:
        refuse_secrets(["pipeline=per_coin", override])
    assert "s3cr3t" not in str(err.value) and "never config values" in str(err.value)


def test_ordinary_overrides_pass():
    refuse_secrets(["pipeline=per_coin", "data.symbols=[BTC,ETH]", "store.root=/x", "-m"])
    refuse_secrets(["hydra.job.env_set.TOKEN_FILE=/x"])  # Hydra's own settings are its own


def test_train_py_refuses_a_token_before_hydra_saves_the_config(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "train.py",
            "pipeline=per_coin",
            "+store.access_token=sl.SECRET-VALUE",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    output = run.stdout + run.stderr
    assert output.count("\n") == 1 and "ConfigError: store.access_token" in output
    assert "SECRET-VALUE" not in output and "Traceback" not in output
    assert not (tmp_path / "run").exists()  # no .hydra/config.yaml, no overrides.yaml


def test_a_coin_without_a_job_says_which_window_it_lacks_and_why():
    from huracan.pipelines.per_coin.history import history_gap

    stamps = pd.date_range("2024-01-01", periods=100, freq="1D", tz="UTC")
    close = np.ones((100, 4))
    close[70:, 1] = np.nan  # its file ends before the test window
    close[:95, 2] = np.nan  # listed after the validation window
    valid = np.isfinite(close)
    valid[:, 3] = False  # every bar, but never every input
    fold = SimpleNamespace(val=np.arange(60, 80), test=np.arange(80, 100))
    flat = inputs_of(np.isfinite(close)[:, :, None], ["ret_1"])
    split = SimpleNamespace(fold=fold, valid=valid, data=flat)
    panel = SimpleNamespace(close=close, timestamps=stamps, timeframe="1d", bar_seconds=86400.0)
    assert history_gap(panel, split, 0) == ""
    assert history_gap(panel, split, 1) == (
        "no test bars: its last bar is 2024-03-10 00:00, the window starts 2024-03-21 00:00"
    )
    assert history_gap(panel, split, 2) == (
        "no validation bars: its first bar is 2024-04-05 00:00, after the window"
    )
    # every input known in time: the label or the head is what it lacks, not a warm-up
    assert "no label or head" in history_gap(panel, split, 3)
    split.fold.val = np.arange(0)  # validation.val_fraction=0: a reason, not an IndexError
    assert history_gap(panel, split, 0) == "no validation window (validation.val_fraction is 0)"


def inputs_of(known: np.ndarray, names: list[str], fracdiff=None):
    """A fold's inputs where ``known`` (T, N, F) is True, NaN elsewhere, for history_gap."""
    return SimpleNamespace(
        clusters=SimpleNamespace(tree=None, excluded={}),
        features=np.where(known, 0.0, np.nan),
        across=None,
        ffd=None,
        channels=None,
        feature_names=names,
        channel_names=[],
        fracdiff=fracdiff,
    )


@pytest.mark.parametrize(
    ("timeframe", "unit"), [("1d", "daily bars"), ("4h", "4h bars"), ("1h", "hourly bars")]
)
def test_a_coin_short_of_warm_up_is_told_what_it_has_and_needs_in_its_bars(timeframe, unit):
    """Listed at bar 50, its volume_z known from its 40th bar on: 30 bars up to the
    validation window's end (row 79), 40 needed (a warm-up of 39, then one bar)."""
    from huracan.pipelines.per_coin.history import history_gap

    stamps = pd.date_range("2024-01-01", periods=100, freq=timeframe, tz="UTC")
    close = np.ones((100, 1))
    close[:50] = np.nan
    known = np.ones((100, 1, 2), bool)
    known[:89, 0, 1] = False  # volume_z, from row 89 on: the 40th bar of its life
    known[:50] = False
    fold = SimpleNamespace(val=np.arange(60, 80), test=np.arange(80, 100), train_times=stamps[:55])
    data = inputs_of(known, ["ret_1", "volume_z"])
    split = SimpleNamespace(fold=fold, valid=np.zeros((100, 1), bool), data=data)
    seconds = pd.Timedelta(timeframe).total_seconds()
    panel = SimpleNamespace(
        close=close, timestamps=stamps, timeframe=timeframe, bar_seconds=seconds
    )
    reason = history_gap(panel, split, 0)
    span = "" if timeframe == "1d" else f" ({39 * seconds / 86400:.3g} days)"
    # what is missing first: the roster keeps a reason's first 200 characters
    assert reason == (
        f"history too short for the features' warm-up: needs 40 {unit}: a warm-up of 39 "
        f"bars{span} for volume_z, then 1 validation bar; has 30, from {stamps[50]:%Y-%m-%d} "
        f"to the validation window's end {stamps[79]:%Y-%m-%d}; so no validation bars with "
        "every input"
    )
    # an FFD order the training window could not fit: its ADF test's bars, then the fit's
    # reason; not a warm-up
    data.ffd, data.feature_names = np.full((100, 1), np.nan), ["ret_1", "volume_z", "fracdiff"]
    data.fracdiff = SimpleNamespace(
        skip_reasons_={0: "too short for the ADF test at d=0.1"}, skip_bars_={0: (5, 191)}
    )
    reason = history_gap(panel, split, 0)
    assert reason.startswith(
        "fracdiff never known: its FFD order's ADF test needs 191 training bars, the coin "
        f"has 5 (training window to {stamps[54]:%Y-%m-%d}: too short for the ADF test at "
        "d=0.1); so no validation bars with every input"
    )
    assert "warm-up" not in reason


def test_a_coin_a_gate_failed_is_told_what_was_measured_against_which_limit():
    from huracan.data import GateReport
    from huracan.pipelines.per_coin.specs import gate_jobs

    gates = GateReport()
    gates.add_skip("IMX", "min_history", "days of history 28 vs limit 60")
    gates.skip_reasons["BTC"] = []  # passed: a job of its own, not a skipped one
    [job] = gate_jobs(gates)
    assert (job.symbol, job.skip_reason) == (
        "IMX",
        "gates: min_history (days of history 28 vs limit 60)",
    )
    gates.add_skip("ARB", "file_error", "")  # no detail: the code alone, no "()"
    assert gate_jobs(gates)[-1].skip_reason == "gates: file_error"
