"""Signal latency: ``Fleet.load`` and ``fleet.signals`` for 40 and 400 coins.

    .venv/bin/python bench/bench_signals.py                # 40 and 400 coins
    .venv/bin/python bench/bench_signals.py --coins 400 --repeat 10

A small per-coin run (6 synthetic coins, tiny epochs) trains real champions; an artifact
root of N coins is then built from them (each coin a copy of one trained version under
its own symbol, with its own manifest, pointer and roster entry), so loading and scoring
go through exactly the files a real run writes. Latency does not depend on the weights'
values. Bars: N synthetic coins, ~5 weeks of 1h bars (more than the warm-up; signals
uses the last ``warmup_bars`` of them). Load and signals are timed in a fresh process;
signals is the best of ``--repeat`` calls after one warm-up call.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _util import ROOT, measure, print_table, verdict

sys.path.insert(0, str(ROOT))

from huracan.data import SyntheticMarket  # noqa: E402
from huracan.registry.artifacts import (  # noqa: E402
    model_prefix,
    read_champion,  # noqa: E402
    write_version,
)
from huracan.registry.champions import write_champion  # noqa: E402
from huracan.registry.roster import load_roster, write_roster  # noqa: E402
from huracan.store import LocalStore  # noqa: E402

TEMPLATE_FILES = ("weights.safetensors", "checkpoint.json", "metrics.json", "costs.json")


def train_template(out: Path) -> LocalStore:
    """A real per-coin run on 6 synthetic coins, as small as it gets."""
    args = [
        sys.executable,
        "train.py",
        "pipeline=per_coin",
        "data.n_assets=6",
        "data.n_clusters=2",
        "cluster.n_clusters=2",
        "data.years=0.4",
        "pipeline.test_days=20",
        "pipeline.run_id=bench",
        "pipeline.champion_min_trades=0",
        "encoder.max_epochs=2",
        "head.max_epochs=3",
        "gates.min_history_days=10",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={out / 'run'}",
        f"store.root={out / 'template'}",
        f"logger.save_dir={out / 'tb'}",
    ]
    subprocess.run(args, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return LocalStore(out / "template")


def build_root(template: LocalStore, symbols: list[str], root: Path) -> None:
    """An artifact root with one champion per symbol, copied from the template's coins."""
    store = LocalStore(root)
    entries = load_roster(template)["entries"]
    for name in ("shared_encoder.json", "shared_encoder.safetensors"):
        store.write_bytes(f"meta/{name}", template.read_bytes(f"meta/{name}"))
    roster = []
    for i, symbol in enumerate(symbols):
        source = entries[i % len(entries)]
        files = {n: template.read_bytes(f"{source['model_path']}/{n}") for n in TEMPLATE_FILES}
        description = json.loads(files["checkpoint.json"])
        description["symbol"] = symbol
        files["checkpoint.json"] = json.dumps(description).encode()
        prefix = model_prefix(symbol, "bench")
        write_version(store, prefix, files, {"symbol": symbol, "run_id": "bench"})
        pointer = read_champion(template, source["symbol"])
        write_champion(store, symbol, prefix, pointer["window"], pointer["metrics"], "bench", None)
        roster.append({**source, "symbol": symbol, "model_path": prefix, "trade_ok": True})
    write_roster(store, roster, "bench")


SETUP = """
import time
import torch
from huracan.data import SyntheticMarket
from huracan.serve import Fleet, ServeConfig
torch.set_num_threads({threads})
panel = SyntheticMarket(n_assets={coins}, years=0.1, n_clusters=8, seed=1).load()
start = time.perf_counter()
fleet = Fleet.load({root!r}, config=ServeConfig(expire_hours=None))
load_s = time.perf_counter() - start
fleet.signals(panel)  # warm-up call
"""

WORK = """
signals = fleet.signals(panel)
scored = int(signals["probability"].notna().sum())
result = {{"load_s": load_s, "warmup": fleet.warmup_bars, "scored": scored}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--coins", type=int, nargs="+", default=[40, 400])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        template = train_template(Path(tmp))
        for coins in args.coins:
            root = Path(tmp) / f"root{coins}"
            symbols = SyntheticMarket(n_assets=coins).symbols()
            build_root(template, symbols, root)
            setup = SETUP.format(threads=args.threads, coins=coins, root=str(root))
            timing = measure(WORK.format(), setup, repeat=args.repeat)
            result = timing["result"]
            rows.append(
                {
                    "coins": coins,
                    "load_s": f"{result['load_s']:.2f}",
                    "signals_s": f"{timing['seconds']:.3f}",
                    "scored": result["scored"],
                    "warmup_bars": result["warmup"],
                    "peak_mb": f"{timing['peak_mb']:.0f}",
                    "target": "< 1 s",
                    "verdict": verdict(timing["seconds"] < 1.0),
                }
            )
    print_table(f"signals latency, {args.threads} torch threads (best of {args.repeat})", rows)


if __name__ == "__main__":
    main()
