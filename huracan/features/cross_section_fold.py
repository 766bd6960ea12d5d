"""Cross-sectional features fitted per fold (``prepare_fold``), applied to every row.

- The return relative to the mean of the coin's cluster needs the fold's clusters, which
  are fitted on its training window.
- The trend aggregate, in the spirit of CTREND (Fieberg et al. 2025), combines several
  moving-average signals with weights fitted on the fold's training rows only
  (:class:`TrendAggregate`), then applied unchanged to every row.

Both are causal once fitted: the value at bar t uses bars <= t only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_is_fitted

from huracan.features.cross_section import CrossSectionSpec, percentile_rank, trend_signals
from huracan.features.technical import lag


def relative_returns(
    log_close: np.ndarray, listed: np.ndarray, labels: np.ndarray, lookbacks: Sequence[int]
) -> np.ndarray:
    """Each coin's return less the mean return of its cluster's coins listed at that bar.

    Args:
        log_close: (T, N) log prices.
        listed: (T, N) bool.
        labels: (N,) cluster id of each coin (from the fold's clusters); -1: no cluster.
            A coin without a cluster, or alone in its cluster (where the difference
            would always be 0), is measured against the mean of all listed coins.
        lookbacks: return look-backs in bars.

    Returns:
        (T, N, K) one column per look-back; NaN where the coin has no return.
    """
    labels = np.asarray(labels)
    alone = (labels[:, None] == labels[None, :]).sum(1) < 2
    labels = np.where(alone, -1, labels)
    groups = np.unique(labels)
    member = (labels[:, None] == groups[None, :]).astype(np.float64)  # (N, G) one-hot
    out = []
    for bars in lookbacks:
        returns = np.where(listed, log_close - lag(log_close, bars), np.nan)
        known = np.isfinite(returns)
        values = np.where(known, returns, 0.0)
        # per bar and cluster the sum and count of known returns: (T, N) @ (N, G)
        sums = values @ member
        counts = known.astype(np.float64) @ member
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / counts
        column = np.searchsorted(groups, labels)
        everyone = np.where(known.any(1), values.sum(1) / np.maximum(known.sum(1), 1), np.nan)
        reference = np.where(labels[None, :] >= 0, means[:, column], everyone[:, None])
        out.append(returns - reference)
    return np.stack(out, axis=-1)


class TrendAggregate(BaseEstimator):
    """One trend score from several moving-average signals, weighted by a ridge fit.

    The signals (``close / MA(n) - 1``) are ranked across the listed coins at each bar and
    centred (a percentile less 0.5), and so is the target, the coin's return over the
    next ``horizon`` bars; one ridge regression pooled over coins and training bars gives
    the weights. Only bars whose target ends inside the rows it is fitted on are used.

    Args:
        windows: moving-average lengths in bars.
        horizon: bars of the forward return whose rank is the target.
        alpha: ridge penalty.

    Attributes:
        coef_: (K,) the weight of each signal.
        n_samples_: the (bar, coin) samples the weights were fitted on.
    """

    def __init__(
        self, windows: Sequence[int] = (24, 72, 168), horizon: int = 24, alpha: float = 1.0
    ):
        self.windows = windows
        self.horizon = horizon
        self.alpha = alpha

    def fit(self, close: np.ndarray, listed: np.ndarray, rows: np.ndarray) -> TrendAggregate:
        """Fits the weights on ``rows`` (the fold's training rows) of the panel.

        Args:
            close: (T, N) closes; only rows up to ``rows[-1]`` are read.
            listed: (T, N) bool.
            rows: the training rows, increasing.

        Raises:
            ValueError: no training bar with every signal and a target.
        """
        end = int(rows[-1]) + 1  # nothing after the training window enters the fit
        return self._fit(self._inputs(close[:end], listed[:end]), close, listed, rows)

    def fit_transform(self, close: np.ndarray, listed: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``fit(close, listed, rows).transform(close, listed)``, the signals ranked once:
        they are causal, so their training rows are the same from the whole panel."""
        inputs = self._inputs(close, listed)
        return inputs @ self._fit(inputs[: int(rows[-1]) + 1], close, listed, rows).coef_

    def _fit(self, inputs: np.ndarray, close, listed, rows: np.ndarray) -> TrendAggregate:
        """Fits on ``inputs`` (the ranked signals up to the last training row)."""
        end = len(inputs)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_close = np.log(close[:end])
        forward = lag(log_close[::-1], self.horizon)[::-1] - log_close  # NaN past the end
        target = percentile_rank(forward, listed[:end]) - 0.5
        fit_rows = rows[rows + self.horizon < end]
        x, y = inputs[fit_rows], target[fit_rows]
        usable = np.isfinite(x).all(-1) & np.isfinite(y)
        if not usable.any():
            raise ValueError("no training bar has every trend signal and a forward return")
        model = Ridge(alpha=self.alpha, fit_intercept=False).fit(x[usable], y[usable])
        self.coef_ = model.coef_.astype(np.float64)
        self.n_samples_ = int(usable.sum())
        return self

    def transform(self, close: np.ndarray, listed: np.ndarray) -> np.ndarray:
        """(T, N) the trend score of every bar; causal, NaN until the longest window."""
        check_is_fitted(self)
        return self._inputs(close, listed) @ self.coef_

    def _inputs(self, close: np.ndarray, listed: np.ndarray) -> np.ndarray:
        """(T, N, K) the signals, ranked across coins per bar and centred."""
        with np.errstate(divide="ignore", invalid="ignore"):
            signals = trend_signals(close, list(self.windows))
        ranked = [percentile_rank(signals[..., k], listed) for k in range(signals.shape[-1])]
        return np.stack(ranked, axis=-1) - 0.5


def fold_features(
    close: np.ndarray,
    listed: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    spec: CrossSectionSpec,
) -> tuple[np.ndarray, TrendAggregate | None]:
    """The fold's cross-sectional columns (:attr:`CrossSectionSpec.fold_names`).

    Args:
        close: (T, N) closes.
        listed: (T, N) bool.
        labels: (N,) the fold's cluster of each coin (fitted on its training rows).
        train: the fold's training rows: the trend weights are fitted on them alone.
        spec: which features.

    Returns:
        (T, N, K) float32 and the fitted trend aggregate (None without ``trend``).
    """
    columns, trend = [], None
    if "relative_return" in spec.names:
        with np.errstate(divide="ignore", invalid="ignore"):
            log_close = np.log(close)
        lookbacks = [lb.bars for lb in spec.relative_lookbacks]
        columns.append(relative_returns(log_close, listed, labels, lookbacks))
    if "trend" in spec.names:
        windows = [lb.bars for lb in spec.trend_windows]
        trend = TrendAggregate(windows, spec.trend_horizon.bars, spec.trend_alpha)
        columns.append(trend.fit_transform(close, listed, train)[..., None])
    if not columns:
        return np.zeros((*close.shape, 0), dtype=np.float32), None
    return np.concatenate(columns, axis=-1).astype(np.float32), trend
