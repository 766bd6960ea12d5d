"""Per-coin production pipeline: 400 synthetic coins x 1 year, end to end on this machine.

    .venv/bin/python bench/bench_per_coin.py            # 400 coins (about 15 minutes)
    .venv/bin/python bench/bench_per_coin.py --coins 100 --alone-coins 20

Rows: the joint-heads run with queue.workers=1 and with 2 (wall time; peak resident
memory of the run and all its workers together, sampled every 0.5 s; stage times), and
the time per coin of the joint-heads path vs training each coin's head alone in its own
job, with 1 and 2 workers (measured on a subset of coins).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from _util import ROOT, print_table, verdict


def run(out: Path, coins: int, *overrides: str) -> dict:
    """One `python train.py pipeline=per_coin` in a child; wall, peak memory, stage times."""
    clusters = max(2, min(8, coins // 12))
    args = [
        sys.executable,
        "train.py",
        "pipeline=per_coin",
        f"data.n_assets={coins}",
        f"data.n_clusters={clusters}",
        f"cluster.n_clusters={clusters}",
        f"hydra.run.dir={out / 'run'}",
        f"store.root={out / 'artifacts'}",
        f"logger.save_dir={out / 'tb'}",
        "trainer.enable_progress_bar=false",
        "pipeline.run_id=bench",
        *overrides,
    ]
    start = time.perf_counter()
    child = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0.0
    while child.poll() is None:  # the run and all its workers, summed
        peak = max(peak, tree_rss_mb(child.pid))
        time.sleep(0.5)
    wall = time.perf_counter() - start
    if child.returncode:
        raise RuntimeError(child.stderr.read().decode()[-3000:])
    summary = json.loads((out / "run" / "summary.json").read_text())
    return {
        "wall": wall,
        "peak_mb": peak,
        "timings": summary["timings_s"],
        "counts": summary["per_coin"]["counts"],
    }


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=400)
    parser.add_argument("--alone-coins", type=int, default=40)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            out = Path(tmp) / f"workers{workers}"
            results[workers] = run(out, args.coins, f"queue.workers={workers}")
        alone = run(Path(tmp) / "alone", args.alone_coins, "pipeline.heads=alone")
        alone2 = run(
            Path(tmp) / "alone2", args.alone_coins, "pipeline.heads=alone", "queue.workers=2"
        )
        joint_small = run(Path(tmp) / "joint_small", args.alone_coins)
    rows = []
    for workers, r in results.items():
        t = r["timings"]
        rows.append(
            {
                "run": f"{args.coins} coins, joint heads, workers={workers}",
                "wall s": f"{r['wall']:.0f}",
                "peak MB": f"{r['peak_mb']:,.0f}",
                "encoder s": f"{t['shared encoder']:.0f}",
                "heads s": f"{t['joint heads']:.0f}",
                "jobs s": f"{t['jobs']:.1f}",
                "jobs": " ".join(f"{k}={v}" for k, v in r["counts"].items() if v),
            }
        )
    print_table(
        f"Per-coin pipeline, synthetic market, {args.coins} coins x 1 year of 1h bars", rows
    )
    joint_per_coin = (joint_small["timings"]["joint heads"] + joint_small["timings"]["jobs"]) / (
        args.alone_coins
    )
    alone_per_coin = alone["timings"]["jobs"] / args.alone_coins
    big = results[1]["timings"]
    print_table(
        f"Head training + job per coin ({args.alone_coins} coins, workers=1)",
        [
            {
                "path": "joint heads (one grouped model) + jobs",
                "s per coin": f"{joint_per_coin:.2f}",
            },
            {"path": "each head alone in its job", "s per coin": f"{alone_per_coin:.2f}"},
            {
                "path": "each head alone in its job, workers=2",
                "s per coin": f"{alone2['timings']['jobs'] / args.alone_coins:.2f}",
            },
            {
                "path": f"joint, {args.coins} coins",
                "s per coin": f"{(big['joint heads'] + big['jobs']) / args.coins:.2f}",
            },
        ],
    )
    slowest = max(r["wall"] for r in results.values())
    peak = max(r["peak_mb"] for r in results.values())
    print_table(
        "Targets",
        [
            {
                "check": f"{args.coins} coins end to end, wall",
                "value": f"{slowest:.0f} s",
                "target": "< 120 s (issue 13)",
                "result": verdict(slowest < 120),
            },
            {
                "check": f"{args.coins} coins end to end, peak memory",
                "value": f"{peak:,.0f} MB",
                "target": "< 4096 MB",
                "result": verdict(peak < 4096),
            },
            {
                "check": "speed-up of workers=2 on the jobs stage",
                "value": f"{results[1]['timings']['jobs'] / results[2]['timings']['jobs']:.2f}x",
                "target": "-",
                "result": "-",
            },
        ],
    )


if __name__ == "__main__":
    main()
