"""Hierarchical pipeline at scale: 400 synthetic coins x 2 years, 8 clusters, 5 folds.

    .venv/bin/python bench/bench_hierarchical.py                 # about 7 minutes
    .venv/bin/python bench/bench_hierarchical.py --coins 100 --years 1

One ``python train.py`` in a child process: its wall time, the peak resident memory of
the process tree (sampled every 0.5 s), the run's own stage times and its verdict, against
issue 13's targets (10 minutes, 4 GB).
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
MAX_PEAK_MB = 4096


def run(out: Path, coins: int, years: float, clusters: int) -> dict:
    args = [
        sys.executable,
        "train.py",
        f"data.n_assets={coins}",
        f"data.years={years}",
        f"cluster.n_clusters={clusters}",
        f"hydra.run.dir={out / 'run'}",
        f"logger.save_dir={out / 'tb'}",
        "trainer.enable_progress_bar=false",
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
    parser.add_argument("--clusters", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp), args.coins, args.years, args.clusters)
    summary = result["summary"]
    stages = [{"stage": k, "s": f"{v:.1f}"} for k, v in summary["timings_s"].items()]
    samples = [f"{fold['train_samples']:,}" for fold in summary["folds"]]
    print_table(
        f"Hierarchical, {args.coins} coins x {args.years:g} years, {args.clusters} clusters "
        f"(training samples per fold: {', '.join(samples)})",
        stages,
    )
    print(f"verdict of the run: {summary['verdict']}")
    wall, peak = result["wall"], result["peak_mb"]
    print_table(
        "Targets (issue 13)",
        [
            {
                "check": "wall",
                "value": f"{int(wall // 60)} min {wall % 60:.0f} s",
                "target": f"< {MAX_WALL_S // 60} min",
                "result": verdict(wall < MAX_WALL_S),
            },
            {
                "check": "peak memory (process tree)",
                "value": f"{peak:,.0f} MB",
                "target": f"< {MAX_PEAK_MB} MB",
                "result": verdict(peak < MAX_PEAK_MB),
            },
        ],
    )


if __name__ == "__main__":
    main()
