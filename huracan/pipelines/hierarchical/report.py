"""The report of a hierarchical run: metrics after costs with their significance, the
baselines beside the model, success criteria, files, plots.

Every strategy (the model, the model without the factor, the oracle, each baseline) is a
``Book`` scored by the same ``huracan.metrics`` on the same test rows and costs.

Longer than most modules on purpose: every strategy of the report is scored in one place,
so model, oracle and baselines cannot be scored two ways.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from sklearn.metrics import adjusted_rand_score

from huracan import significance
from huracan.baseline_rule import applied_gate, gate_label, gated_peer
from huracan.clustering import fold_agreement
from huracan.data.panel import Panel
from huracan.io import atomic_write_text, plain
from huracan.loggers import log_figures
from huracan.metrics import (
    COLUMNS,
    asset_metrics,
    fold_metrics,
    group_metrics,
    pooled_group_metrics,
    take_trades,
)
from huracan.pipelines.hierarchical.ensemble_report import ensemble_section, with_ensemble_rows
from huracan.pipelines.hierarchical.factor_report import (
    book_config,
    books_section,
    ic_section,
    with_long_short_rows,
)
from huracan.pipelines.hierarchical.validation import pooled_validation
from huracan.planted import tree_recovery
from huracan.plots import plot_correlation_heatmap, plot_dendrogram, plot_equity
from huracan.report import above, fmt
from huracan.strong_baselines import baseline_options

if TYPE_CHECKING:  # the pipeline imports this report; the report only reads its run
    from huracan.pipelines.hierarchical.book import Book, FleetRun

log = logging.getLogger("huracan")


def modal_clusters(run: FleetRun) -> np.ndarray:
    """(N,) the cluster each asset held in most test windows (-1 if never clustered)."""
    ids = run.cluster_ids[run.test_rows]  # (R, N), -1 outside any cluster
    n_ids = max(int(ids.max()) + 1, 1)
    counts = (ids[:, :, None] == np.arange(n_ids)).sum(0)  # (N, K)
    return np.where(counts.any(1), counts.argmax(1), -1)


def run_days(run: FleetRun) -> np.ndarray:
    """(T,) UTC calendar day of each grid row."""
    return run.arrays.timestamps_ns // 86_400_000_000_000


def pooled_metrics(book: Book, run: FleetRun, columns: np.ndarray, bars_per_year: float) -> dict:
    """Metrics of the trades of a set of assets pooled together, over all test rows.

    The same definitions as ``huracan.metrics`` (one group holding ``columns``).
    """
    table = group_metrics(
        book.signals[:, columns],
        book.label[:, columns],
        book.net_return[:, columns],
        run.test_rows,
        np.zeros(len(columns), dtype=np.int64),
        bars_per_year,
        book.hold[:, columns],
        run_days(run),
    )
    return {k: plain(v[0]) for k, v in table.items()}


def daily_pnl(book: Book, run: FleetRun, columns: np.ndarray) -> np.ndarray:
    """The summed net return of the trades of ``columns`` entered on each test day."""
    rows = np.sort(run.test_rows)
    net = book.net_return[rows][:, columns]
    taken = take_trades(
        book.signals[rows][:, columns] & np.isfinite(net), book.hold[rows][:, columns]
    )
    t_idx, a_idx = np.nonzero(taken)
    days = run_days(run)[rows]
    return significance.daily_pnl(days[t_idx], net[t_idx, a_idx], days)


def daily_net_bps(run: FleetRun) -> dict[str, float]:
    """The model's net P&L of all assets per test day, in bps (a day without a trade: 0):
    what a sweep's deflated Sharpe ratio is computed from (``huracan.compare``)."""
    rows = np.sort(run.test_rows)
    days = np.unique(run_days(run)[rows])
    pnl = daily_pnl(run.model, run, np.arange(len(run.arrays.symbols)))
    return {
        f"{pd.Timestamp(int(day), unit='D'):%Y-%m-%d}": round(float(bps) * 1e4, 4)
        for day, bps in zip(days, pnl, strict=True)
    }


def variants(run: FleetRun) -> dict[str, Book]:
    """Every strategy of the run by name: the model, its ablation, the oracle, baselines."""
    books = {"model": run.model}
    if run.without_factor is not None:
        books["without_factor"] = run.without_factor
    if run.oracle is not None:
        books["oracle"] = run.oracle
    books.update({f"baseline_{k}": v for k, v in run.baselines.items()})
    if run.ensemble is not None:  # ensemble=stack: its head components, then itself
        books.update({f"component_{k}": v for k, v in run.components.items()})
        books["ensemble"] = run.ensemble
    return books


def cluster_table(run: FleetRun, clusters: np.ndarray, bars_per_year: float) -> dict[str, dict]:
    """Per cluster (and all assets): metrics of every variant; on the synthetic market the
    model's share of the oracle's net profit at equal costs."""
    groups = {f"cluster_{c}": np.flatnonzero(clusters == c) for c in np.unique(clusters) if c >= 0}
    groups["alt_clusters"] = np.flatnonzero(clusters > 0)
    groups["all"] = np.arange(len(clusters))
    groups = {name: columns for name, columns in groups.items() if len(columns)}
    table = {
        name: {"members": [run.arrays.symbols[j] for j in columns]}
        for name, columns in groups.items()
    }
    for variant, book in variants(run).items():  # a book at a time: see forget_outcomes
        metrics = pooled_group_metrics(
            book.signals,
            book.label,
            book.net_return,
            run.test_rows,
            list(groups.values()),
            bars_per_year,
            book.hold,
            run_days(run),
        )
        for name, group in zip(groups, metrics, strict=True):
            table[name][variant] = {k: plain(v[0]) for k, v in group.items()}
        if book is not run.model:  # the rest of the report reads the model's throughout
            book.forget_outcomes()
    for name in groups:
        if "oracle" in table[name]:
            oracle_bps = table[name]["oracle"]["net_bps"]
            share = table[name]["model"]["net_bps"] / oracle_bps if oracle_bps > 0 else None
            table[name]["oracle_share"] = plain(share)
    return table


def success_criteria(
    run: FleetRun, results: pd.DataFrame, clusters: dict, cfg: DictConfig, modal: np.ndarray
) -> list[dict]:
    """The run's success criteria, each measured, with PASS or FAIL.

    None PASSes on a loss or on a figure that could not be measured: every criterion
    needs the run's net profit (all assets, after costs) above 0 besides its own test, so
    a precision or an oracle share is never a success while the run loses. "Significant"
    means a t-statistic of daily P&L (or of the daily difference) above 2.
    """
    traded = results["n_trades"] > 0
    expectancy = results["expectancy"]
    overall = clusters["all"]["model"]
    per_asset = results.loc[traded, "precision"].mean()
    criteria = [
        {
            "name": "the model's profit is significant (all assets, t of daily P&L > 2)",
            "value": f"{fmt(overall['net_bps'], 1)} bps, t {fmt(overall['t_stat'], 2)}, "
            f"{overall['n_trades']} trades",
            "passed": above(overall["t_stat"], 2),
        },
        {
            "name": "every asset's expectancy > 0 (after costs)",
            "value": f"{int((expectancy > 0).sum())}/{len(results)} assets > 0; "
            f"{int((~traded).sum())} never traded; min {fmt(expectancy.min(), 6)}",
            "passed": bool(traded.all() and (expectancy > 0).all()),
        },
        {
            "name": "precision > 55% (pooled over trades) on a net profit",
            "value": f"pooled {fmt(overall['precision'], 3)}; mean per asset "
            f"{fmt(per_asset, 3)} over {int(traded.sum())} assets that traded; "
            f"{fmt(overall['net_bps'], 1)} bps",
            "passed": above(overall["precision"], 0.55),
        },
    ]
    rule = baseline_options(cfg).rule
    gate = applied_gate(cfg.get("thresholds"), rule)
    criteria += _comparisons(run, clusters, modal, rule, gate)
    profit = above(overall["net_bps"], 0)
    for c in criteria:
        c["passed"] = bool(c["passed"] and profit)
        c["result"] = "PASS" if c["passed"] else "FAIL"
    return criteria


def diagnostics(run: FleetRun, cfg: DictConfig) -> list[dict]:
    """What the run found that says nothing about profit, printed apart from the criteria
    (``holds`` true or false, never PASS): whether the dominant cluster (by explained
    variance) holds the leader (the first of ``universe.dominant_symbols`` clustered in some
    fold, as the clusterer reads them) in every fold; not measured without any of them."""
    leaders = list(cfg.universe.dominant_symbols)
    clustered = set().union(*(c.cluster_map for c in run.fold_clusters))
    leader = next((s for s in leaders if s in clustered), None)
    if leader is None:  # it read BTC's absence as "fails 0/K"
        return [
            {
                "name": "dominant cluster (by explained variance) holds a dominant symbol",
                "value": f"not measured: none of universe.dominant_symbols {leaders} in the data",
                "holds": None,
            }
        ]
    dominant_ok = [c.cluster_map.get(leader) == c.dominant_cluster_id for c in run.fold_clusters]
    return [
        {
            "name": f"dominant cluster (by explained variance) holds {leader} in every fold",
            "value": f"{sum(dominant_ok)}/{len(dominant_ok)} folds",
            "holds": bool(dominant_ok) and all(dominant_ok),
        }
    ]


def _comparisons(
    run: FleetRun, clusters: dict, modal: np.ndarray, rule: str, gate: str | None
) -> list[dict]:
    """The criteria against another strategy: without the factor, the best baseline and
    (on the synthetic market) the oracle. The baseline's criterion names the rule and the
    gate its cut was chosen under (``gate``, ``search``: none), and says ``gated`` where a
    gate ran and the best baseline has a cut: a gated baseline is a weaker peer than the
    uncorrected search."""
    criteria = [
        _versus(
            "alt clusters' profit with the factor > without (significant)",
            run,
            np.flatnonzero(modal > 0),
            clusters.get("alt_clusters", {}),
            "without_factor",
        )
    ]
    best = _best_baseline(clusters["all"])
    if best is not None:
        name, gated = baseline_peer(best, rule, gate)
        columns = np.arange(len(modal))
        found = _versus(name, run, columns, clusters["all"], f"baseline_{best}")
        criteria.append(found | {"gated": gated})
    alt = clusters.get("alt_clusters", {})
    if "oracle_share" in alt:  # the synthetic market only: the oracle knows the truth
        share = alt["oracle_share"]
        criteria.append(
            {
                "name": "alt clusters make >= 0.7 of the oracle's net profit (equal costs)",
                "value": f"{fmt(share, 3)} ({fmt(alt['model']['net_bps'], 1)} of "
                f"{fmt(alt['oracle']['net_bps'], 1)} bps)",
                "passed": above(share, 0.7 - 1e-12),
            }
        )
    return criteria


def baseline_peer(best: str, rule: str, gate: str | None) -> tuple[str, bool]:
    """The best-baseline criterion's name, and whether that baseline's cut was gated (a
    gate ran, ``gate`` neither ``search`` nor None, and the baseline has a cut to choose)."""
    name = (
        f"model's profit > the best baseline's ({best}, significant; "
        f"baselines.rule={rule} ({gate_label(gate)}))"
    )
    return name, gated_peer(best, gate)


def _versus(name: str, run: FleetRun, columns: np.ndarray, group: dict, other: str) -> dict:
    """A criterion: the model's profit is positive and significantly above ``other``'s."""
    if len(columns) == 0 or other not in group:
        return {"name": name, "value": "not measured (no such group or variant)", "passed": False}
    books = variants(run)
    diff = daily_pnl(books["model"], run, columns) - daily_pnl(books[other], run, columns)
    books[other].forget_outcomes()
    t = significance.t_stat(diff)
    mine, theirs = group["model"]["net_bps"], group[other]["net_bps"]
    return {
        "name": name,
        "value": f"{fmt(mine, 1)} vs {fmt(theirs, 1)} bps, t of the daily difference {fmt(t, 2)}",
        "passed": above(mine, 0) and above(t, 2),
    }


def _best_baseline(group: dict) -> str | None:
    """The baseline with the highest net profit on the test windows (the hardest to beat)."""
    scores = {k[9:]: v["net_bps"] for k, v in group.items() if k.startswith("baseline_")}
    return max(scores, key=scores.get) if scores else None


def verdict(clusters: dict, folds: list[dict], criteria: list[dict] | None = None) -> str:
    """One line on whether the model found an edge it could trade: "a significant edge"
    only where its daily P&L is significant and (where measured) it also beats the best
    baseline by the criterion's test, so the verdict never contradicts the criteria."""
    overall = clusters["all"]["model"]
    heads = sum(f["heads_trading"] for f in folds)
    if overall["n_trades"] == 0:
        return (
            "no edge: no head's validation profit was significantly positive after costs in "
            "any fold, so the model did not trade (never trading is the honest answer here)"
        )
    t = overall["t_stat"]
    kind = "a significant edge" if above(t, 2) else "no significant edge"
    behind = [c for c in criteria or [] if "best baseline" in c["name"] and not c["passed"]]
    if above(t, 2) and behind:
        kind = f"a significant profit but no edge over the best baseline ({behind[0]['value']})"
    gated = [c for c in criteria or [] if "best baseline" in c["name"] and c["passed"]]
    if above(t, 2) and not behind and any(c.get("gated") for c in gated):
        # a gated baseline trades less, also where it has an edge: say what was beaten
        kind += (
            " over baselines gated by the heads' rule (weaker peers; baselines.rule="
            "uncorrected shows the search without the gate)"
        )
    return (
        f"{kind}: {overall['n_trades']} trades from {heads} head-fold(s) that passed "
        f"validation, {fmt(overall['net_bps'], 1)} bps net, t of daily P&L {fmt(t, 2)}, "
        f"95% interval of expectancy {fmt(_bps(overall['ci_low']), 1)} .. "
        f"{fmt(_bps(overall['ci_high']), 1)} bps per trade"
    )


def write_report(run: FleetRun, panel: Panel, cfg: DictConfig, out: Path, logger=None) -> dict:
    """Writes results.csv, clusters.json, factor.json and the plots; returns the metrics."""
    clusters = modal_clusters(run)
    results = results_table(run, clusters, panel.bars_per_year)
    table = with_long_short_rows(results, run, cfg, clusters, panel.bars_per_year)
    if run.ensemble is not None:
        table = with_ensemble_rows(
            table, results_table(run, clusters, panel.bars_per_year, run.ensemble)
        )
    atomic_write_text(out / "results.csv", table.to_csv(index=False))
    by_cluster = cluster_table(run, clusters, panel.bars_per_year)
    cluster_json = clusters_summary(run, panel, clusters)
    atomic_write_text(out / "clusters.json", json.dumps(cluster_json, indent=2))
    factor_json = {
        "method": run.fold_factor[0]["method"],
        "dominant_symbols": list(cfg.universe.dominant_symbols),
        "n_lags": cfg.factor.n_lags,
        "folds": run.fold_factor,
        "explained_variance_ratio": [f.get("explained_variance_ratio") for f in run.fold_factor],
    }
    atomic_write_text(out / "factor.json", json.dumps(factor_json, indent=2))
    log_figures(logger, write_plots(run, panel, clusters, out))
    model = run.model
    per_fold = fold_metrics(
        model.signals,
        model.label,
        model.net_return,
        folds=run.folds,
        bars_per_year=panel.bars_per_year,
        horizon=model.hold,
        days=run_days(run),
    )
    baselines = {
        name.removeprefix("baseline_"): {k: by_cluster["all"][name][k] for k in BASELINE_KEYS}
        for name in by_cluster["all"]
        if name.startswith("baseline_")
    }
    criteria = success_criteria(run, results, by_cluster, cfg, clusters)
    ic = ic_section(run, book_config(cfg).score)
    extra = {}
    if run.ensemble is not None:
        books = variants(run)
        columns = np.arange(len(clusters))
        extra["ensemble"] = ensemble_section(
            run, cfg, by_cluster["all"], ic, lambda name: daily_pnl(books[name], run, columns)
        )
    return {
        "results": results,
        "per_fold": per_fold,
        "clusters": by_cluster,
        "baselines": baselines,
        "criteria": criteria,
        "diagnostics": diagnostics(run, cfg),
        "daily_net_bps": daily_net_bps(run),
        "ic": ic,
        "books": books_section(
            run,
            cfg,
            by_cluster["all"]["model"],
            daily_pnl(model, run, np.arange(len(clusters))),
            panel.bars_per_year,
        ),
        "validation": pooled_validation(run.fold_info),
        "verdict": verdict(by_cluster, run.fold_info, criteria),
        "cluster_agreement": fold_agreement(run.fold_clusters),
        "tree_recovery": cluster_json.get("adjusted_rand_index_vs_planted_levels"),
        "folds": run.fold_info,
        **extra,
    }


BASELINE_KEYS = ("net_bps", "n_trades", "expectancy", "sharpe", "t_stat", "ci_low", "ci_high")


def results_table(
    run: FleetRun, clusters: np.ndarray, bars_per_year: float, book: Book | None = None
) -> pd.DataFrame:
    """``results.csv``: one row per asset, its test-window trades scored after costs (the
    model's, or ``book``'s)."""
    arrays, model = run.arrays, run.model if book is None else book
    results = asset_metrics(
        model.signals,
        model.label,
        model.net_return,
        symbols=arrays.symbols,
        bars_per_year=bars_per_year,
        horizon=model.hold,
        rows=run.test_rows,
        days=run_days(run),
    )
    scored = np.isfinite(model.probability)
    folds = np.stack([scored[f.test].any(0) for f in run.folds]).sum(0)
    results = results.reset_index(names="asset")
    results.insert(1, "cluster", clusters)
    results["folds"] = folds
    return results[["asset", "cluster", *COLUMNS, "folds"]]


def clusters_summary(run: FleetRun, panel: Panel, clusters: np.ndarray) -> dict:
    """``clusters.json``: the modal clusters, every fold's, and their agreement."""
    symbols = run.arrays.symbols
    summary = {
        "cluster_map": dict(zip(symbols, clusters.tolist(), strict=True)),
        "dominant_cluster_id": run.fold_clusters[-1].dominant_cluster_id,
        "cluster_members": {
            str(c): [s for s, k in zip(symbols, clusters, strict=True) if k == c]
            for c in sorted(set(clusters.tolist()))
        },
        "folds": [c.to_dict() for c in run.fold_clusters],
        "adjusted_rand_index_between_folds": fold_agreement(run.fold_clusters),
    }
    if panel.truth is not None:
        summary["adjusted_rand_index_vs_planted"] = [
            float(adjusted_rand_score(panel.truth.cluster_labels, c.labels(symbols)))
            for c in run.fold_clusters
        ]
        planted = panel.truth.level_labels()
        if planted is not None:  # data.levels: the planted tree and its recovery per level
            summary["planted_tree"] = panel.truth.tree(symbols)
            summary["adjusted_rand_index_vs_planted_levels"] = tree_recovery(
                planted, run.fold_clusters, symbols
            )
    return summary


def write_plots(run: FleetRun, panel: Panel, clusters: np.ndarray, out: Path) -> dict:
    """Dendrogram and heatmap of the last fold, equity curves per cluster (PNG)."""
    figures = {}
    last = run.fold_clusters[-1]
    if last.linkage_matrix is not None:
        figures["dendrogram"] = plot_dendrogram(last, out / "dendrogram.png")
    figures["correlation_heatmap"] = plot_correlation_heatmap(last, out / "correlation.png")
    figures["equity"] = plot_fleet_equity(run, panel, clusters, out / "equity.png")
    return figures


def plot_fleet_equity(run: FleetRun, panel: Panel, clusters: np.ndarray, path: Path):
    """Equity curves per cluster and for the whole fleet over the test windows."""
    rows = np.sort(run.test_rows)
    model = run.model
    entries = model.signals[rows] & np.isfinite(model.net_return[rows])
    net = np.where(take_trades(entries, model.hold[rows]), model.net_return[rows], 0.0)
    curves = {
        f"cluster {c}": np.cumsum(net[:, clusters == c].mean(1)) * 1e4
        for c in sorted(set(clusters.tolist()) - {-1})
    }
    curves["all assets"] = np.cumsum(net.mean(1)) * 1e4
    boundaries = [f.test_times[0] for f in run.folds[1:]]
    return plot_equity(panel.timestamps[rows], curves, boundaries, path)


def _bps(value: float | None) -> float | None:
    return None if value is None else value * 1e4
