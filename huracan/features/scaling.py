"""Per-asset z-scoring of (T, N, F) features, fitted on a training window only."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

# float32 features cannot resolve a spread finer than this share of their level.
_RELATIVE_RESOLUTION = 1e-7
_ROWS_PER_BLOCK = 1024


class PanelScaler(TransformerMixin, BaseEstimator):
    """Z-scores each feature of each asset with that asset's training mean and std.

    NaN values (no bar, not enough history) are ignored when fitting and stay NaN. A
    feature that is constant for an asset over the training window gets a std of 1, so it
    is centred but not blown up. An asset with fewer than ``min_count`` finite training
    values of a feature (a coin listed at the very end of the window) takes the
    statistics pooled over all assets, which are closer to the truth than none.

    Args:
        clip: scaled values are clipped to ``[-clip, clip]``; None leaves them.
        min_count: finite training values an asset needs for statistics of its own.

    Attributes:
        mean_: (N, F) training mean per asset and feature.
        std_: (N, F) training standard deviation per asset and feature.
    """

    def __init__(self, clip: float | None = None, min_count: int = 2):
        self.clip = clip
        self.min_count = min_count

    def fit(self, X: np.ndarray, y: object = None) -> PanelScaler:
        """Learns the per-asset statistics from training features.

        Args:
            X: (T, N, F) features of the training window only.
            y: ignored.
        """
        X = _check_3d(X)
        # Two passes over blocks of rows (means, then squared deviations), in float64: the
        # whole window at once would hold float64 copies of it (gigabytes for 400 coins).
        count, total = np.zeros(X.shape[1:]), np.zeros(X.shape[1:])
        for block in _row_blocks(X):
            finite = np.isfinite(block)
            count += finite.sum(0)
            total += np.where(finite, block, 0.0).sum(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            # an asset without values (not listed yet) falls back to the pooled statistics
            own_mean, pooled_mean = total / count, total.sum(0) / count.sum(0)
            squares, pooled_squares = np.zeros(X.shape[1:]), np.zeros(X.shape[2])
            for block in _row_blocks(X):
                squares += np.nansum((block - own_mean) ** 2, axis=0)
                pooled_squares += np.nansum((block - pooled_mean) ** 2, axis=(0, 1))
            own_std = np.sqrt(squares / count)
            pooled_std = np.sqrt(pooled_squares / count.sum(0))
        own = count >= self.min_count
        mean = np.nan_to_num(np.where(own, own_mean, pooled_mean), nan=0.0)
        std = np.where(own, own_std, pooled_std)
        degenerate = ~(std > _RELATIVE_RESOLUTION * np.abs(mean)) | ~(std > 0)
        self.mean_ = mean
        self.std_ = np.where(degenerate, 1.0, std)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Scales features with the fitted statistics.

        Args:
            X: (T, N, F) features with the assets and features of the training data.

        Returns:
            (T, N, F) float32 z-scores, clipped if ``clip`` is set, NaN where X is NaN.
        """
        check_is_fitted(self)
        X = _check_3d(X)
        if X.shape[1:] != self.mean_.shape:
            raise ValueError(
                f"features have {X.shape[1]} assets x {X.shape[2]} features, but the scaler "
                f"was fitted on {self.mean_.shape[0]} x {self.mean_.shape[1]}"
            )
        scaled = np.empty(X.shape, dtype=np.float32)
        # In blocks of rows: the float64 arithmetic of a whole 400-coin panel would hold
        # two (T, N, F) float64 temporaries, 1.6 GB for 2 years of hourly bars.
        for start in range(0, len(X), _ROWS_PER_BLOCK):
            rows = slice(start, start + _ROWS_PER_BLOCK)
            scaled[rows] = (X[rows] - self.mean_) / self.std_
        if self.clip is not None:
            np.clip(scaled, -self.clip, self.clip, out=scaled)
        return scaled

    def transform_rows(
        self, X: np.ndarray, assets: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Scales samples: row i of ``X`` (B, F) belongs to asset ``assets[i]``.

        Args:
            out: a (B, F) float32 array to write into, which may be ``X`` itself (each
                block is read before it is written): no second (B, F) array.

        Returns:
            (B, F) float32, exactly the values :meth:`transform` gives those rows.
        """
        check_is_fitted(self)
        X, assets = np.asarray(X), np.asarray(assets)
        if X.ndim != 2 or X.shape[1] != self.mean_.shape[1] or assets.shape != X.shape[:1]:
            raise ValueError(
                f"expected (B, {self.mean_.shape[1]}) rows and (B,) assets, got {X.shape} "
                f"and {assets.shape}"
            )
        scaled = np.empty(X.shape, dtype=np.float32) if out is None else out
        if scaled.shape != X.shape or scaled.dtype != np.float32:
            raise ValueError(f"out must be {X.shape} float32, got {scaled.shape} {scaled.dtype}")
        step = _ROWS_PER_BLOCK * self.mean_.shape[0]  # as many values as a panel block
        for start in range(0, len(X), step):
            rows, which = slice(start, start + step), assets[start : start + step]
            scaled[rows] = (X[rows] - self.mean_[which]) / self.std_[which]
        if self.clip is not None:
            np.clip(scaled, -self.clip, self.clip, out=scaled)
        return scaled

    def state_dict(self) -> dict[str, object]:
        """The fitted state as plain arrays and numbers (for checkpoints; no pickle)."""
        check_is_fitted(self)
        return {
            "mean": self.mean_.copy(),
            "std": self.std_.copy(),
            "clip": self.clip,
            "min_count": self.min_count,
        }

    def select(self, columns: list[int]) -> PanelScaler:
        """The fitted scaler of some assets only (a per-coin model keeps its own column)."""
        check_is_fitted(self)
        scaler = type(self)(clip=self.clip, min_count=self.min_count)
        scaler.mean_, scaler.std_ = self.mean_[columns], self.std_[columns]
        return scaler

    @classmethod
    def from_state_dict(cls, state: Mapping[str, object]) -> PanelScaler:
        """Rebuilds a fitted scaler from ``state_dict()`` (arrays may come back as lists)."""
        missing = {"mean", "std", "clip", "min_count"} - set(state)
        if missing:
            raise ValueError(f"scaler state lacks {sorted(missing)}")
        scaler = cls(clip=state["clip"], min_count=int(state["min_count"]))
        scaler.mean_ = np.asarray(state["mean"], dtype=np.float64)
        scaler.std_ = np.asarray(state["std"], dtype=np.float64)
        if scaler.mean_.ndim != 2 or scaler.mean_.shape != scaler.std_.shape:
            raise ValueError(
                f"scaler state has mean {scaler.mean_.shape} and std {scaler.std_.shape}; "
                "both must be (n_assets, n_features)"
            )
        return scaler


def _row_blocks(X: np.ndarray):
    """``X`` in blocks of ``_ROWS_PER_BLOCK`` rows, each as float64."""
    for start in range(0, len(X), _ROWS_PER_BLOCK):
        yield X[start : start + _ROWS_PER_BLOCK].astype(np.float64)


def _check_3d(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 3:
        raise ValueError(f"features must be (T, N, F), got shape {X.shape}")
    return X
