"""Hierarchical fleet training: quality against the oracle, real data, and speed.

    .venv/bin/python bench/bench_fleet.py                 # all sections
    .venv/bin/python bench/bench_fleet.py quality speed   # some of them
    .venv/bin/python bench/bench_fleet.py speed --accelerator gpu

Sections:
  quality  synthetic market (12 coins, 1 year, 5 folds): alt-cluster expectancy after costs
           of factor=pca / factor=none / cluster=global / cluster=isolated vs the oracle.
  real     the 21 full-history Binance 1h coins, last two years, 5 folds: the same
           ablations and a per-coin logistic-regression baseline, wall time per run.
  speed    `python train.py` wall time; Lightning vs a plain PyTorch loop on the same
           model and data (samples/s).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _baseline import logistic_baseline
from _util import ROOT, SHARED_DATA, print_table, verdict
from hydra import compose, initialize_config_dir

from huracan.data import CsvSource
from huracan.pipelines.fleet_report import pooled_metrics
from huracan.run import train

ABLATIONS = {
    "factor=pca": [],
    "factor=none": ["factor=none"],
    "cluster=global": ["cluster=global"],
    "cluster=isolated": ["cluster=isolated"],
}
QUIET = ["trainer.enable_progress_bar=false", "report.compare_without_factor=false"]


def config(out: Path, *overrides: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                f"+output_dir={out}",
                f"logger.save_dir={out / 'tb'}",
                "logger.name=bench",
                *QUIET,
                *overrides,
            ],
        )


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or not np.isfinite(value) else format(value, spec)


def metrics_row(name: str, m: dict, seconds: float | None = None) -> dict:
    return {
        "variant": name,
        "expectancy": fmt(m["expectancy"], ".6f"),
        "net bps": fmt(m["net_bps"], ",.0f"),
        "trades": m["n_trades"],
        "precision": fmt(m["precision"], ".3f"),
        "sharpe": fmt(m["sharpe"], ".2f"),
        "wall s": fmt(seconds, ".0f"),
    }


def quality(seed: int) -> list[dict]:
    rows, expectancy = [], {}
    oracle = None
    for name, overrides in ABLATIONS.items():
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            _, objects = train(config(Path(tmp), f"seed={seed}", *overrides))
            seconds = time.perf_counter() - start
        run, truth = objects["run"], objects["panel"].truth
        alts = np.flatnonzero(truth.cluster_labels != 0)  # planted followers, same for all
        bars_per_year = objects["panel"].bars_per_year
        m = pooled_metrics(run.signals, run, alts, bars_per_year, 1)
        expectancy[name] = m["expectancy"] or 0.0
        rows.append(metrics_row(name, m, seconds))
        if oracle is None:
            oracle = pooled_metrics(run.oracle_signals, run, alts, bars_per_year, 1)
    rows.append(metrics_row("oracle", oracle))
    print_table(f"Quality: planted alt clusters, synthetic market, seed {seed}", rows)
    pca, none, best = expectancy["factor=pca"], expectancy["factor=none"], oracle["expectancy"]
    return [
        {
            "check": "factor=pca alt expectancy / oracle's",
            "value": f"{pca / best:.2f}",
            "target": ">= 0.70",
            "result": verdict(pca >= 0.7 * best),
        },
        {
            "check": "factor=pca / factor=none alt expectancy",
            "value": f"{pca / none:.2f}" if none > 0 else f"{pca:.6f} vs {none:.6f}",
            "target": ">= 1.5",
            "result": verdict(pca > 0 and (none <= 0 or pca >= 1.5 * none)),
        },
    ]


def full_history_symbols(path: Path) -> list[str]:
    panel = CsvSource(str(path)).load()
    first = panel.listed.argmax(0)
    return [s for s, f in zip(panel.symbols, first, strict=True) if f == 0]


def real(seed: int) -> list[dict]:
    path = SHARED_DATA / "binance_spot" / "1h"
    symbols = full_history_symbols(path)
    data = [
        "data=csv",
        f"data.path={path}",
        f"data.symbols=[{','.join(symbols)}]",
        "data.start=2022-05-08",
        "data.end=2024-05-08",
        f"seed={seed}",
    ]
    rows, walls = [], []
    baseline = None
    for name, overrides in ABLATIONS.items():
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            summary, objects = train(config(Path(tmp), *data, *overrides))
            seconds = time.perf_counter() - start
            if baseline is None:
                run = objects["run"]
                cfg = config(Path(tmp), *data)
                start = time.perf_counter()
                signals = logistic_baseline(run.arrays, run.folds, cfg)
                base_seconds = time.perf_counter() - start
                everyone = np.arange(len(run.arrays.symbols))
                bars_per_year = objects["panel"].bars_per_year
                baseline = metrics_row(
                    "logistic per coin",
                    pooled_metrics(signals, run, everyone, bars_per_year, 1),
                    base_seconds,
                )
        walls.append(seconds)
        rows.append(metrics_row(name, summary["clusters"]["all"]["model"], seconds))
    rows.append(baseline)
    print_table(
        f"Real data: {len(symbols)} Binance 1h coins, 2022-05-08..2024-05-08, 5 folds, "
        "all assets pooled, after costs",
        rows,
    )
    return [
        {
            "check": "real data: slowest run wall time",
            "value": f"{max(walls):.0f} s",
            "target": "< 1200 s",
            "result": verdict(max(walls) < 1200),
        }
    ]


def speed(accelerator: str) -> list[dict]:
    checks = []
    if accelerator == "cpu":
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "train.py",
                    f"hydra.run.dir={tmp}",
                    f"logger.save_dir={tmp}/tb",
                    "trainer.enable_progress_bar=false",
                ],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            wall = time.perf_counter() - start
        checks.append(
            {
                "check": "python train.py (default run) wall time",
                "value": f"{wall:.0f} s",
                "target": "< 300 s",
                "result": verdict(wall < 300),
            }
        )
    from throughput import compare_throughput

    lightning_rate, plain_rate, n = compare_throughput(accelerator)
    ratio = lightning_rate / plain_rate
    print_table(
        f"Training throughput on {accelerator}, same model and data ({n:,} samples)",
        [
            {"loop": "plain PyTorch", "samples/s": f"{plain_rate:,.0f}"},
            {"loop": "Lightning FleetModule", "samples/s": f"{lightning_rate:,.0f}"},
        ],
    )
    checks.append(
        {
            "check": f"Lightning / plain loop throughput ({accelerator})",
            "value": f"{ratio:.2f}",
            "target": ">= 0.80",
            "result": verdict(ratio >= 0.8),
        }
    )
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", default=["quality", "real", "speed"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    args = parser.parse_args()
    checks = []
    for section in args.sections:
        if section == "quality":
            checks += quality(args.seed)
        elif section == "real":
            checks += real(args.seed)
        elif section == "speed":
            checks += speed(args.accelerator)
        else:
            parser.error(f"unknown section {section!r}")
    print_table("Targets", checks)


if __name__ == "__main__":
    main()
