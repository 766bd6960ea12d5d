"""Every bar's signals over a replayed window, from one pass of the serving path.

``Fleet.signals`` at bar t rebuilds every input from the last ``bars_needed`` bars and
scores the latest one, so replaying N bars that way rebuilds each input ``bars_needed``
times. A ``SignalTape`` builds each coin's inputs and probabilities once over the window
(from ``bars_needed - 1`` bars before its first bar: the same warm-up) with the same code
(``Fleet._probabilities``: the stored FFD order, scaler and factor state, the factor's
channels), and at each bar applies the same rules (``Fleet.decisions``, then
``with_positions``) to the rows up to that bar only.

Why this is the per-bar answer: no input at bar t reads a bar after t (rolling windows,
EMAs, FFD, the factor's lags, forward fill and volume window all look back), and the
preprocessing state is stored, not refitted. A longer history changes a value only
through what the per-bar warm-up truncates: an EMA's starting weight (below
``ServeConfig.ema_tolerance``) and the rounding of pandas' running window sums.
``tests/test_signal_tape.py`` checks probabilities against per-bar ``Fleet.signals`` to
1e-6 and every decision and reason exactly, bar for bar.

After a Mechanic promotion ``refresh`` recomputes only the coins whose model changed, from
the bar the new model serves: a coin's inputs read its own bars, the market factor's
symbols and (``cluster=hierarchy``) its level-1 cluster's members, never the other coins'.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from huracan.data import Panel
from huracan.features.drift import bin_index
from huracan.serve.fleet import Fleet
from huracan.serve.positions import Position, with_positions


class SignalTape:
    """Precomputed probabilities and inputs of a fleet on grid rows ``start..end - 1``.

    Attributes:
        fleet: the fleet whose rules decide (``refresh`` replaces it).
        start: the first row computed (the warm-up of the first replayed bar).
        paths: symbol -> the model version its probabilities come from.
    """

    def __init__(self, fleet: Fleet, panel: Panel, first: int, end: int):
        self.fleet, self.panel, self.end = fleet, panel, end
        self.start = max(first + 1 - fleet.bars_needed, 0)
        self.paths: dict[str, str] = {}
        self._probability: dict[str, np.ndarray] = {}  # symbol -> (end - start,)
        self._bins: dict[str, np.ndarray] = {}  # symbol -> (end - start, F + C) bin_index
        self._problems: dict[str, list[str]] = {}
        self._fill(fleet, first)

    def refresh(self, fleet: Fleet, row: int) -> list[str]:
        """Serves ``fleet`` from grid row ``row`` on; returns the coins recomputed (those
        whose model version changed)."""
        self.fleet = fleet
        changed = [s for s, m in fleet.models.items() if self.paths.get(s) != m.model_path]
        if changed and row < self.end:
            models = {s: fleet.models[s] for s in changed}
            sub = Fleet(models, {}, fleet.roster, fleet.shared_encoder, fleet.config)
            self._fill(sub, row)
        return changed

    def signals(self, t: int, positions: Mapping[str, Position] | None = None) -> pd.DataFrame:
        """``fleet.signals`` on the bars up to grid row ``t`` (its columns and rows), from
        the precomputed values."""
        fleet, i = self.fleet, t - self.start
        probability = np.array(
            [self._probability[s][i] if s in self._probability else np.nan for s in fleet.models]
        )
        psi_by_coin = {}
        if t + 1 >= fleet.bars_needed:  # a per-bar call reads a full window: drift measured
            w = fleet.config.drift_window
            recent = {s: v[i + 1 - w : i + 1] for s, v in self._bins.items() if s in fleet.models}
            psi_by_coin = fleet._psi(recent, binned=True)
        problems = {s: self._problems[s] for s in fleet.models if s in self._problems}
        frame = fleet.decisions(self.panel, t, probability, problems, psi_by_coin)
        return with_positions(frame, positions, pd.Timedelta(self.panel.timeframe))

    def _fill(self, fleet: Fleet, row: int) -> None:
        """``fleet``'s coins computed on rows ``row - bars_needed + 1 .. end - 1``."""
        lo = max(row + 1 - fleet.bars_needed, self.start)
        stamps = self.panel.timestamps
        hi = stamps[self.end] if self.end < self.panel.n_bars else None
        bars = self.panel.between(stamps[lo], hi)
        probability, problems, inputs = fleet._probabilities(
            bars, np.arange(bars.n_bars), keep_inputs=True
        )
        n = self.end - self.start
        for j, (symbol, model) in enumerate(fleet.models.items()):
            self.paths[symbol] = model.model_path
            column = self._probability.setdefault(symbol, np.full(n, np.nan))
            column[lo - self.start :] = probability[:, j]
            if symbol in inputs:  # binned once: the drift window slides over the bins
                reference = model.description.get("reference")
                new = inputs[symbol]
                binned = np.full(new.shape, -1, np.int16)
                if reference is not None:
                    binned = bin_index(new, reference["edges"])
                values = self._bins.get(symbol)
                if values is None or values.shape[1:] != binned.shape[1:]:
                    values = self._bins[symbol] = np.full((n, *binned.shape[1:]), -1, np.int16)
                values[lo - self.start :] = binned
            else:
                self._bins.pop(symbol, None)
            if symbol in problems:
                self._problems[symbol] = problems[symbol]
            else:
                self._problems.pop(symbol, None)
