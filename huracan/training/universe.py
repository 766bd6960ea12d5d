"""Which coins take part in each walk-forward fold: a coin listed during a run joins it.

A coin takes part in fold k (its clusters, factor, cross-sectional features, heads,
thresholds and test trades, every baseline and every report figure) only where

- it passes the data gates measured for fold k: with ``gates.until=per_fold`` on the bars
  before fold k's first test bar (``data.gates.apply_fold_gates``); otherwise the run's
  one verdict holds for every fold;
- and it has at least ``cluster.min_overlap`` bars with a return in fold k's training
  rows: the history the clustering needs to place a coin, without which it would have
  no head (a coin listed just before the fold would otherwise be traded by the baselines
  and not by the model). With ``gates.late_coins=assign`` such a coin may still be
  admitted to the fold's test window once the fold is fitted (``training.late``).

Neither reads a bar at or after fold k's first test bar. A coin out of fold k is absent
from it: the fold works on the arrays of its members only (:func:`fold_arrays`), as if
the panel held nothing else, so the coin has no cluster, head, score or trade there and
is in no cross-section (feature ranks, rank IC, quintiles, long-short book). Why each
coin was out of each fold goes into the gate report (``gates.json``'s ``universe``).
"""

from __future__ import annotations

import numpy as np

from huracan.data.gates import GateReport
from huracan.data.panel import Panel
from huracan.errors import DataError
from huracan.features.cross_section import cross_section_features
from huracan.training.arrays import FleetArrays
from huracan.validation import Fold


def fold_universe(
    gates: GateReport | None,
    arrays: FleetArrays,
    folds: list[Fold],
    min_bars: int,
    min_assets: int = 1,
) -> np.ndarray:
    """(K, N) bool: asset n takes part in fold k. Records in ``gates`` why each asset is
    out of each fold it is out of.

    Args:
        gates: the run's gate report (None: every asset passed for every fold).
        arrays: the run's arrays (its assets: those that passed the gates for some fold).
        folds: the walk-forward folds.
        min_bars: the fewest bars with a return in a fold's training rows
            (``cluster.min_overlap``).
        min_assets: the fewest assets a fold may have (``universe.min_assets``).

    Raises:
        DataError: a fold with fewer than ``min_assets`` assets.
    """
    n_folds = len(folds)
    gates = gates if gates is not None else GateReport()
    for symbol in arrays.symbols:  # one verdict for every fold unless measured per fold
        gates.fold_reasons.setdefault(symbol, [[] for _ in range(n_folds)])
    members = gates.fold_members(arrays.symbols, n_folds)
    for fold in folds:
        bars = np.isfinite(arrays.returns[fold.train]).sum(0)
        for j in np.flatnonzero(members[fold.index] & (bars < min_bars)):
            members[fold.index, j] = False
            gates.exclude_from_fold(
                arrays.symbols[j],
                fold.index,
                n_folds,
                {
                    "code": "min_train_bars",
                    "value": int(bars[j]),
                    "threshold": min_bars,
                    "message": f"{bars[j]} bars with a return in fold {fold.index}'s training "
                    f"window, fewer than cluster.min_overlap={min_bars}",
                },
            )
        if members[fold.index].sum() < min_assets:
            for later in folds[fold.index + 1 :]:  # gates.json must not call them measured
                for j in np.flatnonzero(members[later.index]):
                    gates.exclude_from_fold(
                        arrays.symbols[j],
                        later.index,
                        n_folds,
                        {
                            "code": "not_measured",
                            "message": f"the run stopped at fold {fold.index}",
                        },
                    )
            raise DataError(
                "universe",
                f"fold {fold.index} (test from {fold.test_times[0]}) has "
                f"{members[fold.index].sum()} assets in its universe, at least {min_assets} "
                f"needed; out: {why_out(gates, arrays.symbols, members[fold.index], fold.index)}"
                " (gates.json's universe has every reason)",
            )
    return members


def why_out(gates: GateReport, symbols: list[str], member: np.ndarray, fold: int) -> str:
    """The first reason each coin out of ``fold`` is out, for an error message (the first
    five coins, then a count)."""
    out = [s for s, m in zip(symbols, member, strict=True) if not m]
    shown = [
        f"{s}: {reasons[0]['message']}" if (reasons := gates.fold_reasons[s][fold]) else s
        for s in out[:5]
    ]
    more = f"; and {len(out) - 5} more" if len(out) > 5 else ""
    return "; ".join(shown) + more if out else "none"


def fold_arrays(arrays: FleetArrays, panel: Panel | None, member: np.ndarray) -> FleetArrays:
    """The arrays of one fold's universe: ``arrays`` itself where every asset is in it,
    else those of its members, with the cross-sectional ranks taken again across them.

    Args:
        arrays: the run's arrays.
        panel: the panel they were built from (needed only where an asset is out).
        member: (N,) bool, the fold's universe.
    """
    if member.all():
        return arrays
    part = arrays.columns(np.flatnonzero(member))
    if arrays.cross_section is not None:
        across, _ = cross_section_features(panel.select(part.symbols), arrays.cross_section)
        if across.shape[-1]:  # build_fleet_arrays puts them last
            part.features[..., -across.shape[-1] :] = across
    return part


def absent_cells(universe: np.ndarray, folds: list[Fold], shape: tuple[int, int]) -> np.ndarray:
    """(T, N) bool: the test rows of each fold for the assets out of its universe."""
    absent = np.zeros(shape, dtype=bool)
    for fold in folds:
        absent[np.ix_(fold.test, ~universe[fold.index])] = True
    return absent
