"""``ensemble=stack``'s part of the report: every component's figures beside the
ensemble's, and the ensemble's rows in ``results.csv``.

The components: the model (each asset's own cluster head), each cluster head on every
asset (``component_head_cluster_<g>``), the global head (``component_head_global``) and,
where the run has it, the LightGBM baseline: its probabilities are stacked, and its
component row is the baseline's own book, its cut chosen by ``baselines.rule`` (by
default the heads' rule, gated, so it can trade far less than the uncorrected search;
``docs/ensemble.md``), which the P&L check names. Their test-window P&L
(t of daily P&L) and rank IC per horizon sit beside the ensemble's, with two checks
measured against the best component: the ensemble's rank IC at the long-short book's
horizon at least the best component's, and its daily P&L not significantly below the
best component's (the t of the daily difference at least -1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from huracan import significance
from huracan.baseline_rule import applied_gate, gate_label
from huracan.pipelines.hierarchical.ensemble import ensemble_config, ensemble_folds
from huracan.pipelines.hierarchical.factor_report import book_config
from huracan.report import fmt
from huracan.strong_baselines import baseline_options

if TYPE_CHECKING:
    from huracan.pipelines.hierarchical.book import FleetRun


def component_names(run: FleetRun, everything: dict) -> list[str]:
    """The report's names of the components, the model (own cluster head) first."""
    names = ["model", *(f"component_{k}" for k in run.components)]
    return names + (["baseline_lightgbm"] if "baseline_lightgbm" in everything else [])


def ensemble_section(
    run: FleetRun,
    cfg: DictConfig,
    everything: dict,
    ic: dict,
    daily: Callable[[str], np.ndarray],
) -> dict:
    """``summary.json``'s ``ensemble``.

    Args:
        everything: every strategy's metrics over all assets (``cluster_table``'s ``all``).
        ic: the report's ``ic`` section.
        daily: a strategy's net P&L per test day, by name.
    """
    horizon = str(book_config(cfg).horizon(run.arrays.horizons))
    names = component_names(run, everything)
    rule = baseline_options(cfg).rule
    gate = applied_gate(cfg.get("thresholds"), rule)
    table = {}
    for name in [*names, "ensemble"]:
        pnl = everything[name]
        table[name] = {
            "net_bps": pnl["net_bps"],
            "n_trades": pnl["n_trades"],
            "t_stat": pnl["t_stat"],
            **{f"ic_{h}": ic[name][h]["ic_mean"] for h in ic.get(name, {})},
            **{f"ic_t_{h}": ic[name][h]["ic_t"] for h in ic.get(name, {})},
        }
    best_pnl = max(names, key=lambda n: table[n]["net_bps"])
    best_ic = max(names, key=lambda n: _value(table[n].get(f"ic_{horizon}")))
    mine, theirs = table["ensemble"].get(f"ic_{horizon}"), table[best_ic].get(f"ic_{horizon}")
    t = significance.t_stat(daily("ensemble") - daily(best_pnl))
    # the LightGBM row is the baseline's book: its trades depend on the baselines' rule
    chosen_by = (
        f"; baseline_lightgbm's cut by baselines.rule={rule} ({gate_label(gate)})"
        if "baseline_lightgbm" in names
        else ""
    )
    t = float(t) if np.isfinite(t) else None
    checks = [
        {
            "name": f"ensemble's rank IC at h={horizon} >= the best component's ({best_ic})",
            "value": f"{fmt(mine, 4)} vs {fmt(theirs, 4)}",
            "passed": mine is not None and theirs is not None and mine >= theirs,
        },
        {
            "name": f"ensemble's P&L not significantly below the best component's ({best_pnl}"
            f"{chosen_by}): t of the daily difference >= -1",
            "value": f"{fmt(table['ensemble']['net_bps'], 1)} vs "
            f"{fmt(table[best_pnl]['net_bps'], 1)} bps, t {fmt(t, 2)}",
            "passed": t is not None and t >= -1,
        },
    ]
    for check in checks:
        check["result"] = "PASS" if check["passed"] else "FAIL"
    return {
        "meta": ensemble_config(cfg).meta,
        "ic_horizon": int(horizon),
        "side_by_side": table,
        "best_component_by_pnl": best_pnl,
        "best_component_by_ic": best_ic,
        "t_daily_difference_vs_best": t,
        "checks": checks,
        "seconds": round(run.ensemble_seconds, 2),
        "folds": ensemble_folds(run),
    }


def with_ensemble_rows(table: pd.DataFrame, ensemble: pd.DataFrame) -> pd.DataFrame:
    """``results.csv`` with a ``strategy`` column: the model's rows as they were, then the
    ensemble's long-only rows per asset."""
    ensemble = ensemble.copy()
    if "book" in table.columns:
        ensemble.insert(0, "book", "long_only")
    both = [table.assign(strategy="model"), ensemble.assign(strategy="ensemble")]
    combined = pd.concat(both, ignore_index=True)
    return combined[["strategy", *table.columns]]


def _value(value: float | None) -> float:
    return -np.inf if value is None else value
