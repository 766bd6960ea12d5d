"""A simple baseline: one logistic regression per coin on the same inputs and folds.

It sees exactly what the fleet model sees (scaled features and market-factor channels,
fitted per fold on the training rows), trades by the same threshold rule chosen on the
same validation slice, and is scored the same way, so the two are directly comparable.
"""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig
from sklearn.linear_model import LogisticRegression

from huracan.pipelines.fold_data import FleetArrays, prepare_fold
from huracan.thresholds import choose_thresholds
from huracan.validation import Fold


def logistic_baseline(arrays: FleetArrays, folds: list[Fold], cfg: DictConfig) -> np.ndarray:
    """Out-of-sample (T, N) trade signals of per-coin logistic regressions."""
    signals = np.zeros(arrays.net_return.shape, dtype=bool)
    previous = None
    for fold in folds:
        data = prepare_fold(arrays, fold, cfg, previous)
        previous = data.clusters
        inputs = np.concatenate([data.x, data.channels], axis=2)  # (T, N, F + C)
        valid = data.valid(arrays)
        for j in range(len(arrays.symbols)):  # one model per coin is what this baseline is
            rows = {
                name: r[valid[r, j]]
                for name, r in (("train", fold.train), ("val", fold.val), ("test", fold.test))
            }
            y = arrays.label[rows["train"], j]
            if len(rows["val"]) == 0 or len(np.unique(y)) < 2:
                continue
            model = LogisticRegression(max_iter=500)
            model.fit(inputs[rows["train"], j], y, sample_weight=data.weights[rows["train"], j])
            val_prob = model.predict_proba(inputs[rows["val"], j])[:, 1]
            [threshold] = choose_thresholds(
                val_prob,
                arrays.net_return[rows["val"], j],
                np.zeros(len(val_prob), int),
                1,
                cfg.thresholds.min_trades,
                cfg.thresholds.z,
            )
            test_prob = model.predict_proba(inputs[rows["test"], j])[:, 1]
            signals[rows["test"], j] = test_prob >= threshold
    return signals
