"""Asset clustering: correlation of a series -> hierarchical linkage -> clusters, dominant first.

Fitted on a fold's training window only. The series is the log returns, the returns with
the market mode removed (``residual``: raw crypto correlations are mostly the market), or
the fracdiff log price. The tree is cut at ``n_clusters`` (or the ``auto`` k with the best
silhouette), clusters smaller than ``min_size`` are merged into their nearest, and the
*dominant* cluster, id 0, is the one whose first principal component explains the largest
share of the whole universe's return variance (:func:`cluster_dominance`), wherever BTC is.
:func:`align_cluster_ids` keeps the other ids stable fold to fold.

Longer than most modules on purpose: the three clusterers, the result they produce and the
fold-to-fold alignment and agreement of its ids are one concept, read together.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import squareform
from scipy.stats import rankdata
from sklearn.base import BaseEstimator
from sklearn.metrics import adjusted_rand_score, silhouette_score

from huracan.errors import ConfigError

LINKAGE_METHODS = ("ward", "average", "complete")
CORRELATIONS = ("pearson", "spearman")
SERIES = ("returns", "residual", "fracdiff")
Series = Literal["returns", "residual", "fracdiff"]
# relative gap below which two clusters' dominance counts as a tie (broken by quote volume)
DOMINANCE_TIE = 1e-9


@dataclass
class ClusterResult:
    """One fold's clusters.

    Attributes:
        cluster_map: symbol -> cluster id, for every clustered symbol.
        dominant_cluster_id: id of the dominant cluster (always 0 after fit and alignment).
        cluster_members: cluster id -> its symbols, in input order.
        linkage_matrix: scipy linkage (n - 1, 4) over ``symbols``; None for the
            ``global`` and ``isolated`` methods.
        correlation_matrix: (n, n) correlation of ``symbols``' clustered series.
        symbols: the clustered symbols, in the order of the matrices' rows.
        method: the clustering method.
        excluded: symbol -> why it was left out (too little overlap, no variance).
        dominance: cluster id -> share of the universe's standardised return variance its
            first principal component explains (:func:`cluster_dominance`).
        series: the clustered series: ``returns``, ``residual`` or ``fracdiff``.
        chosen_k: the k the tree was cut into (before ``min_size`` merges); None when cut
            by distance or for the ablations.
        k_scores: for ``n_clusters=auto``, k -> silhouette score of the clusters it gives
            (None where fewer than 2 clusters were left); empty otherwise.
        dominant_rule: how cluster 0 was chosen: ``variance`` or ``symbols``.
        rules_agree: whether the variance rule's dominant cluster holds the first of the
            dominant symbols present (None where none is clustered).
        tree: ``cluster=hierarchy``'s levels and their factors
            (``huracan.hierarchy.FactorTree.to_dict``); None for a flat clustering.
        refits: the refits inside the fold's test window (``cluster.refit_every``,
            :mod:`huracan.training.refit`), in order; empty without.
        late: coins scored in the fold without being clustered (``gates.late_coins``,
            :mod:`huracan.training.late`): symbol -> assigned cluster and the mean
            correlation with its members; not in ``cluster_map`` or ``cluster_members``.
    """

    cluster_map: dict[str, int]
    dominant_cluster_id: int
    cluster_members: dict[int, list[str]]
    linkage_matrix: np.ndarray | None
    correlation_matrix: np.ndarray
    symbols: list[str]
    method: str
    excluded: dict[str, str] = field(default_factory=dict)
    dominance: dict[int, float] = field(default_factory=dict)
    series: str = "returns"
    chosen_k: int | None = None
    k_scores: dict[int, float | None] = field(default_factory=dict)
    dominant_rule: str = "variance"
    rules_agree: bool | None = None
    tree: dict | None = None
    refits: list[dict] = field(default_factory=list)
    late: dict[str, dict] = field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        return len(self.cluster_members)

    def labels(self, symbols: Sequence[str]) -> np.ndarray:
        """Cluster ids of ``symbols`` as an int array, -1 for a symbol not clustered."""
        return np.array([self.cluster_map.get(s, -1) for s in symbols], dtype=int)

    def to_dict(self) -> dict:
        """JSON-ready summary (for ``clusters.json``); the matrices are left out."""
        return (
            {
                "method": self.method,
                "series": self.series,
                "dominant_cluster_id": self.dominant_cluster_id,
                "cluster_map": dict(self.cluster_map),
                "cluster_members": {str(k): list(v) for k, v in self.cluster_members.items()},
                "dominance_measure": "universe variance share of the cluster's first PC",
                "dominance": {str(k): v for k, v in self.dominance.items()},
                "chosen_k": self.chosen_k,
                "k_criterion": "silhouette" if self.k_scores else None,
                "k_scores": {str(k): v for k, v in self.k_scores.items()},
                "excluded": dict(self.excluded),
                "dominant_rule": self.dominant_rule,
                "dominant_rules_agree": self.rules_agree,
            }
            | ({"tree": self.tree} if self.tree is not None else {})
            | ({"refits": self.refits} if self.refits else {})
            | ({"late": self.late} if self.late else {})
        )


class AssetClusterer(BaseEstimator):
    """Clusters assets by hierarchical linkage on the correlation of a series.

    The distance between two assets is ``1 - |corr|`` (``1 - max(corr, 0)`` for the
    ``residual`` series: removing the market mode leaves unrelated groups mildly
    anti-correlated, which is no likeness); correlations are pairwise over the bars both
    assets have. Assets sharing fewer than ``min_overlap`` bars with the others
    are excluded and recorded in ``result_.excluded``. With ``n_clusters="auto"`` the tree
    is cut at the k in ``[2, min(max_clusters, n_assets - 1)]`` whose clusters (after the
    ``min_size`` merges) have the highest silhouette score on that distance (the smallest
    such k on a tie); every k's score is kept in ``result_.k_scores``. The dominant
    cluster (id 0) is the one with the largest :func:`cluster_dominance` on the returns;
    :class:`GlobalClusterer` and :class:`IsolatedClusterer` are the ablations (one
    cluster; one cluster per asset).

    Args:
        method: scipy linkage method: ``ward``, ``average`` or ``complete``.
        n_clusters: number of clusters to cut the tree into, ``auto`` (by silhouette), or
            None with ``distance_threshold``.
        distance_threshold: cut the tree at this linkage distance instead.
        correlation: ``pearson`` or ``spearman``.
        min_overlap: fewest bars two assets must share for their correlation to count.
        series: what is correlated: ``returns`` (log returns, as given to ``fit``),
            ``residual`` (those returns less the market mode, :func:`market_residuals`,
            fitted on the rows given to ``fit``) or ``fracdiff`` (the fractionally
            differenced log price, which the pipeline computes and ``fit`` takes as given).
        min_size: a cluster with fewer members is merged into its nearest cluster (the
            smallest mean distance to its members), smallest first; 1 merges none.
        max_clusters: the largest k ``n_clusters=auto`` tries.
        dominant: ``variance``: cluster 0 is the one with the largest dominance;
            ``symbols``: the one holding the first of ``dominant_symbols`` that is
            clustered (the variance rule where none is). Both rules' agreement is kept in
            ``result_.rules_agree``.
        dominant_symbols: the leaders (``universe.dominant_symbols``).
    """

    def __init__(
        self,
        method: str = "ward",
        n_clusters: int | Literal["auto"] | None = 3,
        distance_threshold: float | None = None,
        correlation: str = "pearson",
        min_overlap: int = 100,
        series: Series = "returns",
        min_size: int = 1,
        max_clusters: int = 8,
        dominant: Literal["variance", "symbols"] = "variance",
        dominant_symbols: Sequence[str] = ("BTC", "ETH"),
        refit_every: str | int | None = None,
        refit_window: str | int | None = None,
        refit_min_ari: float = 0.5,
    ):
        self.method = method
        self.n_clusters = n_clusters
        self.distance_threshold = distance_threshold
        self.correlation = correlation
        self.min_overlap = min_overlap
        self.series = series
        self.min_size = min_size
        self.max_clusters = max_clusters
        self.dominant = dominant
        self.dominant_symbols = dominant_symbols
        self.refit_every = refit_every  # read by the hierarchical run (huracan.training.refit)
        self.refit_window = refit_window
        self.refit_min_ari = refit_min_ari

    def fit(
        self,
        features: np.ndarray,
        symbols: Sequence[str],
        quote_volume: np.ndarray | None = None,
        returns: np.ndarray | None = None,
    ) -> AssetClusterer:
        """Clusters the assets of a training window.

        Args:
            features: (T, N) returns (``series`` returns or residual) or fracdiff series
                per bar and asset, NaN where the asset has no bar.
            symbols: the N asset names.
            quote_volume: (T, N) quote volume, breaks a tie of dominance.
            returns: (T, N) returns the dominance is measured on (Pearson); None:
                ``features`` (before the market mode is removed).

        Returns:
            self, with ``result_`` (a :class:`ClusterResult`) and ``labels_`` ((N,) ids,
            -1 for excluded assets).
        """
        self._check_params()
        symbols = list(symbols)
        features = _checked(features, "features", len(symbols))
        market = features if returns is None else _checked(returns, "returns", len(symbols))
        if quote_volume is not None and np.shape(quote_volume) != features.shape:
            raise ValueError(
                f"quote_volume has shape {np.shape(quote_volume)}, expected {features.shape}"
            )
        values = market_residuals(features) if self.series == "residual" else features
        corr, overlap = correlation_matrix(values, self.correlation)
        keep, excluded = _exclude_thin(corr, overlap, symbols, self.min_overlap)
        kept_symbols = [symbols[j] for j in keep]
        self._check_enough_assets(len(keep), len(excluded))
        corr = corr[np.ix_(keep, keep)]
        raw_labels, linkage_matrix, chosen_k, k_scores = self._cluster(corr, len(keep))
        reuse = values is market and self.correlation == "pearson"
        market_corr = corr if reuse else _market_correlation(market[:, keep])
        volume = None if quote_volume is None else np.asarray(quote_volume, float)[:, keep]
        labels, dominance = _dominant_first(raw_labels, market_corr, volume)
        leader = next((s for s in self.dominant_symbols if s in kept_symbols), None)
        holder = None if leader is None else int(labels[kept_symbols.index(leader)])
        if self.dominant == "symbols" and holder:  # the leaders' cluster becomes id 0
            labels, dominance = _to_front(labels, dominance, holder)
        cluster_map = {s: int(c) for s, c in zip(kept_symbols, labels, strict=True)}
        self.result_ = ClusterResult(
            cluster_map=cluster_map,
            dominant_cluster_id=0,
            cluster_members=_members(cluster_map),
            linkage_matrix=linkage_matrix,
            correlation_matrix=corr,
            symbols=kept_symbols,
            method=self.method,
            excluded=excluded,
            dominance=dominance,
            series=self.series,
            chosen_k=chosen_k,
            k_scores=k_scores,
            dominant_rule=self.dominant,
            rules_agree=None if holder is None else holder == 0,
        )
        self.labels_ = self.result_.labels(symbols)
        return self

    def _check_params(self) -> None:
        _check_common(self.correlation, self.min_overlap, self.series)
        if self.dominant not in ("variance", "symbols"):
            raise ConfigError(
                f"cluster.dominant must be variance or symbols, got {self.dominant!r}"
            )
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
        k = self.n_clusters
        fixed = isinstance(k, int | np.integer) and not isinstance(k, bool) and k >= 1
        if not (k is None or k == "auto" or fixed):
            raise ConfigError(f"n_clusters must be an int >= 1, auto or null, got {k!r}")
        if k == "auto" and self.max_clusters < 2:
            raise ConfigError(
                f"max_clusters must be >= 2 for n_clusters=auto, got {self.max_clusters}"
            )
        if self.min_size < 1:
            raise ConfigError(f"min_size must be >= 1, got {self.min_size}")

    def _check_enough_assets(self, n_assets: int, n_excluded: int) -> None:
        left = f"{n_assets} assets to cluster ({n_excluded} excluded)"
        if self.n_clusters == "auto" and n_assets < 3:
            raise ConfigError(f"n_clusters=auto needs at least 3 assets, got {left}")
        if self.n_clusters not in (None, "auto") and n_assets < self.n_clusters:
            raise ConfigError(f"n_clusters={self.n_clusters} is more than the {left}")
        if n_assets < 2:
            raise ConfigError(f"{self.method} linkage needs at least 2 assets, got {left}")

    def _cluster(
        self, corr: np.ndarray, n_assets: int
    ) -> tuple[np.ndarray, np.ndarray | None, int | None, dict[int, float | None]]:
        """Raw labels (any ids) of the kept assets, the linkage matrix, the k cut at and
        the silhouette score of each k tried (``auto`` only)."""
        likeness = np.maximum(corr, 0.0) if self.series == "residual" else np.abs(corr)
        distance = 1.0 - likeness
        np.fill_diagonal(distance, 0.0)
        # linkage() reads a square matrix as observations, not distances: pass it condensed.
        linkage_matrix = linkage(squareform(distance, checks=False), method=self.method)
        if self.n_clusters == "auto":
            labels, chosen_k, scores = self._auto_k(linkage_matrix, distance, n_assets)
            return labels, linkage_matrix, chosen_k, scores
        if self.n_clusters is not None:
            labels = fcluster(linkage_matrix, self.n_clusters, criterion="maxclust")
        else:
            labels = fcluster(linkage_matrix, self.distance_threshold, criterion="distance")
        labels = merge_small_clusters(labels, distance, self.min_size)
        return labels, linkage_matrix, self.n_clusters, {}

    def _auto_k(
        self, linkage_matrix: np.ndarray, distance: np.ndarray, n_assets: int
    ) -> tuple[np.ndarray, int, dict[int, float | None]]:
        """The labels of the k with the best silhouette, that k, and every k's score."""
        top = min(self.max_clusters, n_assets - 1)
        candidates, scores = {}, {}
        for k in range(2, top + 1):
            cut = fcluster(linkage_matrix, k, criterion="maxclust")
            labels = merge_small_clusters(cut, distance, self.min_size)
            n_labels = len(np.unique(labels))
            valid = 2 <= n_labels <= n_assets - 1
            score = silhouette_score(distance, labels, metric="precomputed") if valid else None
            scores[k] = None if score is None else float(score)
            candidates[k] = labels
        scored = {k: s for k, s in scores.items() if s is not None}
        if not scored:
            raise ConfigError(
                f"n_clusters=auto: no k in [2, {top}] leaves 2 or more clusters of at least "
                f"min_size={self.min_size} among {n_assets} assets"
            )
        best = max(scored, key=lambda k: (scored[k], -k))
        return candidates[best], best, scores


class GlobalClusterer(AssetClusterer):
    """Ablation: one cluster holding every asset (``cluster=global``)."""

    method = "global"
    dominant = "variance"  # one cluster (or one per asset): the rule has nothing to choose
    dominant_symbols: Sequence[str] = ()

    def __init__(
        self,
        correlation: str = "pearson",
        min_overlap: int = 100,
        series: Series = "returns",
    ):
        self.correlation = correlation
        self.min_overlap = min_overlap
        self.series = series

    def _check_params(self) -> None:
        _check_common(self.correlation, self.min_overlap, self.series)

    def _check_enough_assets(self, n_assets: int, n_excluded: int) -> None:
        if n_assets == 0:
            raise ConfigError(f"no assets left to cluster: 0 assets ({n_excluded} excluded)")

    def _cluster(self, corr: np.ndarray, n_assets: int) -> tuple[np.ndarray, None, None, dict]:
        return np.zeros(n_assets, dtype=int), None, None, {}


class IsolatedClusterer(GlobalClusterer):
    """Ablation: one cluster per asset (``cluster=isolated``)."""

    method = "isolated"

    def _cluster(self, corr: np.ndarray, n_assets: int) -> tuple[np.ndarray, None, None, dict]:
        return np.arange(n_assets), None, None, {}


def _check_common(correlation: str, min_overlap: int, series: str) -> None:
    if correlation not in CORRELATIONS:
        raise ConfigError(f"correlation {correlation!r} is not one of {CORRELATIONS}")
    if min_overlap < 2:
        raise ConfigError(f"min_overlap must be >= 2 bars, got {min_overlap}")
    if series not in SERIES:
        raise ConfigError(f"cluster.series must be one of {SERIES}, got {series!r}")


def _checked(values: np.ndarray, name: str, n_symbols: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] != n_symbols:
        raise ValueError(
            f"{name} must be (T, N) with N = {n_symbols} symbols, got shape {values.shape}"
        )
    return values


def market_residuals(returns: np.ndarray) -> np.ndarray:
    """Returns less the market mode, everything fitted on the rows given.

    The market mode ``m[t]`` is the cross-sectional mean, over the assets with a bar at t,
    of the returns standardised by each asset's own mean and std over the rows given (an
    equal-weight market, so a volatile coin does not outweigh BTC). Each asset's residual
    is its return less an OLS fit ``a + b * m[t]``, with ``a`` and ``b`` fitted over the rows
    where both are present.

    Args:
        returns: (T, N) returns, NaN where the asset has no bar.

    Returns:
        (T, N) residual returns, NaN where the asset has no bar (or no market mode).
    """
    returns = np.asarray(returns, dtype=float)
    present = np.isfinite(returns)
    counts = present.sum(0)
    filled = np.where(present, returns, 0.0)
    mean = filled.sum(0) / np.maximum(counts, 1)
    centred = np.where(present, filled - mean, 0.0)
    std = np.sqrt((centred * centred).sum(0) / np.maximum(counts, 1))
    usable = present & (std > 0)
    z = np.where(usable, centred / np.where(std > 0, std, 1.0), 0.0)
    n_usable = usable.sum(1)
    market = z.sum(1) / np.maximum(n_usable, 1)  # (T,)
    both = present & (n_usable > 0)[:, None]
    n_both = np.maximum(both.sum(0), 1)
    x = np.where(both, market[:, None], 0.0)
    y = np.where(both, returns, 0.0)
    x_mean, y_mean = x.sum(0) / n_both, y.sum(0) / n_both
    dx = np.where(both, x - x_mean, 0.0)
    var = (dx * dx).sum(0)
    beta = (dx * (y - y_mean)).sum(0) / np.where(var > 0, var, 1.0)
    residual = returns - y_mean - beta * (market[:, None] - x_mean)
    return np.where(both, residual, np.nan)


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


def _market_correlation(returns: np.ndarray) -> np.ndarray:
    """Pearson correlation of the returns the dominance is measured on; 0 where undefined."""
    corr, _ = correlation_matrix(returns, "pearson")
    corr = np.nan_to_num(corr, nan=0.0)
    np.fill_diagonal(corr, 1.0)
    return corr


def cluster_dominance(corr: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Share of the universe's standardised return variance each cluster's first PC explains.

    For a cluster with members M, let ``v`` be the top eigenvector (eigenvalue ``lam``) of
    the members' correlation ``corr[M, M]``: their first principal component is
    ``f = z[:, M] @ v`` (z: standardised returns) and ``corr(z_j, f) = corr[j, M] @ v /
    sqrt(lam)``. The dominance is the mean R² of every asset j of the universe on ``f``,
    ``sum_j (corr[j, M] @ v) ** 2 / (lam * N)``, in [0, 1]. Computed from the pairwise
    correlations (exact when the assets share every bar).

    Args:
        corr: (N, N) correlation of the returns of the fit bars.
        labels: (N,) cluster ids 0..K-1.

    Returns:
        (K,) dominance of each cluster.
    """
    dominance = np.empty(int(labels.max()) + 1)
    for c in range(len(dominance)):  # a loop over clusters, not assets
        members = labels == c
        values, vectors = np.linalg.eigh(corr[np.ix_(members, members)])
        loading = corr[:, members] @ vectors[:, -1]  # (N,)
        dominance[c] = (loading @ loading) / (values[-1] * len(corr))
    return dominance


def merge_small_clusters(labels: np.ndarray, distance: np.ndarray, min_size: int) -> np.ndarray:
    """Merges every cluster with fewer than ``min_size`` members into its nearest one.

    The smallest cluster goes first (the first such on a tie) into the cluster with the
    smallest mean distance between its members and theirs; repeated until every cluster
    has ``min_size`` members or one cluster is left.

    Args:
        labels: (N,) cluster ids, any integers.
        distance: (N, N) distance between the assets (e.g. ``1 - |corr|``).
        min_size: fewest members a cluster keeps; 1 merges none.

    Returns:
        (N,) ids 0..K-1, numbered by first member.
    """
    labels = _dense(labels)
    while True:
        sizes = np.bincount(labels)
        ids = np.flatnonzero(sizes)
        small = ids[sizes[ids] < min_size]
        if len(small) == 0 or len(ids) == 1:
            return _dense(labels)
        smallest = small[np.argmin(sizes[small])]
        members = labels == smallest
        one_hot = labels[:, None] == ids[None, :]  # (N, K)
        mean_distance = distance[members].sum(0) @ one_hot / sizes[ids]
        mean_distance[ids == smallest] = np.inf
        labels[members] = ids[np.argmin(mean_distance)]


def _dense(labels: np.ndarray) -> np.ndarray:
    """Ids 0..K-1 in the order of each cluster's first member."""
    _, first_seen, dense = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first_seen), dtype=int)
    rank[np.argsort(first_seen, kind="stable")] = np.arange(len(first_seen))
    return rank[dense.ravel()]


def _dominant_first(
    raw_labels: np.ndarray, market_corr: np.ndarray, quote_volume: np.ndarray | None
) -> tuple[np.ndarray, dict[int, float]]:
    """Relabels clusters 0..K-1: the most dominant 0, the rest by first member.

    A dominance tie (within ``DOMINANCE_TIE``, relative) goes to the highest median quote
    volume of the members, then to the first cluster.

    Returns:
        The new labels and each new id's dominance.
    """
    dense = _dense(raw_labels)
    dominance = cluster_dominance(market_corr, dense)
    tied = np.flatnonzero(dominance >= dominance.max() * (1 - DOMINANCE_TIE))
    dominant = int(tied[0])
    if len(tied) > 1 and quote_volume is not None:
        with warnings.catch_warnings():  # an asset or cluster without volume: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            asset_volume = np.nanmedian(np.where(quote_volume > 0, quote_volume, np.nan), 0)
            cluster_volume = [np.nanmedian(asset_volume[dense == c]) for c in tied]
        if np.isfinite(cluster_volume).any():
            dominant = int(tied[np.nanargmax(cluster_volume)])
    order = np.arange(len(dominance))
    order = np.concatenate([[dominant], order[order != dominant]])
    new_id = np.empty_like(order)
    new_id[order] = np.arange(len(order))
    return new_id[dense], {int(c): float(dominance[order[c]]) for c in range(len(order))}


def _to_front(
    labels: np.ndarray, dominance: dict[int, float], cluster: int
) -> tuple[np.ndarray, dict[int, float]]:
    """Relabels ``cluster`` as 0, the others after it in their order."""
    order = [cluster, *[c for c in range(len(dominance)) if c != cluster]]
    new_id = np.empty(len(order), dtype=int)
    new_id[order] = np.arange(len(order))
    return new_id[labels], {int(new_id[c]): v for c, v in dominance.items()}


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
        ``current`` with new ids (its ``dominance`` keyed by them); linkage and
        correlation are unchanged.
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
    dominance = {mapping[c]: d for c, d in current.dominance.items()}
    return replace(
        current,
        cluster_map=cluster_map,
        dominant_cluster_id=0,
        cluster_members=_members(cluster_map),
        dominance=dict(sorted(dominance.items())),
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
