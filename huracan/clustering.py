"""Asset clustering: correlation of returns -> hierarchical linkage -> clusters, dominant first.

Fitted on a fold's training window only. The cluster holding the dominant symbols (BTC,
ETH) always gets id 0; :func:`align_cluster_ids` keeps the other ids stable fold to fold.

Longer than most modules on purpose: the three clusterers, the result they produce and the
fold-to-fold alignment and agreement of its ids are one concept, read together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import squareform
from scipy.stats import rankdata
from sklearn.base import BaseEstimator
from sklearn.metrics import adjusted_rand_score

from huracan.errors import ConfigError

LINKAGE_METHODS = ("ward", "average", "complete")
CORRELATIONS = ("pearson", "spearman")


@dataclass
class ClusterResult:
    """One fold's clusters.

    Attributes:
        cluster_map: symbol -> cluster id, for every clustered symbol.
        dominant_cluster_id: id of the cluster holding the dominant symbols.
        cluster_members: cluster id -> its symbols, in input order.
        linkage_matrix: scipy linkage (n - 1, 4) over ``symbols``; None for the
            ``global`` and ``isolated`` methods.
        correlation_matrix: (n, n) correlation of ``symbols``' features.
        symbols: the clustered symbols, in the order of the matrices' rows.
        method: the clustering method.
        excluded: symbol -> why it was left out (too little overlap, no variance).
    """

    cluster_map: dict[str, int]
    dominant_cluster_id: int
    cluster_members: dict[int, list[str]]
    linkage_matrix: np.ndarray | None
    correlation_matrix: np.ndarray
    symbols: list[str]
    method: str
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        return len(self.cluster_members)

    def labels(self, symbols: Sequence[str]) -> np.ndarray:
        """Cluster ids of ``symbols`` as an int array, -1 for a symbol not clustered."""
        return np.array([self.cluster_map.get(s, -1) for s in symbols], dtype=int)

    def to_dict(self) -> dict:
        """JSON-ready summary (for ``clusters.json``); the matrices are left out."""
        return {
            "method": self.method,
            "dominant_cluster_id": self.dominant_cluster_id,
            "cluster_map": dict(self.cluster_map),
            "cluster_members": {str(k): list(v) for k, v in self.cluster_members.items()},
            "excluded": dict(self.excluded),
        }


class AssetClusterer(BaseEstimator):
    """Clusters assets by hierarchical linkage on the correlation of a series.

    The distance between two assets is ``1 - |corr|``; correlations are pairwise over the
    bars both assets have. Assets sharing fewer than ``min_overlap`` bars with the others
    are excluded and recorded in ``result_.excluded``. :class:`GlobalClusterer` and
    :class:`IsolatedClusterer` are the ablations (one cluster; one cluster per asset).

    Args:
        method: scipy linkage method: ``ward``, ``average`` or ``complete``.
        n_clusters: number of clusters to cut the tree into; None with
            ``distance_threshold``.
        distance_threshold: cut the tree at this linkage distance instead.
        correlation: ``pearson`` or ``spearman``.
        min_overlap: fewest bars two assets must share for their correlation to count.
        dominant_symbols: the cluster holding (most of) these is dominant; without any
            of them, the cluster with the highest median quote volume is.
        series: what the pipeline correlates: ``returns`` (log returns) or ``fracdiff``
            (the fractionally differenced log price); ``fit`` takes it as given.
    """

    def __init__(
        self,
        method: str = "ward",
        n_clusters: int | None = 3,
        distance_threshold: float | None = None,
        correlation: str = "pearson",
        min_overlap: int = 100,
        dominant_symbols: Sequence[str] = ("BTC", "ETH"),
        series: str = "returns",
    ):
        self.method = method
        self.n_clusters = n_clusters
        self.distance_threshold = distance_threshold
        self.correlation = correlation
        self.min_overlap = min_overlap
        self.dominant_symbols = dominant_symbols
        self.series = series

    def fit(
        self,
        features: np.ndarray,
        symbols: Sequence[str],
        quote_volume: np.ndarray | None = None,
    ) -> AssetClusterer:
        """Clusters the assets of a training window.

        Args:
            features: (T, N) feature per bar and asset, NaN where the asset has no bar.
            symbols: the N asset names.
            quote_volume: (T, N) quote volume, used to pick the dominant cluster when
                none of ``dominant_symbols`` is clustered.

        Returns:
            self, with ``result_`` (a :class:`ClusterResult`) and ``labels_`` ((N,) ids,
            -1 for excluded assets).
        """
        self._check_params()
        features = np.asarray(features, dtype=float)
        symbols = list(symbols)
        if features.ndim != 2 or features.shape[1] != len(symbols):
            raise ValueError(
                f"features must be (T, N) with N = {len(symbols)} symbols, "
                f"got shape {features.shape}"
            )
        if quote_volume is not None and np.shape(quote_volume) != features.shape:
            raise ValueError(
                f"quote_volume has shape {np.shape(quote_volume)}, expected {features.shape}"
            )
        corr, overlap = correlation_matrix(features, self.correlation)
        keep, excluded = _exclude_thin(corr, overlap, symbols, self.min_overlap)
        kept_symbols = [symbols[j] for j in keep]
        self._check_enough_assets(len(keep), len(excluded))
        corr = corr[np.ix_(keep, keep)]
        raw_labels, linkage_matrix = self._cluster(corr, len(keep))
        volume = None if quote_volume is None else np.asarray(quote_volume, float)[:, keep]
        labels = _dominant_first(raw_labels, kept_symbols, self.dominant_symbols, volume)
        self.result_ = _result(labels, kept_symbols, linkage_matrix, corr, self.method, excluded)
        self.labels_ = self.result_.labels(symbols)
        return self

    def _check_params(self) -> None:
        _check_correlation(self.correlation, self.min_overlap)
        if self.method not in LINKAGE_METHODS:
            raise ConfigError(
                f"linkage method {self.method!r} is not one of {LINKAGE_METHODS} "
                "(one cluster: GlobalClusterer, cluster=global; one per coin: "
                "IsolatedClusterer, cluster=isolated)"
            )
        if (self.n_clusters is None) == (self.distance_threshold is None):
            raise ConfigError(
                "set exactly one of n_clusters and distance_threshold, got "
                f"n_clusters={self.n_clusters}, distance_threshold={self.distance_threshold}"
            )
        if self.n_clusters is not None and self.n_clusters < 1:
            raise ConfigError(f"n_clusters must be >= 1, got {self.n_clusters}")

    def _check_enough_assets(self, n_assets: int, n_excluded: int) -> None:
        left = f"{n_assets} assets to cluster ({n_excluded} excluded)"
        if self.n_clusters and n_assets < self.n_clusters:
            raise ConfigError(f"n_clusters={self.n_clusters} is more than the {left}")
        if n_assets < 2:
            raise ConfigError(f"{self.method} linkage needs at least 2 assets, got {left}")

    def _cluster(self, corr: np.ndarray, n_assets: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw labels (any ids) of the kept assets, and the linkage matrix if any."""
        distance = 1.0 - np.abs(corr)
        np.fill_diagonal(distance, 0.0)
        # linkage() reads a square matrix as observations, not distances: pass it condensed.
        linkage_matrix = linkage(squareform(distance, checks=False), method=self.method)
        if self.n_clusters is not None:
            labels = fcluster(linkage_matrix, self.n_clusters, criterion="maxclust")
        else:
            labels = fcluster(linkage_matrix, self.distance_threshold, criterion="distance")
        return labels, linkage_matrix


class GlobalClusterer(AssetClusterer):
    """Ablation: one cluster holding every asset (``cluster=global``)."""

    method = "global"

    def __init__(
        self,
        correlation: str = "pearson",
        min_overlap: int = 100,
        dominant_symbols: Sequence[str] = ("BTC", "ETH"),
        series: str = "returns",
    ):
        self.correlation = correlation
        self.min_overlap = min_overlap
        self.dominant_symbols = dominant_symbols
        self.series = series

    def _check_params(self) -> None:
        _check_correlation(self.correlation, self.min_overlap)

    def _check_enough_assets(self, n_assets: int, n_excluded: int) -> None:
        if n_assets == 0:
            raise ConfigError(f"no assets left to cluster: 0 assets ({n_excluded} excluded)")

    def _cluster(self, corr: np.ndarray, n_assets: int) -> tuple[np.ndarray, None]:
        return np.zeros(n_assets, dtype=int), None


class IsolatedClusterer(GlobalClusterer):
    """Ablation: one cluster per asset (``cluster=isolated``)."""

    method = "isolated"

    def _cluster(self, corr: np.ndarray, n_assets: int) -> tuple[np.ndarray, None]:
        return np.arange(n_assets), None


def _check_correlation(correlation: str, min_overlap: int) -> None:
    if correlation not in CORRELATIONS:
        raise ConfigError(f"correlation {correlation!r} is not one of {CORRELATIONS}")
    if min_overlap < 2:
        raise ConfigError(f"min_overlap must be >= 2 bars, got {min_overlap}")


def correlation_matrix(
    values: np.ndarray, method: str = "pearson"
) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise NaN-aware correlation of the columns of ``values``.

    Each pair's correlation uses only the rows where both columns are present. For
    ``spearman`` the ranks are taken over each column's own bars, then correlated
    pairwise: exact when the columns are missing on the same rows, close otherwise.

    Args:
        values: (T, N) array, NaN where missing.
        method: ``pearson`` or ``spearman``.

    Returns:
        (N, N) correlation (NaN where undefined) and (N, N) count of shared rows.
    """
    if method not in CORRELATIONS:
        raise ConfigError(f"correlation {method!r} is not one of {CORRELATIONS}")
    present = ~np.isnan(values)
    if method == "spearman":
        values = rankdata(values, axis=0, nan_policy="omit")
    # centring first keeps the sums small, so the pairwise formula does not cancel.
    centred = np.where(present, values - _column_mean(values, present), 0.0)
    # Rows where every asset is present add the same to every pair: one product covers
    # them; only the rows with a gap need the masked products.
    gappy = ~present.all(axis=1)
    full, part, both = centred[~gappy], centred[gappy], present[gappy].astype(float)
    n_shared = len(full) + both.T @ both
    sum_x = full.sum(0)[:, None] + part.T @ both  # [i, j]: sum of x_i where j is present
    sum_xx = (full * full).sum(0)[:, None] + (part * part).T @ both
    sum_xy = full.T @ full + part.T @ part
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sum_xy - sum_x * sum_x.T / n_shared
        var = sum_xx - sum_x**2 / n_shared
        corr = cov / np.sqrt(var * var.T)
    corr = np.clip(corr, -1.0, 1.0)
    np.fill_diagonal(corr, np.where(np.diag(var) > 0, 1.0, np.nan))
    return corr, n_shared.astype(int)


def _column_mean(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    counts = present.sum(0)
    return np.where(present, values, 0.0).sum(0) / np.maximum(counts, 1)


def _exclude_thin(
    corr: np.ndarray, overlap: np.ndarray, symbols: list[str], min_overlap: int
) -> tuple[np.ndarray, dict[str, str]]:
    """Column indices to keep, and why each other column was excluded."""
    excluded: dict[str, str] = {}
    n_bars = np.diag(overlap)
    keep = n_bars >= min_overlap
    for j in np.flatnonzero(~keep):
        excluded[symbols[j]] = f"{n_bars[j]} bars, fewer than min_overlap={min_overlap}"
    flat = keep & ~np.isfinite(np.diag(corr))
    for j in np.flatnonzero(flat):
        excluded[symbols[j]] = "no variance over the training window"
    keep &= ~flat
    # Drop the asset with the most unusable pairs until every remaining pair is usable;
    # a loop over assets (rarely more than a few), not over bars.
    bad = (overlap < min_overlap) | ~np.isfinite(corr)
    while True:
        n_bad = (bad & keep[None, :] & keep[:, None]).sum(1)
        if not n_bad.any():
            break
        j = int(np.argmax(n_bad))
        excluded[symbols[j]] = (
            f"shares fewer than min_overlap={min_overlap} bars (or no variance) with "
            f"{n_bad[j]} of {int(keep.sum()) - 1} other assets"
        )
        keep[j] = False
    return np.flatnonzero(keep), excluded


def _dominant_first(
    raw_labels: np.ndarray,
    symbols: list[str],
    dominant_symbols: Sequence[str],
    quote_volume: np.ndarray | None,
) -> np.ndarray:
    """Relabels clusters 0..K-1: the dominant cluster 0, the rest by first member."""
    _, first_seen, dense = np.unique(raw_labels, return_index=True, return_inverse=True)
    position = {s: j for j, s in enumerate(symbols)}
    held = [dense[position[s]] for s in dominant_symbols if s in position]
    if held:
        counts = np.bincount(held)
        # most dominant symbols wins; a tie goes to the one named first in dominant_symbols
        dominant = next(c for c in held if counts[c] == counts.max())
    elif quote_volume is not None:
        with np.errstate(all="ignore"):
            asset_volume = np.nanmedian(quote_volume, axis=0)
        cluster_volume = [np.nanmedian(asset_volume[dense == c]) for c in range(len(first_seen))]
        dominant = int(np.nanargmax(cluster_volume))
    else:
        raise ConfigError(
            f"none of the dominant symbols {list(dominant_symbols)} is among the clustered "
            "assets, and no quote_volume was given to pick the dominant cluster by volume"
        )
    order = np.argsort(first_seen, kind="stable")
    order = np.concatenate([[dominant], order[order != dominant]])
    new_id = np.empty_like(order)
    new_id[order] = np.arange(len(order))
    return new_id[dense]


def _result(
    labels: np.ndarray,
    symbols: list[str],
    linkage_matrix: np.ndarray | None,
    corr: np.ndarray,
    method: str,
    excluded: dict[str, str],
) -> ClusterResult:
    cluster_map = {s: int(c) for s, c in zip(symbols, labels, strict=True)}
    return ClusterResult(
        cluster_map=cluster_map,
        dominant_cluster_id=0,
        cluster_members=_members(cluster_map),
        linkage_matrix=linkage_matrix,
        correlation_matrix=corr,
        symbols=symbols,
        method=method,
        excluded=excluded,
    )


def _members(cluster_map: dict[str, int]) -> dict[int, list[str]]:
    members: dict[int, list[str]] = {c: [] for c in sorted(set(cluster_map.values()))}
    for symbol, c in cluster_map.items():
        members[c].append(symbol)
    return members


def align_cluster_ids(current: ClusterResult, previous: ClusterResult) -> ClusterResult:
    """Relabels ``current``'s clusters to match ``previous``'s ids by shared members.

    The dominant cluster always gets id 0. The other clusters are matched one to one by
    the Hungarian assignment maximising the number of shared symbols; a cluster left
    without a partner (more clusters than before) gets the smallest id not yet used.

    Args:
        current: the new fold's clusters.
        previous: the previous fold's clusters, already aligned.

    Returns:
        ``current`` with new ids; linkage and correlation are unchanged.
    """
    cur_ids = [c for c in current.cluster_members if c != current.dominant_cluster_id]
    prev_ids = [c for c in previous.cluster_members if c != previous.dominant_cluster_id]
    shared = [s for s in current.cluster_map if s in previous.cluster_map]
    # position of each shared symbol's cluster among the non-dominant ones, -1 if dominant
    cur_index = {c: i for i, c in enumerate(cur_ids)}
    prev_index = {c: i for i, c in enumerate(prev_ids)}
    cur_pos = np.array([cur_index.get(current.cluster_map[s], -1) for s in shared], dtype=int)
    prev_pos = np.array([prev_index.get(previous.cluster_map[s], -1) for s in shared], dtype=int)
    both = (cur_pos >= 0) & (prev_pos >= 0)
    overlap = np.zeros((len(cur_ids), len(prev_ids)))
    np.add.at(overlap, (cur_pos[both], prev_pos[both]), 1)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    mapping = {current.dominant_cluster_id: 0}
    mapping.update({cur_ids[r]: prev_ids[c] for r, c in zip(rows, cols, strict=True)})
    used = set(mapping.values())
    fresh = (i for i in range(1, len(cur_ids) + len(prev_ids) + 2) if i not in used)
    mapping.update({c: next(fresh) for c in cur_ids if c not in mapping})
    cluster_map = {s: mapping[c] for s, c in current.cluster_map.items()}
    return replace(
        current,
        cluster_map=cluster_map,
        dominant_cluster_id=0,
        cluster_members=_members(cluster_map),
    )


def cluster_agreement(a: ClusterResult, b: ClusterResult) -> float:
    """Adjusted Rand index of two folds' clusters over the symbols both clustered."""
    shared = [s for s in a.cluster_map if s in b.cluster_map]
    if not shared:
        raise ValueError("the two cluster results have no symbol in common")
    return float(adjusted_rand_score(a.labels(shared), b.labels(shared)))


def fold_agreement(clusters: list[ClusterResult]) -> list[float]:
    """Adjusted Rand index between consecutive folds' cluster assignments."""
    return [cluster_agreement(a, b) for a, b in zip(clusters[:-1], clusters[1:], strict=True)]
