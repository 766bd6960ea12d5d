"""Gathers the runs of a Hydra multirun into one comparison table.

    python -m huracan.compare                       # the latest sweep under multirun/
    python -m huracan.compare multirun/DATE/TIME    # a given one

It also runs by itself at the end of every ``python train.py -m ...`` (a Hydra callback),
writing ``comparison.csv`` into the sweep directory.

Besides each run's metrics, the table holds ``deflated_sharpe``: the deflated Sharpe ratio
(``huracan.significance``) of each run's overall (``all``) Sharpe ratio, deflated for the
number of runs in the sweep, i.e. the probability that its true Sharpe beats the best the
sweep would show by luck. From what summary.json holds: the per-bar Sharpe is the
annualised ``all/sharpe`` divided by ``sqrt(bars_per_year)`` (from ``data.timeframe``),
the observations are the evaluated bars ``test_bars`` (the folds' test rows summed), and
the per-bar P&L is taken as normal (skew 0, kurtosis 3; fat tails would lower the ratio).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from huracan.io import atomic_write_text
from huracan.report import INTERRUPTED, format_table
from huracan.significance import deflated_sharpe_ratio

log = logging.getLogger("huracan")
METRICS = ["expectancy", "net_bps", "n_trades", "precision", "sharpe"]


def gather(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per run below ``sweep_dir`` that wrote a summary.json with cluster metrics."""
    rows = []
    for summary_path in sorted(Path(sweep_dir).rglob("summary.json")):
        if (summary_path.parent / INTERRUPTED).exists():  # its outputs are incomplete
            continue
        summary = json.loads(summary_path.read_text())
        if "clusters" not in summary:
            continue
        overrides_path = summary_path.parent / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_path.read_text()) if overrides_path.exists() else []
        row = {"run": summary_path.parent.name, "overrides": " ".join(overrides) or "(defaults)"}
        for group in ("all", "alt_clusters"):
            model = summary["clusters"].get(group, {}).get("model", {})
            for metric in METRICS:
                row[f"{group}/{metric}"] = model.get(metric)
        for criterion in summary.get("criteria", []):
            row[criterion["name"]] = criterion["result"]
        row["seconds"] = sum(summary.get("timings_s", {}).values())
        row["test_bars"], row["_sharpe_per_bar"] = per_bar_sharpe(summary)
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"no run with a summary.json below {sweep_dir}")
    table = pd.DataFrame(rows).set_index("run")
    table["deflated_sharpe"] = deflated_sharpes(
        table.pop("_sharpe_per_bar").to_numpy(np.float64), table["test_bars"].to_numpy()
    )
    return table


def per_bar_sharpe(summary: dict) -> tuple[int, float]:
    """A run's evaluated bars and its overall Sharpe ratio per bar (NaN if unknown)."""
    test_bars = sum(int(f.get("test_rows", 0)) for f in summary.get("folds", []))
    sharpe = summary["clusters"].get("all", {}).get("model", {}).get("sharpe")
    timeframe = summary.get("data", {}).get("timeframe")
    if sharpe is None or timeframe is None:
        return test_bars, float("nan")
    bars_per_year = 365.25 * 86400 / pd.Timedelta(timeframe).total_seconds()
    return test_bars, float(sharpe) / np.sqrt(bars_per_year)


def deflated_sharpes(sharpe_per_bar: np.ndarray, test_bars: np.ndarray) -> np.ndarray:
    """Each run's deflated Sharpe ratio, the sweep's runs being the trials."""
    return np.array(
        [
            deflated_sharpe_ratio(sharpe, sharpe_per_bar, int(n_obs))
            for sharpe, n_obs in zip(sharpe_per_bar, test_bars, strict=True)
        ]
    )


def write_comparison(sweep_dir: str | Path) -> pd.DataFrame:
    table = gather(sweep_dir)
    atomic_write_text(Path(sweep_dir) / "comparison.csv", table.to_csv())
    return table


class CompareRuns(Callback):
    """Hydra callback: at the end of a multirun, write and print the comparison table."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            table = write_comparison(sweep_dir)
        except FileNotFoundError as err:
            log.warning("no comparison: %s", err)
            return
        shown = table[["overrides", "all/expectancy", "all/net_bps", "alt_clusters/expectancy"]]
        log.info("comparison (%s/comparison.csv)\n%s", sweep_dir, format_table(shown))


def latest_sweep(root: str | Path = "multirun") -> Path:
    """The newest sweep directory, ``multirun/<date>/<time>``."""
    sweeps = sorted(p for p in Path(root).glob("*/*") if p.is_dir())
    if not sweeps:
        raise SystemExit(f"no sweep under {root}/: run python train.py -m ... first")
    return sweeps[-1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Compare the runs of a Hydra multirun.")
    parser.add_argument(
        "sweep_dir", nargs="?", help="e.g. multirun/2026-11-21/10-00-00 (default: the latest)"
    )
    args = parser.parse_args(argv)
    sweep_dir = Path(args.sweep_dir) if args.sweep_dir else latest_sweep()
    if not sweep_dir.is_dir():
        raise SystemExit(f"{sweep_dir}: no such sweep directory")
    table = write_comparison(sweep_dir)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(format_table(table))
    print(f"\nwritten to {sweep_dir / 'comparison.csv'}")


if __name__ == "__main__":
    main()
