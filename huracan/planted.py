"""The recovered cluster tree against the one planted in the synthetic market (``data.levels``).

Per level, the adjusted Rand index (scikit-learn's ``adjusted_rand_score``) between the
planted labels and those the run found at the same depth, fold by fold: 1 is the planted
partition exactly, about 0 a random one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import adjusted_rand_score

from huracan.clustering import ClusterResult


def recovered_levels(clusters: ClusterResult, symbols: Sequence[str]) -> np.ndarray:
    """(L, N) each level's cluster of every symbol, -1 outside: the tree's levels under
    ``cluster=hierarchy``, else the flat clusters as the only level."""
    if clusters.tree is None:
        return clusters.labels(symbols)[None, :]
    column = {s: j for j, s in enumerate(symbols)}
    levels = clusters.tree["levels"]
    labels = np.full((len(levels), len(column)), -1)
    for depth, level in enumerate(levels):
        for cluster, members in level["members"].items():  # a loop over clusters
            labels[depth, [column[s] for s in members]] = int(cluster)
    return labels


def level_agreement(planted: np.ndarray, recovered: np.ndarray) -> list[float]:
    """The adjusted Rand index of each planted level with the recovered level of the same
    depth, for as many levels as both have.

    Args:
        planted: (L, N) planted labels per level.
        recovered: (L', N) recovered labels per level, -1 for an asset outside the tree:
            each such asset counts as a cluster of its own (a miss, not a free pass).
    """
    scores = []
    for truth, found in zip(planted, recovered, strict=False):
        alone = found.max() + 1 + np.arange(len(found))
        scores.append(float(adjusted_rand_score(truth, np.where(found >= 0, found, alone))))
    return scores


def tree_recovery(
    planted: np.ndarray, fold_clusters: Sequence[ClusterResult], symbols: Sequence[str]
) -> dict[str, list[float]]:
    """``{"level0": [ARI per fold], "level1": [...]}``: each planted level the run's
    clusters reach (a flat run reaches level 0 only)."""
    per_fold = [level_agreement(planted, recovered_levels(c, symbols)) for c in fold_clusters]
    depth = min(len(scores) for scores in per_fold)
    return {f"level{i}": [scores[i] for scores in per_fold] for i in range(depth)}
