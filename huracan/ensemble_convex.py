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

A component with no prediction for a sample (NaN: among the cluster heads, the asset's own
cluster's, which is the own head already; LightGBM where it has none) is left out of that
sample's combination: its IC and spread are measured on the samples it predicts, and the
sample's weights are renormalised over the components it has (all on the own head where
none of them has a weight). A coin in cluster g thus reads the own head once, at its own
weight, and ``shrink=1`` is a plain average of the components present.

The ensemble's logit is ``sum_k c_k * logit_k`` with ``c_k = (w_k / s_k) * sum_j w_j s_j``
(the sample's renormalised weights ``w``),
``s_k`` the standard deviation of component k's logit on the fitting samples: each
component enters in units of its own spread, and the sum is put back on the components'
common logit scale. A corner (one weight of 1) gives that component's own probability
back, and no intercept is fitted, so the probability's level is the components' own (set
on the training rows), the same in both cross-fitting halves.
"""

from __future__ import annotations

import numpy as np

from huracan.evaluation import MIN_ASSETS

OWN_HEAD = 0  # the first component: the asset's own cluster head (``with_own``)
LOGIT_CLIP = 8.0  # |logit| of a probability within 3e-4 of 0 or 1: beyond it, no information


def logit(prob: np.ndarray) -> np.ndarray:
    """Clipped log-odds of probabilities; NaN (no prediction) reads as 0 (no opinion)."""
    p = np.clip(np.nan_to_num(prob, nan=0.5), 1e-6, 1 - 1e-6)
    return np.clip(np.log(p / (1 - p)), -LOGIT_CLIP, LOGIT_CLIP)


def rank_ic_by_bar(
    score: np.ndarray, net: np.ndarray, bar: np.ndarray, present: np.ndarray | None = None
) -> np.ndarray:
    """(K,) each score column's mean over bars of its cross-sectional Spearman correlation
    with the net return (ties averaged); bars with under ``MIN_ASSETS`` samples, or where
    either side is constant, are left out; 0 where no bar is left.

    Args:
        score: (B, K) scores; net: (B,) finite net returns; bar: (B,) each sample's bar.
        present: (B, K) where each column has a score (None: everywhere; a non-finite
            score counts as absent). A column is measured on its own samples only, the net
            return ranked among them: the same figure as the call on those rows alone.
    """
    present = np.isfinite(score) if present is None else present & np.isfinite(score)
    _, code = np.unique(bar, return_inverse=True)
    code = code.ravel()
    n_bars = int(code.max()) + 1 if len(code) else 0
    out = np.zeros(score.shape[1])
    before: tuple[np.ndarray, ...] | None = None  # the last column's rows and their figures
    for k in range(score.shape[1]):
        rows = np.flatnonzero(present[:, k])
        if not len(rows):
            continue
        if before is not None and np.array_equal(rows, before[0]):
            _, group, count, centre, target = before  # the same samples: the same net ranks
        else:
            group = code[rows]
            count = np.bincount(group, minlength=n_bars)
            centre = (count[group] + 1) / 2  # the mean of 1..n: each bar's ranks centred
            target = group_ranks(group, net[rows], count) - centre
            before = (rows, group, count, centre, target)
        ranks = group_ranks(group, score[rows, k], count) - centre
        cov = np.bincount(group, ranks * target, n_bars)
        norm = np.sqrt(np.bincount(group, ranks**2, n_bars) * np.bincount(group, target**2, n_bars))
        valid = (norm > 0) & (count >= MIN_ASSETS)
        if valid.any():
            out[k] = float(np.mean(cov[valid] / norm[valid]))
    return out


def group_ranks(group: np.ndarray, values: np.ndarray, count: np.ndarray) -> np.ndarray:
    """(B,) each value's rank (1 = smallest, ties averaged) among the values of its group,
    every group in one sort; ``group`` (B,) codes 0..G-1, ``count`` (G,) their sizes.

    Sorted by value (any order among equal values: a run of them takes its mean position
    whatever its order), then stably by group: a radix sort where the codes fit 16 bits.
    ``values`` must be finite (NaNs, each its own run, would rank in any order; the
    callers keep finite values only).
    """
    order = np.argsort(values)
    codes = group[order]
    codes = codes.astype(np.int16) if len(count) < 2**15 else codes
    order = order[np.argsort(codes, kind="stable")]
    g, v = group[order], values[order]
    starts = np.ones(len(v), dtype=bool)  # where a run of equal values in one group starts
    starts[1:] = (g[1:] != g[:-1]) | (v[1:] != v[:-1])
    first = np.flatnonzero(starts)
    end = np.append(first[1:], len(v))  # each run's end, exclusive
    average = (first + end - 1) / 2  # the mean 0-based position of the run
    group_first = np.cumsum(count) - count  # each group's first position in the sort
    ranks = np.empty(len(v))
    ranks[order] = np.repeat(average, end - first) - group_first[g] + 1
    return ranks


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
        """Fits on (B, K) probabilities (NaN: the component is absent there) with finite
        net returns (B,); ``cluster`` (None or each sample's cluster) only groups the
        reported weights; ``label`` and ``seed`` are not read (the interface of every
        meta-model)."""
        present = np.isfinite(prob)
        z = logit(prob)  # (B, K); NaN reads 0, and is left out below
        self.ic_, spread = column_ic_and_spread(z, present, net, bar)
        self.weights_ = convex_weights(self.ic_, spread, self.shrink, self.corner)
        self.spread_ = spread
        self.coef_ = coefficients(self.weights_[None], spread)[0]
        self.cluster_weights_ = {}
        if cluster is not None:  # each cluster's renormalised weights, for the report
            by_sample = renormalised(self.weights_, present)
            self.cluster_weights_ = {
                int(c): by_sample[cluster == c].mean(0) for c in np.unique(cluster)
            }
        return self

    def predict_proba(self, prob: np.ndarray, cluster: np.ndarray) -> np.ndarray:
        """(B,) the ensemble's probabilities of (B, K) component probabilities (NaN: the
        component is left out of that sample's combination)."""
        present = np.isfinite(prob)
        if present.all():
            return 1 / (1 + np.exp(-(logit(prob) @ self.coef_)))
        coef = coefficients(renormalised(self.weights_, present), self.spread_)  # (B, K)
        return 1 / (1 + np.exp(-(logit(prob) * coef).sum(1)))

    def describe(self) -> dict:
        described = {
            "ic": np.round(self.ic_, 4).tolist(),
            "weights": np.round(self.weights_, 4).tolist(),
            "coef": np.round(self.coef_, 4).tolist(),
        }
        if self.cluster_weights_:  # what a coin of each cluster reads
            described["weights_by_cluster"] = {
                str(c): np.round(w, 4).tolist() for c, w in self.cluster_weights_.items()
            }
        return described


def column_ic_and_spread(
    z: np.ndarray, present: np.ndarray, net: np.ndarray, bar: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(K,) each column's rank IC by bar and the standard deviation of its logit, over the
    samples where it is present (0 and 0 for a column present on under 2 samples)."""
    ic, spread = rank_ic_by_bar(z, net, bar, present), np.zeros(z.shape[1])
    full = present.all(0)
    if full.any():
        spread[full] = z[:, full].std(0)
    for k in np.flatnonzero(~full):
        rows = present[:, k]
        if rows.sum() >= 2:
            spread[k] = z[rows, k].std()
    return ic, spread


def renormalised(weights: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(B, K) each sample's weights over the components it has, summing to one; all on
    the own head where none of them has a weight."""
    by_sample = np.where(present, weights, 0.0)
    total = by_sample.sum(1, keepdims=True)
    none = total[:, 0] <= 0
    by_sample[none] = 0.0
    by_sample[none, OWN_HEAD] = 1.0
    return by_sample / np.where(none[:, None], 1.0, total)


def coefficients(weights: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """(B, K) ``c_k = w_k / s_k * sum_j w_j s_j`` of (B, K) weights (1 on a lone weight
    whose component is constant)."""
    used = weights > 0
    scale = np.where(used, weights * spread, 0.0).sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        coef = np.where(used, weights / spread * scale, 0.0)
    return np.where(used & (scale <= 0), 1.0, coef)
