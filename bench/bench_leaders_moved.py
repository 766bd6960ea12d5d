"""How much evidence cross-fitting keeps with ``cluster.level_factor=leader``: per seed and
cross-fitted fold of the planted two-level market, each block's coins whose level leader the
rows clear of the block would not choose again (their samples in the block are left out of
the gate's evidence, ``training.crossfit.moved_leaders``).

    .venv/bin/python bench/bench_leaders_moved.py --seeds 0 1 2 3 4
    .venv/bin/python bench/bench_leaders_moved.py --seeds 5 -- validation.cross_fit=3

No training: each fold's clusters, factor and tree are fitted (``prepare_fold``) and its
blocks checked, on ``bench_hierarchy.py --market levels``'s hierarchy arm (the levels market
of ``bench_oracle.py``, ``cluster.level_factor=leader``) with ``validation.cross_fit=4
validation.cross_fit_days=30`` unless overridden. Columns: ``coins`` in the tree, and per
block the number of coins left out (``-``: none); ``kept`` is the share of (block, coin)
pairs whose samples stay in the evidence; the coins left out in any block.
"""

from __future__ import annotations

import argparse

import numpy as np
from _util import ROOT, print_table, seed_label
from bench_oracle import MARKETS
from hydra import compose, initialize_config_dir

from huracan.config import build
from huracan.pipelines.hierarchical.run import cross_fit_plan
from huracan.training.arrays import build_fleet_arrays
from huracan.training.folds import prepare_fold, walk_forward

DEFAULT = ["validation.cross_fit=4", "validation.cross_fit_days=30"]


def rows_of(seed: int, extra: list[str]) -> list[dict]:
    with initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"):
        overrides = [f"seed={seed}", *MARKETS["levels"], "cluster.level_factor=leader"]
        cfg = compose("config", overrides=[*overrides, *DEFAULT, *extra])
    panel = build(cfg.data).load()
    arrays = build_fleet_arrays(panel, cfg)
    if cfg.cluster.get("level_factor") != "leader" or not cfg.validation.get("cross_fit"):
        raise SystemExit("this bench reads cluster.level_factor=leader with validation.cross_fit")
    rows, previous = [], None
    for fold in walk_forward(cfg).split(panel):
        data = prepare_fold(arrays, fold, cfg, previous)
        previous = data.clusters
        plan = cross_fit_plan(data, arrays, cfg)
        if plan is None:
            continue
        blocks, _, moved = plan
        in_tree = int((data.tree.labels_[1:].max(axis=0) >= 0).sum())
        left = [int(m.sum()) for m in moved]
        rows.append(
            {
                "seed": seed,
                "set": seed_label(seed),
                "fold": fold.index,
                "coins": in_tree,
                "left out per block": " ".join(str(n) if n else "-" for n in left),
                "kept": f"{1 - sum(left) / (in_tree * len(blocks)):.2f}",
                "coins left out": " ".join(
                    sorted({s for m in moved for s in np.asarray(arrays.symbols)[m]})
                ),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    rows = [row for seed in args.seeds for row in rows_of(seed, extra)]
    print_table(
        "cross-fitting with level leaders: coins left out of the evidence per block "
        f"(overrides {[*DEFAULT, *extra]})",
        rows,
    )


if __name__ == "__main__":
    main()
