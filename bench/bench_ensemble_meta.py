"""The ensemble's meta-models side by side on one run's components (design windows only).

    nice -n 10 .venv/bin/python bench/bench_ensemble_meta.py daily
    nice -n 10 .venv/bin/python bench/bench_ensemble_meta.py daily -- seed=1
    nice -n 10 .venv/bin/python bench/bench_ensemble_meta.py hourly

One ``ensemble=stack`` run on the design window of ``bench_hierarchy.py --ensemble``
(Binance 1d to 2022-05-08, or 1h 2020-05-11 .. 2022-05-08). Its fold components (every
cluster head on every asset, the global head, LightGBM where the run has it) are kept, and
each candidate meta-model is fitted on them exactly as the run fits its own
(``stack_fold``: cross-fitted on each fold's validation slice, refitted on the whole
slice for the test window; the heads' rule for horizon and cut). The table gives, per
candidate and per component, the mean rank IC of the test windows at every horizon, the
mean margin over the best component at each horizon (the best chosen after the fact, as
the issue's check does), the horizons where the candidate is at least that best, its
test-window trades, and two diagnostics on the validation slice: the out-of-fold rank IC
and the share of the score's variance that lies between bars (a score that moves the
whole cross-section together times the market, it does not rank coins); ``gate``: of the
run's head-folds (each fold's heads), those whose validation predictions pass the run's
family-wise gate, then those that pass the uncorrected search (the components' own
validation predictions; the meta-models' out-of-fold ones).
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import pandas as pd
from _util import ROOT, SHARED_DATA, print_table
from bench_hierarchy import ENSEMBLE_WINDOWS
from hydra import compose, initialize_config_dir

from huracan.ensemble import EnsembleConfig, oof_rank_ic, stack_fold
from huracan.ensemble_convex import logit
from huracan.evaluation import factor_summary
from huracan.pipelines.hierarchical.book import Book
from huracan.pipelines.hierarchical.ensemble import decide, with_own
from huracan.run import train
from huracan.thresholds import DAY_NS, choose_horizons, family_gate, validation_days

CANDIDATES = {
    "logistic": {"meta": "logistic"},
    "convex shrink=0": {"meta": "convex", "shrink": 0.0},
    "convex shrink=0.5": {"meta": "convex", "shrink": 0.5},
    "convex shrink=1": {"meta": "convex", "shrink": 1.0},
    "best": {"meta": "best"},
    "convex shrink=0.5 fallback": {"meta": "convex", "shrink": 0.5, "fallback": True},
}


def stack_run(overrides: list[str]):
    """An ``ensemble=stack`` run (outputs in a temporary directory): its run and config."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"),
    ):
        out = [f"+output_dir={tmp}", f"store.root={tmp}/artifacts", "ensemble=stack"]
        quiet = ["trainer.enable_progress_bar=false", "~logger"]
        cfg = compose("config", overrides=[*out, *quiet, *overrides])
        return train(cfg)[1]["run"], cfg


def test_ic(scores: np.ndarray, run) -> np.ndarray:
    """(H,) mean rank IC over the test bars of an (H, T, N) score."""
    rows, arrays = np.sort(run.test_rows), run.arrays
    return np.array(
        [
            factor_summary(scores[i], arrays.net_of(i), rows, h)["ic_mean"] or np.nan
            for i, h in enumerate(arrays.horizons)
        ]
    )


def component_scores(run) -> dict[str, np.ndarray]:
    """Each component's (H, T, N) test score, the own head first."""
    arrays, names = run.arrays, ["own_head", *run.ensemble_parts[0].names]
    scores = {n: np.full((len(arrays.horizons), *arrays.grid_shape), np.nan) for n in names}
    for parts in run.ensemble_parts:
        test_t, test_a, test_group = parts.test_rows
        prob = with_own(parts.test_prob, test_group, leave_out_own=False)
        for k, name in enumerate(names):
            scores[name][:, test_t, test_a] = prob[:, k].T
    return scores


def gate_passes(val_prob: np.ndarray, parts, arrays, cfg) -> np.ndarray:
    """(2,) heads of one fold whose validation trades pass the run's family-wise gate, and
    those that pass the uncorrected search (``thresholds.gate=search``)."""
    val_t, val_a, val_group = parts.val_rows
    net = np.where(np.isfinite(val_prob), arrays.net_at(val_t, val_a), np.nan)
    passed = []
    for family in (family_gate(cfg.thresholds, arrays.horizons, arrays.timestamps_ns, 0), None):
        index, _, _ = choose_horizons(
            np.nan_to_num(val_prob, nan=0.0),
            net,
            val_group,
            val_t,
            arrays.horizons,
            parts.n_groups,
            cfg.thresholds.min_trades,
            cfg.thresholds.z,
            validation_days(cfg.thresholds.unit, arrays.timestamps_ns[val_t]),
            cfg.thresholds.cut_z,
            family,
        )
        passed.append(int((index >= 0).sum()))
    return np.array(passed)


def candidate(run, cfg, options: dict) -> tuple[np.ndarray, int, float, float, np.ndarray]:
    """A meta-model refitted on the run's components: test IC per horizon, test trades,
    out-of-fold validation rank IC, the between-bar share of its validation score, and
    the head-folds whose out-of-fold predictions pass the gate (family, search)."""
    config, arrays = EnsembleConfig(kind="stack", **options), run.arrays
    book, oof, between, passes = Book.empty(arrays), [], [], np.zeros(2, dtype=int)
    for parts in run.ensemble_parts:
        val_t, val_a, val_group = parts.val_rows
        _, _, test_group = parts.test_rows
        net = arrays.net_at(val_t, val_a)
        stacked = stack_fold(
            config,
            (
                with_own(parts.val_prob, val_group),
                val_group,
                val_t,
                arrays.timestamps_ns[val_t] // DAY_NS,
            ),
            (with_own(parts.test_prob, test_group), test_group),
            arrays.labels_at(val_t, val_a),
            net,
            arrays.horizons,
            parts.n_groups,
            cfg.seed + parts.fold,
        )
        decide(stacked.validation, stacked.test, parts, arrays, cfg, book)
        passes += gate_passes(stacked.validation, parts, arrays, cfg)
        for i in range(len(arrays.horizons)):
            score = stacked.validation[:, i]
            oof.append(oof_rank_ic(score, net[:, i], val_t))
            ok = np.isfinite(score)
            if ok.sum() < 2:
                continue  # no meta-model at this horizon in this fold (too few samples)
            z = logit(score[ok])
            by_bar = pd.Series(z).groupby(val_t[ok]).transform("mean").to_numpy()
            between.append(by_bar.var() / z.var() if z.var() > 0 else np.nan)
    finite = [v for v in oof if np.isfinite(v)]
    ic = test_ic(book.scores, run)
    return ic, int(book.signals.sum()), np.mean(finite), np.nanmean(between), passes


def component_validation(parts, name: str) -> np.ndarray:
    """(Bv, H) one component's validation probabilities (the own head: each sample's)."""
    prob = with_own(parts.val_prob, parts.val_rows[2], leave_out_own=False)
    return prob[:, ["own_head", *parts.names].index(name)].astype(np.float64)


def ic_cells(horizons: tuple[int, ...], ic: np.ndarray, best: np.ndarray) -> dict:
    """A row's IC per horizon, its mean margin over the best component's and the horizons
    where it is at least the best."""
    margin = ic - best
    return {
        **{f"IC h={h}": f"{v:.4f}" for h, v in zip(horizons, ic, strict=True)},
        "margin": f"{np.nanmean(margin):+.4f}",
        ">= best": f"{int((margin >= 0).sum())}/{len(margin)}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("timeframe", choices=["daily", "hourly"])
    parser.add_argument("extra", nargs="*", help="more overrides, after --")
    args = parser.parse_args()
    path = SHARED_DATA / "binance_spot" / ("1d" if args.timeframe == "daily" else "1h")
    overrides = [*ENSEMBLE_WINDOWS[args.timeframe]["design"], f"data.path={path}"]
    the_run, cfg = stack_run([*overrides, *args.extra])
    horizons = the_run.arrays.horizons
    components = {name: test_ic(s, the_run) for name, s in component_scores(the_run).items()}
    best = np.nanmax(np.stack(list(components.values())), axis=0)
    head_folds = sum(parts.n_groups for parts in the_run.ensemble_parts)
    rows = []
    for name, ic in components.items():
        passes = sum(
            gate_passes(component_validation(parts, name), parts, the_run.arrays, cfg)
            for parts in the_run.ensemble_parts
        )
        rows.append(
            {
                "meta / component": name,
                **ic_cells(horizons, ic, best),
                "trades": "-",
                "val OOF IC": "-",
                "between-bar share": "-",
                "gate": f"{passes[0]}/{head_folds}, {passes[1]}/{head_folds}",
            }
        )
    for name, options in CANDIDATES.items():
        ic, trades, oof, between, passes = candidate(the_run, cfg, options)
        rows.append(
            {
                "meta / component": name,
                **ic_cells(horizons, ic, best),
                "trades": trades,
                "val OOF IC": f"{oof:.4f}",
                "between-bar share": f"{between:.2f}",
                "gate": f"{passes[0]}/{head_folds}, {passes[1]}/{head_folds}",
            }
        )
    print_table(
        f"Binance {args.timeframe}, design window, {' '.join(overrides[:3])} "
        f"{' '.join(args.extra)}: test-window rank IC of each meta-model refitted on one "
        "run's fold components; margin: mean over horizons of IC minus the best component's",
        rows,
    )


if __name__ == "__main__":
    main()
