"""Technical features of every asset at once: (T, N) bars in, (T, N, F) features out.

Every feature at bar t is computed from bars <= t only, and is NaN until its window holds
enough history (after a listing, and again after a gap longer than the panel's forward
fill). Rolling statistics run on the whole (T, N) frame through pandas, so one call covers
all assets.

Forward-filled bars (``panel.filled``) are flat bars at the previous close with zero
volume. Price features take them as they are: a bar where nothing traded did not move the
price. Volume is different: a zero is not a low volume but a missing one, and its log
would be -inf. ``volume_z`` therefore treats filled bars and bars with zero volume as
holes: they get a NaN z-score and do not enter the trailing mean and standard deviation
of later bars, so a gap never shows up as a fake volume collapse or, once it is over, as
a fake spike.

Slightly over 300 lines: each feature's warm-up is defined beside the feature, so the
serving warm-up (``warmup_bars``) cannot drift from the computation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from huracan.data.panel import Panel
from huracan.errors import ConfigError


@dataclass(frozen=True)
class FeatureWindows:
    """Look-back lengths of the technical features, in bars.

    Attributes:
        return_horizons: horizons of the log-return features (``ret_1``, ``ret_4``, ...).
        volatility: window of realised and range-based volatility.
        rsi: Wilder smoothing length of the RSI.
        macd_fast: span of the fast EMA of the MACD.
        macd_slow: span of the slow EMA of the MACD.
        macd_signal: span of the EMA of the MACD line (its signal line).
        atr: Wilder smoothing length of the average true range.
        bollinger: window of the Bollinger bands (two standard deviations wide).
        volume: trailing window of the volume z-score.
    """

    return_horizons: tuple[int, ...] = (1, 4, 24)
    volatility: int = 24
    rsi: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    atr: int = 14
    bollinger: int = 20
    volume: int = 168


FeatureFn = Callable[[Panel, FeatureWindows], dict[str, np.ndarray]]


# --- rolling helpers on (T, N) arrays ----------------------------------------------------
def lag(values: np.ndarray, bars: int, fill: float | bool = np.nan) -> np.ndarray:
    """``values`` shifted down by ``bars`` rows (row t holds row t - bars), ``fill`` on top."""
    out = np.full_like(values, fill)
    if bars < len(values):  # fewer rows than the lag: all fill
        out[bars:] = values[: len(values) - bars]
    return out


def _rolling(values: np.ndarray, window: int, min_periods: int | None = None):
    return pd.DataFrame(values, copy=False).rolling(window, min_periods=min_periods or window)


def _ema(values: np.ndarray, alpha: float, min_periods: int) -> np.ndarray:
    """Causal EMA of each column, NaN until ``min_periods`` values and where input is NaN."""
    frame = pd.DataFrame(values, copy=False)
    smoothed = frame.ewm(alpha=alpha, adjust=False, min_periods=min_periods).mean().to_numpy()
    return np.where(np.isnan(values), np.nan, smoothed)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator; 0 where there is no spread to measure against (den == 0)."""
    out = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
    out[np.isnan(numerator) | np.isnan(denominator)] = np.nan
    return out


def log_returns(close: np.ndarray, horizon: int = 1) -> np.ndarray:
    """Log return over the last ``horizon`` bars, (T, N); NaN for the first ``horizon`` rows."""
    log_close = np.log(close)
    return log_close - lag(log_close, horizon)


def realized_volatility(
    close: np.ndarray, window: int, min_periods: int | None = None
) -> np.ndarray:
    """Rolling standard deviation of one-bar log returns over the last ``window`` bars.

    Args:
        close: (T, N) close prices.
        window: bars in the window.
        min_periods: returns needed for a value (default: the whole window).

    Returns:
        (T, N) per-bar volatility as a fraction (0.005 for 0.5 % per bar).
    """
    return _rolling(log_returns(close), window, min_periods).std().to_numpy()


# --- the features --------------------------------------------------------------------------
def _returns(panel: Panel, windows: FeatureWindows) -> dict[str, np.ndarray]:
    return {f"ret_{h}": log_returns(panel.close, h) for h in windows.return_horizons}


def _realized_vol(panel: Panel, windows: FeatureWindows) -> dict[str, np.ndarray]:
    return {"realized_vol": realized_volatility(panel.close, windows.volatility)}


def _parkinson_vol(panel: Panel, windows: FeatureWindows) -> dict[str, np.ndarray]:
    log_range_sq = np.log(panel.high / panel.low) ** 2
    mean = _rolling(log_range_sq, windows.volatility).mean().to_numpy()
    return {"parkinson_vol": np.sqrt(mean / (4 * np.log(2)))}


def _garman_klass_vol(panel: Panel, windows: FeatureWindows) -> dict[str, np.ndarray]:
    per_bar = (
        0.5 * np.log(panel.high / panel.low) ** 2
        - (2 * np.log(2) - 1) * np.log(panel.close / panel.open) ** 2
    )
    mean = _rolling(per_bar, windows.volatility).mean().to_numpy()
    # One bar's estimate can be negative (a full-range body); the window mean rarely is.
    return {"garman_klass_vol": np.sqrt(np.maximum(mean, 0.0))}


def _rsi(panel: Panel, windows: FeatureWindows) -> dict[str, np.ndarray]:
    change = panel.close - lag(panel.close, 1)
    alpha = 1.0 / windows.rsi
    gain = _ema(np.clip(change, 0.0, None), alpha, windows.rsi)  # clip keeps NaN as NaN
    loss = _ema(np.clip(-change, 0.0, None), alpha, windows.rsi)
    total = gain + loss
    rsi = 100 * _ratio(gain, total)
    rsi[total == 0] = 50.0  # no move at all: neither overbought nor oversold
    return {"rsi": rsi}


def _macd(panel: Panel, windows: FeatureWindows) -> dict[str, np.ndarray]:
    close = panel.close
    fast = _ema(close, 2 / (windows.macd_fast + 1), windows.macd_fast)
    slow = _ema(close, 2 / (windows.macd_slow + 1), windows.macd_slow)
    line = fast - slow
    signal = _ema(line, 2 / (windows.macd_signal + 1), windows.macd_signal)
    # Divided by the close so that a $30,000 coin and a $0.01 coin share one scale.
    return {"macd": line / close, "macd_hist": (line - signal) / close}


def _atr(panel: Panel, windows: FeatureWindows) -> dict[str, np.ndarray]:
    previous = lag(panel.close, 1)
    true_range = np.fmax(
        panel.high - panel.low,
        np.fmax(np.abs(panel.high - previous), np.abs(panel.low - previous)),
    )
    atr = _ema(true_range, 1.0 / windows.atr, windows.atr)
    return {"atr": atr / panel.close}


def _bollinger(panel: Panel, windows: FeatureWindows) -> dict[str, np.ndarray]:
    rolling = _rolling(panel.close, windows.bollinger)
    mean = rolling.mean().to_numpy()
    std = rolling.std(ddof=0).to_numpy()
    # 0 at the middle band, +1 / -1 at the upper / lower band (two standard deviations).
    return {"bollinger_position": _ratio(panel.close - mean, 2 * std)}


def _volume_z(panel: Panel, windows: FeatureWindows) -> dict[str, np.ndarray]:
    traded = ~panel.filled & (panel.volume > 0)
    log_volume = np.where(traded, np.log(np.where(traded, panel.volume, 1.0)), np.nan)
    # Compared with the bars before it, so that a spike does not dilute its own baseline;
    # filled bars are holes in that history, hence half a window suffices.
    rolling = _rolling(lag(log_volume, 1), windows.volume, max(2, windows.volume // 2))
    mean = rolling.mean().to_numpy()
    std = rolling.std().to_numpy()
    return {"volume_z": _ratio(log_volume - mean, std)}


def _spread(panel: Panel, windows: FeatureWindows) -> dict[str, np.ndarray]:
    if panel.spread_bps is None:
        raise ConfigError(
            "feature 'spread' needs a spread_bps column, which this panel does not have; "
            "remove 'spread' from the feature list"
        )
    return {"spread_bps": panel.spread_bps}


FEATURES: dict[str, FeatureFn] = {
    "returns": _returns,
    "realized_vol": _realized_vol,
    "parkinson_vol": _parkinson_vol,
    "garman_klass_vol": _garman_klass_vol,
    "rsi": _rsi,
    "macd": _macd,
    "atr": _atr,
    "bollinger": _bollinger,
    "volume_z": _volume_z,
    "spread": _spread,
}


def compute_features(
    panel: Panel,
    names: Sequence[str] | None = None,
    windows: FeatureWindows | Mapping[str, object] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Computes the named technical features for all assets and bars of a panel.

    Args:
        panel: the fleet's bars.
        names: features from ``FEATURES``, in the order wanted; None takes all of them
            (``spread`` only when the panel has a spread).
        windows: look-back lengths, as ``FeatureWindows`` or a mapping of its fields
            (e.g. a Hydra config node); None keeps the defaults.

    Returns:
        ``(features, columns)``: a (T, N, F) float32 array, NaN where a feature has not
        enough history or the asset has no bar, and the F column names (one name may give
        several columns, e.g. ``returns`` gives ``ret_1, ret_4, ret_24``).

    Raises:
        ConfigError: an unknown or repeated feature name, a bad window, or ``spread`` on a
            panel without spreads.
    """
    windows = _as_windows(windows)
    if names is None:
        names = [n for n in FEATURES if n != "spread" or panel.spread_bps is not None]
    _check_names(names)
    columns: list[str] = []
    arrays: list[np.ndarray] = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for name in names:
            for column, values in FEATURES[name](panel, windows).items():
                columns.append(column)
                arrays.append(values.astype(np.float32))
    return np.stack(arrays, axis=-1), columns


def _check_names(names: Sequence[str]) -> None:
    if isinstance(names, str) or len(names) == 0:
        raise ConfigError(f"features must be a non-empty list of names, got {names!r}")
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ConfigError(f"unknown feature(s) {unknown}; known features: {sorted(FEATURES)}")
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise ConfigError(f"feature(s) {repeated} listed more than once")


def _as_windows(windows: FeatureWindows | Mapping[str, object] | None) -> FeatureWindows:
    if windows is None:
        return FeatureWindows()
    if not isinstance(windows, FeatureWindows):
        known = [f.name for f in fields(FeatureWindows)]
        unknown = sorted(set(windows) - set(known))
        if unknown:
            raise ConfigError(f"unknown feature window(s) {unknown}; known windows: {known}")
        values = dict(windows)
        if "return_horizons" in values:
            values["return_horizons"] = tuple(values["return_horizons"])
        windows = FeatureWindows(**values)
    lengths = {f.name: getattr(windows, f.name) for f in fields(windows)}
    horizons = lengths.pop("return_horizons")
    if len(horizons) == 0 or any(int(h) != h or h < 1 for h in horizons):
        raise ConfigError(f"return_horizons must be whole numbers >= 1, got {horizons}")
    bad = {k: v for k, v in lengths.items() if int(v) != v or v < 2}
    if bad:
        raise ConfigError(f"feature windows must be whole numbers >= 2, got {bad}")
    if windows.macd_fast >= windows.macd_slow:
        raise ConfigError(
            f"macd_fast ({windows.macd_fast}) must be shorter than macd_slow ({windows.macd_slow})"
        )
    return windows


def warmup_bars(
    names: Sequence[str] | None = None,
    windows: FeatureWindows | Mapping[str, object] | None = None,
    tolerance: float = 1e-9,
) -> int:
    """Bars of history after which every named feature equals its full-history value.

    Rolling features need their window (plus the one-bar lag of a return). The EMAs of
    the RSI, MACD and ATR remember their whole past; after k bars the start's weight is
    ``(1 - alpha)^k``, so they count as warmed up once that falls below ``tolerance``
    (the MACD's signal line smooths the MACD line: both spans add up).

    Args:
        names: features as in :func:`compute_features` (None: all of them).
        windows: look-back lengths (None keeps the defaults).
        tolerance: weight of the EMAs' starting values that is left, relative.

    Returns:
        The number of bars the latest value needs, the latest bar included.
    """
    windows = _as_windows(windows)
    names = list(FEATURES) if names is None else list(names)
    _check_names(names)

    def ema(span_alpha: float) -> int:
        return int(np.ceil(np.log(tolerance) / np.log1p(-span_alpha)))

    needs = {
        "returns": max(windows.return_horizons) + 1,
        "realized_vol": windows.volatility + 1,
        "parkinson_vol": windows.volatility,
        "garman_klass_vol": windows.volatility,
        "rsi": 1 + ema(1.0 / windows.rsi),
        "macd": ema(2 / (windows.macd_slow + 1)) + ema(2 / (windows.macd_signal + 1)),
        "atr": 1 + ema(1.0 / windows.atr),
        "bollinger": windows.bollinger,
        "volume_z": windows.volume + 1,
        "spread": 1,
    }
    return max(needs[name] for name in names)
