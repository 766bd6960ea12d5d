"""Coins too new for a fold's training window, scored by a cluster head (``gates.late_coins``).

A coin that passes fold k's gates but has fewer than ``cluster.min_overlap`` bars with a
return in fold k's training rows cannot be clustered there, so it would have no head. With
``gates.late_coins=assign`` it still takes part in fold k where it has ``min_overlap``
bars with a return before fold k's first test bar (its validation and purge bars count:
they end before the test window). It is then *assigned* the cluster whose members' returns
it correlates with most (the mean of its correlations with each member, over the bars
both have before the first test bar), and scored on the test window by that cluster's
head through what the fold already fitted, unchanged:

- the clusters of the coins clustered, the market factor, the trend weights, the fracdiff
  orders, the scalers and the heads are those fitted without it. It has no scaler
  statistics of its own: it takes the mean of its cluster members' (and their median
  fracdiff order), statistics fitted on the training rows; with the lead-fit channel
  (``factor.lead_fit``), the mean lead-lag loading of its cluster members;
- its own rows train nothing: it is in no training sample, no early-stopping sample and
  no cross-section of another coin's inputs (those are the fold's clustered coins');
- its validation rows do not join its head's choice of horizon and cut either. The cut is
  shared by the head's coins and passed the family gate on the coins clustered; letting a
  coin with weeks of history (often its first weeks of trading, the most volatile) move it
  would change every other coin's test trades and the gate's calibration. So each other
  coin's model trades are the same with the coin admitted or not. The baselines (and the
  ensemble's LightGBM component) take a late coin like any coin of the fold: their figures
  for the other coins do change.

Its inputs are taken from the arrays of the fold's clustered coins and its late coins
together (its cross-sectional ranks among them), its cluster-relative return against its
assigned cluster. Where a head is not per cluster (``head.granularity=coin``), with
``cluster=hierarchy`` (its cascading factors are per cluster and level), with refits
inside the window or a residual factor channel (fitted per coin), a late coin is left
out, as with ``gates.late_coins=exclude``; ``gates.json`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig
from sklearn.base import clone

from huracan.data.gates import GateReport
from huracan.data.panel import Panel
from huracan.features.cross_section_fold import relative_returns
from huracan.training.arrays import FleetArrays
from huracan.training.folds import FoldData
from huracan.training.universe import fold_arrays


def late_mode(cfg: DictConfig) -> str:
    """``gates.late_coins``: ``assign`` (also where unset) or ``exclude``; the value is
    checked with the config (``huracan.config.Gates``)."""
    return str(cfg.gates.get("late_coins", "assign"))


def late_candidates(
    gates: GateReport | None, arrays: FleetArrays, folds, members: np.ndarray, min_bars: int
) -> np.ndarray:
    """(K, N) bool: out of fold k only for too few training bars (``min_train_bars``), with
    ``min_bars`` bars with a return before fold k's first test bar."""
    late = np.zeros_like(members)
    if gates is None:
        return late
    for fold in folds:
        before = np.isfinite(arrays.returns[: fold.test[0]]).sum(0)
        for j, symbol in enumerate(arrays.symbols):
            reasons = gates.fold_reasons.get(symbol, [])
            reasons = reasons[fold.index] if fold.index < len(reasons) else []
            only_history = bool(reasons) and all(r["code"] == "min_train_bars" for r in reasons)
            late[fold.index, j] = only_history and before[j] >= min_bars
    return late


def assign_clusters(
    returns: np.ndarray, labels: np.ndarray, late: np.ndarray, min_bars: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each late coin's cluster: the one whose members it correlates with most.

    Args:
        returns: (T, N) returns of the bars before the fold's first test bar only.
        labels: (N,) cluster of each clustered coin, -1 for the others (late ones too).
        late: column indices of the late coins.
        min_bars: the fewest bars a late coin and a member must share to be compared.

    Returns:
        (L,) cluster id (-1 where no member shares ``min_bars`` bars with it) and (L,) the
        mean correlation with that cluster's members (NaN where none).
    """
    x, y = returns[:, late], returns[:, labels >= 0]
    known_x, known_y = np.isfinite(x), np.isfinite(y)
    x, y = np.where(known_x, x, 0.0), np.where(known_y, y, 0.0)
    kx, ky = known_x.astype(np.float64), known_y.astype(np.float64)
    # every (late, member) pair over the bars both have: sums as matrix products (L, M)
    n = kx.T @ ky
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x, mean_y = (x.T @ ky) / n, (kx.T @ y) / n
        cov = (x.T @ y) / n - mean_x * mean_y
        var_x = ((x * x).T @ ky) / n - mean_x**2
        var_y = (kx.T @ (y * y)) / n - mean_y**2
        corr = cov / np.sqrt(var_x * var_y)
    corr = np.where((n >= min_bars) & np.isfinite(corr), corr, np.nan)
    member_labels = labels[labels >= 0]
    clusters = np.unique(member_labels)
    scores = np.full((len(late), len(clusters)), np.nan)
    for c, cluster in enumerate(clusters):
        pairs = corr[:, member_labels == cluster]
        seen = np.isfinite(pairs).any(1)
        scores[seen, c] = np.nanmean(pairs[seen], axis=1)
    found = np.isfinite(scores).any(1)
    best = np.argmax(np.where(np.isfinite(scores), scores, -np.inf), axis=1)
    assigned = np.where(found, clusters[best], -1)
    correlation = np.where(found, scores[np.arange(len(late)), best], np.nan)
    return assigned, correlation


def unsupported(data: FoldData, cfg: DictConfig) -> str | None:
    """Why this fold's heads cannot score a late coin, or None."""
    if cfg.head.granularity == "coin":
        return "head.granularity=coin: a coin without training bars has no head of its own"
    if data.clusters.tree is not None:
        return "cluster=hierarchy: its cascading factors are fitted per cluster and level"
    if data.group_rows is not None:
        return "cluster.refit_every: the heads' clusters change inside the test window"
    if getattr(data.factor, "residual", False) and data.factor.n_factors:
        return "factor.residual: the residual channel is fitted per coin"
    return None


@dataclass
class LateFold:
    """A fold's late coins: their arrays and their inputs through the fold's fitted objects.

    Attributes:
        arrays: the late coins' arrays (their columns of the fold's wider universe).
        data: their :class:`FoldData`: the fold's fitted objects, their assigned heads.
    """

    arrays: FleetArrays
    data: FoldData


def admit_late(
    data: FoldData,
    fitted: FleetArrays,
    arrays: FleetArrays,
    panel: Panel | None,
    late: np.ndarray,
    cfg: DictConfig,
    gates: GateReport | None,
) -> LateFold | None:
    """Assigns fold ``data.fold``'s late coins their clusters and builds their inputs.

    Args:
        data: the fold as fitted on its clustered coins (``prepare_fold``).
        fitted: the arrays ``data`` was fitted on (the fold's clustered coins).
        arrays: the run's arrays; ``panel`` the panel they were built from.
        late: (N,) the fold's late candidates (:func:`late_candidates`).
        gates: where each admission (or why a candidate stays out) is recorded.

    Returns:
        The admitted coins, or None where none is.
    """
    fold = data.fold
    reason = unsupported(data, cfg)
    if not late.any() or reason is not None:
        for j in np.flatnonzero(late):
            _record(gates, arrays.symbols[j], fold.index, {"admitted": None, "why": reason})
        return None
    member = np.isin(arrays.symbols, fitted.symbols)
    wide = fold_arrays(arrays, panel, member | late)
    late_cols = np.flatnonzero(late[member | late])  # in wide's columns
    labels = data.clusters.labels(wide.symbols)
    min_bars = int(cfg.cluster.get("min_overlap") or 2)
    before = wide.returns[: fold.test[0]]
    assigned, correlation = assign_clusters(before, labels, late_cols, min_bars)
    labels[late_cols] = assigned
    entries = {
        col: {"admitted": "late", "cluster": int(cluster), "correlation": round(float(r), 4)}
        if cluster >= 0
        else {"admitted": None, "why": f"no clustered coin shares {min_bars} bars with it"}
        for col, cluster, r in zip(late_cols, assigned, correlation, strict=True)
    }
    cols = late_cols[assigned >= 0]
    if len(cols):
        part, late_data = _late_fold_data(data, fitted, wide, cols, labels, cfg)
        scored = late_data.valid(part, labelled=False)[fold.test].any(0)
        for col in cols[~scored]:  # e.g. its fracdiff order still warming up
            entries[col] = {"admitted": None, "why": "no test bar with every model input"}
        if not scored.all():
            cols = cols[scored]
            if len(cols):
                part, late_data = _late_fold_data(data, fitted, wide, cols, labels, cfg)
    for col, entry in entries.items():
        bars = int(np.isfinite(before[:, col]).sum())
        _record(gates, wide.symbols[col], fold.index, entry | {"bars_before_test": bars})
    if not len(cols):
        return None
    data.clusters.late = {
        wide.symbols[c]: {k: entries[c][k] for k in ("cluster", "correlation")} for c in cols
    }
    return LateFold(part, late_data)


def _record(gates: GateReport | None, symbol: str, fold: int, entry: dict) -> None:
    if gates is not None:
        gates.late.setdefault(symbol, {})[fold] = entry


def _late_fold_data(
    data: FoldData,
    fitted: FleetArrays,
    wide: FleetArrays,
    cols: np.ndarray,
    labels: np.ndarray,
    cfg: DictConfig,
) -> tuple[FleetArrays, FoldData]:
    """The late coins' arrays (columns ``cols`` of ``wide``, the fold's clustered and late
    coins) and their :class:`FoldData`, through what ``data`` fitted on ``fitted`` (its
    clustered coins)."""
    part = wide.columns(cols)
    clusters = labels[cols]
    across = None
    if data.across is not None:
        columns = []
        spec = wide.cross_section
        if "relative_return" in spec.names:  # against the assigned cluster's members
            lookbacks = [lb.bars for lb in spec.relative_lookbacks]
            columns.append(relative_returns(wide.log_close, wide.listed, labels, lookbacks))
        if data.trend is not None:  # the weights fitted on the clustered coins
            with np.errstate(over="ignore"):
                close = np.exp(wide.log_close)
            columns.append(data.trend.transform(close, wide.listed)[..., None])
        across = np.concatenate(columns, axis=-1)[:, cols].astype(np.float32)
    peers = [data.clusters.labels(fitted.symbols) == c for c in clusters]  # (L,) of (M,)
    fracdiff, ffd = None, None
    if data.fracdiff is not None:  # the median order of its cluster's members
        orders = [float(np.nanmedian(data.fracdiff.d_[p])) for p in peers]
        fracdiff = clone(data.fracdiff).with_orders(orders)
        ffd = fracdiff.transform(part.log_close).astype(np.float32)
    scaler = clone(data.scaler)
    scaler.mean_ = np.stack([data.scaler.mean_[p].mean(0) for p in peers])
    scaler.std_ = np.stack([data.scaler.std_[p].mean(0) for p in peers])
    # the factor comes from the clustered coins' returns, as fitted; injected where listed
    channels = data.factor.channels(
        fitted.returns, fitted.quote_volume, part.listed, dtype=np.float32
    )
    lead_fit = None
    if data.lead_fit is not None:  # the mean loading of its cluster's members
        lead_fit = data.lead_fit.of_peers(peers)
        channels = lead_fit.channels(channels)
    heads = clusters if cfg.head.granularity == "cluster" else np.zeros_like(clusters)
    return part, FoldData(
        fold=data.fold,
        clusters=data.clusters,
        factor=data.factor,
        channel_names=channels.names,
        channels=channels.values,
        features=part.features,
        ffd=ffd,
        feature_names=data.feature_names,
        scaler=scaler,
        fracdiff=fracdiff,
        groups=heads.astype(np.int64),
        n_groups=data.n_groups,
        weights=np.zeros(part.grid_shape, dtype=np.float32),
        across=across,
        trend=data.trend,
        masks=data.masks,
        lead_fit=lead_fit,
    )
