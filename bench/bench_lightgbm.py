"""Time of the LightGBM baseline on one fold of the real hourly 46-coin panel.

    .venv/bin/python bench/bench_lightgbm.py [DATA_DIR] [--fold 4]

Design window only (Binance 1h, 2020-05-11..2022-05-08, experiment=fleet_binance's
features and horizons): builds the fleet arrays, then fits ``huracan.strong_baselines``'
LightGBM (one model per horizon, the config's parameters, one thread) on one fold and
prints its rows and seconds. Prints no P&L: it measures time, not edge.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _util import print_table
from hydra import compose, initialize_config_dir

from huracan.baseline_rule import baseline_rules
from huracan.config import build
from huracan.pipelines.hierarchical.run import fleet_walk_forward
from huracan.strong_baselines import baseline_options, fold_inputs, lightgbm_trades
from huracan.training.arrays import build_fleet_arrays
from huracan.training.folds import label_horizons

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / ".." / "shared/data/binance_spot/1h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    parser.add_argument("--fold", type=int, default=4, help="the fold to fit (0-based)")
    args = parser.parse_args()
    overrides = [
        "experiment=fleet_binance",
        f"data.path={args.data}",
        "data.start=2020-05-11",
        "data.end=2022-05-08",  # the design window
    ]
    with initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    panel = build(cfg.data).load()
    horizons = label_horizons(cfg)
    arrays = build_fleet_arrays(panel, cfg, horizons)
    fold = fleet_walk_forward(cfg).split(panel)[args.fold]
    rule = baseline_options(cfg).rule
    rules = baseline_rules(cfg.thresholds, rule, arrays.timestamps_ns, cfg.seed)
    started = time.perf_counter()
    lightgbm_trades(
        lambda f: fold_inputs(arrays, cfg, f),
        arrays.label_h,
        arrays.net_h,
        horizons,
        [fold],
        rules,
        baseline_options(cfg).lightgbm,
        cfg.seed,
        cfg.features.clip,
    )
    seconds = time.perf_counter() - started
    row = {
        "coins": panel.n_assets,
        "fold": args.fold,
        "train_bars": len(fold.train),
        "train_cells": len(fold.train) * panel.n_assets,
        "horizons": len(horizons),
        "seconds": round(seconds, 1),
    }
    print_table("LightGBM baseline, one fold (design window, 1h)", [row])


if __name__ == "__main__":
    main()
