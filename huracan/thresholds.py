"""Decision thresholds: the probability cut per head, chosen on the validation slice.

A head trades only where its validation trades show profit after costs with a margin for
having picked the best of many cuts; otherwise it does not trade at all.
"""

from __future__ import annotations

import numpy as np

from huracan.errors import ConfigError


def choose_thresholds(
    prob: np.ndarray,
    net_return: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    min_trades: int,
    z: float = 1.0,
) -> np.ndarray:
    """Per group, the probability cut with the best lower bound on validation profit.

    For each group the validation samples are sorted by probability; trading the top k
    earns the cumulative sum S_k of their net returns. Picking the best of many cuts on
    noise would find profit where there is none, so the cut maximises the lower bound
    ``S_k - z * sigma * sqrt(k)`` (sigma: the group's per-trade standard deviation), over
    k >= ``min_trades``. A group whose best bound is not positive gets +inf: it does not
    trade, which is the honest answer when the model shows no edge after costs.

    Returns:
        (n_groups,) thresholds; a sample trades when its probability is >= its group's.
    """
    if min_trades < 1:
        raise ConfigError(f"thresholds.min_trades must be >= 1, got {min_trades}")
    thresholds = np.full(n_groups, np.inf)
    order = np.lexsort((-prob, group))  # by group, then by falling probability
    group, prob, net = group[order], prob[order], net_return[order]
    starts = np.searchsorted(group, np.arange(n_groups))
    ends = np.searchsorted(group, np.arange(n_groups), side="right")
    for g in range(n_groups):  # one vectorised pass per head
        returns = net[starts[g] : ends[g]]
        if len(returns) < max(min_trades, 2):
            continue
        k = np.arange(1, len(returns) + 1)
        bound = np.cumsum(returns) - z * returns.std() * np.sqrt(k)
        best = int(np.argmax(bound[min_trades - 1 :])) + min_trades - 1
        if bound[best] > 0:
            thresholds[g] = prob[starts[g] + best]
    return thresholds
