"""What the replay's Mechanic cycles share: arrays and inputs computed once on all bars.

A Mechanic cycle at bar t works on the bars up to t: ``build_fleet_arrays`` (features,
returns, labels) and ``Fleet.inputs`` (each champion's scaled features and factor
channels) over all of them. Run as ``pipeline=mechanic`` does, every daily cycle of a
replay computes them again over the whole history, which one bar more changes only at
its end. ``CycleInputs`` computes them once on the replay's panel and gives each cycle
its first ``t + 1`` rows.

Why that is what the cycle would compute: nothing in them reads a bar after its row
(rolling windows, EMAs, FFD, the factor's lags and forward fill look back; the FFD order,
scalers and factor state are stored, not refitted), and the history starts at the same
bar, so every running sum starts at the same place. The exception is what is meant to
look ahead: a label or trade return at row r reads the close of row r + h, so where
r + h is past t it is NaN, as on the bars up to t (``truncated``). A coin's inputs are
cached under its preprocessing (a promoted challenger keeps its champion's, so no
promotion recomputes them). ``tests/test_replay_cycles.py`` checks that a replay with
and without the cache (``replay.reuse_inputs``) decides and trades the same.
"""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
from omegaconf import DictConfig, OmegaConf

from huracan.data import Panel
from huracan.pipelines.mechanic.run import compute_inputs
from huracan.serve import Fleet
from huracan.training.arrays import FleetArrays, build_fleet_arrays

FORWARD = ("label_h", "net_h", "gross_h")  # (T, N, H) where held: read the close h rows on


class CycleInputs:
    """The Mechanic's arrays and inputs on the replay's panel, cut for each cycle.

    Args:
        panel: every bar the replay may reach (a cycle's bars are its first rows).
    """

    def __init__(self, panel: Panel):
        self.panel = panel
        self._arrays: dict[str, FleetArrays] = {}  # training config and horizons -> arrays
        self._inputs: dict[tuple[str, str], tuple] = {}  # (symbol, preprocessing) -> inputs
        self._problems: dict[tuple[str, str], list[str]] = {}

    def __call__(
        self, bars: Panel, fleet: Fleet, trained: DictConfig, horizons: tuple
    ) -> tuple[FleetArrays, tuple[dict, dict]]:
        """``compute_inputs(bars, ...)``, from the cache where ``bars`` are the panel's
        first rows."""
        n = bars.n_bars
        if not self._is_head(bars):  # not a prefix of the replay's bars: compute them
            return compute_inputs(bars, fleet, trained, horizons)
        key = OmegaConf.to_yaml(trained) + repr(tuple(horizons))
        if key not in self._arrays:
            self._arrays[key] = build_fleet_arrays(self.panel, trained, horizons)
        missing = {s: m for s, m in fleet.models.items() if _slot(s, m) not in self._keys()}
        if missing:
            sub = Fleet(missing, {}, fleet.roster, fleet.shared_encoder, fleet.config)
            inputs, problems = sub.inputs(self.panel)
            for symbol, model in missing.items():
                slot = _slot(symbol, model)
                if symbol in problems:
                    self._problems[slot] = problems[symbol]
                else:
                    self._inputs[slot] = inputs[symbol]
        inputs, problems = {}, {}
        for symbol, model in fleet.models.items():
            slot = _slot(symbol, model)
            if slot in self._problems:
                problems[symbol] = self._problems[slot]
            else:
                x, channels = self._inputs[slot]
                inputs[symbol] = (x[:n], channels[:n])
        return truncated(self._arrays[key], n), (inputs, problems)

    def _keys(self) -> set[tuple[str, str]]:
        return self._inputs.keys() | self._problems.keys()

    def _is_head(self, bars: Panel) -> bool:
        """Whether ``bars`` are the first rows of the replay's panel (same coins)."""
        stamps = self.panel.timestamps
        return (
            list(bars.symbols) == list(self.panel.symbols)
            and bars.n_bars <= len(stamps)
            and bool((bars.timestamps == stamps[: bars.n_bars]).all())
        )


def truncated(arrays: FleetArrays, n: int) -> FleetArrays:
    """``arrays`` as ``build_fleet_arrays`` gives them on the first ``n`` rows of their
    panel: every (T, ...) array cut at ``n``, and the forward-looking values (labels,
    net and gross trade returns, the round trip derived from them) NaN where the trade
    of horizon h would end after row ``n - 1`` (a derived one is, from the cut closes and
    net returns)."""
    rows = len(arrays.timestamps_ns)
    cut = {}
    for f in fields(arrays):
        value = arrays.held(f.name)
        if isinstance(value, np.ndarray) and value.ndim and len(value) == rows:
            cut[f.name] = value[:n]
    for name in FORWARD:
        if name in cut:
            value = cut[name].copy()
            for k, h in enumerate(arrays.horizons):
                value[max(n - h, 0) :, :, k] = np.nan
            cut[name] = value
    first = max(n - arrays.horizons[0], 0)
    for name in ("gross_return", "cost_bps"):
        if name in cut:
            value = cut[name].copy()
            value[first:] = np.nan
            cut[name] = value
    if "net_h" in cut:
        cut["net_return"] = cut["net_h"][..., 0]
    if "label_h" in cut:
        cut["label"] = cut["label_h"][..., 0]
    return arrays.replaced(**cut)


def _slot(symbol: str, model) -> tuple[str, str]:
    """A coin's cache slot: its preprocessing (features, factor, leader) and its own scaler
    and fracdiff order, so that a pointer moved to a version with other ones computes anew."""
    own = json.dumps(
        [model.description.get("scaler"), model.description.get("fracdiff_d")],
        sort_keys=True,
        default=str,
    )
    return symbol, model.preprocessing_key + own
