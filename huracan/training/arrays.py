"""The fleet's arrays over all bars: features, returns, costs and after-cost labels per
horizon, (T, N) each. Built once per run from the panel; the folds, the baselines, the
reports and serving read them.

What the closes and the round trip already say (net and gross trade returns per horizon,
labels, costs) is derived when read, not held from the first fold to the last: at 400
coins x 2 years the arrays held fell from 1.2 GB to 0.6 GB (``docs/scale.md``)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
from omegaconf import DictConfig, OmegaConf

from huracan.costs import CostModel
from huracan.data.panel import Panel
from huracan.features.cross_section import CrossSectionSpec, cross_section_features, resolve
from huracan.features.labels import cross_section_labels, forward_return, round_trip
from huracan.features.technical import compute_features, realized_volatility


class Derived:
    """A field of :class:`FleetArrays` held where it is given, else derived from the held
    ones each time it is read and never kept: a 400-coin, 2-year run holds no (T, N, H)
    grid of what its closes and round trip already say (0.5 GB)."""

    def __init__(self, derive):
        self.derive = derive

    def __set_name__(self, owner, name: str) -> None:
        self.slot = f"_{name}"

    def __get__(self, obj, owner=None):
        if obj is None:
            return None  # the dataclass field's default: derived
        held = obj.__dict__.get(self.slot)
        return self.derive(obj) if held is None else held

    def __set__(self, obj, value) -> None:
        obj.__dict__[self.slot] = value


def labels_of(net: np.ndarray) -> np.ndarray:
    """After-cost labels of net returns, float32: 1 where positive, 0 where not, NaN where
    no trade (``after_cost_labels``' rule; exact in float32)."""
    return np.where(np.isnan(net), np.float32(np.nan), net > 0).astype(np.float32)


def _gross_h(arrays: FleetArrays) -> np.ndarray:
    gross = np.empty((*arrays.grid_shape, len(arrays.horizons)), dtype=np.float32)
    for i, h in enumerate(arrays.horizons):  # a horizon at a time: no float64 stack
        gross[..., i] = forward_return(arrays.close, h)
    return gross


def _net(arrays: FleetArrays, horizons: tuple[int, ...]) -> np.ndarray:
    """(T, N, len(horizons)) net returns after the round trip, ``after_cost_labels``' own
    arithmetic: the same values as when they were held."""
    net = np.empty((*arrays.grid_shape, len(horizons)))
    for i, h in enumerate(horizons):
        net[..., i] = forward_return(arrays.close, h) - arrays.round_trip
    net[arrays.filled] = np.nan  # nothing is entered on a forward-filled bar
    return net


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

    ``net_h``, ``net_return``, ``label``, ``label_h``, ``gross_return``, ``gross_h`` and
    ``cost_bps`` are :class:`Derived` where not given (as ``build_fleet_arrays`` leaves
    them): the net returns from ``close`` and ``round_trip`` (NaN on ``filled`` bars), the
    labels from the net returns, the gross moves from ``close``, the costs from both, with
    the arithmetic they were held with, so the same values. Each read builds the whole
    grid: the training path reads them by cells or by horizon (:meth:`net_at`,
    :meth:`labels_at`, :meth:`net_of`, :meth:`gross_of`). A pipeline that prices trades
    its own way (per coin, the Mechanic) gives its own (:meth:`replaced`).
    """

    symbols: list[str]
    timestamps_ns: np.ndarray
    features: np.ndarray
    feature_names: list[str]
    log_close: np.ndarray
    returns: np.ndarray
    volatility: np.ndarray
    quote_volume: np.ndarray
    listed: np.ndarray
    horizons: tuple[int, ...] = (1,)
    # what the trade returns are derived from: the panel's closes and forward-filled bars
    # (not copies), and the round trip of a trade entered at each bar (a fraction)
    close: np.ndarray | None = None
    filled: np.ndarray | None = None
    round_trip: np.ndarray | None = None
    net_h: np.ndarray | None = Derived(lambda a: _net(a, a.horizons))
    net_return: np.ndarray | None = Derived(lambda a: _net(a, a.horizons[:1])[..., 0])
    label: np.ndarray | None = Derived(lambda a: labels_of(a.net_return))
    label_h: np.ndarray | None = Derived(lambda a: labels_of(a.net_h))
    gross_return: np.ndarray | None = Derived(lambda a: forward_return(a.close, a.horizons[0]))
    gross_h: np.ndarray | None = Derived(_gross_h)
    cost_bps: np.ndarray | None = Derived(lambda a: (a.gross_return - a.net_return) * 1e4)
    cross_section: CrossSectionSpec | None = None  # the per-fold columns prepare_fold adds
    target_h: np.ndarray | None = None
    move_h: np.ndarray | None = None
    target: str = "absolute"  # labels.target: how target_h is taken from net_h
    bar_seconds: float = 3600.0  # the panel's bar length: look-backs given as durations

    def held(self, name: str) -> np.ndarray | None:
        """The field ``name`` as held: None where it is derived on reading."""
        if isinstance(vars(type(self)).get(name), Derived):
            return self.__dict__.get(f"_{name}")
        return getattr(self, name)

    def replaced(self, **changes) -> FleetArrays:
        """``dataclasses.replace`` that keeps a derived field derived (``replace`` reads
        every field, so it would hold the derived grids in the copy)."""
        derived = {f.name: self.held(f.name) for f in fields(self) if f.name not in changes}
        return replace(self, **derived, **changes)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(T, N): bars by assets."""
        return self.returns.shape

    def net_at(self, t_idx: np.ndarray, a_idx: np.ndarray) -> np.ndarray:
        """(B, H) ``net_h[t_idx, a_idx]``, computed on those cells alone where the net
        returns are derived (the same arithmetic, so the same values; no (T, N, H) grid)."""
        held = self.held("net_h")
        return self._net_cells(t_idx, a_idx, self.horizons) if held is None else held[t_idx, a_idx]

    def _net_cells(
        self, t_idx: np.ndarray, a_idx: np.ndarray, horizons: tuple[int, ...]
    ) -> np.ndarray:
        """(B, len(horizons)) ``_net``'s values on the cells ``(t_idx, a_idx)`` alone."""
        n_bars = len(self.close)
        entry = self.close[t_idx, a_idx]
        net = np.empty((len(t_idx), len(horizons)))
        for i, h in enumerate(horizons):
            later = t_idx + h
            inside = later < n_bars  # a trade ending after the last bar has no return
            exit_price = np.full(len(t_idx), np.nan)
            exit_price[inside] = self.close[later[inside], a_idx[inside]]
            net[:, i] = exit_price / entry - 1 - self.round_trip[t_idx, a_idx]
        net[self.filled[t_idx, a_idx]] = np.nan
        return net

    def net_of(self, i: int) -> np.ndarray:
        """(T, N) ``net_h[..., i]``, the net return of horizon ``horizons[i]``."""
        held = self.held("net_h")
        return _net(self, self.horizons[i : i + 1])[..., 0] if held is None else held[..., i]

    def labels_at(self, t_idx: np.ndarray, a_idx: np.ndarray) -> np.ndarray:
        """(B, H) ``label_h[t_idx, a_idx]``, from those samples' net returns where the
        labels are derived (no (T, N, H) grid)."""
        held = self.held("label_h")
        return labels_of(self.net_at(t_idx, a_idx)) if held is None else held[t_idx, a_idx]

    def label_at(self, t_idx: np.ndarray, a_idx: np.ndarray) -> np.ndarray:
        """(B,) ``label[t_idx, a_idx]``, the first horizon's labels, computed on those
        cells alone where the labels and their net returns are derived (no (T, N) grid)."""
        held, net = self.held("label"), self.held("net_return")
        if held is not None:
            return held[t_idx, a_idx]
        if net is not None:
            return labels_of(net[t_idx, a_idx])
        return labels_of(self._net_cells(t_idx, a_idx, self.horizons[:1])[:, 0])

    def labelled(self) -> np.ndarray:
        """(T, N) ``isfinite(label)``: the cells with a first-horizon label, from one read
        of the net returns where the labels are derived (a label is NaN where they are)."""
        held = self.held("label")
        return np.isfinite(held) if held is not None else ~np.isnan(self.net_return)

    def gross_of(self, i: int) -> np.ndarray:
        """(T, N) float32 ``gross_h[..., i]``, the gross move of horizon ``horizons[i]``."""
        held = self.held("gross_h")
        if held is not None:
            return held[..., i]
        return forward_return(self.close, self.horizons[i]).astype(np.float32)

    def columns(self, cols: np.ndarray) -> FleetArrays:
        """The arrays of the assets ``cols`` only (copies), as if the panel held just those.

        The cross-sectional ranks in ``features`` are still those taken across every asset
        of the panel: ``training.universe.fold_arrays`` takes them again across ``cols``.
        A cross-sectional target (``target_h``, ``move_h``) is taken again across ``cols``
        here: a coin out of them moves no bar's median.
        """
        rows = len(self.timestamps_ns)
        grids = {}
        for f in fields(self):  # every (T, N, ...) grid held; a derived one stays derived
            values = self.held(f.name)
            if isinstance(values, np.ndarray) and values.ndim > 1 and len(values) == rows:
                grids[f.name] = values[:, cols]
        part = self.replaced(**grids, symbols=[self.symbols[j] for j in cols])
        part.target_h, part.move_h = target_grids(part, self.target)  # across ``cols``
        return part


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
    for h in horizons:  # a horizon the bars cannot hold is an error now, not when read
        forward_return(panel.close[:, :0], h)
    arrays = FleetArrays(
        symbols=list(panel.symbols),
        timestamps_ns=panel.timestamps.as_unit("ns").asi8,
        features=features,
        feature_names=feature_names,
        log_close=log_close,
        returns=returns,
        volatility=volatility,
        quote_volume=panel.quote_volume,
        listed=panel.listed,
        horizons=horizons,
        close=panel.close,
        filled=panel.filled,
        # the round trip after_cost_labels charges every horizon; the net returns, labels,
        # gross moves and costs are derived from it and the closes when read (``Derived``)
        round_trip=round_trip(panel, costs, volatility, cfg.labels.vol_window),
        cross_section=spec,
        target=cfg.labels.get("target", "absolute"),
        bar_seconds=panel.bar_seconds,
    )
    arrays.target_h, arrays.move_h = target_grids(arrays, arrays.target)
    return arrays


def target_grids(arrays: FleetArrays, target: str) -> tuple[np.ndarray | None, ...]:
    """``(target_h, move_h)`` of a cross-sectional ``labels.target`` across the coins of
    ``arrays`` (from their ``net_h``), each (T, N, H) float32; ``(None, None)`` for
    ``absolute``."""
    if target == "absolute":
        return None, None
    net_h = arrays.net_h
    by_bar = [cross_section_labels(net_h[..., i], target) for i in range(net_h.shape[-1])]
    return tuple(np.stack(part, axis=-1).astype(np.float32) for part in zip(*by_bar, strict=True))
