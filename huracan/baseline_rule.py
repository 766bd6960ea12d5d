"""How every baseline with a cut chooses its horizon and cut on validation.

``baselines.rule=heads`` (the default): by the heads' own rule, ``thresholds`` as the run
has it (``thresholds.choose_by_rule``: min_trades, z, unit, cut_z, the family-wise gate
over the baseline's whole search of horizons and cuts, and its cut margin). A baseline
then trades only where its validation edge survives its search, as a head must.
``baselines.rule=uncorrected``: the same rule with the gate off (``thresholds.gate=search``:
the best candidate at z, no correction for the search), the rule every baseline followed
before. On markets without an edge an uncorrected search trades often (issue 26: about
half of the heads at 0 bps), so it flatters the baselines' trade counts and, where the
search found noise, their losses; a gated baseline is the fair peer of a gated head, and a
weaker one: it trades less, also where it has an edge.

Baselines without a cut (``never_trade``, ``always_long``: ``UNCUT``) follow no rule, and
neither does the long-short book, which ranks every score top-k with no cut; the ranked
baselines (momentum, reversal) do choose their long-only cut by it. The per-coin
pipeline's models choose by the same rule (``huracan.coin_rule``), so there too ``heads``
gates the baselines as it gates the models.
"""

from __future__ import annotations

import copy
import zlib
from typing import NamedTuple

import numpy as np
from omegaconf import DictConfig, open_dict

from huracan.errors import ConfigError
from huracan.family import Search
from huracan.thresholds import choose_by_rule, choose_by_rule_among, validation_days

RULES = ("heads", "uncorrected")


class Rules(NamedTuple):
    """What a baseline chooses its horizon and cut by.

    Attributes:
        thresholds: the run's ``thresholds`` (its gate off for ``baselines.rule=uncorrected``).
        timestamps_ns: (T,) the grid's timestamps: each row's day and the bar length.
        seed: seeds the gate's resampling (:meth:`named`: one stream per baseline).
    """

    thresholds: DictConfig
    timestamps_ns: np.ndarray
    seed: int

    @property
    def min_trades(self) -> int:
        return int(self.thresholds.min_trades)

    def named(self, name: str) -> Rules:
        """These rules with the baseline ``name``'s own seed, derived from the run's: the
        same every run (``zlib.crc32``, not Python's salted ``hash``), another for each
        baseline, so that no two baselines share a resampling stream."""
        return self._replace(seed=zlib.crc32(f"{self.seed}/{name}".encode()))

    def day(self, rows: np.ndarray) -> np.ndarray | None:
        """The day number of each grid row (``thresholds.unit=day``), else None."""
        return validation_days(self.thresholds.unit, self.timestamps_ns[rows])

    def choose(
        self,
        prob: np.ndarray,
        net_return: np.ndarray,
        group: np.ndarray,
        row: np.ndarray,
        horizons: tuple[int, ...],
        n_groups: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``thresholds.choose_by_rule`` on a baseline's validation scores: per group, the
        horizon index, cut and bound (index -1, cut +inf: no trade)."""
        return choose_by_rule(
            self.thresholds,
            prob,
            net_return,
            group,
            row,
            horizons,
            n_groups,
            self.timestamps_ns,
            self.seed,
        )

    def choose_among(
        self,
        searches: list[list[tuple[Search, np.ndarray] | None]],
        n_groups: int,
        horizons: tuple[int, ...],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``thresholds.choose_by_rule_among``: the rule over candidates the baseline built
        (the leader rule's cuts on the leader's return)."""
        return choose_by_rule_among(
            self.thresholds, searches, n_groups, horizons, self.timestamps_ns, self.seed
        )


def check_rule(rule: str) -> None:
    """``baselines.rule`` is one of :data:`RULES`."""
    if rule not in RULES:
        raise ConfigError(f"baselines.rule must be heads or uncorrected, got {rule!r}")


# the baselines that trade without a cut, so follow no rule
UNCUT = ("never_trade", "always_long")


def gated_peer(best: str, gate: str | None) -> bool:
    """Whether the best baseline ``best`` had its cut gated: a gate ran (``gate`` neither
    ``search`` nor None) and the baseline has a cut to choose (a weaker peer, said so in
    verdicts)."""
    return gate not in ("search", None) and best not in UNCUT


def applied_gate(thresholds: DictConfig | None, rule: str) -> str | None:
    """The ``thresholds.gate`` the baselines' cuts are chosen under (``search``: no gate,
    also where ``thresholds`` has no ``gate``: the rule then runs without one). None where
    there are no ``thresholds`` (a hand-made config): no rule of its chose a cut."""
    check_rule(rule)
    if thresholds is None:
        return None
    if rule == "uncorrected":
        return "search"
    return str(thresholds.get("gate", "search"))


def gate_label(gate: str | None) -> str:
    """``gate=...`` as reports name it, or that no rule was recorded (``applied_gate``)."""
    return "no thresholds: no gate" if gate is None else f"gate={gate}"


def baseline_rules(
    thresholds: DictConfig,
    rule: str,
    timestamps_ns: np.ndarray,
    seed: int,
) -> Rules:
    """The baselines' rules of a run: its ``thresholds`` under ``baselines.rule``."""
    check_rule(rule)
    if rule == "uncorrected":
        # a copy, unlocked: a struct config without thresholds.gate takes the key too
        thresholds = copy.deepcopy(thresholds)
        with open_dict(thresholds):
            thresholds.gate = "search"
    return Rules(thresholds, np.asarray(timestamps_ns, dtype=np.int64), int(seed))
