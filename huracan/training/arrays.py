"""The fleet's arrays over all bars: features, returns, costs and after-cost labels per
horizon, (T, N) each. Built once per run from the panel; the folds, the baselines, the
reports and serving read them."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from omegaconf import DictConfig, OmegaConf

from huracan.costs import CostModel
from huracan.data.panel import Panel
from huracan.features.cross_section import CrossSectionSpec, cross_section_features, resolve
from huracan.features.labels import after_cost_labels, cross_section_labels, forward_return
from huracan.features.technical import compute_features, realized_volatility


@dataclass
class FleetArrays:
    """Per-run (T, N) arrays; ``features`` is (T, N, F).

    ``label_h``, ``net_h`` and ``gross_h`` are (T, N, H), one slice per horizon of
    ``horizons`` (shortest first); ``label``, ``net_return`` and ``gross_return`` are the
    first slice (the one horizon of single-horizon pipelines).

    ``target_h`` is what the heads learn where it is not ``label_h`` (``labels.target``,
    e.g. better than the bar's other coins), and ``move_h`` the move behind its energy
    weights where it is not ``gross_h``; None for the default absolute target. ``label_h``
    stays the absolute label: a trade's precision is always "did it make money".
    """

    symbols: list[str]
    timestamps_ns: np.ndarray
    features: np.ndarray
    feature_names: list[str]
    log_close: np.ndarray
    returns: np.ndarray
    volatility: np.ndarray
    label: np.ndarray
    net_return: np.ndarray
    gross_return: np.ndarray
    quote_volume: np.ndarray
    listed: np.ndarray
    cost_bps: np.ndarray
    horizons: tuple[int, ...] = (1,)
    label_h: np.ndarray | None = None
    net_h: np.ndarray | None = None
    gross_h: np.ndarray | None = None
    cross_section: CrossSectionSpec | None = None  # the per-fold columns prepare_fold adds
    target_h: np.ndarray | None = None
    move_h: np.ndarray | None = None
    target: str = "absolute"  # labels.target: how target_h is taken from net_h
    bar_seconds: float = 3600.0  # the panel's bar length: look-backs given as durations

    def columns(self, cols: np.ndarray) -> FleetArrays:
        """The arrays of the assets ``cols`` only (copies), as if the panel held just those.

        The cross-sectional ranks in ``features`` are still those taken across every asset
        of the panel: ``training.universe.fold_arrays`` takes them again across ``cols``.
        A cross-sectional target (``target_h``, ``move_h``) is taken again across ``cols``
        here: a coin out of them moves no bar's median.
        """

        def take(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[:, cols]

        net_h = take(self.net_h)
        target_h, move_h = target_grids(net_h, self.target)
        return replace(
            self,
            symbols=[self.symbols[j] for j in cols],
            features=take(self.features),
            log_close=take(self.log_close),
            returns=take(self.returns),
            volatility=take(self.volatility),
            label=take(self.label),
            net_return=take(self.net_return),
            gross_return=take(self.gross_return),
            quote_volume=take(self.quote_volume),
            listed=take(self.listed),
            cost_bps=take(self.cost_bps),
            label_h=take(self.label_h),
            net_h=net_h,
            gross_h=take(self.gross_h),
            target_h=target_h,
            move_h=move_h,
        )


def build_fleet_arrays(
    panel: Panel, cfg: DictConfig, horizons: tuple[int, ...] | None = None
) -> FleetArrays:
    """Features, returns and after-cost labels of the whole panel.

    Args:
        horizons: the label horizons, shortest first; None: ``labels.horizon`` alone.
    """
    options = OmegaConf.to_container(cfg.costs, resolve=True)
    costs = CostModel(**{k: v for k, v in options.items() if v is not None})  # fee: see run
    names = cfg.features.names
    windows = OmegaConf.to_container(cfg.features.windows, resolve=True) or None
    features, feature_names = compute_features(
        panel, list(names) if names is not None else None, windows
    )
    node = cfg.features.get("cross_section")
    spec = resolve(OmegaConf.to_container(node, resolve=True) if node else None, panel.bar_seconds)
    if spec is not None:
        across, across_names = cross_section_features(panel, spec)
        features = np.concatenate([features, across], axis=2)
        feature_names = feature_names + across_names
    with np.errstate(divide="ignore", invalid="ignore"):
        log_close = np.log(panel.close)
    returns = np.full_like(log_close, np.nan)
    returns[1:] = np.diff(log_close, axis=0)
    volatility = realized_volatility(panel.close, cfg.labels.vol_window)
    horizons = (int(cfg.labels.horizon),) if horizons is None else tuple(horizons)
    # filled a horizon at a time: no list of every horizon's float64 grids beside the stack
    shape = (*panel.close.shape, len(horizons))
    label_h = np.empty(shape, dtype=np.float32)  # 0, 1 or NaN: exact, in half the memory
    net_h = np.empty(shape)
    gross_h = np.empty(shape, dtype=np.float32)  # per horizon only the move behind weights
    for i, h in enumerate(horizons):
        label_h[..., i], net_h[..., i] = after_cost_labels(
            panel, h, costs, volatility, cfg.labels.vol_window
        )
        forward = forward_return(panel.close, h)
        gross_h[..., i] = forward
        if i == 0:
            gross = forward  # float64: the per-coin run prices its P&L from it
    cost_bps = (gross - net_h[..., 0]) * 1e4
    label, net = label_h[..., 0], net_h[..., 0]
    target = cfg.labels.get("target", "absolute")
    target_h, move_h = target_grids(net_h, target)
    return FleetArrays(
        symbols=list(panel.symbols),
        timestamps_ns=panel.timestamps.as_unit("ns").asi8,
        features=features,
        feature_names=feature_names,
        log_close=log_close,
        returns=returns,
        volatility=volatility,
        label=label,
        net_return=net,
        gross_return=gross,
        quote_volume=panel.quote_volume,
        listed=panel.listed,
        cost_bps=cost_bps,
        horizons=horizons,
        label_h=label_h,
        net_h=net_h,
        gross_h=gross_h,
        cross_section=spec,
        target_h=target_h,
        move_h=move_h,
        target=target,
        bar_seconds=panel.bar_seconds,
    )


def target_grids(net_h: np.ndarray | None, target: str) -> tuple[np.ndarray | None, ...]:
    """``(target_h, move_h)`` of a cross-sectional ``labels.target`` across the coins of
    ``net_h`` (T, N, H), each (T, N, H) float32; ``(None, None)`` for ``absolute``."""
    if target == "absolute" or net_h is None:
        return None, None
    by_bar = [cross_section_labels(net_h[..., i], target) for i in range(net_h.shape[-1])]
    return tuple(np.stack(part, axis=-1).astype(np.float32) for part in zip(*by_bar, strict=True))
