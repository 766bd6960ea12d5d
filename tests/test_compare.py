"""The sweep comparison table: its columns and the deflated Sharpe ratio of each run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from huracan.compare import gather, write_comparison
from huracan.significance import deflated_sharpe_ratio


def write_run(sweep, name: str, sharpe: float | None, test_rows=(500, 500), timeframe="1h"):
    run = sweep / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(f"- seed={name}\n")
    model = {"expectancy": 0.001, "net_bps": 12.0, "n_trades": 40, "precision": 0.6}
    if sharpe is not None:
        model["sharpe"] = sharpe
    summary = {
        "data": {"timeframe": timeframe},
        "clusters": {"all": {"model": model}},
        "folds": [{"fold": k, "test_rows": n} for k, n in enumerate(test_rows)],
        "criteria": [{"name": "mean precision > 55%", "result": "PASS"}],
        "timings_s": {"train": 1.5, "report": 0.5},
    }
    (run / "summary.json").write_text(json.dumps(summary))


def test_comparison_deflates_each_runs_sharpe_by_the_sweeps_trials(tmp_path):
    annual = {"0": 3.0, "1": 0.5, "2": -1.0, "3": 1.0}
    for name, sharpe in annual.items():
        write_run(tmp_path, name, sharpe)
    table = write_comparison(tmp_path)
    assert table.loc["0", "overrides"] == "seed=0"
    assert table.loc["0", "all/sharpe"] == 3.0
    assert table.loc["0", "mean precision > 55%"] == "PASS"
    assert table.loc["0", "seconds"] == 2.0
    assert (table["test_bars"] == 1000).all()

    per_bar = np.array(list(annual.values())) / np.sqrt(365.25 * 24)
    expected = [deflated_sharpe_ratio(s, per_bar, 1000) for s in per_bar]
    assert table["deflated_sharpe"].to_numpy() == pytest.approx(expected)
    assert table["deflated_sharpe"].idxmax() == "0"
    written = pd.read_csv(tmp_path / "comparison.csv", index_col="run", dtype={"run": str})
    assert written["deflated_sharpe"].to_numpy() == pytest.approx(expected)


def test_a_run_without_a_sharpe_counts_as_a_trial_but_gets_no_ratio(tmp_path):
    write_run(tmp_path, "0", 3.0)
    write_run(tmp_path, "1", 1.0)
    alone = gather(tmp_path)["deflated_sharpe"]
    write_run(tmp_path, "2", None)  # e.g. no trades: metrics wrote no Sharpe
    table = gather(tmp_path)
    assert np.isnan(table.loc["2", "deflated_sharpe"])
    assert table.loc["0", "deflated_sharpe"] < alone["0"]  # three trials now, not two
