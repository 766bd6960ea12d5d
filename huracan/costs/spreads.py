"""Spread estimators from candles: Corwin-Schultz and Abdi-Ranaldo (see the package)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from huracan.errors import ConfigError

Estimator = Literal["corwin_schultz", "abdi_ranaldo"]
ESTIMATORS = ("corwin_schultz", "abdi_ranaldo")
_CS_K = 3 - 2 * np.sqrt(2)


def corwin_schultz_spread(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int = 1
) -> np.ndarray:
    """Corwin-Schultz (2012) high-low spread estimate of every asset and bar.

    The later bar of each pair is shifted by the jump from the earlier close where it
    opens beyond that close's range (the paper's overnight adjustment, which here absorbs
    the bid-ask bounce of the close).

    Args:
        high: (T, N) bar highs.
        low: (T, N) bar lows.
        close: (T, N) bar closes.
        window: two-bar estimates averaged (trailing, NaN-aware) before negatives are set
            to 0; 1 gives the two-bar estimator itself.

    Returns:
        (T, N) spread as a fraction of the mid (x 1e4 for bps); row t reads bars t - 1 and
        t, row 0 is NaN.
    """
    return np.maximum(_rolling_mean(cs_pair_spread(high, low, close), window), 0.0)


def abdi_ranaldo_spread(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int = 1
) -> np.ndarray:
    """Abdi-Ranaldo (2017) close-high-low spread estimate of every asset and bar.

    Args:
        high: (T, N) bar highs.
        low: (T, N) bar lows.
        close: (T, N) bar closes (trade prices).
        window: two-bar moments averaged (trailing, NaN-aware) before the square root;
            1 gives the two-bar estimator with negative moments set to 0.

    Returns:
        (T, N) spread as a fraction of the mid (x 1e4 for bps); row t reads bars t - 1 and
        t, row 0 is NaN.
    """
    moment = _rolling_mean(ar_pair_moment(high, low, close), window)
    return np.sqrt(np.maximum(moment, 0.0))


def cs_pair_spread(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Unclipped Corwin-Schultz estimate of each pair of bars (t - 1, t), at row t."""
    shift = np.maximum(close[:-1] - high[1:], 0.0) - np.maximum(low[1:] - close[:-1], 0.0)
    high_next, low_next = high[1:] + shift, low[1:] + shift
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = np.log(high[:-1] / low[:-1]) ** 2 + np.log(high_next / low_next) ** 2
        gamma = np.log(np.maximum(high[:-1], high_next) / np.minimum(low[:-1], low_next)) ** 2
        alpha = (np.sqrt(2 * beta) - np.sqrt(beta)) / _CS_K - np.sqrt(gamma / _CS_K)
    out = np.full(high.shape, np.nan)
    out[1:] = 2 * np.expm1(alpha) / (1 + np.exp(alpha))
    return out


def ar_pair_moment(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Abdi-Ranaldo moment ``4 (c - eta)(c - eta_next)`` of each pair (t - 1, t), at row t."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mid_range = (np.log(high) + np.log(low)) / 2
        log_close = np.log(close)
    out = np.full(high.shape, np.nan)
    out[1:] = 4 * (log_close[:-1] - mid_range[:-1]) * (log_close[:-1] - mid_range[1:])
    return out


def _rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    if int(window) != window or window < 1:
        raise ConfigError(f"estimator window must be a whole number >= 1, got {window}")
    if window == 1:
        return values
    frame = pd.DataFrame(values, copy=False)
    return frame.rolling(window, min_periods=max(1, window // 2)).mean().to_numpy()
