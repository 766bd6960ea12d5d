"""``ensemble=stack`` in the hierarchical run: the components of each fold, and the books of
the ensemble and of every component (``huracan.ensemble`` holds the meta-model).

During the fold loop (:func:`fold_components`) every cluster head is evaluated on every
validation and test sample, and the global head trained on the fold's encoder codes is
evaluated beside them. After the baselines (LightGBM's validation probabilities are kept
per fold), :func:`stack_run` fits each fold's meta-model on its validation slice, chooses
the ensemble's horizon and cut per head by the heads' rule on the out-of-fold predictions,
and writes the test-window trades of the ensemble and of each component into books.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from huracan.ensemble import ensemble_config, stack_fold
from huracan.thresholds import DAY_NS, choose_by_rule
from huracan.training.fit import encoded, fit_heads

if TYPE_CHECKING:
    from huracan.pipelines.hierarchical.book import Book, FleetRun
    from huracan.training.arrays import FleetArrays


@dataclass
class FoldComponents:
    """One fold's component probabilities on its validation and test samples.

    Attributes:
        names: the K components: ``head_cluster_<g>`` per cluster head, ``head_global``
            (then ``lightgbm`` is appended by :func:`stack_run` where the run has it).
        val_rows, test_rows: (grid row, asset column, head) of each sample.
        val_prob, test_prob: (B, K, H) float32 probabilities.
    """

    fold: int
    n_groups: int
    names: list[str]
    val_rows: tuple[np.ndarray, np.ndarray, np.ndarray]
    test_rows: tuple[np.ndarray, np.ndarray, np.ndarray]
    val_prob: np.ndarray
    test_prob: np.ndarray
    meta: list[dict | None] = field(default_factory=list)
    choice: dict = field(default_factory=dict)


@torch.no_grad()
def every_head_proba(head, inputs: torch.Tensor, n_groups: int, chunk: int = 65536) -> np.ndarray:
    """(B, G, H) float32 probability of every group's head on every sample's input.

    Args:
        head: the ``GroupedMoEHead``; inputs: (B, L + C) its inputs (:func:`head_inputs`).
    """
    out = np.empty((len(inputs), n_groups, head.n_outputs), dtype=np.float32)
    for start in range(0, len(inputs), chunk):
        part = inputs[start : start + chunk]
        for g in range(n_groups):
            logits, _ = head(part, torch.full((len(part),), g, dtype=torch.long))
            out[start : start + chunk, g] = logits.view(len(part), -1).sigmoid().numpy()
    return out


def head_inputs(encoder, samples: dict) -> torch.Tensor:
    """(B, L + C) the heads' inputs: the frozen encoder's codes and the factor channels."""
    return torch.cat([encoded(encoder, samples)["x"], samples["factor"]], dim=-1)


def fold_components(
    cfg: DictConfig,
    fold: int,
    module,
    encoder,
    samples: tuple[dict, dict, dict],
    codes: tuple | None,
    rows: tuple,
    n_groups: int,
    make_trainer,
    logger,
    seed: int,
    stage: str,
) -> FoldComponents:
    """Every cluster head and (``ensemble.global_head``) a global head, trained here on
    the fold's training samples, on the fold's validation and test samples.

    Args:
        fold: the fold's index.
        samples: the fold's (train, val, test) sample tensors; codes: train and val
            encoded (``MoEHeads.encode``), or None.
        rows: grid rows and asset columns of the validation and test samples.
    """
    train, val, test = samples
    val_t, val_a, test_t, test_a = rows
    names = [f"head_cluster_{g}" for g in range(n_groups)]
    test_in = head_inputs(module.encoder, test)
    if codes is None:  # a fine-tuned encoder: no fixed codes
        val_in = head_inputs(module.encoder, val)
    else:  # the frozen encoder's validation codes, encoded once for the fold
        val_in = torch.cat([codes[1]["x"], val["factor"]], dim=-1)
    val_prob = [every_head_proba(module.head, val_in, n_groups)]
    test_prob = [every_head_proba(module.head, test_in, n_groups)]
    config = ensemble_config(cfg)
    if config.global_head:
        patience = config.global_patience_for(int(cfg.head.patience), n_groups)
        global_module = fit_heads(
            OmegaConf.merge(cfg.head, {"granularity": "global", "patience": patience}),
            encoder,
            1,
            *(in_one_group(part) for part in (train, val)),
            make_trainer,
            logger,
            seed,
            stage,
            None if codes is None else tuple(in_one_group(part) for part in codes),
        )
        if global_module.encoder is not module.encoder:  # fine-tuned: its own codes
            val_in, test_in = (head_inputs(global_module.encoder, part) for part in (val, test))
        val_prob.append(every_head_proba(global_module.head, val_in, 1))
        test_prob.append(every_head_proba(global_module.head, test_in, 1))
        names.append("head_global")
    return FoldComponents(
        fold=fold,
        n_groups=n_groups,
        names=names,
        val_rows=(val_t, val_a, val["group"].numpy()),
        test_rows=(test_t, test_a, test["group"].numpy()),
        val_prob=np.concatenate(val_prob, axis=1),
        test_prob=np.concatenate(test_prob, axis=1),
    )


def in_one_group(samples: dict) -> dict:
    """The samples with every one in group 0: the one parameter set of a global head."""
    return {**samples, "group": torch.zeros_like(samples["group"])}


def with_lightgbm(parts: FoldComponents, fold, validation: np.ndarray, score: np.ndarray) -> None:
    """Appends LightGBM's probabilities as a component: on the validation samples its
    fold's validation fit (``validation`` (V, N, H) over ``fold.val``), on the test samples
    its test-window score (H, T, N)."""
    val_t, val_a, _ = parts.val_rows
    test_t, test_a, _ = parts.test_rows
    val = validation[np.searchsorted(fold.val, val_t), val_a]  # (Bv, H)
    test = score[:, test_t, test_a].T  # (Bt, H)
    parts.val_prob = np.concatenate([parts.val_prob, val[:, None].astype(np.float32)], axis=1)
    parts.test_prob = np.concatenate([parts.test_prob, test[:, None].astype(np.float32)], axis=1)
    parts.names.append("lightgbm")


def stack_run(run: FleetRun, cfg: DictConfig) -> None:
    """Fits every fold's meta-model on its validation slice and writes the test trades of
    the ensemble (``run.ensemble``) and of each head component (``run.components``)."""
    from huracan.pipelines.hierarchical.book import Book

    config = ensemble_config(cfg)
    arrays = run.arrays
    run.ensemble = Book.empty(arrays)
    lightgbm = run.baseline_validation.get("lightgbm")
    for parts in run.ensemble_parts:
        fold = run.folds[parts.fold]
        if lightgbm is not None and "lightgbm" not in parts.names:
            with_lightgbm(parts, fold, lightgbm[parts.fold], run.baseline_scores["lightgbm"])
        for k, name in enumerate(parts.names):
            if name == "lightgbm":
                continue  # the LightGBM baseline's own book is its component row
            book = run.components.setdefault(name, Book.empty(arrays))
            decide(parts.val_prob[:, k], parts.test_prob[:, k], parts, arrays, cfg, book)
        val_t, val_a, val_group = parts.val_rows
        _, _, test_group = parts.test_rows
        val_day = arrays.timestamps_ns[val_t] // DAY_NS
        stacked = stack_fold(
            config,
            (with_own(parts.val_prob, val_group), val_group, val_t, val_day),
            (with_own(parts.test_prob, test_group), test_group),
            arrays.labels_at(val_t, val_a),  # those samples' cells only: no (T, N, H) grid
            arrays.net_at(val_t, val_a),
            arrays.horizons,
            parts.n_groups,
            cfg.seed + parts.fold,
        )
        parts.meta = stacked.meta
        parts.choice = decide(stacked.validation, stacked.test, parts, arrays, cfg, run.ensemble)


def with_own(prob: np.ndarray, group: np.ndarray, leave_out_own: bool = True) -> np.ndarray:
    """(B, 1 + K, H): the probability of each sample's own cluster head first, then every
    component's, the cluster heads by id.

    Args:
        prob: (B, K, H) the components' probabilities, cluster heads first.
        group: (B,) each sample's cluster.
        leave_out_own: NaN (absent) in the column of a sample's own cluster among the
            cluster heads, so the meta-model reads the own head once: ``convex``
            renormalises the sample's weights over the rest; ``logistic`` and
            ``gating_mlp`` read logit 0 (no opinion) there, and the copy of column 0
            that would be collinear with it is gone. False keeps every column (a
            component's own figures).
    """
    rows = np.arange(len(prob))
    own = prob[rows, group]  # (B, H)
    others = prob.copy() if leave_out_own else prob
    if leave_out_own:
        others[rows, group] = np.nan
    return np.concatenate([own[:, None], others], axis=1)


def decide(
    val_prob: np.ndarray,
    test_prob: np.ndarray,
    parts: FoldComponents,
    arrays: FleetArrays,
    cfg: DictConfig,
    book: Book,
) -> dict:
    """Per head, the horizon and cut of a score chosen on validation by the heads' rule
    (``thresholds``, the family gate); its test trades and scores go into ``book``.

    Args:
        val_prob: (Bv, H) the score on the validation samples (NaN: none, never traded).
        test_prob: (Bt, H) the score on the test samples.
    """
    val_t, val_a, val_group = parts.val_rows
    test_t, test_a, test_group = parts.test_rows
    net = np.where(np.isfinite(val_prob), arrays.net_at(val_t, val_a), np.nan)
    index, cuts, _ = choose_by_rule(
        cfg.thresholds,
        np.nan_to_num(val_prob, nan=0.0),
        net,
        val_group,
        val_t,
        arrays.horizons,
        parts.n_groups,
        arrays.timestamps_ns,
        cfg.seed,
    )
    chosen = np.maximum(index[test_group], 0)
    p = test_prob[np.arange(len(test_prob)), chosen]
    book.probability[test_t, test_a] = p
    book.scores[:, test_t, test_a] = test_prob.T
    with np.errstate(invalid="ignore"):
        book.signals[test_t, test_a] = (index[test_group] >= 0) & (p >= cuts[test_group])
    book.index[test_t, test_a] = chosen
    return {
        "horizons": [arrays.horizons[i] if i >= 0 else None for i in index.tolist()],
        "thresholds": [None if np.isinf(c) else round(float(c), 4) for c in cuts],
    }


def ensemble_folds(run: FleetRun) -> list[dict]:
    """``summary.json``'s ``ensemble.folds``: per fold the components, each horizon's
    meta-model and the ensemble's horizon and cut per head."""
    return [
        {
            "fold": parts.fold,
            "components": ["own_head", *parts.names],
            "validation_samples": len(parts.val_rows[0]),
            "meta": parts.meta,
            **parts.choice,
        }
        for parts in run.ensemble_parts
    ]
