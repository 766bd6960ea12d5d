"""Per-coin gate: the share of per-coin models that trade on markets without an edge, and
what the gate costs where an edge is planted.

    nice -n 10 .venv/bin/python bench/bench_pcgate.py --seeds 160 161 162   # no edge
    nice -n 10 .venv/bin/python bench/bench_pcgate.py --edge --seeds 0 1 2 3 4

No edge (default): each seed is the real per-coin pipeline on a synthetic market without
an edge (``data.follow_share=[0,0]``, ``data.majors_follow_share=[0,0]``), 8 coins, 1
year, the PCA encoder. Every job's choice of horizon and cut (``coin_rule.choose_coin_cut``)
is recorded and judged again, on the same validation predictions, at each round-trip cost
of ``--costs`` (net = gross return less that flat cost) by the run's rule (the family gate,
``thresholds.gate=family``) and by the uncorrected search (``gate=search``, the per-coin
rule before). A model trades where its cut is finite. Target (issue 26, item 6): at most
5 % at every cost; the interval is the exact (Clopper-Pearson) 95 % one.

Edge (``--edge``): the default planted market (8 coins, 1 year), each seed run twice,
``thresholds.gate=search`` and ``family``: the coins whose model traded in the test window
and the models' pooled net bps and t in the selection and report windows (after costs).
"""

from __future__ import annotations

import argparse
import tempfile
from unittest import mock

from _util import ROOT, print_table, seed_label, verdict
from hydra import compose, initialize_config_dir
from scipy.stats import binomtest

import huracan.pipelines.per_coin.job as per_coin_job
from huracan.coin_rule import choose_coin_cut
from huracan.coins import grid_rows
from huracan.run import train

SMALL = [
    "pipeline=per_coin",
    "data.n_assets=8",
    "data.years=1",
    "encoder=pca",
    "trainer.enable_progress_bar=false",
    "~logger",
]
NO_EDGE = ["data.follow_share=[0,0]", "data.majors_follow_share=[0,0]"]
GATES = ("family", "search")
TARGET = 0.05


def run(seed: int, overrides: list[str], record=None) -> dict:
    """One per-coin run (its choices passed to ``record``); its ``per_coin`` summary."""
    choose = per_coin_job.choose_horizon

    def recorded(job, prob):
        if record is not None:
            record(job, prob)
        return choose(job, prob)

    with (
        tempfile.TemporaryDirectory() as tmp,
        initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"),
        mock.patch.object(per_coin_job, "choose_horizon", recorded),
    ):
        paths = [f"+output_dir={tmp}", f"store.root={tmp}/artifacts", f"seed={seed}"]
        summary, _ = train(compose("config", overrides=[*paths, *SMALL, *overrides]))
    return summary["per_coin"]


def no_edge(seeds: list[int], costs: list[float]) -> None:
    counts = {(c, g): [0, 0] for c in costs for g in GATES}  # [models, trading]

    def record(job, prob):
        rule, val = job.meta["cut_rule"], job.val
        row = grid_rows(val["timestamps"], job.rules["bars_per_year"])
        prob = prob.reshape(len(prob), -1)
        for cost in costs:  # a flat round trip on the gross return
            for gate in GATES:
                judged = {**rule, "thresholds": {**rule["thresholds"], "gate": gate}}
                net = val["gross"] - cost / 1e4
                _, cut = choose_coin_cut(
                    judged, {}, prob, net, row, val["timestamps"], tuple(job.horizons)
                )
                counts[cost, gate][0] += 1
                counts[cost, gate][1] += int(cut < float("inf"))

    for i, seed in enumerate(seeds, 1):
        run(seed, NO_EDGE, record)
        share_table(counts, seeds[:i])


def share_table(counts: dict, seeds: list[int]) -> None:
    """The shares so far (printed after every seed: a bounded run stops where it must)."""
    rows = []
    for (cost, gate), (models, trading) in counts.items():
        ci = binomtest(trading, models).proportion_ci(method="exact")
        rows.append(
            {
                "cost_bps": f"{cost:g}",
                "gate": gate + (" (before)" if gate == "search" else ""),
                "models": models,
                "trading": trading,
                "share": f"{trading / models:.3f}",
                "ci95": f"{ci.low:.3f}..{ci.high:.3f}",
                "<= 5 %": verdict(trading / models <= TARGET),
            }
        )
    labels = ", ".join(sorted({seed_label(s) for s in seeds}))
    print_table(f"no-edge per-coin markets: models that trade (seeds {seeds}, {labels})", rows)
    passed = all(r["<= 5 %"] == "PASS" for r in rows if r["gate"] == "family")
    print(f"\nper-coin family gate, at most 5 % at every cost: {verdict(passed)}")


def edge(seeds: list[int]) -> None:
    rows = []
    for gate in GATES:
        for seed in seeds:
            summary = run(seed, [f"thresholds.gate={gate}"])
            for window in ("selection", "report"):
                model = summary["strategies"][window]["model"]
                t = model["t_stat"]
                rows.append(
                    {
                        "gate": gate,
                        "seed": seed,
                        "window": window,
                        "coins": model["coins"],
                        "coins_traded": model["coins_traded"],
                        "trades": model["n_trades"],
                        "net_bps": f"{model['net_bps']:.0f}",
                        "t": "n/a" if t is None else f"{t:.2f}",
                    }
                )
            title = "planted edge: the per-coin models in the test window, after costs"
            print_table(title, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(160, 170)))
    parser.add_argument("--costs", type=float, nargs="+", default=[0, 10])
    parser.add_argument("--edge", action="store_true", help="the planted market instead")
    args = parser.parse_args()
    if args.edge:
        edge(args.seeds)
    else:
        no_edge(args.seeds, args.costs)


if __name__ == "__main__":
    main()
