"""The convex meta-models of ``ensemble=stack`` (``ensemble.meta=convex`` and ``best``).

Non-negative weights on the components' standardised logits that sum to one, taken from
each component's rank IC on the fitting samples: the mean over bars of the cross-sectional
Spearman correlation of its score with the net return, the measure the report's IC
reads. No label is fitted, so the market's direction on a short slice (which a logistic
target mostly learns) cannot pull the weights, and a combination of few weights cannot
overfit the way a regression on every input can.

Weights (``shrink`` is lambda):

- ``w_ic``: each component's positive IC over the sum of the positive ones (components
  with IC <= 0 or a constant score get 0);
- ``w = (1 - lambda) * w_ic + lambda * equal``, ``equal`` the same weight on each component
  with a positive IC (lambda = 1: their plain average; lambda = 0: IC-proportional);
- ``best``: all the weight on the component with the highest IC (a corner of the simplex);
- with no component above 0, all the weight on the asset's own cluster head (the model).

The ensemble's logit is ``sum_k c_k * logit_k`` with ``c_k = (w_k / s_k) * sum_j w_j s_j``,
``s_k`` the standard deviation of component k's logit on the fitting samples: each
component enters in units of its own spread, and the sum is put back on the components'
common logit scale. A corner (one weight of 1) gives that component's own probability
back, and no intercept is fitted, so the probability's level is the components' own (set
on the training rows), the same in both cross-fitting halves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from huracan.evaluation import MIN_ASSETS

OWN_HEAD = 0  # the first component: the asset's own cluster head (``with_own``)
LOGIT_CLIP = 8.0  # |logit| of a probability within 3e-4 of 0 or 1: beyond it, no information


def logit(prob: np.ndarray) -> np.ndarray:
    """Clipped log-odds of probabilities; NaN (no prediction) reads as 0 (no opinion)."""
    p = np.clip(np.nan_to_num(prob, nan=0.5), 1e-6, 1 - 1e-6)
    return np.clip(np.log(p / (1 - p)), -LOGIT_CLIP, LOGIT_CLIP)


def rank_ic_by_bar(score: np.ndarray, net: np.ndarray, bar: np.ndarray) -> np.ndarray:
    """(K,) each score column's mean over bars of its cross-sectional Spearman correlation
    with the net return (ties averaged); bars with under ``MIN_ASSETS`` samples, or where
    either side is constant, are left out; 0 where no bar is left.

    Args:
        score: (B, K) scores; net: (B,) finite net returns; bar: (B,) each sample's bar.
    """
    frame = pd.DataFrame(score).assign(net=net)
    ranks = frame.groupby(bar).rank()  # (B, K + 1) ranks within each bar
    ranks = ranks - ranks.groupby(bar).transform("mean")
    target = ranks.pop("net")
    cov = ranks.mul(target, axis=0).groupby(bar).sum()  # (bars, K)
    norm = np.sqrt(ranks.pow(2).groupby(bar).sum().mul(target.pow(2).groupby(bar).sum(), axis=0))
    count = frame.groupby(bar).size()
    with np.errstate(invalid="ignore", divide="ignore"):
        ic = (cov / norm).where((norm > 0) & (count >= MIN_ASSETS).to_numpy()[:, None])
    return ic.mean().fillna(0.0).to_numpy()


def convex_weights(ic: np.ndarray, spread: np.ndarray, shrink: float, corner: bool) -> np.ndarray:
    """(K,) non-negative weights summing to one (the module's rule).

    Args:
        ic: (K,) each component's rank IC on the fitting samples.
        spread: (K,) the standard deviation of each component's logit there.
        shrink: lambda, toward equal weights on the components with a positive IC.
        corner: all the weight on the best component instead.
    """
    usable = (ic > 0) & (spread > 0)
    weights = np.zeros(len(ic))
    if not usable.any():
        weights[OWN_HEAD] = 1.0
    elif corner:
        weights[np.argmax(np.where(usable, ic, -np.inf))] = 1.0
    else:
        by_ic = np.where(usable, ic, 0.0) / np.where(usable, ic, 0.0).sum()
        weights = (1 - shrink) * by_ic + shrink * usable / usable.sum()
    return weights


class ConvexMeta:
    """A convex combination of the components' standardised logits, weighted by their rank
    IC on the fitting samples (see the module).

    Args:
        shrink: lambda, toward equal weights (0: IC-proportional, 1: equal).
        corner: all the weight on the best component by IC (``ensemble.meta=best``).
    """

    def __init__(self, shrink: float = 0.0, corner: bool = False):
        self.shrink, self.corner = shrink, corner

    def fit(
        self,
        prob: np.ndarray,
        cluster: np.ndarray,
        label: np.ndarray,
        net: np.ndarray,
        bar: np.ndarray,
        seed: int = 0,
    ) -> ConvexMeta:
        """Fits on (B, K) probabilities with finite net returns (B,); ``cluster``, ``label``
        and ``seed`` are not read (the interface of every meta-model)."""
        z = logit(prob)  # (B, K)
        self.ic_ = rank_ic_by_bar(z, net, bar)
        spread = z.std(0)
        self.weights_ = convex_weights(self.ic_, spread, self.shrink, self.corner)
        used = self.weights_ > 0
        scale = (self.weights_ * spread)[used].sum()
        coef = np.zeros(len(spread))
        coef[used] = self.weights_[used] / spread[used] * scale if scale > 0 else 1.0
        self.coef_ = coef
        return self

    def predict_proba(self, prob: np.ndarray, cluster: np.ndarray) -> np.ndarray:
        """(B,) the ensemble's probabilities of (B, K) component probabilities."""
        return 1 / (1 + np.exp(-(logit(prob) @ self.coef_)))

    def describe(self) -> dict:
        return {
            "ic": np.round(self.ic_, 4).tolist(),
            "weights": np.round(self.weights_, 4).tolist(),
            "coef": np.round(self.coef_, 4).tolist(),
        }
