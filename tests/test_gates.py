"""Data gates: each limit produces its machine-readable skip reason."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from huracan.data import GateThresholds, Panel, apply_gates
from huracan.data.gates import longest_run


def panel_of(close: np.ndarray, volume: np.ndarray, spread=None, filled=None) -> Panel:
    n_bars, n = close.shape
    bars = {
        "open": close,
        "high": close * 1.01,
        "low": close * 0.99,
        "close": close,
        "volume": volume,
    }
    if spread is not None:
        bars["spread_bps"] = spread
    return Panel(
        pd.date_range("2024-01-01", periods=n_bars, freq="1h", tz="UTC"),
        [f"S{j}" for j in range(n)],
        bars,
        "1h",
        np.zeros((n_bars, n), bool) if filled is None else filled,
    )


def test_each_gate_has_its_reason(tmp_path):
    n_bars = 24 * 100
    close = np.full((n_bars, 6), 100.0)
    volume = np.full((n_bars, 6), 1000.0)  # 100k quote per bar, 2.4M a day
    spread = np.full((n_bars, 6), 2.0)
    close[: n_bars - 24 * 30, 0] = np.nan  # S0: 30 days of history
    close[100:160, 1] = np.nan  # S1: a 60-bar gap (2.5 % missing)
    close[::10, 2] = np.nan  # S2: 10 % missing in 1-bar gaps
    volume[:, 3] = 1.0  # S3: 2.4k a day
    spread[:, 4] = 80.0  # S4: wide spread
    volume[::5, 5] = 0.0  # S5: 20 % zero-volume bars
    report = apply_gates(panel_of(close, volume, spread), GateThresholds())
    codes = {s: [r["code"] for r in reasons] for s, reasons in report.skip_reasons.items()}
    assert codes == {
        "S0": ["min_history"],
        "S1": ["longest_gap"],
        "S2": ["coverage"],
        "S3": ["min_volume"],
        "S4": ["max_spread"],
        "S5": ["zero_volume"],
    }
    reason = report.skip_reasons["S4"][0]
    assert reason["value"] == 80.0 and reason["threshold"] == 50.0
    report.write(tmp_path / "gates.json")
    written = json.loads((tmp_path / "gates.json").read_text())
    assert written["S3"]["passed"] is False
    assert written["S3"]["metrics"]["daily_quote_volume"] == 2400.0
    assert "min_volume" in report.table()


def test_limits_can_be_switched_off():
    close = np.full((24 * 10, 1), 100.0)
    volume = np.ones_like(close)
    off = GateThresholds(None, None, None, None, None, None)
    assert apply_gates(panel_of(close, volume), off).passed == ["S0"]
    assert apply_gates(panel_of(close, volume), GateThresholds()).skipped == ["S0"]


def test_filled_bars_count_as_missing():
    close = np.full((24 * 100, 1), 100.0)
    filled = np.zeros_like(close, bool)
    filled[10:13] = True
    report = apply_gates(panel_of(close, np.full_like(close, 1e4), filled=filled), GateThresholds())
    assert report.metrics["S0"]["longest_gap_bars"] == 3


def test_longest_run():
    mask = np.array([[0, 1], [1, 1], [1, 0], [1, 1], [0, 1]], bool)
    np.testing.assert_array_equal(longest_run(mask), [3, 2])
