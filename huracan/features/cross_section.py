"""Cross-sectional features: each coin measured against the coins listed at the same bar.

Every feature at bar t uses bars <= t only. A rank at bar t is taken over the coins
that are listed at t and have a value there (a coin before its listing, or inside a gap
too long to fill, has a NaN price and is left out); it is a percentile in [0, 1] (0 the
lowest, 1 the highest, ties averaged, 0.5 for a coin alone).

This module holds the ``features.cross_section`` config and the features computed once
for the panel; two need something fitted on each fold's training window and are in
:mod:`huracan.features.cross_section_fold`: the return relative to the coin's cluster
mean, and the trend aggregate.

These features depend on the whole universe at each bar, so a model that sees them can
only be served where the whole universe is: the hierarchical pipeline, not the per-coin
champions served from the roster's coins (:func:`check_config`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from huracan.data.panel import Panel
from huracan.errors import ConfigError
from huracan.features.technical import lag, realized_volatility

NAMES = ("return_rank", "volume_rank", "volatility_rank", "relative_return", "high_low", "trend")


@dataclass(frozen=True)
class CrossSection:
    """The ``features.cross_section`` node, look-backs as written (``1bar``, ``4h``, ``7d``).

    Attributes:
        names: the features wanted, from ``NAMES``.
        return_lookbacks: look-backs of the return ranks.
        volume_window: window of the mean quote volume that is ranked (a size proxy).
        volatility_window: window of the realised volatility that is ranked.
        relative_lookbacks: look-backs of the returns taken relative to the cluster mean.
        high_low_windows: windows of the distance from the high and from the low.
        trend_windows: moving-average lengths of the trend signals (close / MA - 1).
        trend_horizon: the forward return whose cross-sectional rank the signals' weights
            are fitted to predict.
        trend_alpha: ridge penalty of that fit.
        trend_signals: also give the moving-average signals themselves as inputs.
    """

    names: tuple[str, ...] = NAMES
    return_lookbacks: tuple[str, ...] = ("1bar", "1d", "7d", "30d")
    volume_window: str = "7d"
    volatility_window: str = "7d"
    relative_lookbacks: tuple[str, ...] = ("1d", "7d")
    high_low_windows: tuple[str, ...] = ("30d",)
    trend_windows: tuple[str, ...] = ("1d", "3d", "7d", "14d", "30d")
    trend_horizon: str = "1d"
    trend_alpha: float = 1.0
    trend_signals: bool = False


@dataclass(frozen=True)
class Lookback:
    """A look-back as configured and in bars of the panel's timeframe."""

    label: str
    bars: int


@dataclass(frozen=True)
class CrossSectionSpec:
    """:class:`CrossSection` resolved to the panel's bars (duplicates dropped)."""

    names: tuple[str, ...]
    return_lookbacks: tuple[Lookback, ...]
    volume_window: Lookback
    volatility_window: Lookback
    relative_lookbacks: tuple[Lookback, ...]
    high_low_windows: tuple[Lookback, ...]
    trend_windows: tuple[Lookback, ...]
    trend_horizon: Lookback
    trend_alpha: float
    trend_signals: bool

    @property
    def fold_names(self) -> list[str]:
        """Names of the per-fold columns, in the order
        ``cross_section_fold.fold_features`` gives them."""
        names = []
        if "relative_return" in self.names:
            names += [f"xs_rel_ret_{lb.label}" for lb in self.relative_lookbacks]
        if "trend" in self.names:
            names.append("xs_trend")
        return names


def resolve(node: Mapping[str, object] | None, bar_seconds: float) -> CrossSectionSpec | None:
    """The ``features.cross_section`` node in bars of the panel; None where it is null.

    Raises:
        ConfigError: an unknown key or feature, a look-back that is not a duration or is
            shorter than one bar, a negative ridge penalty.
    """
    if node is None:
        return None
    known = [f.name for f in fields(CrossSection)]
    unknown = sorted(set(node) - set(known))
    if unknown:
        raise ConfigError(f"unknown features.cross_section key(s) {unknown}; known keys: {known}")
    lists = {
        k: tuple(v) for k, v in node.items() if isinstance(v, Sequence) and not isinstance(v, str)
    }
    config = CrossSection(**(dict(node) | lists))
    names = tuple(config.names)
    bad = [n for n in names if n not in NAMES]
    if bad or not names:
        raise ConfigError(
            f"features.cross_section.names: unknown or empty {bad or names}; known: {list(NAMES)}"
        )
    alpha = config.trend_alpha
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not alpha >= 0:
        raise ConfigError(
            f"features.cross_section.trend_alpha must be >= 0, got {config.trend_alpha}"
        )
    if not isinstance(config.trend_signals, bool):
        raise ConfigError(
            f"features.cross_section.trend_signals must be true or false, got "
            f"{config.trend_signals!r}"
        )

    def one(key: str, value: object) -> Lookback:
        return Lookback(str(value), to_bars(value, bar_seconds, f"features.cross_section.{key}"))

    def many(key: str) -> tuple[Lookback, ...]:
        values = getattr(config, key)
        if isinstance(values, str) or not len(values):
            raise ConfigError(f"features.cross_section.{key} must be a non-empty list")
        seen: dict[int, Lookback] = {}
        for value in values:  # 1bar and 1d on daily bars are one look-back: the first wins
            lookback = one(key, value)
            seen.setdefault(lookback.bars, lookback)
        return tuple(seen.values())

    return CrossSectionSpec(
        names=names,
        return_lookbacks=many("return_lookbacks"),
        volume_window=one("volume_window", config.volume_window),
        volatility_window=one("volatility_window", config.volatility_window),
        relative_lookbacks=many("relative_lookbacks"),
        high_low_windows=many("high_low_windows"),
        trend_windows=many("trend_windows"),
        trend_horizon=one("trend_horizon", config.trend_horizon),
        trend_alpha=float(config.trend_alpha),
        trend_signals=config.trend_signals,
    )


def to_bars(value: object, bar_seconds: float, key: str) -> int:
    """A look-back in bars: ``12`` or ``12bar`` are bars, ``4h`` or ``7d`` a duration
    rounded to whole bars of ``bar_seconds``.

    Raises:
        ConfigError: not a duration, or shorter than one bar.
    """
    text = str(value).strip().lower()
    if isinstance(value, int) and not isinstance(value, bool):
        bars = float(value)
    elif text.endswith(("bars", "bar")):
        try:
            bars = float(text.removesuffix("s").removesuffix("bar"))
        except ValueError:
            raise ConfigError(f"{key}: {value!r} is not a number of bars, e.g. 1bar") from None
    else:
        try:
            bars = pd.Timedelta(text).total_seconds() / bar_seconds
        except ValueError:
            raise ConfigError(f"{key}: {value!r} is not a duration, e.g. 4h, 7d or 1bar") from None
    if not round(bars) >= 1:
        bar = f"{bar_seconds / 3600:g}h" if bar_seconds >= 3600 else f"{bar_seconds:g}s"
        raise ConfigError(f"{key}: {value!r} is shorter than one {bar} bar")
    return int(round(bars))


def check_config(features: Mapping | None, pipeline_target: str) -> None:
    """Checks ``features.cross_section`` before any data is read: its keys, names and
    look-backs (the whole-bar rule waits for the data's timeframe), and the pipeline.

    Raises:
        ConfigError: a bad key or value, or ``pipeline=per_coin`` with cross-sectional
            features: its champions are served from the roster's coins alone, where a
            rank across the fleet could not be computed as in training.
    """
    node = (features or {}).get("cross_section")
    if not node:
        return
    resolve(dict(node), bar_seconds=1.0)
    if "per_coin" in pipeline_target:
        raise ConfigError(
            "features.cross_section needs every coin of the universe at each bar, but "
            "pipeline=per_coin serves each champion from the roster's coins only: use "
            "features=base with pipeline=per_coin"
        )


# --- features computed once for the panel ---------------------------------------------------
def percentile_rank(values: np.ndarray, listed: np.ndarray) -> np.ndarray:
    """Per row, each coin's percentile among the listed coins with a finite value.

    Args:
        values: (T, N) the quantity ranked.
        listed: (T, N) bool, the coin is listed at that bar.

    Returns:
        (T, N) in [0, 1] (ties averaged; 0.5 for a coin alone), NaN where the coin is not
        listed or has no value.
    """
    known = listed & np.isfinite(values)
    # 1..n per row, ties averaged, NaN kept (pandas: 3x scipy's rankdata along rows)
    ranks = pd.DataFrame(np.where(known, values, np.nan)).rank(axis=1).to_numpy()
    count = known.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        percentile = np.where(count > 1, (ranks - 1) / (count - 1), 0.5)
    return np.where(known, percentile, np.nan)


def cross_section_features(panel: Panel, spec: CrossSectionSpec) -> tuple[np.ndarray, list[str]]:
    """The cross-sectional features that nothing fitted enters, for all bars at once.

    Args:
        panel: the fleet's bars (a coin's rows are NaN where it has none).
        spec: which features and look-backs.

    Returns:
        ``(features, names)``: (T, N, F) float32 (F may be 0), and their F names.
    """
    close, listed = panel.close, panel.listed
    with np.errstate(divide="ignore", invalid="ignore"):
        log_close = np.log(close)
        columns: dict[str, np.ndarray] = {}
        if "return_rank" in spec.names:
            for lb in spec.return_lookbacks:
                returns = log_close - lag(log_close, lb.bars)
                columns[f"xs_ret_rank_{lb.label}"] = percentile_rank(returns, listed)
        if "volume_rank" in spec.names:
            bars = spec.volume_window.bars
            size = (
                pd.DataFrame(panel.quote_volume).rolling(bars, min_periods=bars).mean().to_numpy()
            )
            columns[f"xs_volume_rank_{spec.volume_window.label}"] = percentile_rank(size, listed)
        if "volatility_rank" in spec.names:
            vol = realized_volatility(close, max(2, spec.volatility_window.bars))
            label = spec.volatility_window.label
            columns[f"xs_volatility_rank_{label}"] = percentile_rank(vol, listed)
        if "high_low" in spec.names:
            for lb in spec.high_low_windows:
                top = (
                    pd.DataFrame(panel.high).rolling(lb.bars, min_periods=lb.bars).max().to_numpy()
                )
                bottom = (
                    pd.DataFrame(panel.low).rolling(lb.bars, min_periods=lb.bars).min().to_numpy()
                )
                columns[f"xs_from_high_{lb.label}"] = log_close - np.log(top)  # <= 0
                columns[f"xs_from_low_{lb.label}"] = log_close - np.log(bottom)  # >= 0
        if "trend" in spec.names and spec.trend_signals:
            signals = trend_signals(close, [lb.bars for lb in spec.trend_windows])
            for i, lb in enumerate(spec.trend_windows):
                columns[f"xs_ma_{lb.label}"] = signals[..., i]
    if not columns:
        return np.zeros((*close.shape, 0), dtype=np.float32), []
    stacked = np.stack([v.astype(np.float32) for v in columns.values()], axis=-1)
    return stacked, list(columns)


def trend_signals(close: np.ndarray, windows: Sequence[int]) -> np.ndarray:
    """(T, N, K) moving-average signals ``close / MA(n) - 1``, one per window n, NaN until
    n bars of history."""
    frame = pd.DataFrame(close)
    out = [close / frame.rolling(n, min_periods=n).mean().to_numpy() - 1.0 for n in windows]
    return np.stack(out, axis=-1)
