"""The report of a hierarchical run: metrics after costs, success criteria, files, plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from sklearn.metrics import adjusted_rand_score

from huracan.clustering import fold_agreement
from huracan.data.panel import Panel
from huracan.io import atomic_write_text, plain
from huracan.loggers import log_figures
from huracan.metrics import COLUMNS, asset_metrics, fold_metrics, group_metrics
from huracan.plots import plot_correlation_heatmap, plot_dendrogram, plot_equity

if TYPE_CHECKING:  # the pipeline imports this report; the report only reads its run
    from huracan.pipelines.hierarchical import FleetRun

log = logging.getLogger("huracan")


def modal_clusters(run: FleetRun) -> np.ndarray:
    """(N,) the cluster each asset held in most test windows (-1 if never clustered)."""
    ids = run.cluster_ids[run.test_rows]  # (R, N), -1 outside any cluster
    n_ids = max(int(ids.max()) + 1, 1)
    counts = (ids[:, :, None] == np.arange(n_ids)).sum(0)  # (N, K)
    return np.where(counts.any(1), counts.argmax(1), -1)


def pooled_metrics(
    signals: np.ndarray, run: FleetRun, columns: np.ndarray, bars_per_year: float, horizon: int
) -> dict:
    """Metrics of the trades of a set of assets pooled together, over all test rows.

    The same definitions as ``huracan.metrics`` (one group holding ``columns``).
    """
    arrays = run.arrays
    table = group_metrics(
        signals[:, columns],
        arrays.label[:, columns],
        arrays.net_return[:, columns],
        run.test_rows,
        np.zeros(len(columns), dtype=np.int64),
        bars_per_year,
        horizon,
    )
    return {k: plain(v[0]) for k, v in table.items()}


def cluster_table(
    run: FleetRun, clusters: np.ndarray, bars_per_year: float, horizon: int
) -> dict[str, dict]:
    """Per cluster (and all assets): metrics with the factor, without it, and the oracle."""
    variants = {"model": run.signals}
    if run.signals_without_factor is not None:
        variants["without_factor"] = run.signals_without_factor
    if run.oracle_signals is not None:
        variants["oracle"] = run.oracle_signals
    groups = {f"cluster_{c}": np.flatnonzero(clusters == c) for c in np.unique(clusters) if c >= 0}
    groups["alt_clusters"] = np.flatnonzero(clusters > 0)
    groups["all"] = np.arange(len(clusters))
    table = {}
    for name, columns in groups.items():
        if len(columns) == 0:
            continue
        table[name] = {"members": [run.arrays.symbols[j] for j in columns]}
        for variant, signals in variants.items():
            table[name][variant] = pooled_metrics(signals, run, columns, bars_per_year, horizon)
    return table


def success_criteria(
    run: FleetRun, results: pd.DataFrame, clusters: dict, cfg: DictConfig
) -> list[dict]:
    """The run's success criteria, each measured, with PASS or FAIL."""
    leader = cfg.universe.dominant_symbols[0]
    dominant_ok = [c.cluster_map.get(leader) == c.dominant_cluster_id for c in run.fold_clusters]
    traded = results["n_trades"] > 0
    expectancy = results["expectancy"]
    criteria = [
        {
            "name": f"dominant cluster holds {leader} in every fold",
            "value": f"{sum(dominant_ok)}/{len(dominant_ok)} folds",
            "passed": all(dominant_ok),
        },
        {
            "name": "every asset's expectancy > 0 (after costs)",
            "value": f"{int((expectancy > 0).sum())}/{len(results)} assets > 0; "
            f"{int((~traded).sum())} never traded; min {expectancy.min():.6f}",
            "passed": bool(traded.all() and (expectancy > 0).all()),
        },
        {
            "name": "mean precision > 55%",
            "value": _fmt_float(results.loc[traded, "precision"].mean()),
            "passed": bool(results.loc[traded, "precision"].mean() > 0.55),
        },
    ]
    alt = clusters.get("alt_clusters")
    if alt is not None and "without_factor" in alt:
        with_f, without_f = alt["model"]["expectancy"], alt["without_factor"]["expectancy"]
        criteria.append(
            {
                "name": "alt clusters' expectancy with the factor > without",
                "value": f"{_fmt_float(with_f)} vs {_fmt_float(without_f)}",
                "passed": bool(with_f is not None and (without_f is None or with_f > without_f)),
            }
        )
    else:
        criteria.append(
            {
                "name": "alt clusters' expectancy with the factor > without",
                "value": "not measured (factor=none, report.compare_without_factor=false, "
                "or no alt cluster)",
                "passed": False,
            }
        )
    for c in criteria:
        c["result"] = "PASS" if c["passed"] else "FAIL"
    return criteria


def write_report(run: FleetRun, panel: Panel, cfg: DictConfig, out: Path, logger=None) -> dict:
    """Writes results.csv, clusters.json, factor.json and the plots; returns the metrics."""
    horizon = cfg.labels.horizon
    arrays = run.arrays
    clusters = modal_clusters(run)
    results = results_table(run, clusters, panel.bars_per_year, horizon)
    atomic_write_text(out / "results.csv", results.to_csv(index=False))
    by_cluster = cluster_table(run, clusters, panel.bars_per_year, horizon)
    atomic_write_text(
        out / "clusters.json", json.dumps(clusters_summary(run, panel, clusters), indent=2)
    )
    factor_json = {
        "method": run.fold_factor[0]["method"],
        "dominant_symbols": list(cfg.universe.dominant_symbols),
        "n_lags": cfg.factor.n_lags,
        "folds": run.fold_factor,
        "explained_variance_ratio": [f.get("explained_variance_ratio") for f in run.fold_factor],
    }
    atomic_write_text(out / "factor.json", json.dumps(factor_json, indent=2))
    log_figures(logger, write_plots(run, panel, clusters, out))
    per_fold = fold_metrics(
        run.signals,
        arrays.label,
        arrays.net_return,
        folds=run.folds,
        bars_per_year=panel.bars_per_year,
        horizon=horizon,
    )
    return {
        "results": results,
        "per_fold": per_fold,
        "clusters": by_cluster,
        "criteria": success_criteria(run, results, by_cluster, cfg),
        "cluster_agreement": fold_agreement(run.fold_clusters),
        "folds": run.fold_info,
    }


def results_table(
    run: FleetRun, clusters: np.ndarray, bars_per_year: float, horizon: int
) -> pd.DataFrame:
    """``results.csv``: one row per asset, its test-window trades scored after costs."""
    arrays = run.arrays
    results = asset_metrics(
        run.signals,
        arrays.label,
        arrays.net_return,
        symbols=arrays.symbols,
        bars_per_year=bars_per_year,
        horizon=horizon,
        rows=run.test_rows,
    )
    scored = np.isfinite(run.probability)
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
    net = np.where(run.signals[rows], np.nan_to_num(run.arrays.net_return[rows]), 0.0)
    curves = {
        f"cluster {c}": np.cumsum(net[:, clusters == c].mean(1)) * 1e4
        for c in sorted(set(clusters.tolist()) - {-1})
    }
    curves["all assets"] = np.cumsum(net.mean(1)) * 1e4
    boundaries = [f.test_times[0] for f in run.folds[1:]]
    return plot_equity(panel.timestamps[rows], curves, boundaries, path)


def _fmt_float(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.6f}"
