"""The Mechanic's drift checks: feature drift per coin, and cluster drift of the fleet.

Feature drift: each champion's inputs on the bars it has not seen (everything after its
``data_end``, the holdout included) are binned on its checkpoint's reference bins (the
training window's deciles, ``huracan.features.drift``); the coin's drift is the largest
population stability index over its inputs, flagged above ``drift.max_psi``. A flagged
coin is queued for retraining in ``mechanic.json``.

Cluster drift: the configured clusterer re-clusters the coins on the latest
``drift.cluster_window_days`` (at least ``cluster.min_overlap`` bars) and the result is
compared with the clusters the champions were trained under (their checkpoints'
``cluster``; with level trees, the first tree's champions only): the adjusted Rand index
(sklearn) and the coins that moved (each new cluster matched to the old one it overlaps
most, by the assignment that maximises the overlap). Every re-clustering appends one entry to
``meta/cluster_history.json`` (rewritten whole, atomically); an ARI below
``drift.min_cluster_ari`` says that a full retrain is due.

A cluster number means nothing outside the run whose clustering fitted it. Flat champions
from several per-coin runs (one coin retrained later, each checkpoint's config naming its
``pipeline.run_id``) are compared run by run (``runs``: each run's coins, ARI and moved
coins, most coins first; ``ari`` and ``moved`` are the first run's), and a run below the
ARI makes the retrain due; coins whose config names no run are compared as one run.

A roster whose champions carry a level tree (``cluster=hierarchy``) keeps it: a tree fitted
afresh on the same window, under the champions' own cluster config, is compared level by
level with the one they carry (``levels``: ARI and moved coins per level), and any level
below ``drift.min_cluster_ari`` says that a full retrain is due. The Mechanic never swaps
the served tree: the frozen encoder and the heads learned the channels of the stored one,
and a new tree would hand them inputs they never saw; the retrain refits all of it.

Champions promoted in different runs may carry different trees (other ``cluster.levels``,
or the same levels fitted on another window). Each tree is measured on its own: refitted
under the config of the champions that carry it and compared with itself, every level the
first included (``trees``, most champions first; ``levels`` stays the first tree's levels
below its first). One tree's drift says nothing about another's, so measuring only the
commonest would leave the other champions' inputs unwatched.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

from huracan.clustering import ClusterResult
from huracan.config import build
from huracan.errors import ConfigError, HuracanError
from huracan.features.drift import psi
from huracan.hierarchy import fit_tree
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
    """Re-clusters on the latest window, compares, appends the history; returns the entry.

    Champions that carry a level tree are re-clustered as they were trained (their own
    ``cluster`` config), and every level of a tree fitted afresh on the window is compared
    with theirs (``levels``); the tree they serve is kept (``level_drift``). A check that
    cannot run on the window (too few coins left to cluster) is recorded (``error``), not
    flagged, and the cycle goes on."""
    panel, options = market.panel, cfg.drift
    trees = carried_trees(fleet)
    clustering = cfg if not trees else trees[0].config
    rows = drift_rows(panel.timestamps, options, [clustering, *(t.config for t in trees)])
    before = trained_clusters(store, fleet)
    entry = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "version_id": market.version_id,
        "window": [str(panel.timestamps[rows[0]]), str(panel.timestamps[rows[-1]])],
        "clusterer": clustering.cluster.get("_target_"),
        "clusters": {},
        "trained_under": {s: before[s] for s in sorted(before)},
        "ari": None,
        "moved": [],
        "retrain_due": False,
    }
    try:
        result = fit_clusters(market.arrays, rows, clustering)
    except HuracanError as err:
        log.warning("cluster drift: the coins cannot be re-clustered on the window: %s", err)
        result, entry["error"] = None, str(err)
    if result is not None:
        entry["clusters"] = {s: int(c) for s, c in sorted(result.cluster_map.items())}
        # one clustering's numbers only: champions of other trees (or runs) number theirs
        # their own way, and mixing them would read a relabelling as drift
        if trees:
            trained = {s: before[s] for s in trees[0].coins if before.get(s, -1) >= 0}
            _compare(entry, trained, entry["clusters"])
        else:
            entry["runs"] = run_drift(before, trained_runs(store, fleet), entry["clusters"])
            entry["runs"] = [r | {"retrain_due": _due(r, options)} for r in entry["runs"]]
            first = entry["runs"][0] if entry["runs"] else {"ari": None, "moved": []}
            entry |= {"ari": first["ari"], "moved": first["moved"]}
        entry["retrain_due"] = _due(entry, options) or any(
            r["retrain_due"] for r in entry.get("runs", [])
        )
    if trees:
        entry["trees"] = [  # the first tree's first level is the one fitted above
            tree_drift(tree, result if i == 0 else None, market, rows, options.min_cluster_ari)
            for i, tree in enumerate(trees)
        ]
        entry["levels"] = entry["trees"][0]["levels"][1:]
        entry["retrain_due"] |= any(tree["retrain_due"] for tree in entry["trees"])
    if entry["retrain_due"]:
        warn_retrain(entry, options.min_cluster_ari)
    append_history(store, entry)
    return entry


def drift_rows(timestamps: pd.DatetimeIndex, options: DictConfig, configs: list) -> np.ndarray:
    """The bars the drift check re-clusters on: the latest ``drift.cluster_window_days``,
    or the latest ``cluster.min_overlap`` bars of the panel's timeframe where that is
    longer (the largest of ``configs``' clusterings): a window shorter than the overlap
    the clusterer asks of two coins would leave it none to cluster (30 daily bars against
    100)."""
    start = timestamps[-1] - pd.Timedelta(days=options.cluster_window_days)
    rows = np.flatnonzero(timestamps > start)
    overlap = max(int(c.cluster.get("min_overlap") or 0) for c in configs)
    if len(rows) >= overlap:
        return rows
    return np.arange(max(len(timestamps) - overlap, 0), len(timestamps))


def warn_retrain(entry: dict, min_ari: float) -> None:
    """Logs each check below ``min_ari``, once: the roster-wide one is the first tree's
    level 0 on its champions, so it is left out where that level is listed; flat champions
    of several runs are named run by run."""
    first = entry.get("trees", [{"levels": [{}]}])[0]["levels"][:1]
    fired = [
        (f"tree {tree['cluster_levels']} level {v['level']}", v)
        for tree in entry.get("trees", [])
        for v in tree["levels"]
        if v.get("retrain_due")
    ]
    runs = entry.get("runs") or []
    if len(runs) > 1:  # flat champions of several runs: each run's own check
        fired[:0] = [
            (f"run {r['run_id'] or '(not recorded)'}", r) for r in runs if r["retrain_due"]
        ]
    elif (
        entry["ari"] is not None
        and entry["ari"] < min_ari
        and not any(v.get("retrain_due") for v in first)
    ):
        fired.insert(0, ("clusters", entry))
    log.warning(
        "cluster drift below drift.min_cluster_ari=%s: %s: a full retrain is due",
        min_ari,
        "; ".join(
            f"{name} ARI {v['ari']} (moved: {', '.join(v['moved']) or '-'})" for name, v in fired
        ),
    )


@dataclass(frozen=True)
class CarriedTree:
    """A level tree champions carry: the tree, the training config of the first champion
    that carries it (its ``cluster`` and ``factor`` refit the tree), and those champions."""

    tree: dict
    config: DictConfig
    coins: list[str]

    @property
    def levels(self) -> list[int]:
        """Its ``cluster.levels``."""
        return [int(level["n_clusters"]) for level in self.tree["levels"]]


def carried_trees(fleet: Fleet) -> list[CarriedTree]:
    """Each level tree the champions carry (``cluster=hierarchy``), the one most of them
    carry first (ties: roster order); empty for flat champions."""
    groups: dict[str, list[str]] = {}
    for symbol, model in fleet.models.items():
        if model.description.get("tree"):
            key = json.dumps(model.description["tree"], sort_keys=True)
            groups.setdefault(key, []).append(symbol)
    ordered = sorted(groups.items(), key=lambda group: -len(group[1]))  # stable for ties
    return [
        CarriedTree(json.loads(key), OmegaConf.create(fleet.models[coins[0]].config), coins)
        for key, coins in ordered
    ]


def check_levels(fleet: Fleet, cfg: DictConfig) -> None:
    """Raises a ConfigError where ``cluster.levels`` is set and is not a tree the champions
    carry: the Mechanic re-fits only the trees they serve, and cannot put another in
    their place."""
    levels = cfg.cluster.get("levels")
    if not levels:
        return
    carried = [tree.levels for tree in carried_trees(fleet)]
    if list(levels) not in carried:
        trees = " and ".join(f"cluster.levels={c}" for c in carried)
        what = f"a tree of {trees}" if carried else "no level tree"
        raise ConfigError(
            f"cluster.levels={list(levels)}: the champions carry {what}; the Mechanic "
            "re-fits only the tree the champions serve (drop the cluster override, or "
            "retrain with pipeline=per_coin)"
        )


def tree_drift(
    carried: CarriedTree,
    clusters: ClusterResult | None,
    market: Market,
    rows: np.ndarray,
    min_ari: float,
) -> dict:
    """One carried tree refitted on ``rows`` under its own champions' config (``clusters``:
    its first level, fitted already; None: fitted here) against itself: every level, the
    first included (``level_drift`` for the rest), and ``retrain_due`` if any level is."""
    trained = carried.config
    if clusters is None:
        try:
            clusters = fit_clusters(market.arrays, rows, trained)
        except HuracanError as err:
            log.warning("cluster drift: tree %s cannot be re-fitted: %s", carried.levels, err)
            return {
                "cluster_levels": carried.levels,
                "coins": carried.coins,
                "levels": [],
                "error": str(err),
                "retrain_due": False,
            }
    now = {s: int(c) for s, c in sorted(clusters.cluster_map.items())}
    first = _compare({"level": 0, "clusters": now}, _membership(carried.tree["levels"][0]), now)
    first["retrain_due"] = first["ari"] is not None and first["ari"] < min_ari
    levels = [first, *level_drift(carried.tree, clusters, market, rows, min_ari, trained)]
    return {
        "cluster_levels": carried.levels,
        "coins": carried.coins,
        "levels": levels,
        "retrain_due": any(level.get("retrain_due") for level in levels),
    }


def _compare(level: dict, before: dict[str, int], now: dict[str, int]) -> dict:
    """``level`` with the ARI and moved coins of ``now`` against ``before`` on their
    common coins (None and none with fewer than two)."""
    common = [s for s in before if s in now]
    level |= {"ari": None, "moved": []}
    if len(common) >= 2:
        old, new = [before[s] for s in common], [now[s] for s in common]
        level["ari"] = round(float(adjusted_rand_score(old, new)), 6)
        level["moved"] = moved_coins(common, old, new)
    return level


def level_drift(
    tree: dict,
    clusters: ClusterResult,
    market: Market,
    rows: np.ndarray,
    min_ari: float,
    trained: DictConfig | None = None,
) -> list[dict]:
    """Each level below the first of a tree fitted on ``rows`` alone, as the champions'
    was (``clusters`` its first level, the market factor refitted on the same rows, under
    ``trained``, their training config; None: ``market.trained``), against the tree they
    carry: its clusters, ARI, moved coins, ``retrain_due`` below ``min_ari``. The
    champions keep serving their tree (their encoder and heads learned its channels); a
    tree that cannot be fitted on the window is recorded, not flagged."""
    arrays = market.arrays
    trained = market.trained if trained is None else trained
    try:
        factor = build(trained.factor)
        members = clusters.cluster_members[clusters.dominant_cluster_id]
        factor.fit(arrays.returns[rows], members, arrays.symbols, arrays.quote_volume[rows])
        refit, _ = fit_tree(
            trained, arrays.returns, rows, arrays.symbols, clusters, factor, arrays.quote_volume
        )
    except HuracanError as err:
        log.warning("cluster drift: the level tree cannot be re-fitted on the window: %s", err)
        return [{"level": i, "error": str(err)} for i in range(1, len(tree["levels"]))]
    levels = refit.to_dict(arrays.symbols)["levels"]
    out = []
    for i in range(1, len(tree["levels"])):
        before, now = _membership(tree["levels"][i]), _membership(levels[i])
        level = _compare({"level": i, "clusters": now}, before, now)
        level["retrain_due"] = level["ari"] is not None and level["ari"] < min_ari
        out.append(level)
    return out


def _membership(level: dict) -> dict[str, int]:
    return {s: int(c) for c, names in level["members"].items() for s in names}


def trained_clusters(store: Store, fleet: Fleet) -> dict[str, int]:
    """Each roster coin's cluster as its model was trained: its champion's checkpoint, or
    (a coin without a champion) its newest complete version's."""
    return {s: int(d.get("cluster", -1)) for s, d in trained_descriptions(store, fleet).items()}


def trained_runs(store: Store, fleet: Fleet) -> dict[str, str | None]:
    """Each roster coin's training run, whose clustering numbered its ``cluster``: the
    ``pipeline.run_id`` of its checkpoint's config (a Mechanic version keeps the config of
    the version it was fine-tuned from); None where the config names none."""
    return {
        s: (d.get("config", {}).get("pipeline") or {}).get("run_id")
        for s, d in trained_descriptions(store, fleet).items()
    }


def trained_descriptions(store: Store, fleet: Fleet) -> dict[str, dict]:
    """Each roster coin's checkpoint description: its champion's, or (a coin without a
    champion) its newest complete version's."""
    out = {s: m.description for s, m in fleet.models.items()}
    for entry in fleet.roster["entries"]:
        symbol = entry["symbol"]
        stored = [p for p in versions(store, symbol) if is_complete(store, p, False)]
        if symbol in out or not stored:
            continue
        out[symbol] = store.read_json(f"{stored[-1]}/checkpoint.json")
    return out


def run_drift(
    before: dict[str, int], runs: dict[str, str | None], now: dict[str, int]
) -> list[dict]:
    """The new clustering against each training run's own (a cluster number means nothing
    outside the run that fitted it): per run with clustered coins, most coins first (ties:
    roster order), its ``run_id`` (None: not recorded, its coins compared as one run),
    ``coins``, ARI and moved coins (``_compare``)."""
    groups: dict[str | None, dict[str, int]] = {}
    for symbol, cluster in before.items():
        if cluster >= 0:
            groups.setdefault(runs.get(symbol), {})[symbol] = cluster
    ordered = sorted(groups.items(), key=lambda group: -len(group[1]))  # stable for ties
    return [_compare({"run_id": run, "coins": list(old)}, old, now) for run, old in ordered]


def _due(compared: dict, options: DictConfig) -> bool:
    return compared["ari"] is not None and compared["ari"] < options.min_cluster_ari


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
