"""How one coin's model chooses its horizon and cut on validation (the per-coin pipeline's
jobs and the Mechanic's re-tuning of a champion's threshold).

A job of this version carries its rule in its metadata (``cut_rule``, written into the
model's checkpoint): the run's whole ``thresholds`` (min_trades, z, unit, cut_z, the
family-wise ``gate`` over the coin's search of horizons and cuts, and its cut margin) and
the gate's seed, derived from the run's seed and the coin (``zlib.crc32``: the same every
run, another stream per coin). ``thresholds.gate`` thus governs every pipeline: a coin's
model trades only where its validation edge survives its own search, as a head must.

A job or checkpoint stored before carries no ``cut_rule``: it chooses as it did then, by
the uncorrected search (the best candidate at z, ``thresholds.choose_horizons``), so a
champion trained under that rule is re-tuned under it too.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np
from omegaconf import DictConfig, OmegaConf

from huracan.thresholds import (
    choose_by_rule_among,
    choose_horizons,
    family_gate,
    horizon_searches,
    validation_days,
)


def cut_rule(thresholds: DictConfig, run_seed: int, symbol: str) -> dict:
    """The rule coin ``symbol``'s model chooses by: the run's ``thresholds`` (plain) and
    its gate's seed (``zlib.crc32`` of the run's seed and the coin, not Python's salted
    ``hash``)."""
    family_gate(thresholds, (1,), np.zeros(1, np.int64), 0)  # a misspelled gate fails here
    return {
        "thresholds": OmegaConf.to_container(thresholds, resolve=True),
        "seed": zlib.crc32(f"{run_seed}/{symbol}".encode()),
    }


def choose_coin_cut(
    rule: Mapping | None,
    legacy: Mapping,
    prob: np.ndarray,
    net_return: np.ndarray,
    row: np.ndarray,
    timestamps_ns: np.ndarray,
    horizons: tuple[int, ...],
) -> tuple[int, float]:
    """One coin's horizon index and cut on validation; cut +inf (index -1) where none
    trades.

    Args:
        rule: :func:`cut_rule`'s dict, or None for a job or checkpoint stored before it.
        legacy: the old rule's ``min_trades``, ``z``, ``unit`` and ``cut_z`` (None: z), read
            only where ``rule`` is None.
        prob: (M, H) validation probabilities, one column per horizon.
        net_return: (M, H) their net returns after the coin's costs.
        row: (M,) grid rows (each horizon is judged on every h-th: no overlapping trades).
        timestamps_ns: (M,) the samples' timestamps (their days, the bar length).
        horizons: (H,) the label horizons in bars.
    """
    group = np.zeros(len(prob), int)
    if rule is None:
        day = validation_days(legacy["unit"], timestamps_ns)
        index, cuts, _ = choose_horizons(
            prob, net_return, group, row, horizons, 1, legacy["min_trades"], legacy["z"], day,
            legacy.get("cut_z"),
        )  # fmt: skip
        return int(index[0]), float(cuts[0])
    thresholds = OmegaConf.create(dict(rule["thresholds"]))
    day = validation_days(thresholds.unit, timestamps_ns)
    searches = horizon_searches(
        prob, net_return, group, row, horizons, 1, thresholds.min_trades, day
    )
    index, cuts, _ = choose_by_rule_among(
        thresholds, searches, 1, horizons, np.asarray(timestamps_ns, np.int64), rule["seed"]
    )
    return int(index[0]), float(cuts[0])
