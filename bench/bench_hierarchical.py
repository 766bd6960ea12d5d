"""Hierarchical pipeline at scale: 400 synthetic coins x 2 years, 5 folds.

    .venv/bin/python bench/bench_hierarchical.py                 # about 7 minutes
    .venv/bin/python bench/bench_hierarchical.py --coins 100 --years 1
    .venv/bin/python bench/bench_hierarchical.py --rows flat hierarchy   # both, one at a time
    .venv/bin/python bench/bench_hierarchical.py -- encoder.max_epochs=1  # extra overrides

Each row is one ``python train.py`` in a child process: its wall time, the peak resident
memory of the process tree (sampled every 0.5 s), the run's own stage times and its
verdict. ``flat`` is the default (``cluster=ward``, 8 clusters), against issue 31's target
(3 GB; issue 13's 10 minutes); ``hierarchy`` is ``cluster=hierarchy cluster.levels=[3,8]``,
against issue 31's (4 GB, 10 minutes). Extra overrides change the runs (say so with the
figures: fewer epochs change the time, not what is held at the peak).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import ROOT, print_table, verdict
from bench_per_coin import tree_rss_mb

MAX_WALL_S = 600
# row: its clustering overrides and its peak-memory target (issue 31)
ROWS = {
    "flat": ([], 3072),
    "hierarchy": (["cluster=hierarchy", "cluster.levels=[3,8]"], 4096),
}


def run(out: Path, coins: int, years: float, overrides: list[str]) -> dict:
    args = [
        sys.executable,
        "train.py",
        f"data.n_assets={coins}",
        f"data.years={years}",
        f"hydra.run.dir={out / 'run'}",
        f"logger.save_dir={out / 'tb'}",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]
    log = out / "train.log"
    start = time.perf_counter()
    with log.open("w") as sink:
        child = subprocess.Popen(args, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
        peak = 0.0
        while child.poll() is None:
            peak = max(peak, tree_rss_mb(child.pid))
            time.sleep(0.5)
    wall = time.perf_counter() - start
    if child.returncode:
        raise RuntimeError(f"train.py failed:\n{log.read_text()[-3000:]}")
    summary = json.loads((out / "run" / "summary.json").read_text())
    return {"wall": wall, "peak_mb": peak, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=400)
    parser.add_argument("--years", type=float, default=2.0)
    parser.add_argument("--clusters", type=int, default=8, help="the flat row's clusters")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=["flat"])
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides, after --")
    args = parser.parse_args()
    targets = []
    for name in args.rows:  # one at a time: each peak is measured alone
        overrides, max_peak_mb = ROWS[name]
        if name == "flat":
            overrides = [f"cluster.n_clusters={args.clusters}"]
        with tempfile.TemporaryDirectory() as tmp:
            result = run(Path(tmp), args.coins, args.years, overrides + args.overrides)
        summary = result["summary"]
        stages = [{"stage": k, "s": f"{v:.1f}"} for k, v in summary["timings_s"].items()]
        samples = [f"{fold['train_samples']:,}" for fold in summary["folds"]]
        print_table(
            f"{name}: {args.coins} coins x {args.years:g} years, "
            f"{' '.join(overrides + args.overrides)} "
            f"(training samples per fold: {', '.join(samples)})",
            stages,
        )
        print(f"verdict of the run: {summary['verdict']}")
        wall, peak = result["wall"], result["peak_mb"]
        targets += [
            {
                "row": name,
                "check": "wall",
                "value": "{} min {} s".format(*divmod(round(wall), 60)),
                "target": f"< {MAX_WALL_S // 60} min",
                "result": verdict(wall < MAX_WALL_S),
            },
            {
                "row": name,
                "check": "peak memory (process tree)",
                "value": f"{peak:,.0f} MB",
                "target": f"< {max_peak_mb:,} MB",
                "result": verdict(peak < max_peak_mb),
            },
        ]
    print_table("Targets (issue 31; wall: issue 13)", targets)


if __name__ == "__main__":
    main()
