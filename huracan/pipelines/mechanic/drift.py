"""The Mechanic's drift checks: feature drift per coin, and cluster drift of the fleet.

Feature drift: each champion's inputs on the bars it has not seen (everything after its
``data_end``, the holdout included) are binned on its checkpoint's reference bins (the
training window's deciles, ``huracan.features.drift``); the coin's drift is the largest
population stability index over its inputs, flagged above ``drift.max_psi``. A flagged
coin is queued for retraining in ``mechanic.json``.

Cluster drift: the configured clusterer re-clusters the coins on the latest
``drift.cluster_window_days`` and the result is compared with the clusters the champions
were trained under (their checkpoints' ``cluster``): the adjusted Rand index (sklearn) and
the coins that moved (each new cluster matched to the old one it overlaps most, by the
assignment that maximises the overlap). Every re-clustering appends one entry to
``meta/cluster_history.json`` (rewritten whole, atomically); an ARI below
``drift.min_cluster_ari`` says that a full retrain is due.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

from huracan.features.drift import psi
from huracan.pipelines.mechanic.coin import Market
from huracan.registry.artifacts import is_complete, versions
from huracan.serve import Fleet
from huracan.store import ArtifactNotFound, Store
from huracan.training.folds import fit_clusters

log = logging.getLogger("huracan")

HISTORY_KEY = "meta/cluster_history.json"


@dataclass(frozen=True)
class DriftConfig:
    """The ``drift`` options of ``pipeline=mechanic`` (see ``conf/pipeline/mechanic.yaml``)."""

    max_psi: float = 0.25
    min_cluster_ari: float = 0.5
    cluster_window_days: float = 30.0


def feature_drift(fleet: Fleet, market: Market, max_psi: float) -> dict[str, dict]:
    """Symbol -> ``psi`` (max over inputs, None without a reference or new bars), the
    input with the largest one, ``drifted``."""
    out = {}
    for symbol, model in fleet.models.items():
        reference = model.description.get("reference")
        if symbol not in market.inputs or reference is None:
            out[symbol] = {"psi": None, "input": None, "drifted": False}
            continue
        x, channels = market.inputs[symbol]
        new = np.asarray(market.panel.timestamps > model.data_end)
        values = np.concatenate([x, channels], axis=1)[new]
        scores = psi(reference, values) if len(values) > 1 else np.array([np.nan])
        if not np.isfinite(scores).any():
            out[symbol] = {"psi": None, "input": None, "drifted": False}
            continue
        worst = int(np.nanargmax(scores))
        value = round(float(scores[worst]), 6)
        name = model.description["inputs"][worst]
        out[symbol] = {"psi": value, "input": name, "drifted": value > max_psi}
    return out


def cluster_drift(store: Store, fleet: Fleet, market: Market, cfg: DictConfig) -> dict:
    """Re-clusters on the latest window, compares, appends the history; returns the entry."""
    panel, options = market.panel, cfg.drift
    start = panel.timestamps[-1] - pd.Timedelta(days=options.cluster_window_days)
    rows = np.flatnonzero(panel.timestamps > start)
    now = fit_clusters(market.arrays, rows, cfg).cluster_map
    before = trained_clusters(store, fleet)
    common = [s for s in before if before[s] >= 0 and s in now]
    entry = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "version_id": market.version_id,
        "window": [str(panel.timestamps[rows[0]]), str(panel.timestamps[rows[-1]])],
        "clusterer": cfg.cluster.get("_target_"),
        "clusters": {s: int(now[s]) for s in sorted(now)},
        "trained_under": {s: before[s] for s in sorted(before)},
        "ari": None,
        "moved": [],
        "retrain_due": False,
    }
    if len(common) >= 2:
        old = [before[s] for s in common]
        new = [int(now[s]) for s in common]
        entry["ari"] = round(float(adjusted_rand_score(old, new)), 6)
        entry["moved"] = moved_coins(common, old, new)
        entry["retrain_due"] = entry["ari"] < options.min_cluster_ari
    if entry["retrain_due"]:
        log.warning(
            "cluster drift: ARI %.3f < drift.min_cluster_ari=%s (moved: %s): a full retrain is due",
            entry["ari"],
            options.min_cluster_ari,
            ", ".join(entry["moved"]) or "-",
        )
    append_history(store, entry)
    return entry


def trained_clusters(store: Store, fleet: Fleet) -> dict[str, int]:
    """Each roster coin's cluster as its model was trained: its champion's checkpoint, or
    (a coin without a champion) its newest complete version's."""
    out = {s: int(m.description.get("cluster", -1)) for s, m in fleet.models.items()}
    for entry in fleet.roster["entries"]:
        symbol = entry["symbol"]
        stored = [p for p in versions(store, symbol) if is_complete(store, p, False)]
        if symbol in out or not stored:
            continue
        description = store.read_json(f"{stored[-1]}/checkpoint.json")
        out[symbol] = int(description.get("cluster", -1))
    return out


def moved_coins(symbols: list[str], old: list[int], new: list[int]) -> list[str]:
    """The coins whose new cluster is not matched to their old one (the matching of new
    to old clusters that keeps the most coins in place)."""
    old_ids, new_ids = sorted(set(old)), sorted(set(new))
    overlap = np.zeros((len(new_ids), len(old_ids)), int)
    for o, n in zip(old, new, strict=True):
        overlap[new_ids.index(n), old_ids.index(o)] += 1
    rows, cols = linear_sum_assignment(-overlap)
    match = {new_ids[r]: old_ids[c] for r, c in zip(rows, cols, strict=True)}
    return [s for s, o, n in zip(symbols, old, new, strict=True) if match.get(n) != o]


def append_history(store: Store, entry: dict) -> list[dict]:
    """``meta/cluster_history.json`` with ``entry`` appended (the whole file, atomically)."""
    try:
        history = store.read_json(HISTORY_KEY)
    except ArtifactNotFound:
        history = {"entries": []}
    history["entries"].append(entry)
    store.write_json(HISTORY_KEY, history)
    return history["entries"]
