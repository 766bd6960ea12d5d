"""``validation.cross_fit``: out-of-fold evidence for a fold's gate from its training window.

An early fold's validation slice holds a few days (13 at 0.2 of a year in 5 folds), too
few for the family-wise gate to open on a real edge (``docs/gate.md``). Cross-fitting
adds days of evidence without taking any from training: the fold's training rows are cut
into K contiguous blocks; for each block the heads are trained again without it (and
without the ``purge`` rows before it and the ``embargo`` rows after it, the fold's own
gaps; the gap after a block is at least the purge, so no label the heads train on
shares a return with the block's) and predict it. Every training sample then has a
prediction from heads that never saw its label, and the gate and cut are chosen on those
predictions together with the validation slice's (``thresholds.choose_by_rule``, the
same grid and family-wise error); the fold's own heads, trained on the whole window, trade
the test window at that cut.

What the block's heads share with the fold's: the clusters, the market factor, fracdiff,
the scalers and the encoder. Each is fitted on the training window's inputs (returns at
the same bar, never a later one), so none of them reads a block's labels as a target;
refitting the encoder K times would cost most of a fold's time for no protection of the
labels. The one fold fit that reads returns as a target, ``factor.lead_fit`` (an OLS of
each coin's next-bar return on its channels), is refitted per block without the block
(:func:`block_lead_fits`). ``cluster.level_factor=leader`` chooses each level's leaders
on next-bar returns: for each block they are chosen again on the rows clear of it, and a
coin whose path holds a cluster whose leader would change is kept out of that block's
heads (training and early stopping) and evidence (:func:`moved_leaders`); the other
coins' channels are those of a tree whose leaders were chosen without the block (its
clusters, residual OLS and scales are the fold's). Features fitted on labels
(``features.per_cluster=learned``, the cross-sectional trend aggregate) are refused with a
number of blocks; with ``auto`` such a fold gates on its slice alone (:func:`fitted_on_labels`). The
energy weights are normalised by one mean per horizon over the fold's training rows, the
block's included: the relative weight of the horizons in a block's loss depends a little
on the block's label magnitudes (H - 1 scalars), not on any one label's sign.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from huracan.errors import ConfigError
from huracan.hierarchy import FactorTree
from huracan.lead_fit import LeadFit
from huracan.validation import Fold

Samples = dict[str, torch.Tensor]
log = logging.getLogger("huracan")


def check_cross_fit(cfg: DictConfig) -> None:
    """Raises a ConfigError for a bad ``validation.cross_fit`` or ``cross_fit_days``, or
    one set where it would do nothing (``cross_fit_days`` alone, a pipeline other than
    ``hierarchical``)."""
    validation = cfg.get("validation") or {}
    blocks, below_days = validation.get("cross_fit"), validation.get("cross_fit_days")
    if (
        blocks is not None
        and blocks != "auto"
        and (isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 2)
    ):
        raise ConfigError(
            "validation.cross_fit must be a whole number of blocks >= 2, auto or null, "
            f"got {blocks!r}"
        )
    if below_days is not None and (
        isinstance(below_days, bool) or not isinstance(below_days, int | float) or below_days <= 0
    ):
        raise ConfigError(
            f"validation.cross_fit_days must be a number of days > 0 or null, got {below_days!r}"
        )
    if blocks is None:
        if below_days is not None:
            raise ConfigError(
                f"validation.cross_fit_days={below_days} without validation.cross_fit: "
                "set the number of blocks too"
            )
        return
    if "hierarchical" not in str((cfg.get("pipeline") or {}).get("_target_", "hierarchical")):
        raise ConfigError(
            f"validation.cross_fit={blocks}: cross-fitted evidence is built by "
            "pipeline=hierarchical only"
        )


@dataclass(frozen=True)
class Block:
    """One block of a fold's training rows: grid rows ``first..last``, and the gaps
    (``before`` rows, ``after`` rows) its heads also leave out."""

    first: int
    last: int
    before: int
    after: int

    def holds(self, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` the block holds: the samples its heads predict."""
        return (rows >= self.first) & (rows <= self.last)

    def clear_of(self, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` its heads may train on: outside the block and its gaps."""
        return (rows < self.first - self.before) | (rows > self.last + self.after)


AUTO_BLOCKS = 4  # validation.cross_fit=auto: 4 blocks
AUTO_DAYS = 30.0  # in folds whose slice covers under 30 days, unless cross_fit_days says


@dataclass(frozen=True)
class CrossFit:
    """``validation.cross_fit`` K blocks, in folds whose validation slice covers fewer
    than ``below_days`` days (None: every fold). ``auto``: :data:`AUTO_BLOCKS` blocks
    (under :data:`AUTO_DAYS` where ``cross_fit_days`` is null) where the fold's inputs
    allow it (:func:`fitted_on_labels`), else the slice alone."""

    blocks: int
    below_days: float | None = None
    auto: bool = False

    @classmethod
    def of(cls, cfg: DictConfig) -> CrossFit | None:
        """The run's cross-fit, or None where ``validation.cross_fit`` is null."""
        check_cross_fit(cfg)
        blocks = cfg.validation.get("cross_fit")
        below_days = cfg.validation.get("cross_fit_days")
        if blocks == "auto":
            return cls(AUTO_BLOCKS, AUTO_DAYS if below_days is None else below_days, auto=True)
        return None if blocks is None else cls(int(blocks), below_days)

    def applies(self, fold: Fold) -> bool:
        """Whether ``fold`` is cross-fitted: its validation slice is short enough."""
        if self.below_days is None:
            return True
        times = fold.val_times
        days = (times[-1] - times[0]) / pd.Timedelta(days=1) if len(times) else 0.0
        return days < self.below_days

    def split(self, train_rows: np.ndarray, purge: int, embargo: int) -> list[Block]:
        """The K contiguous blocks of a fold's (sorted) training rows, of equal rows."""
        if len(train_rows) < self.blocks:
            raise ConfigError(
                f"validation.cross_fit={self.blocks}: a fold has only {len(train_rows)} "
                "training rows; use fewer blocks"
            )
        chunks = np.array_split(np.asarray(train_rows), self.blocks)
        # a label after the block reaches back into it no more than a label before it
        # reaches forward: the gap after is never shorter than the purge (embargo may be 0)
        after = max(embargo, purge)
        return [Block(int(c[0]), int(c[-1]), purge, after) for c in chunks]


def fitted_on_labels(cfg: DictConfig, fitted_trend: bool) -> bool:
    """Whether the fold's inputs were fitted on its labels (the learned per-cluster masks,
    the cross-sectional trend aggregate): a block's heads would read inputs fitted on the
    block's own labels, so such a fold cannot be cross-fitted."""
    return cfg.features.get("per_cluster") == "learned" or fitted_trend


def refuse_fitted_features(cfg: DictConfig, fitted_trend: bool) -> None:
    """Raises a ConfigError where the fold's inputs were fitted on its labels
    (:func:`fitted_on_labels`) and cross-fitting was asked for by a number of blocks."""
    if fitted_on_labels(cfg, fitted_trend):
        raise ConfigError(
            "validation.cross_fit with features fitted on the training labels "
            "(features.per_cluster=learned or the cross-sectional trend aggregate): its "
            "blocks' heads would read inputs fitted on their own labels; use one or the other"
        )


def block_lead_fits(
    channels: np.ndarray, returns: np.ndarray, train_rows: np.ndarray, blocks: list[Block]
) -> list[LeadFit]:
    """Per block, ``factor.lead_fit`` refitted on the training rows clear of it.

    Args:
        channels: (T, N, C) the fold's factor channels without its ``lead_fit`` one.
        returns: (T, N) log returns.
    """
    return [
        LeadFit().fit(channels, returns, train_rows[block.clear_of(train_rows)]) for block in blocks
    ]


def moved_leaders(
    tree: FactorTree,
    returns: np.ndarray,
    market: np.ndarray,
    train_rows: np.ndarray,
    blocks: list[Block],
) -> list[np.ndarray]:
    """Per block, (N,) the coins kept out of the block's heads and evidence: their path
    holds a cluster whose leader the training rows clear of the block would not choose
    again (``cluster.level_factor=leader``, :meth:`FactorTree.leaders_moved`), so their
    channel's leader was chosen with the block's own next-bar returns.

    Args:
        returns: (T, N) log returns; market: (T, K) the fold's standardised market factor.
    """
    moved = []
    for block in blocks:
        clear = train_rows[block.clear_of(train_rows)]
        before = int(np.searchsorted(clear, block.first))  # clear rows before the block
        gap = before - 1 if 0 < before < len(clear) else None
        moved.append(tree.leaders_moved(returns, market, clear, gap))
    return moved


def with_lead(samples: Samples, assets: np.ndarray, lead: LeadFit) -> Samples:
    """The samples with their last factor channel (``lead_fit``) recomputed by ``lead``
    from the channels before it (``LeadFit.channels``, per sample)."""
    factor = samples["factor"].clone()
    coef = torch.as_tensor(lead.coef_[assets, 1:], dtype=factor.dtype)  # (B, C)
    factor[:, -1] = (factor[:, :-1] * coef).sum(1) / lead.scale_
    return {**samples, "factor": factor}


def take(samples: Samples, index: np.ndarray) -> Samples:
    """The samples at ``index``; lazily read inputs stay lazy (``LazyInputs``)."""
    taken = {}
    for key, value in samples.items():
        if hasattr(value, "t_idx"):  # LazyInputs: a view on the fold's grids
            taken[key] = type(value)(value.data, value.t_idx[index], value.a_idx[index])
        else:
            taken[key] = value[torch.as_tensor(index)]
    return taken


@dataclass(frozen=True)
class Evidence:
    """A fold's out-of-fold predictions of its training samples: what the gate reads
    beside the validation slice's.

    Attributes:
        prob: (B, H) probabilities, one column per horizon.
        rows: (B,) grid rows; assets: (B,) asset columns (the fold's); group: (B,) heads.
    """

    prob: np.ndarray
    rows: np.ndarray
    assets: np.ndarray
    group: np.ndarray


FitHeads = Callable[[Samples, Samples, tuple[Samples, Samples] | None, int], torch.nn.Module]


def out_of_fold(
    fit: FitHeads,
    blocks: list[Block],
    rows: np.ndarray,
    samples: tuple[Samples, Samples, Samples],
    codes: tuple[Samples, Samples] | None,
    assets: tuple[np.ndarray, np.ndarray],
    leads: list[LeadFit] | None = None,
    left_out: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per training sample, the probabilities of heads trained without its block.

    Args:
        fit: trains block ``b``'s heads: ``fit(train, val, codes, b)`` (the fold's
            ``fit_heads`` with its encoder, groups and trainer bound).
        blocks: the fold's blocks (:meth:`CrossFit.split`).
        rows: (B,) grid row of each training sample.
        samples: the training samples (what the heads learn from: codes where the encoder
            is frozen), the same samples' model inputs (what ``predict_proba`` reads) and
            the validation samples (early stopping, as for the fold's heads).
        codes: the training and validation samples encoded, or None (fine-tuned encoder).
        assets: (B,) and (V,) the training and validation samples' asset columns.
        leads: per block, its ``factor.lead_fit`` (:func:`block_lead_fits`), or None.
        left_out: per block, (N,) the coins whose samples its heads neither learn from,
            early-stop on, nor predict (:func:`moved_leaders`), or None.

    Returns:
        (B, H) probabilities, in the training samples' order, and (B,) whether each
        sample was predicted: not where its coin is left out of its block, or the block
        has nothing left to learn from (its probabilities are NaN there).
    """
    train, inputs, val = samples
    train_a, val_a = assets
    out, predicted = None, np.zeros(len(rows), dtype=bool)
    none = np.zeros(int(max(train_a.max(initial=0), val_a.max(initial=0))) + 1, bool)
    for b, block in enumerate(blocks):
        coins = none if left_out is None else left_out[b]
        held = np.flatnonzero(block.holds(rows) & ~coins[train_a])
        if len(held) == 0:
            continue
        clear = block.clear_of(rows)
        if not clear.any():
            raise ConfigError(
                f"validation.cross_fit: block {b + 1} of {len(blocks)} leaves its heads no "
                "training sample; use fewer blocks"
            )
        learn = np.flatnonzero(clear & ~coins[train_a])
        looked = np.flatnonzero(~coins[val_a])  # early stopping: the same coins' slice
        if len(learn) == 0 or len(looked) == 0:  # every coin it could learn from left out
            log.warning(
                "validation.cross_fit: block %d of %d has no training or validation sample "
                "of the coins it would predict; its %d samples are left out of the evidence",
                b + 1,
                len(blocks),
                len(held),
            )
            continue
        part_train, part_val = take(train, learn), val
        val_codes = None if codes is None else codes[1]
        if len(looked) < len(val_a):  # else the slice as it is (no copy)
            part_val = take(val, looked)
            val_codes = None if codes is None else take(codes[1], looked)
        predict = take(inputs, held)
        if leads is not None:
            part_train = with_lead(part_train, train_a[learn], leads[b])
            part_val = with_lead(part_val, val_a[looked], leads[b])
            predict = with_lead(predict, train_a[held], leads[b])
            if val_codes is not None:
                val_codes = with_lead(val_codes, val_a[looked], leads[b])
        part_codes = None if codes is None else (part_train, val_codes)
        module = fit(part_train, part_val, part_codes, b)
        prob = module.predict_proba(predict["x"], predict["factor"], predict["group"]).numpy()
        prob = prob[:, None] if prob.ndim == 1 else prob
        if out is None:
            out = np.full((len(rows), prob.shape[1]), np.nan, dtype=prob.dtype)
        out[held] = prob
        predicted[held] = True
    if out is None:  # no block predicted any sample
        width = train["y"].shape[1] if train["y"].ndim == 2 else 1
        out = np.full((len(rows), width), np.nan, dtype=np.float32)
    return out, predicted
