"""No-edge gate: the share of heads that trade on markets without an edge, per cost.

    nice -n 10 .venv/bin/python bench/bench_gate.py                  # seeds 160..209
    nice -n 10 .venv/bin/python bench/bench_gate.py --seeds 100 101 --costs 0 10
    nice -n 10 .venv/bin/python bench/bench_gate.py -- thresholds.family_alpha=0.1

Each run is the real hierarchical pipeline (default heads, default gate) on a synthetic
market without any edge: no planted lead (``data.follow_share=[0,0]``) and none in the
majors either (``data.majors_follow_share=[0,0]``; their default faint lead is a real,
if small, edge at 0 bps); 8 coins, 1 year, 4 folds; the PCA encoder, which feeds the same
heads and gate as the autoencoder at a fraction of the time; no ablation run without the
factor, no plots. Round trips cost exactly the fee (``costs.fee_bps`` = half the round
trip; the market quotes no spread column, ``costs.spread_bps=0``, no slippage), so the
validation net return at another cost is the same gross return less another flat fee.
The heads are therefore trained once per seed, at the first cost (0 bps: labels are up
or down), and every call of their gate is judged at each cost: a head-fold trades where
its gate gives it a horizon. What this leaves out: a run at 20 bps would train its heads
on labels after 20 bps (the ranking changes, the gate's arithmetic does not); four
trainings a seed would take four times as long. The same validation predictions are also
judged by each half of the default family-wise gate alone (``thresholds.gate=permutation``
and ``bootstrap``, same alpha) and by the uncorrected rule (``thresholds.gate=search``, the
rule before), so every row of a cost comes from the same trained heads.

Target (issue 26, item 6): at most 5 % of head-folds trade at 0, 2, 10 and 20 bps round
trip, over at least 50 seeds. The seeds 160..209 are neither the design seeds (0-4), the
held-out ones (5-9), nor 100-139 (where the gate was tried and chosen while it was built:
the permutation and bootstrap rows of seeds 110-139 chose their combination). The
interval is the exact (Clopper-Pearson) 95 % binomial one; PASS/FAIL reads the measured
share. Beside it, the trades and net bps the default run made in its test windows, summed
over the seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from unittest import mock

from _util import ROOT, print_table, seed_label, verdict
from hydra import compose, initialize_config_dir
from scipy.stats import binomtest

import huracan.pipelines.hierarchical.report as fleet_report
import huracan.thresholds as heads_rule
from huracan.run import train

NO_EDGE = [
    "data.follow_share=[0,0]",
    "data.majors_follow_share=[0,0]",
    "data.spread_column=false",
    "data.n_assets=8",
    "data.years=1",
    "validation.n_folds=4",
    "encoder=pca",
    "report.compare_without_factor=false",
    "trainer.enable_progress_bar=false",
    "~logger",
]
GATES = ["default", "permutation", "bootstrap", "search (before)"]
TARGET = 0.05


def run(seed: int, costs: list[float], extra: list[str]) -> tuple[dict, dict]:
    """One no-edge run, its heads trained at ``costs[0]`` round trip: its summary and, per
    cost and per gate of ``GATES``, the head-folds and how many of them trade."""
    counts = {c: {"heads": 0, **dict.fromkeys(GATES, 0)} for c in costs}
    choose = heads_rule.choose_horizons  # the heads reach it by heads_rule.choose_by_rule

    def recorded(prob, net_return, *args):
        chosen = choose(prob, net_return, *args)
        family = args[8]
        rules = {
            "default": family,
            "permutation": dataclasses.replace(family, method="permutation"),
            "bootstrap": dataclasses.replace(family, method="bootstrap"),
            "search (before)": None,
        }
        for cost in costs:  # a flat fee: the net return at another cost is a shift
            net = net_return - (cost - costs[0]) * 1e-4
            count = counts[cost]
            count["heads"] += len(chosen[0])
            for gate, rule in rules.items():
                index = chosen[0] if gate == "default" and cost == costs[0] else None
                if index is None:
                    index = choose(prob, net, *args[:8], rule)[0]
                count[gate] += int((index >= 0).sum())
        return chosen

    fee = [f"costs.fee_bps={costs[0] / 2}", "costs.spread_bps=0", "costs.slippage_bps_per_sigma=0"]
    with (
        tempfile.TemporaryDirectory() as tmp,
        initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"),
        mock.patch.object(heads_rule, "choose_horizons", recorded),
        mock.patch.object(fleet_report, "write_plots", lambda *args: {}),  # not the gate's
    ):
        overrides = [f"+output_dir={tmp}", f"store.root={tmp}/artifacts", f"seed={seed}"]
        cfg = compose("config", overrides=[*overrides, *NO_EDGE, *fee, *extra])
        summary, _ = train(cfg)
    return summary, counts


def share_row(cost: float, gate: str, seeds: int, heads: int, trading: int) -> dict:
    ci = binomtest(trading, heads).proportion_ci(confidence_level=0.95, method="exact")
    share = trading / heads
    return {
        "cost_bps": f"{cost:g}",
        "gate": gate,
        "seeds": seeds,
        "head_folds": heads,
        "trading": trading,
        "share": f"{share:.3f}",
        "ci95": f"{ci.low:.3f}..{ci.high:.3f}",
        "<= 5 %": verdict(share <= TARGET),
    }


def report(totals: dict, seeds: list[int], outcome: dict, extra: list[str]) -> None:
    rows = [
        share_row(cost, gate, len(seeds), count["heads"], count[gate])
        for cost, count in totals.items()
        for gate in GATES
    ]
    print_table(
        "no-edge markets: share of head-folds whose gate lets them trade "
        f"(seeds {seeds[0]}..{seeds[-1]}, {', '.join(sorted({seed_label(s) for s in seeds}))}; "
        f"overrides {extra or 'none'})",
        rows,
    )
    cost = next(iter(totals))
    print(
        f"the default runs' test windows at {cost:g} bps, summed over the seeds: "
        f"{outcome['trades']} trades, {outcome['net_bps']:.0f} net bps"
    )
    passed = all(r["<= 5 %"] == "PASS" for r in rows if r["gate"] == "default")
    print(
        f"\nno-edge gate, default, at most 5 % at every cost: {verdict(passed)}; "
        f"at least 50 seeds: {verdict(len(seeds) >= 50)}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(160, 210)))
    parser.add_argument(
        "--costs", type=float, nargs="+", default=[0, 2, 10, 20], help="the first trains"
    )
    parser.add_argument("--every", type=int, default=10, help="print the tables every N seeds")
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    totals = {c: {"heads": 0, **dict.fromkeys(GATES, 0)} for c in args.costs}
    outcome = {"trades": 0, "net_bps": 0.0}
    start = time.perf_counter()
    for i, seed in enumerate(args.seeds, 1):
        summary, counts = run(seed, args.costs, extra)
        for cost, count in counts.items():
            for key, value in count.items():
                totals[cost][key] += value
        model = summary["clusters"]["all"]["model"]
        outcome["trades"] += model["n_trades"]
        outcome["net_bps"] += model["net_bps"]
        print(f"seed {seed} done, {time.perf_counter() - start:.0f} s", flush=True)
        if i % args.every == 0 or i == len(args.seeds):
            report(totals, args.seeds[:i], outcome, extra)


if __name__ == "__main__":
    main()
