"""The sweep comparison table: its columns and the deflated Sharpe ratio of each run,
from each run's daily P&L with its measured skewness and kurtosis."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from huracan.compare import console, gather, main, write_comparison

EULER_GAMMA = 0.5772156649015329


def daily(mean_bps: float, seed: int, days: int = 120) -> list[float]:
    """Fat-tailed, skewed daily P&L in bps (a few big losing days)."""
    rng = np.random.default_rng(seed)
    pnl = mean_bps + 20 * rng.standard_t(4, days)
    pnl[rng.choice(days, 6, replace=False)] -= 120
    return pnl.tolist()


def write_run(
    sweep,
    name: str,
    daily_bps: list[float] | None,
    sharpe: float = 1.0,
    validation_sharpe: float | None = None,
):
    run = sweep / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(f"- seed={name}\n")
    model = {"expectancy": 0.001, "net_bps": 12.0, "n_trades": 40, "precision": 0.6}
    model["sharpe"] = sharpe
    summary = {
        "data": {"timeframe": "1h"},
        "clusters": {"all": {"model": model}},
        "criteria": [{"name": "mean precision > 55%", "result": "PASS"}],
        "timings_s": {"train": 1.5, "report": 0.5},
    }
    if validation_sharpe is not None:
        summary["validation"] = {"sharpe": validation_sharpe}
    if daily_bps is not None:
        days = pd.date_range("2023-01-01", periods=len(daily_bps), freq="D")
        summary["daily_net_bps"] = {
            f"{d:%Y-%m-%d}": v for d, v in zip(days, daily_bps, strict=True)
        }
    (run / "summary.json").write_text(json.dumps(summary))


def by_hand(pnl: list[float], trial_sharpes: list[float], n_trials: int) -> float:
    """Bailey & López de Prado (2014), eq. 2 and the PSR against it, written out."""
    x = np.asarray(pnl)
    n = len(x)
    mean = x.sum() / n
    sd = np.sqrt(((x - mean) ** 2).sum() / (n - 1))
    m2 = ((x - mean) ** 2).mean()
    skewness = ((x - mean) ** 3).mean() / m2**1.5
    kurt = ((x - mean) ** 4).mean() / m2**2
    sr = mean / sd
    v = np.var(trial_sharpes, ddof=1)
    sr0 = np.sqrt(v) * (
        (1 - EULER_GAMMA) * norm.ppf(1 - 1 / n_trials)
        + EULER_GAMMA * norm.ppf(1 - 1 / (n_trials * np.e))
    )
    return float(
        norm.cdf((sr - sr0) * np.sqrt(n - 1) / np.sqrt(1 - skewness * sr + (kurt - 1) / 4 * sr**2))
    )


def test_comparison_deflates_each_runs_daily_sharpe_by_the_sweeps_trials(tmp_path):
    pnl = {"0": daily(12.0, 0), "1": daily(3.0, 1), "2": daily(-4.0, 2), "3": daily(6.0, 3)}
    for k, (name, series) in enumerate(pnl.items()):
        write_run(tmp_path, name, series, validation_sharpe=0.5 * k)
    table = write_comparison(tmp_path)
    assert table["validation/sharpe"].tolist() == [0.0, 0.5, 1.0, 1.5]
    assert table.loc["0", "overrides"] == "seed=0"
    assert table.loc["0", "all/sharpe"] == 1.0
    assert table.loc["0", "mean precision > 55%"] == "PASS"
    assert table.loc["0", "seconds"] == 2.0
    assert (table["test_days"] == 120).all()
    assert (table["daily_skew"] < -0.5).all() and (table["daily_kurtosis"] > 4).all()

    sharpes = [np.mean(p) / np.std(p, ddof=1) for p in pnl.values()]
    expected = [by_hand(p, sharpes, 4) for p in pnl.values()]
    assert table["daily_sharpe"].to_numpy() == pytest.approx(sharpes)
    assert table["deflated_sharpe"].to_numpy() == pytest.approx(expected, rel=1e-9)
    assert table["deflated_sharpe"].idxmax() == "0"
    written = pd.read_csv(tmp_path / "comparison.csv", index_col="run", dtype={"run": str})
    assert written["deflated_sharpe"].to_numpy() == pytest.approx(expected)
    # the measured skew and kurtosis matter: normal tails would give another ratio
    x = np.asarray(pnl["0"])
    sr = x.mean() / x.std(ddof=1)
    sr0 = np.std(sharpes, ddof=1) * (
        (1 - EULER_GAMMA) * norm.ppf(0.75) + EULER_GAMMA * norm.ppf(1 - 1 / (4 * np.e))
    )
    assert abs(expected[0] - norm.cdf((sr - sr0) * np.sqrt(119) / np.sqrt(1 + sr**2 / 2))) > 0.01


def test_a_run_without_daily_pnl_counts_as_a_trial_but_gets_no_ratio(tmp_path):
    write_run(tmp_path, "0", daily(12.0, 0))
    write_run(tmp_path, "1", daily(3.0, 1))
    alone = gather(tmp_path)["deflated_sharpe"]
    write_run(tmp_path, "2", None)  # a summary written before daily_net_bps
    write_run(tmp_path, "3", [0.0] * 120)  # never traded: no Sharpe
    table = gather(tmp_path)
    assert np.isnan(table.loc["2", "deflated_sharpe"]) and np.isnan(
        table.loc["3", "deflated_sharpe"]
    )
    assert table.loc["0", "deflated_sharpe"] < alone["0"]  # four trials now, not two


def test_prior_trials_deflate_further(tmp_path, capsys):
    write_run(tmp_path, "0", daily(12.0, 0))
    write_run(tmp_path, "1", daily(3.0, 1))
    sweep = gather(tmp_path)
    with_prior = gather(tmp_path, prior_trials=18)
    sharpes = sweep["daily_sharpe"].tolist()
    assert with_prior.loc["0", "deflated_sharpe"] == pytest.approx(
        by_hand(daily(12.0, 0), sharpes, 20), rel=1e-9
    )
    assert with_prior.loc["0", "deflated_sharpe"] < sweep.loc["0", "deflated_sharpe"]
    main([str(tmp_path), "--prior-trials", "18"])
    assert "comparison.csv" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--prior-trials", "-1"])


def test_the_console_table_fits_120_columns_and_shows_sharpe_trades_and_dsr(tmp_path):
    for name, mean in {"0": 8.0, "1": -2.0, "2": 3.0}.items():
        write_run(tmp_path, name, daily(mean, seed=int(name)), validation_sharpe=0.5)
    (tmp_path / "1" / ".hydra" / "overrides.yaml").write_text(
        "- " + " ".join(f"head.option_{k}=value_{k}" for k in range(12)) + "\n"
    )
    text = console(write_comparison(tmp_path))
    lines = text.splitlines()
    assert max(map(len, lines)) <= 120
    for header in ("val. Sharpe", "net bps", "trades", "Sharpe", "DSR", "criteria"):
        assert header in lines[0]
    assert "1/1 PASS" in text and "head.option_11" in text.replace("\n", " ").replace("  ", " ")
