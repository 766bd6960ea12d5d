"""What ``ensemble=stack`` adds to a run, in CPU seconds (issue 31, "Cost": under 20 %).

One bounded config (the synthetic market: 24 coins, 4 clusters, 1 year of hourly bars, 3
folds, horizons 1/4/24, the LightGBM baseline in both arms), run with and without the
ensemble, back to back, each in a fresh process. CPU seconds come from cProfile with the
process's CPU clock (load on a shared machine distorts them less than wall time): the
whole run, the ensemble's components inside the folds (``fold_components``: the global
head's training, every head on every sample), its stage (``stack_run``: the meta-models,
every component's gate and book) and the report; then the ensemble's parts, each the
CPU of one function where the ensemble calls it.

    nice -n 10 .venv/bin/python bench/bench_ensemble_time.py [--keep DIR] [-- extra overrides]

``--keep DIR`` keeps both arms' run directories (``DIR/with``, ``DIR/without``), to
compare their figures across commits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from _util import ROOT, print_table, verdict

BOUNDED = [
    "data.n_assets=24",
    "data.n_clusters=4",
    "data.years=1",
    "cluster.n_clusters=4",
    "validation.n_folds=3",
    "encoder.max_epochs=2",
    "head.max_epochs=4",
    "head.patience=2",
    "gates.min_history_days=10",
    "labels.horizons=[1,4,24]",
    "baselines.extra=[lightgbm]",
    "baselines.lightgbm.num_boost_round=20",
    "report.compare_without_factor=false",
    "trainer.enable_progress_bar=false",
    "~logger",
]
STAGES = ("fold_components", "stack_run", "write_report")
# the ensemble's parts: (label, function, the ensemble's function that calls it; None:
# every call, for functions only the ensemble calls, behind a decorator's wrapper)
PARTS = (
    ("global head training", "fit_heads", "fold_components"),
    ("every head on every sample", "every_head_proba", None),
    ("gates and books", "decide", "stack_run"),
    ("meta-models", "stack_fold", None),
)

_CHILD = """
import cProfile, json, pstats, sys, time
from hydra import compose, initialize_config_dir
from huracan.run import train
with initialize_config_dir({conf!r}, version_base="1.3"):
    cfg = compose("config", overrides={overrides!r})
profile = cProfile.Profile(time.process_time)
started = time.perf_counter()
profile.enable()
train(cfg)
profile.disable()
wall = time.perf_counter() - started
cpu = {{name: 0.0 for name in {stages!r}}}
for (path, _, name), (_, _, _, cumulative, _) in pstats.Stats(profile).stats.items():
    if name in cpu and "huracan" in path:
        cpu[name] += cumulative
stats = pstats.Stats(profile).stats
cpu["run"] = sum(
    v[3] for k, v in stats.items() if k[2] == "train" and k[0].endswith("huracan/run.py")
)
def spent(name, caller):
    total = 0.0
    for (path, _, function), (_, _, _, cumulative, callers) in stats.items():
        if function == name and "huracan" in path:
            total += cumulative if caller is None else sum(
                timing[3] for c, timing in callers.items() if c[2] == caller
            )
    return total
for label, name, caller in {parts!r}:
    cpu[label] = spent(name, caller)
print(json.dumps({{"wall": wall, "cpu": cpu}}))
"""


def timed(overrides: list[str]) -> dict:
    """One run in a fresh process: wall seconds and CPU seconds per stage."""
    code = _CHILD.format(
        conf=str(ROOT / "huracan" / "conf"), overrides=overrides, stages=STAGES, parts=PARTS
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="keep the arms' run directories under this one")
    parser.add_argument("extra", nargs="*", help="more overrides for both arms, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = os.path.abspath(args.keep) if args.keep else tmp
        load = os.getloadavg()[0]
        runs = {
            arm: timed([f"+output_dir={where}/{arm}", *BOUNDED, *extra, *args.extra])
            for arm, extra in (("with", ["ensemble=stack"]), ("without", []))
        }
    rows = [
        {
            "arm": arm,
            "wall s (loaded)": f"{r['wall']:.1f}",
            "CPU s": f"{r['cpu']['run']:.1f}",
            **{f"{s} CPU s": f"{r['cpu'][s]:.1f}" for s in STAGES},
        }
        for arm, r in runs.items()
    ]
    print_table("ensemble=stack on the bounded synthetic config (24 coins x 1 year hourly)", rows)
    with_, without = runs["with"]["cpu"], runs["without"]["cpu"]
    own = with_["fold_components"] + with_["stack_run"]
    added = with_["run"] / without["run"] - 1
    print(
        f"{verdict(added < 0.2)}  the ensemble adds {added:.1%} CPU to the run "
        f"({with_['run']:.1f} s with, {without['run']:.1f} s without; target < 20 %; load "
        f"average {load:.1f} before, {os.getloadavg()[0]:.1f} after, on 2 cores)"
    )
    print(
        f"      its own stages: {own:.1f} CPU s ({own / (with_['run'] - own):.1%} of the rest "
        f"of the run); the report with its strategies {with_['write_report']:.1f} s against "
        f"{without['write_report']:.1f} s"
    )
    parts = {label: with_[label] for label, _, _ in PARTS}
    parts["the report's extra strategies"] = with_["write_report"] - without["write_report"]
    print("      its parts, CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))


if __name__ == "__main__":
    main()
