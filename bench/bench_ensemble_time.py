"""What ``ensemble=stack`` adds to a run, in CPU seconds (issue 31, "Cost": under 20 %).

Two configs, each run with and without the ensemble, back to back, each in a fresh
process:

- ``--config bounded`` (the default): the synthetic market of 24 coins, 4 clusters, 1
  year of hourly bars, 3 folds, horizons 1/4/24, the LightGBM baseline in both arms, and
  a shrunk training (2 encoder epochs, at most 4 head epochs): the ensemble's own work
  weighs more here than on a full run.
- ``--config default``: ``python train.py`` against ``python train.py ensemble=stack``
  (12 coins, 3 clusters, 5 folds, 4 horizons, full training, the factor ablation), its
  logs and artifacts written under the temporary run directory.

CPU seconds are the process's CPU clock over ``train`` (load on a shared machine distorts
them less than wall time). With ``--parts`` (on for ``bounded``) the run is under
cProfile, which also gives the ensemble's components inside the folds
(``fold_components``: the global head's training, every head on every sample), its stage
(``stack_run``: the meta-models, every component's gate and book) and the report; then
the ensemble's parts, each the CPU of one function where the ensemble calls it. The
profiler's own cost is in both arms' CPU seconds.

    nice -n 10 .venv/bin/python bench/bench_ensemble_time.py [--config default] [--keep DIR]
        [-- extra overrides]

``--global-head`` runs only the arm with the ensemble, with cProfile switched on inside the
global head's training alone: its steps' forward, backward and optimizer against the loop
around them.

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
CONFIGS = {"bounded": BOUNDED, "default": []}
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
profile = cProfile.Profile(time.process_time) if {parts!r} else None
started, cpu_started = time.perf_counter(), time.process_time()
if profile:
    profile.enable()
train(cfg)
if profile:
    profile.disable()
wall, run_cpu = time.perf_counter() - started, time.process_time() - cpu_started
cpu = {{"run": run_cpu}}
if profile:
    stats = pstats.Stats(profile).stats
    for name in {stages!r}:
        cpu[name] = sum(
            v[3] for k, v in stats.items() if k[2] == name and "huracan" in k[0]
        )
    def spent(name, caller):
        total = 0.0
        for (path, _, function), (_, _, _, cumulative, callers) in stats.items():
            if function == name and "huracan" in path:
                total += cumulative if caller is None else sum(
                    timing[3] for c, timing in callers.items() if c[2] == caller
                )
        return total
    for label, name, caller in {part_list!r}:
        cpu[label] = spent(name, caller)
print(json.dumps({{"wall": wall, "cpu": cpu}}))
"""


_GLOBAL_HEAD = """
import cProfile, json, pstats, time
from hydra import compose, initialize_config_dir
import huracan.pipelines.hierarchical.ensemble as ensemble
from huracan.run import train
with initialize_config_dir({conf!r}, version_base="1.3"):
    cfg = compose("config", overrides={overrides!r})
profile = cProfile.Profile(time.process_time)
fit_heads = ensemble.fit_heads
def profiled(*args, **kwargs):  # the ensemble's only call: the global head's training
    profile.enable()
    try:
        return fit_heads(*args, **kwargs)
    finally:
        profile.disable()
ensemble.fit_heads = profiled
train(cfg)
stats = pstats.Stats(profile).stats
def spent(function, where):
    return sum(v[3] for k, v in stats.items() if k[2] == function and where in k[0])
def calls(function, where):
    return sum(v[1] for k, v in stats.items() if k[2] == function and where in k[0])
print(json.dumps({{
    "total": spent("fit_heads", "huracan"),
    "epochs": calls("advance", "fit_loop"),
    "steps": calls("training_loss", "huracan"),
    "training steps": spent("training_step", "huracan"),
    "forward and loss": spent("_losses", "huracan"),
    "backward": spent("manual_backward", "lightning"),
    "optimizer": spent("step", "lightning/pytorch/core/optimizer"),
}}))
"""


def global_head(overrides: list[str]) -> dict:
    """CPU seconds of the ensemble's global head training, from cProfile switched on inside
    it only (one run with the ensemble): its steps' forward, backward and optimizer."""
    code = _GLOBAL_HEAD.format(conf=str(ROOT / "huracan" / "conf"), overrides=overrides)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(overrides: list[str], parts: bool) -> dict:
    """One run in a fresh process: wall seconds, CPU seconds and (``parts``) CPU seconds
    per stage and part from cProfile."""
    code = _CHILD.format(
        conf=str(ROOT / "huracan" / "conf"),
        overrides=overrides,
        parts=parts,
        stages=STAGES,
        part_list=PARTS,
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def arm_overrides(where: str, arm: str, config: str) -> list[str]:
    """One arm's overrides: its run directory (with the default config's logs and artifacts
    under it too), the config's and the arm's own."""
    place = [f"+output_dir={where}/{arm}"]
    if config == "default":
        place += [f"logger.save_dir={where}/{arm}/tb", f"store.root={where}/{arm}/artifacts"]
    return [*place, *CONFIGS[config], *(["ensemble=stack"] if arm == "with" else [])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="bounded")
    parser.add_argument(
        "--parts",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="profile the stages and parts (default: on for bounded, off for default)",
    )
    parser.add_argument("--keep", help="keep the arms' run directories under this one")
    parser.add_argument(
        "--global-head",
        action="store_true",
        help="instead: one run with the ensemble, its global head's training under cProfile",
    )
    parser.add_argument("extra", nargs="*", help="more overrides for both arms, after --")
    args = parser.parse_args()
    parts = args.config == "bounded" if args.parts is None else args.parts
    if args.global_head:
        with tempfile.TemporaryDirectory() as tmp:
            where = os.path.abspath(args.keep) if args.keep else tmp
            split = global_head([*arm_overrides(where, "with", args.config), *args.extra])
        report_global_head(split, args.config)
        return
    with tempfile.TemporaryDirectory() as tmp:
        where = os.path.abspath(args.keep) if args.keep else tmp
        load = os.getloadavg()[0]
        runs = {
            arm: timed([*arm_overrides(where, arm, args.config), *args.extra], parts)
            for arm in ("with", "without")
        }
    report(runs, args.config, parts, load, args.extra)


def report(runs: dict, config: str, parts: bool, load: float, extra: list[str]) -> None:
    """The table, the verdict against 20 % and (``parts``) the ensemble's parts."""
    stages = STAGES if parts else ()
    rows = [
        {
            "arm": arm,
            "wall s (loaded)": f"{r['wall']:.1f}",
            "CPU s": f"{r['cpu']['run']:.1f}",
            **{f"{s} CPU s": f"{r['cpu'][s]:.1f}" for s in stages},
        }
        for arm, r in runs.items()
    ]
    title = {"bounded": "the bounded synthetic config (24 coins x 1 year hourly)"}
    title["default"] = "the default run's config (python train.py: 12 coins x 1 year hourly)"
    profiled = ", under cProfile" if parts else ""
    changed = f", with {' '.join(extra)}" if extra else ""
    print_table(f"ensemble=stack on {title[config]}{changed}{profiled}", rows)
    with_, without = runs["with"]["cpu"], runs["without"]["cpu"]
    added = with_["run"] / without["run"] - 1
    print(
        f"{verdict(added < 0.2)}  {config}: the ensemble adds {added:.1%} CPU to the run "
        f"({with_['run']:.1f} s with, {without['run']:.1f} s without; target < 20 %; load "
        f"average {load:.1f} before, {os.getloadavg()[0]:.1f} after, on 2 cores)"
    )
    if not parts:
        return
    own = with_["fold_components"] + with_["stack_run"]
    print(
        f"      its own stages: {own:.1f} CPU s ({own / (with_['run'] - own):.1%} of the rest "
        f"of the run); the report with its strategies {with_['write_report']:.1f} s against "
        f"{without['write_report']:.1f} s"
    )
    spent = {label: with_[label] for label, _, _ in PARTS}
    spent["the report's extra strategies"] = with_["write_report"] - without["write_report"]
    print("      its parts, CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in spent.items()))


def report_global_head(split: dict, config: str) -> None:
    """The global head's training, CPU s: its steps' parts and what is left around them."""
    steps = split["training steps"]
    arithmetic = split["forward and loss"] + split["backward"] + split["optimizer"]
    rows = [
        {"part": "forward and loss", "CPU s": f"{split['forward and loss']:.1f}"},
        {"part": "backward", "CPU s": f"{split['backward']:.1f}"},
        {"part": "optimizer (Adam)", "CPU s": f"{split['optimizer']:.1f}"},
        {
            "part": "the rest of the training steps (batches)",
            "CPU s": f"{steps - arithmetic:.1f}",
        },
        {"part": "validation and Lightning's loop", "CPU s": f"{split['total'] - steps:.1f}"},
        {"part": "total", "CPU s": f"{split['total']:.1f}"},
    ]
    print_table(
        f"the ensemble's global head training on the {config} config, under cProfile "
        f"({split['epochs']} epochs over every fold, {split['steps']} optimizer steps, "
        f"{1000 * split['total'] / max(split['steps'], 1):.1f} ms a step)",
        rows,
    )
    share = arithmetic / split["total"]
    print(f"      the steps' forward, backward and optimizer: {share:.0%} of its time")


if __name__ == "__main__":
    main()
