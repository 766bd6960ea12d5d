"""The EDGE spread estimator of every coin at once: ``bidask.edge``'s arithmetic, by column.

``bidask.edge`` (Ardia, Guidotti & Kroencke, JFE 2024) reads one series at a time; a cost
calibration of 400 coins with its jackknife calls it 4,400 times, and the replay's
Mechanic calibrates twice a cycle. ``edge_columns`` runs the same operations in the same
order on (T, N) bars, each coin's series a contiguous row of the transposed arrays, so
that every mean is the same pairwise sum over the same values as the library's 1-D
``nanmean``: ``tests/test_costs.py`` checks the result against ``bidask.edge`` column by
column, bit for bit, on bars with gaps, flat bars and too-short windows.
"""

from __future__ import annotations

import warnings

import numpy as np


def edge_columns(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray
) -> np.ndarray:
    """Each column's signed EDGE spread (a fraction; NaN where the library gives NaN),
    ``bidask.edge(..., sign=True)`` of every column of the (T, N) bars, shape (N,)."""
    n_bars, n_coins = open_.shape
    if n_bars < 3:  # the library's minimum of three observations
        return np.full(n_coins, np.nan)
    # (N, T): each coin's series contiguous, as the library's 1-D arrays are
    o, h, lo, c = (
        np.log(np.ascontiguousarray(np.asarray(a, float).T)) for a in (open_, high, low, close)
    )
    m = (h + lo) / 2.0
    h1, l1, c1, m1 = h[:, :-1], lo[:, :-1], c[:, :-1], m[:, :-1]
    o, h, lo, c, m = o[:, 1:], h[:, 1:], lo[:, 1:], c[:, 1:], m[:, 1:]
    r1, r2, r3, r4, r5 = m - o, o - m1, m - c1, c1 - m1, o - c1
    tau = np.where(np.isnan(h) | np.isnan(lo) | np.isnan(c1), np.nan, (h != lo) | (lo != c1))
    po1 = tau * np.where(np.isnan(o) | np.isnan(h), np.nan, o != h)
    po2 = tau * np.where(np.isnan(o) | np.isnan(lo), np.nan, o != lo)
    pc1 = tau * np.where(np.isnan(c1) | np.isnan(h1), np.nan, c1 != h1)
    pc2 = tau * np.where(np.isnan(c1) | np.isnan(l1), np.nan, c1 != l1)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows, as the library
        pt = _mean(tau)
        po = _mean(po1) + _mean(po2)
        pc = _mean(pc1) + _mean(pc2)
        missing = (np.nansum(tau, axis=1) < 2) | (po == 0) | (pc == 0)
        d1 = r1 - (_mean(r1) / pt)[:, None] * tau
        d3 = r3 - (_mean(r3) / pt)[:, None] * tau
        d5 = r5 - (_mean(r5) / pt)[:, None] * tau
        a, b = (-4.0 / po)[:, None], (-4.0 / pc)[:, None]
        x1 = a * d1 * r2 + b * d3 * r4
        x2 = a * d1 * r5 + b * d5 * r4
        e1, e2 = _mean(x1), _mean(x2)
        v1 = _mean(x1**2) - e1**2
        v2 = _mean(x2**2) - e2**2
        vt = v1 + v2
        s2 = np.where(vt > 0, (v2 * e1 + v1 * e2) / vt, (e1 + e2) / 2.0)
    s = np.sqrt(np.abs(s2)) * np.sign(s2)
    return np.where(missing, np.nan, s)


def _mean(rows: np.ndarray) -> np.ndarray:
    """``np.nanmean`` of each row (the pairwise sum of a contiguous row, as in 1-D)."""
    return np.nanmean(rows, axis=1)
