"""Replay throughput: the live loop over N coins x D days of 1h bars with a daily Mechanic.

    .venv/bin/python bench/bench_replay.py                      # 400 coins x 30 days
    .venv/bin/python bench/bench_replay.py --coins 20 --days 3  # a smoke run
    .venv/bin/python bench/bench_replay.py --no-mechanic        # signals and positions only
    .venv/bin/python bench/bench_replay.py --no-precompute      # Fleet.signals at every bar

A small per-coin run trains real champions (``bench_signals.train_template``); an artifact
root of N coins is built from them (``bench_signals.build_root``: each coin a copy of a
trained version under its own symbol). ``pipeline=replay`` then replays D days of an
N-coin synthetic market from the champions' test window on, in a fresh process: every
bar's signals on the bars up to it (``replay.precompute``: the serving path run once over
the window, ``huracan.serve.tape``; ``--no-precompute``: ``Fleet.signals`` at every bar),
positions, and the Mechanic every 24 hours (one fine-tune per champion and cycle,
``mechanic.max_epochs``). Printed: the whole replay's seconds (target: under 5 minutes for
400 coins x 30 days on 2 cores), its peak memory, the Mechanic's share (cycles, and the
champions fine-tuned in them; the cycles that fine-tune apart from those that only
prepare, score drift and reload), the mean time of a bar and of its signal step
(``equity.csv``'s ``wall_s`` and ``signals_s``), and beside them the time of one
``Fleet.signals`` call on the last ``bars_needed`` bars of the window (best of 3, the
same process, after the replay).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _util import ROOT, measure, print_table, verdict
from bench_signals import build_root, train_template

sys.path.insert(0, str(ROOT))

from huracan.data import SyntheticMarket  # noqa: E402

TARGET_S = 300.0  # 400 coins x 30 days on 2 cores (the target)
START = pd.Timestamp("2023-05-07", tz="UTC")  # the template run's test window opens here

SETUP = """
import torch
from hydra import compose, initialize_config_dir
torch.set_num_threads({threads})
with initialize_config_dir({conf!r}, version_base="1.3"):
    cfg = compose("config", overrides={overrides!r})
"""

WORK = """
import time
from huracan.run import train
from huracan.serve import Fleet, ServeConfig
start = time.perf_counter()
summary, objects = train(cfg)
seconds = time.perf_counter() - start
fleet = Fleet.load(cfg.store.root, config=ServeConfig(expire_hours=None))
panel = objects["panel"].between(None, cfg.replay.end)
window = panel.between(panel.timestamps[-fleet.bars_needed], None)
fleet.signals(window)  # warm-up call
calls = []
for _ in range(3):
    called = time.perf_counter()
    fleet.signals(window)
    calls.append(time.perf_counter() - called)
result = {"seconds": seconds, "report": summary["replay"], "fleet_signals_s": min(calls)}
"""


def overrides(
    root: Path, out: Path, coins: int, days: float, epochs: int, mechanic=True, precompute=True
) -> list[str]:
    """The replay of ``days`` after the template's test window starts (2023-05-07)."""
    return [
        "pipeline=replay",
        f"data.n_assets={coins}",
        "data.n_clusters=8",
        "cluster.n_clusters=8",
        f"data.years={(126 + days + 2) / 365.25:.4f}",  # to past the replayed window
        "gates.min_history_days=10",
        "trainer.enable_progress_bar=false",
        f"store.root={root}",
        f"+output_dir={out}",
        f"logger.save_dir={out / 'tb'}",
        f"replay.start={START.isoformat()}",
        f"replay.end={(START + pd.Timedelta(days=days)).isoformat()}",
        "replay.expire_hours=null",
        "mechanic.every_hours=24",
        f"mechanic.max_epochs={epochs}",
        f"replay.mechanic={str(mechanic).lower()}",
        f"replay.precompute={str(precompute).lower()}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--coins", type=int, nargs="+", default=[400])
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--epochs", type=int, default=10, help="mechanic.max_epochs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mechanic", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--precompute", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    full = args.days == 30 and args.mechanic  # the target: 30 days, daily Mechanic
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        template = train_template(Path(tmp))
        for coins in args.coins:
            root = Path(tmp) / f"root{coins}"
            build_root(template, SyntheticMarket(n_assets=coins).symbols(), root)
            out = Path(tmp) / f"replay{coins}"
            setup = SETUP.format(
                threads=args.threads,
                conf=str(ROOT / "huracan" / "conf"),
                overrides=overrides(
                    root, out, coins, args.days, args.epochs, args.mechanic, args.precompute
                ),
            )
            timing = measure(WORK, setup)
            result = timing["result"]
            report = result["report"]
            cycles = json.loads((out / "mechanic.json").read_text())["cycles"]
            mechanic_s = sum(c["seconds"] for c in cycles)
            tuned = [sum(c["status"] != "skipped" for c in cy["coins"].values()) for cy in cycles]
            fitting = [c["seconds"] for c, n in zip(cycles, tuned, strict=True) if n]
            other = [c["seconds"] for c, n in zip(cycles, tuned, strict=True) if not n]
            target = coins == 400 and full
            rows.append(
                {
                    "coins": coins,
                    "days": f"{args.days:g}",
                    "bars": report["bars"],
                    "replay_s": f"{result['seconds']:.1f}",
                    "mechanic_s": f"{mechanic_s:.1f} ({len(cycles)} cycles, {sum(tuned)} fits)",
                    "fit_cycle_s": f"{np.mean(fitting):.1f} x {len(fitting)}" if fitting else "-",
                    "other_cycle_s": f"{np.mean(other):.1f} x {len(other)}" if other else "-",
                    "bar_s": f"{report['bar_seconds']['mean']:.3f}",
                    "signal_step_s": f"{report['bar_seconds']['signals_mean']:.3f}",
                    "fleet_signals_s": f"{result['fleet_signals_s']:.3f}",
                    "trades": report["strategies"]["model"]["n_trades"],
                    "peak_mb": f"{timing['peak_mb']:.0f}",
                    "target": f"< {TARGET_S:.0f} s" if target else "-",
                    "verdict": verdict(result["seconds"] < TARGET_S) if target else "-",
                }
            )
    mechanic = "a daily Mechanic" if args.mechanic else "no Mechanic"
    signals = "precomputed" if args.precompute else "Fleet.signals per bar"
    print_table(
        f"replay with {mechanic}, signals {signals}, {args.threads} torch threads (bar_s: mean "
        "wall time of a bar; signal_step_s: of its signal step; fleet_signals_s: one "
        "Fleet.signals call on the last bars_needed bars; mechanic_s: all cycles with the "
        "replay's reload after each, fits: champions fine-tuned; fit_cycle_s: mean of the "
        "cycles that fine-tuned x their number; other_cycle_s: of the others)",
        rows,
    )


if __name__ == "__main__":
    main()
