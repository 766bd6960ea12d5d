"""The arrays a fleet run works on, and what each walk-forward fold fits on its own.

``FleetArrays`` holds everything computed once for the whole panel: technical features,
log returns, labels after costs. All of it is causal (row t uses bars <= t, labels use
t + horizon and are only ever read for rows whose horizon ends before the window they
are compared with), and nothing in it is fitted.

``prepare_fold`` fits, on the fold's training rows only, everything that is learned from
data: the clusters, the market factor, the fractional-differencing orders and the
scalers; it then applies them unchanged to every row.

Slightly over 300 lines: what is computed once for the panel and what each fold fits
are the two halves of one no-look-ahead contract, and are checked together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig

from huracan.baseline_rule import baseline_rules
from huracan.baselines import scored_baseline_trades
from huracan.clustering import AssetClusterer, ClusterResult, align_cluster_ids
from huracan.config import build
from huracan.data.panel import Panel
from huracan.errors import ConfigError
from huracan.factor import MarketFactorExtractor
from huracan.features.cross_section_fold import TrendAggregate, fold_features
from huracan.features.fracdiff import StationaryFracDiff, for_features
from huracan.features.labels import energy_weights
from huracan.features.per_cluster import MAX_ROWS, cluster_masks
from huracan.features.scaling import PanelScaler
from huracan.hierarchy import FactorTree, cascade
from huracan.lead_fit import LeadFit
from huracan.models.batches import sample_tensors
from huracan.strong_baselines import baseline_options, extra_baselines
from huracan.training.arrays import FleetArrays
from huracan.training.refit import refit_groups
from huracan.validation import Fold, WalkForward

_GATHER_ROWS = 1 << 16  # samples gathered at a time by FoldData.inputs


def label_horizons(cfg: DictConfig) -> tuple[int, ...]:
    """The horizons heads predict, shortest first: ``labels.horizons``, else
    ``labels.horizon`` alone."""
    horizons = cfg.labels.get("horizons") or [cfg.labels.horizon]
    if any(int(h) != h or h < 1 for h in horizons):
        raise ConfigError(f"labels.horizons must be whole numbers >= 1, got {list(horizons)}")
    return tuple(sorted({int(h) for h in horizons}))


def walk_forward(cfg: DictConfig, **overrides) -> WalkForward:
    """The run's walk-forward splitter (``validation`` and ``labels.horizon``), the one
    source of its folds; ``overrides`` change fields, e.g. the per-coin single split or
    the hierarchical run's longest horizon."""
    options = {
        "n_folds": cfg.validation.n_folds,
        "horizon": cfg.labels.horizon,
        "purge": cfg.validation.purge,
        "embargo": cfg.validation.embargo,
        "val_fraction": cfg.validation.val_fraction,
        "test_size": cfg.validation.get("test_size"),
        "min_val_days": cfg.validation.get("min_val_days"),
    }
    return WalkForward(**options | overrides)


def single_split(panel: Panel, cfg: DictConfig) -> WalkForward:
    """The per-coin split: one test window of the last ``pipeline.test_days``, purged for
    the longest label horizon."""
    test_size = int(round(cfg.pipeline.test_days * 86400 / panel.bar_seconds))
    return walk_forward(cfg, n_folds=1, test_size=test_size, horizon=max(label_horizons(cfg)))


@dataclass
class FoldData:
    """What one fold fitted on its training rows, and its inputs for every row.

    Attributes:
        fold: the rows of the fold.
        clusters: cluster assignment fitted on the training rows (ids aligned to the
            previous fold's).
        factor: the fitted market-factor extractor.
        channel_names: names of the market-factor channels (empty for ``factor=none``).
        channels: (T, N, C) market-factor channels.
        features: (T, N, F0) the run's technical features (``FleetArrays.features``).
        ffd: (T, N) the fold's FFD log price, or None without fracdiff.
        feature_names: the F model inputs: the F0 features, the fold's cross-sectional
            columns, then ``fracdiff``.
        scaler: the fitted per-asset scaler of the F inputs; :meth:`inputs` applies it to
            the rows asked for, so no scaled (T, N, F) copy of the panel is ever held.
        fracdiff: the fitted fracdiff estimator, or None.
        groups: (N,) head index of each asset; -1 where the asset has none this fold.
        n_groups: number of heads.
        weights: (T, N) energy weights, normalised over the training rows.
    """

    fold: Fold
    clusters: ClusterResult
    factor: MarketFactorExtractor
    channel_names: list[str]
    channels: np.ndarray | None  # None after drop_inputs()
    features: np.ndarray
    ffd: np.ndarray | None
    feature_names: list[str]
    scaler: PanelScaler
    fracdiff: StationaryFracDiff | None
    groups: np.ndarray
    n_groups: int
    weights: np.ndarray
    factor_filled: int = 0
    factor_zeroed: int = 0
    across: np.ndarray | None = None  # (T, N, K) cross-sectional columns fitted per fold
    trend: TrendAggregate | None = None  # their fitted trend aggregate
    masks: np.ndarray | None = None  # (G, F) inputs each head reads (features.per_cluster)
    group_rows: np.ndarray | None = None  # (T, N) head per bar where clusters are refitted
    tree: FactorTree | None = None  # cluster=hierarchy's fitted levels below the first
    lead_fit: LeadFit | None = None  # factor.lead_fit's fitted loadings (its last channel)

    def group_of(self, t_idx: np.ndarray, a_idx: np.ndarray | int) -> np.ndarray:
        """The head reading asset ``a_idx`` at grid row ``t_idx`` (-1: none)."""
        if self.group_rows is None:
            return self.groups[a_idx]
        return self.group_rows[t_idx, a_idx]

    def inputs(self, t_idx: np.ndarray, a_idx: np.ndarray | int) -> np.ndarray:
        """(B, F) scaled model inputs of grid rows ``t_idx`` of assets ``a_idx``, float32.

        One (B, F) array is allocated and scaled in place: gathered in chunks, so no
        (B, F0) gather and no concatenated copy sits beside it (millions of samples)."""
        a_idx = np.broadcast_to(a_idx, np.shape(t_idx))
        rows = np.empty((len(t_idx), len(self.feature_names)), dtype=np.float32)
        n_base = self.features.shape[2]
        n_across = 0 if self.across is None else self.across.shape[2]
        if n_base + n_across + (self.ffd is not None) != len(self.feature_names):
            raise RuntimeError("FoldData.inputs after drop_inputs(): its grids are freed")
        for start in range(0, len(t_idx), _GATHER_ROWS):
            chunk = slice(start, start + _GATHER_ROWS)
            t, a = t_idx[chunk], a_idx[chunk]
            rows[chunk, :n_base] = self.features[t, a]
            if self.across is not None:
                rows[chunk, n_base : n_base + n_across] = self.across[t, a]
            if self.ffd is not None:
                rows[chunk, -1] = self.ffd[t, a]
        rows = self.scaler.transform_rows(rows, a_idx, out=rows)
        if self.masks is not None:  # an input outside its head's set: its training mean
            for start in range(0, len(t_idx), _GATHER_ROWS):
                chunk = slice(start, start + _GATHER_ROWS)
                group = self.group_of(t_idx[chunk], a_idx[chunk])
                rows[chunk][~(self.masks[np.maximum(group, 0)] | (group < 0)[:, None])] = 0
        return rows

    def drop_inputs(self, inputs: bool = True) -> None:
        """Frees the fold's (T, N, ...) grids once its samples are taken (400 coins x 2
        years: 0.2 GB): ``channels``, and (``inputs``) ``ffd`` and ``across``, which
        :meth:`inputs` reads (keep them while :class:`LazyInputs` of the fold are read)."""
        self.channels = None
        if inputs:
            self.ffd = self.across = None

    def valid(self, arrays: FleetArrays, labelled: bool = True) -> np.ndarray:
        """(T, N) rows with every input, a head and (``labelled``) a label: the rows a model
        can learn from; with ``labelled=False`` the rows it can predict."""
        inputs = np.isfinite(self.features).all(-1) & np.isfinite(self.channels).all(-1)
        if self.ffd is not None:
            inputs &= np.isfinite(self.ffd)  # scaling keeps what is finite finite
        if self.across is not None:
            inputs &= np.isfinite(self.across).all(-1)
        heads = self.groups[None, :] if self.group_rows is None else self.group_rows
        usable = inputs & (heads >= 0)
        return usable & arrays.labelled() if labelled else usable

    def samples(
        self, arrays: FleetArrays, rows: np.ndarray, valid: np.ndarray, lazy_inputs: bool = False
    ) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray]:
        """Flattens the given grid rows into model samples, sorted by (timestamp, asset).

        Args:
            lazy_inputs: ``x`` as :class:`LazyInputs`, gathered when read, not held.

        Returns:
            The tensors (``x``, ``factor``, ``group``, ``y``, ``w``), and the grid row and
            asset index of each sample.
        """
        t_idx, a_idx = np.nonzero(valid[rows])
        t_idx = rows[t_idx]
        lazy = LazyInputs(self, t_idx, a_idx) if lazy_inputs else None
        tensors = sample_tensors(
            np.empty((len(t_idx), 0), np.float32) if lazy else self.inputs(t_idx, a_idx),
            self.channels[t_idx, a_idx],
            self.group_of(t_idx, a_idx),
            arrays.label_at(t_idx, a_idx),  # the cells' labels: no (T, N) grid per read
            self.weights[t_idx, a_idx],
        )
        if lazy:
            tensors["x"] = lazy
        return tensors, t_idx, a_idx


class LazyInputs:
    """A fold's (B, F) scaled model inputs, gathered from its grids when rows are read
    (:meth:`FoldData.inputs`) instead of held whole: the training samples of a 400-coin
    fold (4.4 million x 14 float32) are 0.25 GB, and the encoder reads a subset of them and
    the heads their codes (``training.fit``), a chunk at a time. Reads as the tensor it
    stands for: ``len``, ``shape``, ``dtype``, rows by slice or index tensor (a float32
    tensor, the same values as the whole tensor's rows), ``numpy()`` for all of them.
    """

    def __init__(self, data: FoldData, t_idx: np.ndarray, a_idx: np.ndarray):
        self.data, self.t_idx, self.a_idx = data, t_idx, a_idx
        self.shape = torch.Size((len(t_idx), len(data.feature_names)))
        self.dtype = torch.float32

    def __len__(self) -> int:
        return len(self.t_idx)

    def __getitem__(self, rows: slice | np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(rows, torch.Tensor):
            rows = rows.numpy()
        return torch.from_numpy(self.data.inputs(self.t_idx[rows], self.a_idx[rows]))

    def numpy(self) -> np.ndarray:
        """Every row, (B, F) float32."""
        return self.data.inputs(self.t_idx, self.a_idx)


def prepare_fold(
    arrays: FleetArrays, fold: Fold, cfg: DictConfig, previous: ClusterResult | None
) -> FoldData:
    """Fits clusters, factor, fracdiff and scaler on ``fold.train`` and applies them."""
    train = fold.train
    clusters = fit_clusters(arrays, train, cfg)
    if previous is not None:
        clusters = align_cluster_ids(clusters, previous)
    factor: MarketFactorExtractor = build(cfg.factor)
    members = clusters.cluster_members[clusters.dominant_cluster_id]
    factor.fit(arrays.returns[train], members, arrays.symbols, arrays.quote_volume[train])
    # float32, what the models read: no float64 (T, N, C) grid is held (400 coins: 0.3 GB)
    channels = factor.channels(arrays.returns, arrays.quote_volume, arrays.listed, dtype=np.float32)
    clusters, channels, tree = cascade(  # cluster=hierarchy's levels; none for a flat one
        cfg,
        arrays.returns,
        arrays.listed,
        train,
        arrays.symbols,
        clusters,
        factor,
        channels,
        arrays.quote_volume,
    )
    lead_fit = None
    if cfg.factor.get("lead_fit"):  # each coin's own loading on the channels above
        lead_fit = LeadFit().fit(channels.values, arrays.returns, train)
        channels = lead_fit.channels(channels)

    names, fracdiff, ffd = list(arrays.feature_names), None, None
    training = [rows_of(arrays.features, train)]
    across, trend = None, None
    if arrays.cross_section is not None and arrays.cross_section.fold_names:
        labels = clusters.labels(arrays.symbols)
        with np.errstate(over="ignore"):
            close = np.exp(arrays.log_close)
        across, trend = fold_features(close, arrays.listed, labels, train, arrays.cross_section)
        names += arrays.cross_section.fold_names
        training.append(rows_of(across, train))
    if cfg.features.fracdiff:
        fracdiff = for_features(cfg.features, arrays.bar_seconds).fit(arrays.log_close[train])
        ffd = fracdiff.transform(arrays.log_close).astype(np.float32)
        names.append("fracdiff")
        training.append(rows_of(ffd, train)[:, :, None])
    # one copy of the training rows at most (400 coins x 2 years: gigabytes)
    training = training[0] if len(training) == 1 else np.concatenate(training, axis=2)
    scaler = PanelScaler(clip=cfg.features.clip).fit(training)
    del training

    groups, n_groups = head_groups(clusters, arrays.symbols, cfg.head.granularity)
    weights = np.zeros(arrays.grid_shape, dtype=np.float32)  # what the models read
    gross = arrays.gross_return  # derived once (``FleetArrays``), not for each slice
    weights[train] = energy_weights(gross[train], arrays.volatility[train], cfg.labels.horizon)
    # the loss divides by the summed weight, so each slice may be normalised on its own
    weights[fold.val] = energy_weights(
        gross[fold.val], arrays.volatility[fold.val], cfg.labels.horizon
    )
    del gross
    data = FoldData(
        fold=fold,
        clusters=clusters,
        factor=factor,
        channel_names=channels.names,
        channels=channels.values,
        features=arrays.features,
        ffd=ffd,
        feature_names=names,
        scaler=scaler,
        fracdiff=fracdiff,
        groups=groups,
        n_groups=n_groups,
        weights=weights,
        factor_filled=channels.n_filled,
        factor_zeroed=channels.n_zeroed,
        across=across,
        trend=trend,
        lead_fit=lead_fit,
        tree=tree,
    )
    if cfg.features.get("per_cluster") is not None:
        data.masks = fold_masks(data, arrays, cfg)
    data.group_rows, clusters.refits = refit_groups(
        lambda rows: fit_clusters(arrays, rows, cfg), fold, clusters, groups, cfg, arrays
    )
    return data


def fold_masks(data: FoldData, arrays: FleetArrays, cfg: DictConfig) -> np.ndarray:
    """The cluster heads' input masks (``features.per_cluster``), fitted on the fold's
    training samples only (``learned``: at most ``MAX_ROWS`` of each head's)."""
    options = cfg.features
    keep = float(options.get("per_cluster_keep", 0.5))
    per_cluster = options.per_cluster
    training = None
    if per_cluster == "learned":
        valid = data.valid(arrays)
        t_idx, a_idx = np.nonzero(valid[data.fold.train])
        t_idx = data.fold.train[t_idx]
        group = data.groups[a_idx]
        rng = np.random.default_rng(cfg.seed)
        take = np.concatenate(
            [rng.permutation(np.flatnonzero(group == g))[:MAX_ROWS] for g in range(data.n_groups)]
        ).astype(np.int64)
        t_idx, a_idx = t_idx[take], a_idx[take]
        if arrays.move_h is None:  # what heads learn
            moves = arrays.net_at(t_idx, a_idx)
        else:
            moves = arrays.move_h[t_idx, a_idx]
        training = (data.inputs(t_idx, a_idx), moves, group[take])
    return cluster_masks(
        per_cluster,
        keep,
        data.feature_names,
        data.n_groups,
        data.clusters.dominant_cluster_id,  # head g is cluster g (granularity=cluster)
        training,
    )


def rows_of(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values[rows]``: a view where the rows are consecutive (an expanding training
    window), else a copy."""
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and np.all(np.diff(rows) == 1):
        return values[rows[0] : rows[-1] + 1]
    return values[rows]


def fracdiff_report(data: FoldData, symbols: list[str]) -> dict | None:
    """Per asset: the FFD order d, its window and the warm-up bars lost; and the skips."""
    ffd = data.fracdiff
    if ffd is None:
        return None
    return {
        "d": {s: None if np.isnan(d) else float(d) for s, d in zip(symbols, ffd.d_, strict=True)},
        "window": dict(zip(symbols, ffd.window_.tolist(), strict=True)),
        "warmup_bars": dict(zip(symbols, ffd.warmup_bars_.tolist(), strict=True)),
        "stationary": dict(zip(symbols, ffd.stationary_.tolist(), strict=True)),
        "skipped": {
            symbols[k] if isinstance(k, int | np.integer) else k: v
            for k, v in ffd.skip_reasons_.items()
        },
    }


def fit_clusters(arrays: FleetArrays, train: np.ndarray, cfg: DictConfig) -> ClusterResult:
    """Clusters the assets on the training rows only: their returns, the returns less the
    market mode (``cluster.series=residual``, fitted on those rows) or the fracdiff series;
    the dominant cluster is measured on the training rows' returns."""
    clusterer: AssetClusterer = build(cfg.cluster)
    returns, volume = arrays.returns[train], arrays.quote_volume[train]
    if clusterer.series == "fracdiff":
        series = for_features(cfg.features, arrays.bar_seconds).fit(arrays.log_close[train])
        values = series.transform(arrays.log_close[train])
        return clusterer.fit(values, arrays.symbols, volume, returns=returns).result_
    return clusterer.fit(returns, arrays.symbols, volume).result_


def head_groups(
    clusters: ClusterResult, symbols: list[str], granularity: str
) -> tuple[np.ndarray, int]:
    """The head index of every asset: one head, one per cluster, or one per coin."""
    n = len(symbols)
    if granularity == "global":
        return np.zeros(n, dtype=np.int64), 1
    if granularity == "coin":
        return np.arange(n, dtype=np.int64), n
    if granularity == "cluster":
        ids = np.array([clusters.cluster_map.get(s, -1) for s in symbols], dtype=np.int64)
        return ids, int(ids.max()) + 1
    raise ConfigError(f"head.granularity must be global, cluster or coin, got {granularity!r}")


def horizon_weights(arrays: FleetArrays, fold: Fold) -> np.ndarray:
    """(T, N, H) energy weights per horizon, normalised on the training rows and on the
    validation rows each (the loss divides by the summed weight), and divided by the
    horizon: labels h bars long overlap h-fold, so each horizon weighs by its independent
    observations, not by its (mostly repeated) samples. The move is the trade's own
    (``gross_h``), or against the bar's other coins where the heads learn that
    (``move_h``)."""
    weights = np.zeros((*arrays.grid_shape, len(arrays.horizons)), dtype=np.float32)
    for i, h in enumerate(arrays.horizons):  # a horizon's move at a time (``gross_of``)
        move = arrays.gross_of(i) if arrays.move_h is None else arrays.move_h[..., i]
        for rows in (fold.train, fold.val):
            weights[rows, :, i] = energy_weights(move[rows], arrays.volatility[rows], h) / h
    return weights


def horizon_samples(
    data: FoldData,
    arrays: FleetArrays,
    weights: np.ndarray,
    rows: np.ndarray,
    valid,
    lazy_inputs: bool = False,
) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray]:
    """The fold's samples of ``rows`` with (B, H) labels and weights, one per horizon
    (weight 0 where a horizon has no label): ``labels.target``'s (``target_h``) where the
    run has one. ``lazy_inputs``: see :meth:`FoldData.samples`."""
    tensors, t_idx, a_idx = data.samples(arrays, rows, valid, lazy_inputs)
    # (B, H) gathers, zeroed in place: no further (B, H) copies beside them (millions)
    if arrays.target_h is None:
        y = arrays.labels_at(t_idx, a_idx)
    else:
        y = arrays.target_h[t_idx, a_idx]
    w = weights[t_idx, a_idx]
    unknown = ~np.isfinite(y)
    y[unknown], w[unknown] = 0.0, 0.0
    if y.shape[1] == 1:  # one horizon: the one-output head of the per-coin pipeline
        y, w = y[:, 0], w[:, 0]
    tensors["y"] = torch.as_tensor(y, dtype=torch.float32)
    tensors["w"] = torch.as_tensor(w, dtype=torch.float32)
    return tensors, t_idx, a_idx


def run_baselines(
    arrays: FleetArrays, folds: list[Fold], cfg: DictConfig
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The baselines' trades on the folds' test rows at the run's costs, each a rule, not a
    model (``huracan.baselines.baseline_trades``): per baseline ``(signals, horizon_index)``,
    each (T, N).

    ``never_trade``; ``always_long`` (held the longest horizon, so it pays the costs as
    rarely as the labels allow); ``logistic`` (per coin, lagged returns) and
    ``leader_lead_lag`` (long the alts after a large return of the leader), each with its
    horizon and threshold chosen on each fold's validation slice by the rule the heads use
    (``baselines.rule``, ``huracan.baseline_rule``); then those of ``baselines.extra``
    (``huracan.strong_baselines``), chosen alike.
    The leader is ``universe.dominant_symbols[0]``, else the coin with the highest median
    quote volume before the first test window.
    """
    return scored_baselines(arrays, folds, cfg)[0]


def scored_baselines(
    arrays: FleetArrays,
    folds: list[Fold],
    cfg: DictConfig,
    validation: dict[str, dict[int, np.ndarray]] | None = None,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """:func:`run_baselines`, and the (H, T, N) score on the test rows (NaN elsewhere) of
    each baseline that has one: the probability of ``logistic`` (the same for every
    horizon) and ``lightgbm``, the look-back return of momentum, minus it for reversal.
    ``validation``, where given, receives LightGBM's per-fold validation probabilities
    (``strong_baselines.extra_baselines``)."""
    leader = cfg.universe.dominant_symbols[0]
    if leader not in arrays.symbols:
        volume = arrays.quote_volume[: folds[0].test[0]]
        leader = arrays.symbols[int(np.nanargmax(np.nanmedian(volume, 0)))]
    rule = baseline_options(cfg).rule
    rules = baseline_rules(cfg.thresholds, rule, arrays.timestamps_ns, cfg.seed)
    net_h = arrays.net_h  # derived once: every baseline reads it (and LightGBM its labels)
    trades, scores = scored_baseline_trades(
        arrays.returns,
        net_h,
        arrays.horizons,
        folds,
        arrays.symbols.index(leader),
        rules=rules,
    )
    shape = (len(arrays.horizons), *arrays.grid_shape)
    scores = {name: np.broadcast_to(score, shape) for name, score in scores.items()}
    more_trades, more_scores = extra_baselines(arrays, folds, cfg, rules, validation, net_h)
    return trades | more_trades, scores | more_scores
