"""Clusters refitted inside a fold's test window (``cluster.refit_every``).

A fold fits its clusters on its training rows and keeps them for its whole test window.
With ``cluster.refit_every`` (e.g. ``30d``) the test window is cut into segments of that
length; at the start of each segment after the first, the clusters are fitted again on
the bars before it only (every bar from the training window's start, or the last
``cluster.refit_window`` of them), their ids aligned to the fold's (the dominant cluster
stays head 0; the others matched by shared members), and from that bar on each coin is
read by the head of its new cluster. The market factor, its loadings, the scalers, the
feature masks and the heads stay those fitted on the training rows: a refit changes which
cluster head reads a coin, not what it reads. Each refit's adjusted Rand index against the
clusters before it, the coins that moved, and whether the ARI fell below
``cluster.refit_min_ari`` (a regime shift; 0.5, the Mechanic's ``drift.min_cluster_ari``)
go into ``clusters.json`` and ``summary.json``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from sklearn.metrics import adjusted_rand_score

from huracan.clustering import ClusterResult, align_cluster_ids
from huracan.errors import ConfigError
from huracan.features.cross_section import to_bars
from huracan.validation import Fold


def check_refit(cfg: DictConfig) -> None:
    """Refuses a refit that cannot apply, before any work.

    Raises:
        ConfigError: outside ``pipeline=hierarchical``, with ``cluster=hierarchy`` (its
            levels' factors are fitted once per fold), with heads that are not per
            cluster, or a value that is not a duration or a number of bars.
    """
    every = cfg.cluster.get("refit_every")
    if every is None:
        return
    if "hierarchical" not in str(cfg.get("pipeline", {}).get("_target_")):
        raise ConfigError(
            f"cluster.refit_every={every}: clusters are refitted inside the test windows of "
            "pipeline=hierarchical only"
        )
    if cfg.cluster.get("levels"):
        raise ConfigError(
            "cluster.refit_every with cluster=hierarchy: the levels' factors are fitted once "
            "per fold; refits need a flat clustering"
        )
    if cfg.head.granularity != "cluster":
        raise ConfigError(
            f"cluster.refit_every moves coins between cluster heads: it needs "
            f"head.granularity=cluster, got {cfg.head.granularity!r}"
        )
    for key in ("refit_every", "refit_window"):
        if cfg.cluster.get(key) is not None:
            to_bars(cfg.cluster[key], 1.0, f"cluster.{key}")
    min_ari = cfg.cluster.get("refit_min_ari", 0.5)
    if not isinstance(min_ari, int | float) or not -1 <= min_ari <= 1:
        raise ConfigError(f"cluster.refit_min_ari must be a number in [-1, 1], got {min_ari!r}")


def refit_bars(cfg: DictConfig, bar_seconds: float) -> tuple[int | None, int | None]:
    """``cluster.refit_every`` and ``cluster.refit_window`` in bars (None: not set)."""
    every, window = cfg.cluster.get("refit_every"), cfg.cluster.get("refit_window")
    if every is None:
        return None, None
    check_refit(cfg)
    every = to_bars(every, bar_seconds, "cluster.refit_every")
    window = None if window is None else to_bars(window, bar_seconds, "cluster.refit_window")
    overlap = int(cfg.cluster.get("min_overlap", 0))
    if window is not None and window < overlap:
        raise ConfigError(
            f"cluster.refit_window={cfg.cluster.refit_window} is {window} bars, fewer than the "
            f"cluster.min_overlap={overlap} bars two coins must share to be compared"
        )
    return every, window


def refit_groups(
    fit, fold: Fold, clusters: ClusterResult, groups: np.ndarray, cfg, arrays
) -> tuple[np.ndarray | None, list[dict]]:
    """The head of each asset at each bar, and the history of the refits.

    Args:
        fit: ``fit(rows) -> ClusterResult``, the fold's clustering applied to other rows.
        fold: the fold; refits happen inside ``fold.test`` only.
        clusters: the fold's clusters (fitted on its training rows).
        groups: (N,) each asset's head under them.
        A refit cluster matched to no head the fold trained (a new cluster) leaves its
        coins without one (-1: no trade, no score), and so does a coin the refit could not
        cluster (``excluded``).
        cfg: the run's config.
        arrays: the fleet arrays (timestamps, symbols, bar length).

    Returns:
        (T, N) int32 heads, None where no refit is set; the refits, one dict each.
    """
    bar_seconds = float(np.median(np.diff(arrays.timestamps_ns[:50]))) / 1e9
    every, window = refit_bars(cfg, bar_seconds)
    if every is None:
        return None, []
    symbols = arrays.symbols
    grid = np.broadcast_to(groups.astype(np.int32), arrays.returns.shape).copy()
    trained = np.unique(groups[groups >= 0])  # heads with coins to learn from this fold
    min_ari = float(cfg.cluster.get("refit_min_ari", 0.5))
    previous, history = clusters, []
    for start in fold.test[every::every]:
        first = fold.train[0] if window is None else max(fold.train[0], start - window)
        refit = align_cluster_ids(fit(np.arange(first, start)), clusters)
        ids = np.array([refit.cluster_map.get(s, -1) for s in symbols], dtype=np.int32)
        headless = (ids >= 0) & ~np.isin(ids, trained)  # a new cluster: no head learned it
        grid[start : fold.test[-1] + 1] = np.where(headless, -1, ids)
        shared = [s for s in symbols if s in refit.cluster_map and s in previous.cluster_map]
        ari = adjusted_rand_score(
            [previous.cluster_map[s] for s in shared], [refit.cluster_map[s] for s in shared]
        )
        history.append(
            {
                "start": str(pd.Timestamp(int(arrays.timestamps_ns[start]), tz="UTC")),
                "fitted_on": [
                    str(pd.Timestamp(int(arrays.timestamps_ns[i]), tz="UTC"))
                    for i in (first, start - 1)
                ],
                "ari_vs_previous": round(float(ari), 4),
                "regime_shift": bool(ari < min_ari),
                "moved": sorted(
                    s for s in shared if previous.cluster_map[s] != refit.cluster_map[s]
                ),
                "without_head": sorted(np.asarray(symbols)[headless].tolist()),
                "excluded": dict(refit.excluded),  # not clustered: no head until the next
                "cluster_map": refit.cluster_map,
            }
        )
        previous = refit
    return grid, history
