"""Feature drift: the population stability index of recent inputs against training's.

The checkpoint stores, per input column, the decile edges of its training-window values
and the share of training values in each bin (``reference_bins``). The service bins the
coin's inputs of the last ``window`` bars on the same edges and reports, per column,
``PSI = sum((recent - train) * ln(recent / train))`` over the bins (``psi``); a coin's
drift is its largest column PSI. The usual reading: < 0.1 stable, 0.1-0.25 moving,
> 0.25 shifted.
"""

from __future__ import annotations

import warnings

import numpy as np

# a bin that holds no value gets this share, so the log stays finite
_FLOOR = 1e-4


def reference_bins(values: np.ndarray, n_bins: int = 10) -> dict[str, list] | None:
    """Quantile bins of each column of training inputs.

    Args:
        values: (M, K) training-window inputs (NaN rows ignored per column).
        n_bins: bins per column.

    Returns:
        ``edges`` (K, n_bins - 1) inner edges and ``shares`` (K, n_bins) training shares;
        None without training rows.
    """
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return None
    quantiles = np.linspace(0, 1, n_bins + 1)[1:-1]
    with warnings.catch_warnings():  # an all-NaN column gets NaN edges: all in one bin
        warnings.simplefilter("ignore", RuntimeWarning)
        edges = np.nanquantile(values, quantiles, axis=0).T  # (K, n_bins - 1)
    shares = _shares(bin_index(values, edges), n_bins)
    return {"edges": edges.tolist(), "shares": shares.tolist()}


def psi(reference: dict, values: np.ndarray) -> np.ndarray:
    """Population stability index of each column of ``values`` against training.

    Args:
        reference: ``reference_bins`` output; its arrays may carry leading axes (one
            reference per coin, stacked) matching those of ``values``.
        values: (..., W, K) recent inputs.

    Returns:
        (..., K) PSI; NaN for a column without a finite recent value.
    """
    return psi_of_bins(reference, bin_index(values, reference["edges"]))


def bin_index(values: np.ndarray, edges) -> np.ndarray:
    """The bin of every value on ``edges`` (the number of edges at or below it: ties go
    up), -1 where the value is not finite; ``psi_of_bins`` takes it, so that a window
    sliding over binned rows need not bin them again.

    Args:
        values: (..., W, K) inputs; ``edges``: (..., K, B - 1) inner edges.

    Returns:
        (..., W, K) int16.
    """
    values = np.asarray(values, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    index = (values[..., None] >= edges[..., None, :, :]).sum(-1).astype(np.int16)
    return np.where(np.isfinite(values), index, np.int16(-1))


def psi_of_bins(reference: dict, index: np.ndarray) -> np.ndarray:
    """``psi`` of inputs already binned on the reference's edges (``bin_index``)."""
    train = np.maximum(np.asarray(reference["shares"], dtype=np.float64), _FLOOR)
    recent = np.maximum(_shares(index, train.shape[-1]), _FLOOR)
    out = ((recent - train) * np.log(recent / train)).sum(axis=-1)
    return np.where((index >= 0).any(axis=-2), out, np.nan)


def _shares(index: np.ndarray, n_bins: int) -> np.ndarray:
    """(..., K, B) share of each column's finite values in each bin.

    ``index`` is (..., W, K) (``bin_index``); one bincount covers every leading index,
    column and bin.
    """
    *lead, n_rows, n_cols = index.shape
    n_lead = int(np.prod(lead, dtype=int))
    index = index.reshape(n_lead, n_rows, n_cols)
    finite = index >= 0
    column = np.arange(n_lead)[:, None, None] * n_cols + np.arange(n_cols)
    cells = (column * n_bins + index)[finite]
    counts = np.bincount(cells, minlength=n_lead * n_cols * n_bins).astype(np.float64)
    counts = counts.reshape(*lead, n_cols, n_bins)
    return counts / np.maximum(finite.sum(axis=1).reshape(*lead, n_cols), 1)[..., None]
