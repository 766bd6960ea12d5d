"""pipeline=per_coin puts the baselines beside every coin's model: each job scores them on
its own test bars and test costs, the run pools the coins per window with significance,
and the criteria judge the report window."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from huracan import significance
from huracan.coins import CoinJob
from huracan.pipelines.per_coin.report import format_strategies, pooled_report
from huracan.scoring import baseline_metrics, evaluate

HOUR = 3_600_000_000_000


def _job(gross: np.ndarray, cost_bps: float, baselines: dict, report_from: int) -> CoinJob:
    """A coin's job with a test part of hourly bars; the report window opens at bar
    ``report_from``. ``gross`` is (M, 2): returns held 1 and 4 bars."""
    n = len(gross)
    stamps = pd.Timestamp("2024-01-01", tz="UTC").value + np.arange(n, dtype=np.int64) * HOUR
    times = pd.to_datetime(stamps, utc=True)
    return CoinJob(
        symbol="X",
        test={
            "gross": gross,
            "cost_bps": np.full(n, cost_bps),
            "slip_bps": np.zeros(n),
            "timestamps": stamps,
            "y": np.zeros((n, 2)),
            "closes": np.ones(n + 4),
            "grid_row": np.arange(n),
            "baselines": baselines,
        },
        rules={"horizon": 1, "horizons": [1, 4], "bars_per_year": 24 * 365.25},
        meta={
            "test_window": [str(times[0]), str(times[-1])],
            "report_window": [str(times[report_from]), str(times[-1])],
        },
    )


def test_a_baseline_is_scored_at_its_horizon_and_the_models_costs_per_window():
    """always_long held 4 bars: one trade every 4th bar, each paying the job's test cost;
    selection trades exit before the report window, whose bars only the report scores."""
    rng = np.random.default_rng(0)
    n, report_from = 96, 72
    gross = rng.normal(0.001, 0.01, (n, 2))
    everywhere = np.ones(n, bool)
    job = _job(gross, 25.0, {"always_long": (everywhere, 4), "never_trade": (~everywhere, 1)}, 72)
    selection, report = baseline_metrics(job).values()
    # selection: entries 0, 4, ..., 64 (68 would exit at 72, inside the report window)
    entries = np.arange(0, 68, 4)
    assert selection["always_long"]["n_trades"] == len(entries)
    expected = (gross[entries, 1] - 25e-4).sum() * 1e4
    assert selection["always_long"]["net_bps"] == pytest.approx(expected)
    assert selection["always_long"]["horizon"] == 4
    entries = np.arange(report_from, n, 4)
    assert report["always_long"]["n_trades"] == len(entries)
    assert report["always_long"]["net_bps"] == pytest.approx(
        (gross[entries, 1] - 25e-4).sum() * 1e4
    )
    assert sum(report["always_long"]["daily_bps"].values()) == pytest.approx(
        report["always_long"]["net_bps"]
    )
    assert report["never_trade"]["n_trades"] == 0 and report["never_trade"]["net_bps"] == 0
    # not scored, and what scoring it gives
    scored = evaluate(job.held(1), ~everywhere, rows_from(report_from, n), n_boot=0)
    assert report["never_trade"] == {k: scored[k] for k in report["never_trade"]}
    # the model's evaluation of the same entries gives the same figures
    model = evaluate(job.held(4), everywhere, rows_from(report_from, n))
    assert model["net_bps"] == pytest.approx(report["always_long"]["net_bps"])


def rows_from(first: int, n: int) -> np.ndarray:
    rows = np.zeros(n, bool)
    rows[first:] = True
    return rows


def _coin(daily: dict[str, float], baselines: dict[str, dict[str, float]]) -> dict:
    def figures(days):
        return {"n_trades": len(days), "net_bps": sum(days.values()), "daily_bps": days}

    report = figures(daily) | {"baselines": {k: figures(v) for k, v in baselines.items()}}
    return figures(daily) | {"baselines": report["baselines"], "report": report}


def test_pooled_figures_count_every_day_of_the_window():
    window = ["2024-01-01 00:00:00+00:00", "2024-01-10 23:00:00+00:00"]
    coins = {
        "A": _coin({"2024-01-02": 30.0, "2024-01-05": -10.0}, {"always_long": {"2024-01-02": 5}}),
        "B": _coin({"2024-01-02": 20.0}, {"always_long": {"2024-01-03": -50.0}}),
        "C": {},  # a coin without figures (failed job) is left out, not counted as zero
    }
    pooled = pooled_report(coins, {"selection": window, "report": window})
    model = pooled["strategies"]["report"]["model"]
    daily = np.zeros(10)
    daily[1], daily[4] = 50.0, -10.0
    assert model["days"] == 10 and model["coins"] == 2 and model["n_trades"] == 3
    assert model["net_bps"] == pytest.approx(40.0)
    assert model["t_stat"] == pytest.approx(significance.t_stat(daily))
    assert model["expectancy"] == pytest.approx(40.0 / 3 / 1e4)
    assert pooled["judged_window"] == "report"
    assert pooled["baselines"]["always_long"]["net_bps"] == pytest.approx(-45.0)
    versus = pooled["criteria"][1]
    assert "always_long" in versus["name"]
    other = np.zeros(10)
    other[1], other[2] = 5.0, -50.0
    assert versus["value"].endswith(f"t {significance.t_stat(daily - other):.2f}")
    assert [c["result"] for c in pooled["criteria"]] == ["FAIL", "FAIL"]  # t < 2: no PASS
    assert "no significant edge" in pooled["verdict"]
    assert "always_long" in format_strategies(pooled)


def test_a_consistent_profit_passes_and_a_loss_never_does():
    window = ["2024-01-01 00:00:00+00:00", "2024-01-20 23:00:00+00:00"]
    days = [f"2024-01-{d:02d}" for d in range(1, 21)]
    rng = np.random.default_rng(1)
    win = {d: 20.0 + v for d, v in zip(days, rng.normal(0, 2, 20), strict=True)}
    coins = {"A": _coin(win, {"always_long": dict.fromkeys(days, 1.0)})}
    pooled = pooled_report(coins, {"selection": window, "report": None})
    assert pooled["judged_window"] == "selection"  # no report window: and it says so
    assert all("selection window" in c["name"] for c in pooled["criteria"])
    assert [c["result"] for c in pooled["criteria"]] == ["PASS", "PASS"]
    lose = {d: -v for d, v in win.items()}
    pooled = pooled_report({"A": _coin(lose, {})}, {"selection": window, "report": None})
    assert [c["result"] for c in pooled["criteria"]] == ["FAIL"]


def test_no_trades_says_never_trading_is_the_answer():
    window = ["2024-01-01 00:00:00+00:00", "2024-01-05 23:00:00+00:00"]
    pooled = pooled_report({"A": _coin({}, {})}, {"selection": window, "report": window})
    assert pooled["strategies"]["report"]["model"]["n_trades"] == 0
    assert pooled["verdict"].startswith("no edge") and "never trading" in pooled["verdict"]
    assert [c["result"] for c in pooled["criteria"]] == ["FAIL"]


def test_a_hold_longer_than_the_selection_bars_never_reads_the_report_window():
    """Seven selection bars and a 12-bar hold: no selection trade can exit before the
    report window, so the baseline has no selection figures rather than report bars."""
    gross = np.random.default_rng(2).normal(0, 0.01, (40, 2))
    job = _job(gross, 20.0, {"always_long": (np.ones(40, bool), 12)}, 7)
    job = replace(job, test={**job.test, "closes": np.linspace(1, 2, 60)})
    figures = baseline_metrics(job)
    assert figures["selection"]["always_long"] is None
    report = figures["report"]["always_long"]
    assert report["n_trades"] == 3  # entries 7, 19, 31; bar 40 has no close 12 ahead


def test_pooling_judges_the_window_that_has_figures_and_needs_every_daily_series():
    window = ["2024-01-01 00:00:00+00:00", "2024-01-10 23:00:00+00:00"]
    assert pooled_report({"A": {}}, {"selection": window, "report": window})["verdict"] == (
        "no coin has out-of-sample figures: no verdict"
    )
    selection_only = _coin({"2024-01-02": 30.0}, {}) | {"report": None}
    pooled = pooled_report({"A": selection_only}, {"selection": window, "report": window})
    assert pooled["judged_window"] == "selection"
    old = {"n_trades": 2, "net_bps": 500.0}  # a version written before daily_bps existed
    pooled = pooled_report({"A": old | {"baselines": {}}}, {"selection": window, "report": None})
    model = pooled["strategies"]["selection"]["model"]
    assert model["net_bps"] == 500.0 and model["t_stat"] is None and not model["by_day"]
    assert [c["result"] for c in pooled["criteria"]] == ["FAIL"]


def test_the_criterion_names_the_baselines_rule_and_a_gated_peer_is_said():
    """The per-coin baselines follow ``thresholds.gate``: the best-baseline criterion names
    the rule and gate; the verdict calls a beaten baseline with a cut chosen under a gate a
    weaker peer, and says nothing of it without a gate or for an uncut baseline."""
    window = ["2024-01-01 00:00:00+00:00", "2024-01-20 23:00:00+00:00"]
    days = [f"2024-01-{d:02d}" for d in range(1, 21)]
    rng = np.random.default_rng(1)
    win = {d: 20.0 + v for d, v in zip(days, rng.normal(0, 2, 20), strict=True)}
    spans = {"selection": window, "report": None}
    cut = {"A": _coin(win, {"momentum": dict.fromkeys(days, 1.0)})}
    gated = pooled_report(cut, spans, ("heads", "family"))
    versus = gated["criteria"][1]
    assert "momentum" in versus["name"]
    assert "baselines.rule=heads (gate=family)" in versus["name"]
    assert versus["result"] == "PASS" and versus["gated"]
    assert gated["verdict"].startswith("a significant edge over baselines gated by")
    plain = pooled_report(cut, spans, ("uncorrected", "search"))
    assert "baselines.rule=uncorrected (gate=search)" in plain["criteria"][1]["name"]
    assert "gated" not in plain["verdict"]
    uncut = {"A": _coin(win, {"always_long": dict.fromkeys(days, 1.0)})}
    assert "gated" not in pooled_report(uncut, spans, ("heads", "family"))["verdict"]
