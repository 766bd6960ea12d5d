"""Gathers the runs of a Hydra multirun into one comparison table.

    python -m huracan.compare                       # the latest sweep under multirun/
    python -m huracan.compare multirun/DATE/TIME    # a given one

It also runs by itself at the end of every ``python train.py -m ...`` (a Hydra callback),
writing ``comparison.csv`` into the sweep directory.

Besides each run's metrics, the table holds ``deflated_sharpe``: the deflated Sharpe ratio
(Bailey & López de Prado 2014, ``huracan.significance``) of each run's Sharpe ratio of daily
P&L, i.e. the probability that its true Sharpe beats the best the sweep's trials would show
by luck. It is computed from ``daily_net_bps`` of summary.json (the model's net P&L of all
assets on every test day, 0 on a day without a trade; the day is the unit of evidence, as
for the t-statistic): the Sharpe ratio per day, n the number of test days, and the
measured skewness and kurtosis of the daily P&L (``daily_sharpe``, ``test_days``,
``daily_skew``, ``daily_kurtosis``).

What it counts as trials: every run of the sweep (a run without daily P&L, e.g. one whose
summary predates ``daily_net_bps``, still counts, but gets no ratio), plus
``--prior-trials`` runs made before it on the same test windows. What it does not count:

- each head's search over horizons and cuts. It selects on the validation slice, and the
  test Sharpe deflated here is measured afterwards on bars the search never saw, so the
  search does not inflate it (the cut rule's own margin, ``thresholds.cut_z``, guards the
  validation side);
- choices made on these test windows outside the sweep (defaults chosen on development
  data, earlier sweeps, an Optuna study's other trials when they ran elsewhere) unless
  they are given as ``--prior-trials``: their Sharpe ratios are unknown, so they raise the
  number of trials but not the variance of the trials' Sharpe ratios.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from scipy.stats import kurtosis, skew

from huracan.io import atomic_write_text
from huracan.report import INTERRUPTED
from huracan.significance import deflated_sharpe_ratio

log = logging.getLogger("huracan")
METRICS = ["expectancy", "net_bps", "n_trades", "precision", "sharpe"]


def gather(sweep_dir: str | Path, prior_trials: int = 0) -> pd.DataFrame:
    """One row per run below ``sweep_dir`` that wrote a summary.json with cluster metrics;
    ``prior_trials`` earlier runs on the same test windows count as trials too."""
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
        # what a sweep may choose on (the test figures beside it are out of sample)
        row["validation/sharpe"] = (summary.get("validation") or {}).get("sharpe")
        row["seconds"] = sum(summary.get("timings_s", {}).values())
        row |= daily_moments(list((summary.get("daily_net_bps") or {}).values()))
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"no run with a summary.json below {sweep_dir}")
    table = pd.DataFrame(rows).set_index("run")
    table["deflated_sharpe"] = deflated_sharpes(table, prior_trials)
    return table


def daily_moments(daily_bps: list[float]) -> dict[str, float]:
    """The days, Sharpe ratio per day (mean / std, ddof=1), skewness and kurtosis (not
    excess; scipy's moment estimates) of a run's daily P&L; NaN where fewer than two days
    or no variation (a run that never traded)."""
    pnl = np.asarray(daily_bps, dtype=np.float64)
    out = {"test_days": len(pnl), "daily_sharpe": np.nan, "daily_skew": np.nan}
    out["daily_kurtosis"] = np.nan
    if len(pnl) > 1 and pnl.std(ddof=1) > 0:
        out["daily_sharpe"] = float(pnl.mean() / pnl.std(ddof=1))
        out["daily_skew"] = float(skew(pnl))
        out["daily_kurtosis"] = float(kurtosis(pnl, fisher=False))
    return out


def deflated_sharpes(table: pd.DataFrame, prior_trials: int = 0) -> np.ndarray:
    """Each run's deflated Sharpe ratio: the sweep's runs and ``prior_trials`` are the
    trials, each run's own days, skewness and kurtosis enter its probabilistic Sharpe."""
    trials = np.concatenate(
        [table["daily_sharpe"].to_numpy(np.float64), np.full(prior_trials, np.nan)]
    )
    return np.array(
        [
            deflated_sharpe_ratio(
                row.daily_sharpe, trials, int(row.test_days), row.daily_skew, row.daily_kurtosis
            )
            for row in table.itertuples()
        ]
    )


def write_comparison(sweep_dir: str | Path, prior_trials: int = 0) -> pd.DataFrame:
    table = gather(sweep_dir, prior_trials)
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
        log.info("comparison (every column: %s/comparison.csv)\n%s", sweep_dir, console(table))


# what the console shows of each run: (column, header, format); comparison.csv has all
SHOWN = [
    ("validation/sharpe", "val. Sharpe", "{:.2f}"),
    ("all/net_bps", "net bps", "{:,.0f}"),
    ("all/n_trades", "trades", "{:,.0f}"),
    ("all/sharpe", "Sharpe", "{:.2f}"),
    ("all/expectancy", "exp. bps", "{:.2f}"),
    ("deflated_sharpe", "DSR", "{:.2f}"),
]


def console(table: pd.DataFrame, width: int = 120) -> str:
    """The comparison as a table that fits ``width`` columns: each run's overrides
    (wrapped), its validation Sharpe (what a sweep chooses on), the test window's net bps,
    trades, Sharpe, expectancy (bps) and deflated Sharpe ratio, and its criteria passed."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    view = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    view.add_column("run")
    view.add_column("overrides", overflow="fold", ratio=1)
    for _, header, _ in SHOWN:
        view.add_column(header, justify="right", no_wrap=True)
    criteria = [c for c in table.columns if _verdicts(table[c])]
    view.add_column("criteria", justify="right", no_wrap=True)
    for run, row in table.iterrows():
        cells = [_cell(row.get(column), spec, column) for column, _, spec in SHOWN]
        passed = sum(row[c] == "PASS" for c in criteria)
        view.add_row(str(run), str(row["overrides"]), *cells, f"{passed}/{len(criteria)} PASS")
    out = Console(width=width, file=io.StringIO(), color_system=None, highlight=False)
    out.print(view)
    return out.file.getvalue().rstrip()


def _verdicts(column: pd.Series) -> bool:
    values = set(column.dropna())
    return bool(values) and values <= {"PASS", "FAIL"}


def _cell(value: object, spec: str, column: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return spec.format(float(value) * (1e4 if column.endswith("expectancy") else 1))


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
    parser.add_argument(
        "--prior-trials",
        type=int,
        default=0,
        help="runs made before this sweep on the same test windows, counted as trials",
    )
    args = parser.parse_args(argv)
    if args.prior_trials < 0:
        parser.error(f"--prior-trials {args.prior_trials}: must be 0 or more")
    sweep_dir = Path(args.sweep_dir) if args.sweep_dir else latest_sweep()
    if not sweep_dir.is_dir():
        raise SystemExit(f"{sweep_dir}: no such sweep directory")
    table = write_comparison(sweep_dir, args.prior_trials)
    print(console(table))
    print(f"\nevery column in {sweep_dir / 'comparison.csv'}")


if __name__ == "__main__":
    main()
