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


def test_the_table_names_the_folds_a_passing_coin_is_out_of():
    """Gates measured per fold: a coin that passes for fold 1 but whose gap (after it)
    keeps it out of folds 2 and 3 is not just "pass" on the console."""
    from huracan.data.gates import apply_fold_gates

    n = 24 * 200
    close = np.full((n, 3), 100.0) * np.exp(np.cumsum(np.full((n, 3), 1e-4), axis=0))
    volume = np.full((n, 3), 1e6)
    close[24 * 90 : 24 * 100, 1] = np.nan  # a 10-day gap in S1 after fold 1's start
    panel = panel_of(close, volume)
    starts = [panel.timestamps[24 * k] for k in (60, 120, 180)]
    limits = GateThresholds(min_history_days=30, min_daily_quote_volume=None)
    report = apply_fold_gates(
        panel, starts, limits, apply_gates(panel.between(None, starts[0]), limits)
    )
    rows = {line.split()[0]: line for line in report.table().splitlines()[2:]}
    assert rows["S1"].endswith("pass, out of fold 2, 3/3 (coverage, longest_gap)")
    assert rows["S0"].endswith("pass") and rows["S2"].endswith("pass")


def test_a_coin_left_without_a_cluster_is_out_of_that_fold_in_gates_json():
    """The clusterer leaves a coin with a constant price (no variance) without a cluster:
    no head, no trade. gates.json's universe and the fold's console line say so."""
    from huracan.data import GateReport
    from huracan.pipelines.hierarchical.run import without_cluster

    gates = GateReport()
    for symbol in ("BTC", "LINK"):
        gates.skip_reasons[symbol] = []
        gates.fold_reasons[symbol] = [[], [], []]
    note = without_cluster({"LINK": "no variance over the training window"}, 1, 3, gates)
    assert note == " (LINK without a cluster)"
    entry = gates.universe_entry("LINK")
    assert entry["folds"] == [0, 2]
    assert entry["out"] == [
        {
            "fold": 1,
            "reasons": [
                {
                    "code": "no_cluster",
                    "message": "no cluster, so no head, in fold 2/3: no variance over the "
                    "training window",
                }
            ],
        }
    ]
    assert gates.universe_entry("BTC")["folds"] == [0, 1, 2]
    assert without_cluster({}, 0, 3, gates) == ""
    assert "pass, out of fold 2/3 (no_cluster)" in gates.table()
    for fold in (0, 2):  # out of every fold: said, not a plain "pass"
        without_cluster({"LINK": "no variance"}, fold, 3, gates)
    assert "pass, out of every fold (no_cluster)" in gates.table()
    assert without_cluster({"BTC": "thin"}, 0, 3, None) == " (BTC without a cluster)"
    assert gates.universe_entry("BTC")["folds"] == [0, 1, 2]  # not recorded without gates
