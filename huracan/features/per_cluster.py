"""Cluster-specific feature sets (``features.per_cluster``): which inputs each cluster's
head reads.

The shared encoder takes one input width, so a cluster's set is a mask: an input outside
its cluster's set is replaced by 0, the training mean of that scaled input, for every
sample of the cluster's coins (training, validation and test alike). Two ways to give the
sets:

- a map from a cluster's role to the inputs it keeps, e.g. ``{dominant: [ret, rsi,
  macd, trend], alt: [ret, return_rank, relative_return, fracdiff]}``. The dominant role is
  the cluster the market factor comes from (cluster 0); every other cluster is ``alt``. An
  entry keeps the input of that name and every input named ``<entry>_...`` (``ret`` keeps
  ``ret_1``, ``ret_4``, ...). A role left out keeps everything.
- ``learned``: each cluster keeps the ``features.per_cluster_keep`` share of the inputs
  most related to its coins' future net returns on the fold's training rows: the mean
  over horizons of the absolute Spearman correlation (a rank measure, like the feature
  bank's permutation AUROC, but measured without a model so that the choice is made
  before the heads are trained). Rows after the training window are never read.

The masks are fitted per fold and go into the fold's checkpoint (``feature_sets``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from huracan.errors import ConfigError

ROLES = ("dominant", "alt")
MAX_ROWS = 200_000  # training samples per cluster the correlation is measured on


def check_per_cluster(per_cluster, keep: float, granularity: str, pipeline: str) -> None:
    """Refuses settings that cannot be applied, before any work."""
    if per_cluster is None:
        return
    if "hierarchical" not in pipeline:
        raise ConfigError(
            "features.per_cluster applies to the cluster heads of pipeline=hierarchical only "
            "(serving and the Mechanic read every input)"
        )
    if granularity != "cluster":
        raise ConfigError(
            f"features.per_cluster needs head.granularity=cluster (one head per cluster), "
            f"got {granularity!r}"
        )
    if isinstance(per_cluster, str):
        if per_cluster != "learned":
            raise ConfigError(
                f"features.per_cluster must be null, learned or a map of {', '.join(ROLES)} "
                f"to feature names, got {per_cluster!r}"
            )
        if not 0 < keep <= 1:
            raise ConfigError(f"features.per_cluster_keep must be in (0, 1], got {keep}")
        return
    if not isinstance(per_cluster, Mapping):
        raise ConfigError(
            f"features.per_cluster must be null, learned or a map, got {per_cluster!r}"
        )
    unknown = sorted(set(per_cluster) - set(ROLES))
    if unknown:
        raise ConfigError(
            f"features.per_cluster: unknown role(s) {unknown}; roles are {', '.join(ROLES)}"
        )
    for role, names in per_cluster.items():
        if names is not None and (
            isinstance(names, str)
            or not isinstance(names, Sequence)
            or not names
            or not all(isinstance(n, str) for n in names)
        ):
            raise ConfigError(
                f"features.per_cluster.{role} must be null or a non-empty list of feature "
                f"names, got {names!r}"
            )


def role_mask(names: Sequence[str], keep: Sequence[str] | None, role: str) -> np.ndarray:
    """(F,) bool: the inputs a role's list keeps (all where the list is None)."""
    if keep is None:
        return np.ones(len(names), bool)
    mask = np.array([any(n == k or n.startswith(f"{k}_") for k in keep) for n in names])
    missing = [k for k in keep if not any(n == k or n.startswith(f"{k}_") for n in names)]
    if missing or not mask.any():
        raise ConfigError(
            f"features.per_cluster.{role}: {missing or list(keep)} match no input of this run "
            f"({', '.join(names)})"
        )
    return mask


def learned_mask(x: np.ndarray, net: np.ndarray, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """(F,) bool of the inputs kept, and (F,) their scores, from training samples (the
    caller draws at most ``MAX_ROWS`` of a cluster's: ``training.folds.fold_masks``).

    Args:
        x: (M, F) scaled inputs of one cluster's training samples.
        net: (M, H) what the heads learn from them per horizon (NaN where unknown).
        keep: share of the F inputs kept (at least one).
    """
    n_features = x.shape[1]
    scores = np.zeros(n_features)
    rows = np.isfinite(x).all(1)
    counted = 0
    for h in range(net.shape[1]):
        use = rows & np.isfinite(net[:, h])
        if use.sum() < 30:  # too few to rank: this horizon says nothing
            continue
        scores += np.abs(spearman(x[use], net[use, h]))
        counted += 1
    scores = scores / max(counted, 1)
    n_keep = max(1, math.ceil(keep * n_features))
    order = np.argsort(-scores, kind="stable")  # ties: the earlier input
    mask = np.zeros(n_features, bool)
    mask[order[:n_keep]] = True
    return mask, scores


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(F,) Spearman correlation of each column of ``x`` (M, F) with ``y`` (M,); 0 where a
    column is constant."""
    rx = rankdata(x, axis=0)
    ry = rankdata(y)
    rx -= rx.mean(0)
    ry -= ry.mean()
    denom = np.sqrt((rx**2).sum(0) * (ry**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry[:, None]).sum(0) / denom
    return np.nan_to_num(rho)


def cluster_masks(
    per_cluster,
    keep: float,
    names: Sequence[str],
    n_groups: int,
    dominant: int,
    training: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
) -> np.ndarray | None:
    """(G, F) bool masks of the cluster heads' inputs, or None (every input everywhere).

    Args:
        per_cluster: ``features.per_cluster``.
        keep: ``features.per_cluster_keep`` (``learned``).
        names: the F model inputs.
        n_groups: number of cluster heads.
        dominant: the dominant cluster's head index.
        training: (x (M, F) scaled inputs, net (M, H), group (M,)) of the fold's training
            samples; read only for ``learned``.
    """
    if per_cluster is None:
        return None
    if per_cluster == "learned":
        x, net, group = training
        masks = np.ones((n_groups, len(names)), bool)
        for g in range(n_groups):
            mine = group == g
            if mine.any():
                masks[g] = learned_mask(x[mine], net[mine], keep)[0]
        return masks
    sets = {role: per_cluster.get(role) for role in ROLES}
    by_role = {role: role_mask(names, sets[role], role) for role in ROLES}
    return np.stack([by_role["dominant" if g == dominant else "alt"] for g in range(n_groups)])


def feature_sets(masks: np.ndarray | None, names: Sequence[str]) -> dict[int, list[str]] | None:
    """Head index -> the inputs it reads (for the checkpoint and the report)."""
    if masks is None:
        return None
    return {g: [n for n, m in zip(names, row, strict=True) if m] for g, row in enumerate(masks)}
