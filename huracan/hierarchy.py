"""Clusters of clusters with cascading factors (``cluster=hierarchy``), in the way of HIST.

``cluster.levels`` (e.g. ``[2, 6]``) lists how many clusters each level of the tree has.
The first level is the flat clustering of the returns (:class:`HierarchyClusterer`, the
ward clusterer cut at ``levels[0]``); its dominant cluster is the market, the source of
the market factor (level 0). Every level below clusters what the factors above it leave
unexplained: each asset's return less an OLS fit on the factors of its path (fitted on the
training rows), cut into ``levels[i]`` clusters nested inside the level above's. A level's
factor for one of its clusters is the first principal component of the members' residuals
(``cluster.level_factor=pca``), or the residual of its leader (``leader``): the member
whose residual best predicts the other members' next-bar residuals on the training rows,
a lead-lag rule like ``factor=leader`` at level 0 (:class:`FactorTree`). Every asset
gets, beside the market channels, the factor of its own cluster at each level below, with
the market factor's lags: ``level1_factor``, ``level1_factor_lag1``, ... Everything is
fitted on the fold's training rows only and applied unchanged to every row, one bar at a
time.

The fitted tree (``FactorTree.to_dict``) goes into ``clusters.json`` and every checkpoint;
``FactorTree.from_dict`` rebuilds it by symbol, so that serving, the Mechanic and the
replay compute every level's channels from the stored state on new bars. A cluster's
factor is summed over its members in their stored order, so a panel of any other
columns (the served coins and their paths) gives the training values bit for bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import DTypeLike
from omegaconf import DictConfig
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from huracan.clustering import (
    LINKAGE_METHODS,
    AssetClusterer,
    ClusterResult,
    _dense,
    correlation_matrix,
)
from huracan.errors import ConfigError, DataError
from huracan.factor import FactorChannels, MarketFactorExtractor, inject_market_factor

# cluster.level_factor: how a level's cluster becomes one series (clusters.json says which)
LEVEL_FACTORS = {
    "pca": "first principal component of the members' residual returns",
    "leader": "the residual return of the member that best predicts the others' next bar",
}


class HierarchyClusterer(AssetClusterer):
    """The tree's first level: :class:`AssetClusterer` cut at ``levels[0]`` clusters.

    Args:
        levels: clusters per level, strictly increasing (each level nests in the one
            above); ``n_clusters`` must equal ``levels[0]`` (the config sets it so).
        **options: as :class:`AssetClusterer`.
    """

    def __init__(self, levels: Sequence[int] = (2, 6), level_factor: str = "pca", **options):
        super().__init__(**options)
        self.levels = levels
        self.level_factor = level_factor

    def _check_params(self) -> None:
        check_levels(self.levels)
        super()._check_params()
        if self.n_clusters != self.levels[0]:
            raise ConfigError(
                f"cluster.n_clusters={self.n_clusters} must equal cluster.levels[0]="
                f"{self.levels[0]} (the tree's first level)"
            )


def check_levels(levels: Sequence[int]) -> None:
    """Raises a ConfigError unless ``levels`` are at least two whole numbers >= 1,
    strictly increasing."""
    values = list(levels)
    whole = all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in values)
    increasing = all(b > a for a, b in zip(values, values[1:], strict=False))
    if len(values) < 2 or not whole or not increasing:
        raise ConfigError(
            f"cluster.levels must be two or more whole numbers >= 1, strictly increasing "
            f"(clusters per level, each nested in the one above), got {values}"
        )


class FactorTree(BaseEstimator):
    """The levels below the first: nested clusters of residual returns and their factors.

    Args:
        levels: clusters per level (``cluster.levels``); ``levels[0]`` is the first
            level's, given to ``fit`` as ``top_labels``.
        method: scipy linkage method of every level's clustering.
        correlation: ``pearson`` or ``spearman``.
        n_lags: lags of each level's factor added as channels after the factor itself.
        max_ffill: longest stretch, in bars, a missing factor is forward-filled (then 0).
        level_factor: ``pca``: a cluster's factor is the first principal component of
            its members' residuals; ``leader``: its leader's residual alone
            (:func:`_leader_loadings`; the loadings are 1 for the leader, 0 else).
    """

    def __init__(
        self,
        levels: Sequence[int] = (2, 6),
        method: str = "ward",
        correlation: str = "pearson",
        n_lags: int = 2,
        max_ffill: int = 3,
        level_factor: str = "pca",
    ):
        self.levels = levels
        self.method = method
        self.correlation = correlation
        self.n_lags = n_lags
        self.max_ffill = max_ffill
        self.level_factor = level_factor

    def fit(self, returns: np.ndarray, market: np.ndarray, top_labels: np.ndarray) -> FactorTree:
        """Fits every level below the first on a training window.

        Args:
            returns: (T, N) returns of the training rows, NaN where no bar.
            market: (T, K) standardised market factor on those rows (K = 0 or 1).
            top_labels: (N,) first-level cluster ids; -1: the asset is not in the tree.

        Returns:
            self, with ``labels_`` ((L, N) cluster ids per level, first level included,
            -1 outside the tree), ``coef_`` (per level below the first: (N, 1 + U)
            intercept and coefficients on the factors above), ``member_mean_``,
            ``member_std_`` and ``loadings_`` ((L - 1, N) each), ``factor_mean_``,
            ``factor_std_`` (per level: (K,)) and ``order_`` (per level, each cluster's
            member columns: the order its factor sums them in).
        """
        check_levels(self.levels)
        if self.method not in LINKAGE_METHODS:
            raise ConfigError(f"linkage method {self.method!r} is not one of {LINKAGE_METHODS}")
        if self.level_factor not in LEVEL_FACTORS:
            raise ConfigError(
                f"cluster.level_factor must be one of {LEVEL_FACTORS}, got {self.level_factor!r}"
            )
        returns = np.asarray(returns, dtype=float)
        labels = [np.asarray(top_labels, dtype=int)]
        self.coef_, self.member_mean_, self.member_std_ = [], [], []
        self.loadings_, self.factor_mean_, self.factor_std_ = [], [], []
        self.order_: list[list[np.ndarray]] = []
        factors: list[np.ndarray] = []
        for k in self.levels[1:]:
            upper = self._upper(market, factors, labels[1:], returns.shape[1])
            coef = _ols(returns, upper)
            residual = returns - _fitted(upper, coef)
            corr = _level_correlation(residual, self.correlation)
            level = _nested_cut(corr, labels[-1], k, self.method)
            mean, std = np.nanmean(residual, 0), np.nanstd(residual, 0)
            if self.level_factor == "leader":
                loadings = _leader_loadings(residual, mean, std, level)
            else:
                loadings = _loadings(corr, level)
            order = [np.flatnonzero(level == c) for c in range(int(level.max()) + 1)]
            raw = _raw_factor(residual, mean, std, loadings, order)
            f_mean, f_std = np.nanmean(raw, 0), np.nanstd(raw, 0)
            flat = np.flatnonzero(~(f_std > 0))
            if len(flat):
                names = np.flatnonzero(level == flat[0]).tolist()
                raise DataError(
                    f"level {len(labels)} cluster {flat[0]} (columns {names})",
                    "its factor has no variance over the training window",
                )
            labels.append(level)
            self.coef_.append(coef)
            self.member_mean_.append(mean)
            self.member_std_.append(std)
            self.loadings_.append(loadings)
            self.factor_mean_.append(f_mean)
            self.factor_std_.append(f_std)
            self.order_.append(order)
            factors.append(self._filled((raw - f_mean) / f_std))
        self.labels_ = np.stack(labels)
        return self

    def factors(self, returns: np.ndarray, market: np.ndarray) -> list[np.ndarray]:
        """Each level's (T, K) standardised factors of any window (NaN where no member of
        a cluster has a bar), first level below the top first."""
        check_is_fitted(self, "labels_")
        returns = np.asarray(returns, dtype=float)
        return [factor for _, factor in self._levels(returns, market)]

    def _levels(self, returns: np.ndarray, market: np.ndarray) -> Iterator[tuple]:
        """Per level below the top, with the fitted state: the (T, N) residuals of
        ``returns`` after the market and the levels above on each path, and the level's
        (T, K) standardised factors (NaN where no member of a cluster has a bar; the next
        level reads them filled)."""
        filled: list[np.ndarray] = []
        for i, coef in enumerate(self.coef_):
            upper = self._upper(market, filled, self.labels_[1 : i + 1], returns.shape[1])
            residual = returns - _fitted(upper, coef)
            stored = self.member_mean_[i], self.member_std_[i]
            raw = _raw_factor(residual, *stored, self.loadings_[i], self.order_[i])
            factor = (raw - self.factor_mean_[i]) / self.factor_std_[i]
            yield residual, factor
            filled.append(self._filled(factor))

    def leaders_moved(
        self,
        returns: np.ndarray,
        market: np.ndarray,
        rows: np.ndarray,
        gap_after: int | None = None,
    ) -> np.ndarray:
        """(N,) whether an asset's path holds a cluster whose leader ``rows`` alone would
        not choose again (``level_factor=leader``; all False for ``pca``, which chooses
        none).

        The choice is :meth:`fit`'s on ``rows`` packed together as ``fit`` packs its
        training rows (so bars across an embargo hole count as a pair, as they did there),
        with the residuals' means and scales of ``rows``; the residual OLS and the levels'
        factors above are the fitted tree's. For ``validation.cross_fit``: the leaders are
        chosen on next-bar returns, so a block's samples of such an asset are kept out of
        the block's heads and of the gate's evidence (the asset's channel has a leader
        chosen with the block's own next-bar returns).

        Args:
            returns: (T, N) returns of the fitting panel's grid; market: (T, K) its
                standardised market factor (``fit_tree``'s).
            rows: sorted grid rows.
            gap_after: a position in ``rows`` after which a bar is missing (a removed
                block): no pair spans it. None: none.
        """
        check_is_fitted(self, "labels_")
        moved = np.zeros(self.labels_.shape[1], dtype=bool)
        if self.level_factor != "leader":
            return moved
        if len(rows) == 0:  # no rows choose any leader again
            return self.labels_[1:].max(axis=0) >= 0
        returns = np.asarray(returns, dtype=float)[rows]
        market = np.asarray(market, dtype=float)
        market = market.reshape(len(market), -1)[rows]
        if gap_after is not None:  # a row of no bar: no pair of bars spans the gap
            returns = np.insert(returns, gap_after + 1, np.nan, axis=0)
            market = np.insert(market, gap_after + 1, np.nan, axis=0)
        for i, (residual, _) in enumerate(self._levels(returns, market)):
            labels = self.labels_[i + 1]
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a coin without a bar here
                mean, std = np.nanmean(residual, 0), np.nanstd(residual, 0)
            leaders = _leader_loadings(residual, mean, std, labels)
            changed = np.unique(labels[(leaders != self.loadings_[i]) & (labels >= 0)])
            moved |= np.isin(labels, changed)  # every coin of the cluster, and below it
        return moved

    def channels(
        self,
        returns: np.ndarray,
        market: np.ndarray,
        listed: np.ndarray,
        dtype: DTypeLike = np.float64,
    ) -> FactorChannels:
        """(T, N, (L - 1) * (1 + n_lags)) channels: each asset's own cluster's factor at
        every level below the first, and its lags; NaN where the asset has no bar or is
        not in the tree. ``dtype``: of the channels, filled in place (float32: the float64
        factors cast, no float64 grid held)."""
        listed = np.asarray(listed, dtype=bool)
        width = self.n_lags + 1
        values = np.full((*listed.shape, len(self.coef_) * width), np.nan, dtype)
        names = []
        for i, factor in enumerate(self.factors(returns, market), start=1):
            stems = [f"level{i}_factor_{c}" for c in range(factor.shape[1])]
            lagged = inject_market_factor(
                factor, np.ones((len(factor), 1), bool), self.n_lags, self.max_ffill, stems
            ).values[:, 0]  # (T, K * (1 + n_lags)), cluster-major
            lagged = lagged.reshape(len(factor), factor.shape[1], width).astype(dtype)
            labels = self.labels_[i]
            inside = listed & (labels >= 0)[None, :]  # (T, N)
            t_idx, a_idx = np.nonzero(inside)
            values[t_idx, a_idx, (i - 1) * width : i * width] = lagged[t_idx, labels[a_idx]]
            names += [f"level{i}_factor" + (f"_lag{k}" if k else "") for k in range(width)]
        return FactorChannels(values, names, 0, 0)

    def to_dict(self, symbols: Sequence[str]) -> dict:
        """JSON-ready tree (for ``clusters.json`` and the checkpoints): per level its
        membership, and below the first each asset's fitted state, by symbol."""
        check_is_fitted(self, "labels_")
        symbols = list(symbols)
        levels = [
            {"n_clusters": int(self.levels[0]), "members": _members(self.labels_[0], symbols)}
        ]
        for i in range(len(self.coef_)):
            labels = self.labels_[i + 1]
            inside = np.flatnonzero(labels >= 0)
            levels.append(
                {
                    "n_clusters": int(self.levels[i + 1]),
                    "members": _members(labels, symbols),
                    "factor_mean": self.factor_mean_[i].tolist(),
                    "factor_std": self.factor_std_[i].tolist(),
                    "assets": {
                        symbols[j]: {
                            "coef": self.coef_[i][j].tolist(),
                            "mean": float(self.member_mean_[i][j]),
                            "std": float(self.member_std_[i][j]),
                            "loading": float(self.loadings_[i][j]),
                        }
                        for j in inside
                    },
                }
            )
        return {
            "levels": levels,
            "residual_of": "the market factor, then each level above on the asset's path",
            "factor": LEVEL_FACTORS[self.level_factor],
            "level_factor": self.level_factor,
            "n_lags": self.n_lags,
            "max_ffill": self.max_ffill,
        }

    @classmethod
    def from_dict(cls, state: dict, symbols: Sequence[str]) -> FactorTree:
        """Rebuilds a fitted tree from ``to_dict()`` for a panel with ``symbols``.

        The columns need not be the fitting panel's: the tree's state is found by symbol.
        A symbol the tree does not hold is outside it (NaN channels); a member the panel
        lacks is left out of its cluster's factor, so serve every coin with its path's
        members (``input_symbols``).
        """
        symbols = list(symbols)
        column = {s: j for j, s in enumerate(symbols)}
        levels = state["levels"]
        tree = cls(
            [int(level["n_clusters"]) for level in levels],
            n_lags=int(state["n_lags"]),
            max_ffill=int(state["max_ffill"]),
            level_factor=state.get("level_factor", "pca"),
        )
        labels = [_labels_of(levels[0]["members"], column)]
        tree.coef_, tree.member_mean_, tree.member_std_ = [], [], []
        tree.loadings_, tree.factor_mean_, tree.factor_std_, tree.order_ = [], [], [], []
        for level in levels[1:]:
            labels.append(_labels_of(level["members"], column))
            n_clusters = len(level["factor_mean"])
            tree.order_.append(
                [
                    np.array(
                        [column[s] for s in level["members"].get(str(c), []) if s in column],
                        dtype=np.intp,
                    )
                    for c in range(n_clusters)
                ]
            )
            assets = level["assets"]
            width = len(next(iter(assets.values()))["coef"])
            held = [(j, assets[s]) for s, j in column.items() if s in assets]
            coef, mean = np.zeros((len(symbols), width)), np.full(len(symbols), np.nan)
            std, loadings = np.full(len(symbols), np.nan), np.zeros(len(symbols))
            for j, fitted in held:  # a loop over the stored assets: reading JSON
                coef[j], mean[j] = fitted["coef"], fitted["mean"]
                std[j], loadings[j] = fitted["std"], fitted["loading"]
            tree.coef_.append(coef)
            tree.member_mean_.append(mean)
            tree.member_std_.append(std)
            tree.loadings_.append(loadings)
            tree.factor_mean_.append(np.asarray(level["factor_mean"], dtype=float))
            tree.factor_std_.append(np.asarray(level["factor_std"], dtype=float))
        tree.labels_ = np.stack(labels)
        return tree

    @staticmethod
    def input_symbols(state: dict, coins: Sequence[str]) -> list[str]:
        """Every symbol whose bars the level channels of ``coins`` read (a stored tree,
        ``to_dict()``): the members of each coin's cluster at the level below the first;
        every deeper cluster of its path nests inside it."""
        out: dict[str, None] = {}
        for members in state["levels"][1]["members"].values():
            if any(c in members for c in coins):
                out |= dict.fromkeys(members)
        return list(out)

    @staticmethod
    def path_of(state: dict, symbol: str) -> str | None:
        """``symbol``'s cluster at the level below the first (None: outside the tree):
        coins of one such cluster read the same bars."""
        members = state["levels"][1]["members"]
        return next((c for c, names in members.items() if symbol in names), None)

    def _upper(
        self, market: np.ndarray, factors: list[np.ndarray], labels: Sequence[np.ndarray], n: int
    ) -> np.ndarray:
        """(T, n, U): the market factor, then each fitted level's factor of the asset's own
        cluster (0 for an asset outside the tree)."""
        market = self._filled(np.asarray(market, dtype=float).reshape(len(market), -1))
        columns = [np.repeat(market[:, None, :], n, axis=1)]
        for factor, level in zip(factors, labels, strict=True):
            own = np.where(level >= 0, factor[:, np.maximum(level, 0)], 0.0)
            columns.append(own[:, :, None])
        return np.concatenate(columns, axis=2)

    def _filled(self, factor: np.ndarray) -> np.ndarray:
        """The factor as the channels carry it: forward-filled ``max_ffill`` bars, then 0."""
        if factor.shape[1] == 0:
            return factor
        listed = np.ones((len(factor), 1), bool)
        return inject_market_factor(factor, listed, 0, self.max_ffill).values[:, 0]


def _with_intercept(upper: np.ndarray) -> np.ndarray:
    return np.concatenate([np.ones(upper.shape[:2] + (1,)), upper], axis=2)


def _ols(returns: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """(N, 1 + U) per-asset OLS of the returns on an intercept and the (T, N, U) factors,
    over each asset's bars (the pseudo-inverse where the factors are collinear)."""
    design = _with_intercept(upper)
    present = np.isfinite(returns)
    masked = np.where(present[:, :, None], design, 0.0)
    gram = np.einsum("tnu,tnv->nuv", masked, masked)
    moment = np.einsum("tnu,tn->nu", masked, np.where(present, returns, 0.0))
    return np.einsum("nuv,nv->nu", np.linalg.pinv(gram), moment)


def _level_correlation(residual: np.ndarray, method: str) -> np.ndarray:
    corr, _ = correlation_matrix(residual, method)
    corr = np.nan_to_num(corr, nan=0.0)
    np.fill_diagonal(corr, 1.0)
    return corr


def _nested_cut(corr: np.ndarray, parents: np.ndarray, k: int, method: str) -> np.ndarray:
    """(N,) ids 0..k-1 of ``k`` clusters nested in ``parents`` (-1 stays -1).

    One linkage over every asset on the distance ``1 - max(corr, 0)`` (a residual's
    anti-correlation is no likeness), with assets of different parents set further apart
    than any two assets of one parent can merge, so the cut splits parents, never
    crosses them.
    """
    inside = np.flatnonzero(parents >= 0)
    n_parents = len(np.unique(parents[inside]))
    if k > len(inside):
        n = len(inside)
        raise ConfigError(
            f"cluster.levels asks {k} clusters of {n} assets: a level has at most one "
            f"cluster per asset (lower cluster.levels, e.g. [2,{max(2, n - 1)}] for {n} assets)"
        )
    labels = np.full(len(parents), -1)
    if len(inside) == 1:
        labels[inside] = 0
        return labels
    distance = 1.0 - np.maximum(corr[np.ix_(inside, inside)], 0.0)
    apart = parents[inside][:, None] != parents[inside][None, :]
    # a merge height is at most sqrt(2 n) times the largest distance (ward); 1 + that apart
    distance[apart] = 2.0 * np.sqrt(2.0 * len(inside)) + 1.0
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method=method)
    cut = fcluster(tree, max(k, n_parents), criterion="maxclust")
    # keyed by (parent, cut): nested even if the cut were ever to cross a parent
    labels[inside] = _dense(parents[inside] * (len(inside) + 1) + cut)
    return labels


def _loadings(corr: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) each asset's weight in its cluster's first principal component (the top
    eigenvector of the members' residual correlation, signed to sum >= 0); 0 outside."""
    loadings = np.zeros(len(labels))
    for c in range(int(labels.max()) + 1):  # a loop over clusters, not assets or bars
        members = np.flatnonzero(labels == c)
        _, vectors = np.linalg.eigh(corr[np.ix_(members, members)])
        top = vectors[:, -1]
        loadings[members] = top if top.sum() >= 0 else -top
    return loadings


def _leader_loadings(
    residual: np.ndarray, mean: np.ndarray, std: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """(N,) 1 for each cluster's leader, 0 else: the member j whose standardised residual
    at bar t best predicts the other members' at t + 1, by the mean squared correlation
    over them (pairs of consecutive rows where both have a bar); a cluster of one leads
    itself."""
    present = np.isfinite(residual) & (std > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(present, (residual - mean) / np.where(std > 0, std, 1.0), 0.0)
    pairs = present[:-1].astype(float).T @ present[1:].astype(float)  # (N, N)
    with np.errstate(invalid="ignore", divide="ignore"):
        lead = (z[:-1].T @ z[1:]) / pairs  # (N, N): j at t against i at t + 1
    lead = np.nan_to_num(lead) ** 2
    np.fill_diagonal(lead, 0.0)  # a coin leading itself is its own autocorrelation
    loadings = np.zeros(len(labels))
    for c in range(int(labels.max()) + 1):  # a loop over clusters, not assets or bars
        members = np.flatnonzero(labels == c)
        score = lead[np.ix_(members, members)].sum(1)
        loadings[members[int(np.argmax(score))]] = 1.0
    return loadings


def _raw_factor(
    residual: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    loadings: np.ndarray,
    order: Sequence[np.ndarray],
) -> np.ndarray:
    """(T, K) each cluster's loading-weighted sum of its members' standardised residuals
    present at a bar (a missing member counts as its training mean); NaN where none is.

    ``order``: each cluster's member columns in summation order (the stored order): the
    same members summed in the same order give the same bits on any panel."""
    present = np.isfinite(residual) & (std > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(present, (residual - mean) / np.where(std > 0, std, 1.0), 0.0)
    raw = np.full((len(residual), len(order)), np.nan)
    for c, members in enumerate(order):  # a loop over clusters, not assets or bars
        summed = (z[:, members] * loadings[members]).sum(axis=1)  # (T, m) -> (T,)
        raw[:, c] = np.where(present[:, members].any(axis=1), summed, np.nan)
    return raw


def _fitted(upper: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """(T, N) each asset's OLS fit on the (T, N, U) factors above it, term by term (the
    same operations whatever the panel's other columns)."""
    fitted = np.broadcast_to(coef[:, 0], upper.shape[:2]).copy()
    for u in range(upper.shape[2]):
        fitted += upper[:, :, u] * coef[:, u + 1]
    return fitted


def _labels_of(members: dict[str, list[str]], column: dict[str, int]) -> np.ndarray:
    """(N,) a stored level's cluster ids on a panel's columns; -1 outside it."""
    labels = np.full(len(column), -1)
    for c, names in members.items():
        labels[[column[s] for s in names if s in column]] = int(c)
    return labels


def _members(labels: np.ndarray, symbols: list[str]) -> dict[str, list[str]]:
    ids = sorted(set(labels.tolist()) - {-1})
    return {str(c): [s for s, k in zip(symbols, labels, strict=True) if k == c] for c in ids}


def fit_tree(
    cfg: DictConfig,
    returns: np.ndarray,
    rows: np.ndarray,
    symbols: list[str],
    clusters: ClusterResult,
    market: MarketFactorExtractor,
    quote_volume: np.ndarray,
) -> tuple[FactorTree, np.ndarray]:
    """The tree of ``cfg.cluster.levels`` fitted on ``rows`` only, under ``clusters`` (its
    first level) and the fitted ``market`` factor; returns it and the market factor on every
    row of ``returns``."""
    tree = FactorTree(
        list(cfg.cluster.levels),
        cfg.cluster.method,
        cfg.cluster.correlation,
        market.n_lags,
        market.max_ffill,
        cfg.cluster.get("level_factor", "pca"),
    )
    factor = market.transform(returns, quote_volume)  # (T, 0 or 1), fitted on rows already
    tree.fit(returns[rows], factor[rows], clusters.labels(symbols))
    return tree, factor


def cascade(
    cfg: DictConfig,
    returns: np.ndarray,
    listed: np.ndarray,
    train: np.ndarray,
    symbols: list[str],
    clusters: ClusterResult,
    market: MarketFactorExtractor,
    channels: FactorChannels,
    quote_volume: np.ndarray,
) -> tuple[ClusterResult, FactorChannels, FactorTree | None]:
    """The fold's tree fitted on ``train`` and its channels after the market's, for
    ``cluster=hierarchy``; anything else: ``clusters`` and ``channels`` unchanged.

    Returns:
        ``clusters`` with the tree (``ClusterResult.tree``), the channels, and the fitted
        tree (None for a flat clustering).
    """
    if not cfg.cluster.get("levels"):
        return clusters, channels, None
    tree, factor = fit_tree(cfg, returns, train, symbols, clusters, market, quote_volume)
    more = tree.channels(returns, factor, listed, channels.values.dtype)
    values = np.concatenate([channels.values, more.values], axis=2)
    joined = FactorChannels(
        values, [*channels.names, *more.names], channels.n_filled, channels.n_zeroed
    )
    return replace(clusters, tree=tree.to_dict(symbols)), joined, tree
