"""Permutation importance of a coin's inputs on its validation slice (per-coin jobs)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata

from huracan.models import FleetModule
from huracan.threads import wide_threads


def permutation_importance(
    module: FleetModule,
    val: dict,
    names: list[str],
    rules: dict,
    seed: int,
    predict: Callable[[FleetModule, dict], np.ndarray],
) -> dict[str, float | None]:
    """AUROC lost on the validation slice when one input column is shuffled.

    ``predict(module, part)`` gives the model's probabilities on a part (the job's own).

    All shuffled copies (inputs x repeats) go through the model in one batch, and their
    AUROCs are computed together from ranks.
    """
    y = val["y"].astype(bool)
    if y.all() or not y.any():
        return dict.fromkeys(names)
    inputs = np.concatenate([val["x"], val["factor"]], axis=1)  # (M, F + C)
    n, width = inputs.shape
    n_features = val["x"].shape[1]
    repeats = rules["importance_repeats"]
    rng = np.random.default_rng(seed)
    copies = np.repeat(inputs[None], width * repeats, axis=0)  # (F' R, M, F')
    for k in range(width * repeats):  # one column shuffled per copy
        j = k // repeats
        copies[k, :, j] = rng.permutation(inputs[:, j])
    flat = copies.reshape(-1, width)
    part = {"x": flat[:, :n_features], "factor": flat[:, n_features:], "y": np.zeros(len(flat))}
    with wide_threads():  # (F' R M) rows through the model: wide enough for every core
        scores = np.vstack([predict(module, val)[None], predict(module, part).reshape(-1, n)])
    auroc = _auroc(scores, y)  # (1 + F' R,)
    drops = (auroc[0] - auroc[1:]).reshape(width, repeats).mean(1)
    return {name: round(float(d), 6) for name, d in zip(names, drops, strict=True)}


def _auroc(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUROC of each row of ``scores`` (K, M) against labels ``y`` (M,), from ranks."""
    ranks = rankdata(scores, axis=1)
    n_pos, n_neg = y.sum(), (~y).sum()
    return (ranks[:, y].sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
