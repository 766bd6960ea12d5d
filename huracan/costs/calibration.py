"""Slippage calibration from candles: a base spread plus impact that scales with volatility.

Longer than most modules on purpose: the candle fit, its tick-data counterpart and the
spread sources in their order of trust share one result type and one fallback rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from huracan.costs.model import CostModel
from huracan.costs.spreads import ESTIMATORS, Estimator, ar_pair_moment, cs_pair_spread
from huracan.errors import ConfigError, DataError
from huracan.features.technical import lag, realized_volatility

if TYPE_CHECKING:
    from huracan.data.panel import Panel


@dataclass
class SlippageFit:
    """A symbol's spread and slippage, fitted on the end of one training window.

    Attributes:
        symbol: the asset.
        slippage_bps_per_sigma: slippage per side per 1 % of per-bar volatility.
        base_spread_bps: full spread at zero volatility, in bps.
        fit_date: end of the training window: its last bar, or for ticks ``end`` (else
            the last trade), or for a window estimate the first bar it prices (exclusive
            end), ISO-8601 UTC; None for ticks without trades or ``end``.
        window_start: first observation used, ISO-8601; None without observations.
        window_end: last observation used, ISO-8601; None without observations.
        n_bars: observations used (bars, or trades for ``method == "ticks"``).
        r2: weighted R^2 of the line through the volatility bins; NaN on a fallback.
        method: where the spreads came from: ``"ticks"``, ``"quoted"``, ``"edge"``,
            ``"abdi_ranaldo"`` or ``"corwin_schultz"``; ``"default"`` where there were too
            few observations and the values are the default cost model's;
            ``"tier_default"`` where a window estimate fell back to its liquidity tier.
        note: why a default or a clipped value was used; empty when the fit is plain.
        spread_se_bps: standard error of ``base_spread_bps`` where it was estimated over
            a window (``huracan.costs.estimate``); None otherwise.
        estimator: the candle estimator tried; None for the regression fits.
        estimator_spread_bps: its signed estimate, ``sign(s^2) sqrt(|s^2|)``, kept even
            where the fallback was used; None where it could not be computed.
        estimator_t: ``s^2 / se(s^2)`` of that estimate.
        liquidity_tier: the tier whose default spread is the fallback (0 = most liquid).
        daily_quote_volume: median quote volume per bar x bars per day in the window.
    """

    symbol: str
    slippage_bps_per_sigma: float
    base_spread_bps: float
    fit_date: str | None
    window_start: str | None
    window_end: str | None
    n_bars: int
    r2: float
    method: str
    note: str = ""
    spread_se_bps: float | None = None
    estimator: str | None = None
    estimator_spread_bps: float | None = None
    estimator_t: float | None = None
    liquidity_tier: int | None = None
    daily_quote_volume: float | None = None

    def cost_model(self, fee_bps: float, spread_bps: float | None = None) -> CostModel:
        """The symbol's cost model.

        Args:
            fee_bps: exchange fee per side (from the configuration).
            spread_bps: observed spread to charge instead of the fitted base spread; the
                model still prefers a bar's own ``spread_bps`` where the data has one.
        """
        spread = self.base_spread_bps if spread_bps is None else spread_bps
        return CostModel(fee_bps, spread, self.slippage_bps_per_sigma)

    def to_dict(self) -> dict:
        """Plain JSON types; an undefined R^2 becomes None."""
        out = asdict(self)
        out["r2"] = None if np.isnan(self.r2) else float(self.r2)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> SlippageFit:
        """The fit ``to_dict`` wrote (e.g. read back from ``costs.json``)."""
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING}
        unknown, missing = sorted(set(data) - names), sorted(required - set(data))
        if unknown or missing:
            raise DataError("slippage fit", f"unknown fields {unknown}, missing {missing}")
        values = dict(data)
        values["r2"] = np.nan if values.get("r2") is None else float(values["r2"])
        return cls(**values)


def fit_spread_lines(
    volatility_pct: np.ndarray,
    moment: np.ndarray,
    to_spread: Callable[[np.ndarray], np.ndarray],
    n_bins: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fits ``spread = base + slope * volatility_pct`` in every column at once.

    Each column's observations are cut into ``n_bins`` equal-count bins of volatility;
    the moment is averaged within a bin before ``to_spread`` turns it into one spread
    (a square root of an averaged moment is unbiased where the mean of square roots is
    not); the line is then fitted by least squares over the bins, weighted by their counts,
    with both coefficients kept >= 0.

    Args:
        volatility_pct: (T, N) regressor, NaN where there is no observation.
        moment: (T, N) observations whose bin means ``to_spread`` maps to spreads in bps.
        to_spread: maps the (n_bins, N) bin means of ``moment`` to spreads.
        n_bins: volatility bins per column.

    Returns:
        ``(base, slope, r2, clipped)``, each (N,); ``clipped`` is 0 for a plain fit, 1 where
        a negative slope was set to 0, 2 where a negative base was, 3 where the volatility
        did not vary; NaN coefficients where a column has fewer observations than bins.
    """
    n_rows, n_cols = volatility_pct.shape
    valid = np.isfinite(volatility_pct) & np.isfinite(moment)
    n_obs = valid.sum(0)
    order = np.argsort(np.where(valid, volatility_pct, np.inf), axis=0, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(n_rows)[:, None], order.shape), 0)
    bins = rank * n_bins // np.maximum(n_obs, 1)
    flat = (bins * n_cols + np.arange(n_cols))[valid]  # (bin, column) -> one bincount slot

    def bin_sum(values: np.ndarray | None) -> np.ndarray:
        weights = None if values is None else values[valid]
        return np.bincount(flat, weights, minlength=n_bins * n_cols).reshape(n_bins, n_cols)

    weight = bin_sum(None).astype(np.float64)  # (n_bins, N) observations per bin
    with np.errstate(invalid="ignore", divide="ignore"):
        x = bin_sum(volatility_pct) / weight
        y = to_spread(bin_sum(moment) / weight)
        weight = np.where(np.isfinite(x) & np.isfinite(y), weight, 0.0)
        x, y = np.where(weight > 0, x, 0.0), np.where(weight > 0, y, 0.0)
        total = weight.sum(0)
        mean_x, mean_y = (weight * x).sum(0) / total, (weight * y).sum(0) / total
        sxx = (weight * (x - mean_x) ** 2).sum(0)
        sxy = (weight * (x - mean_x) * (y - mean_y)).sum(0)
        slope = sxy / sxx
        base = mean_y - slope * mean_x
        through_origin = (weight * x * y).sum(0) / (weight * x**2).sum(0)
    flat_vol = ~(sxx > 1e-12 * (weight * x**2).sum(0))
    negative_slope = ~flat_vol & (slope < 0)
    negative_base = ~flat_vol & ~negative_slope & (base < 0)
    slope = np.where(flat_vol | negative_slope, 0.0, slope)
    base = np.where(flat_vol | negative_slope, mean_y, base)
    slope = np.where(negative_base, np.maximum(through_origin, 0.0), slope)
    base = np.maximum(np.where(negative_base, 0.0, base), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        residual = (weight * (y - base - slope * x) ** 2).sum(0)
        r2 = 1 - residual / (weight * (y - mean_y) ** 2).sum(0)
    clipped = np.select([flat_vol, negative_slope, negative_base], [3, 1, 2], 0)
    too_few = n_obs < n_bins
    nan = np.full(n_cols, np.nan)
    return np.where(too_few, nan, base), np.where(too_few, nan, slope), r2, clipped


_CLIP_NOTES = {
    0: "",
    1: "negative slope set to 0",
    2: "negative base spread set to 0",
    3: "volatility did not vary; slope set to 0",
}


def check_fit_config(n_bins: int, min_obs: int, what: str) -> None:
    if int(n_bins) != n_bins or n_bins < 2:
        raise ConfigError(f"n_bins must be a whole number >= 2, got {n_bins}")
    if min_obs < n_bins:
        raise ConfigError(f"{what} must be >= n_bins ({n_bins}), got {min_obs}")


def _iso(value: pd.Timestamp | None) -> str | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).isoformat()


# --- calibration from candles -------------------------------------------------------------
def calibrate_slippage_from_candles(
    panel: Panel,
    *,
    train_rows: np.ndarray | None = None,
    train_end: str | pd.Timestamp | None = None,
    window_days: float = 30.0,
    estimator: Estimator = "abdi_ranaldo",
    volatility: np.ndarray | None = None,
    vol_window: int = 24,
    n_bins: int = 5,
    min_bars: int = 100,
    default: CostModel | None = None,
) -> dict[str, SlippageFit]:
    """Fits every symbol's base spread and slippage on the last days of a training window.

    Only bars up to the end of the training window are read, so the fit can be applied to
    the test window after it. Each bar of the last ``window_days`` gives one spread
    observation: the quoted ``spread_bps`` where the panel has one for that symbol (on at
    least ``min_bars`` bars of the window; method ``"quoted"``), else the candle
    ``estimator`` of the bar and the one before it. Its regressor is ``100 * volatility``
    known before the bars it is read from, so that the range a spread is read from does not
    also feed its own volatility. Forward-filled bars give no observation.

    A symbol with fewer than ``min_bars`` observations falls back to ``default``'s spread
    and slippage (method ``"default"``), with the reason in ``note``.

    The slope is that of the spread given the *measured* volatility, so noise in that
    volatility flattens it, which is what a cost model fed the same measured volatility
    needs. From candles alone it is noisy: on simulated bars with spreads of 14 to 26 bps
    in 20-day volatility regimes of 0.2 to 0.8 % per bar, 90 days give each symbol a slope
    with a standard deviation of about half its value; Abdi-Ranaldo reads the fleet's mean
    slope about 15 % low (noisier high-volatility bins pull their square roots down),
    Corwin-Schultz about 45 % low.

    Args:
        panel: the fleet's bars.
        train_rows: grid rows of the training window (e.g. ``fold.train``); the fit reads
            bars up to the last of them.
        train_end: alternatively, the end of the training window: bars with
            ``timestamp < train_end`` (as ``Panel.between``).
        window_days: days, counted back from the last training bar, the fit uses.
        estimator: ``"abdi_ranaldo"`` (nearly unbiased, noisier) or ``"corwin_schultz"``
            (less noisy, biased down with few trades per bar); see the module docstring.
        volatility: (T, N) causal per-bar volatility as a fraction, e.g. the one the
            labels charge slippage on; None uses the realised volatility of log returns
            over ``vol_window`` bars.
        vol_window: window of that realised volatility.
        n_bins: volatility bins the line is fitted through.
        min_bars: observations a symbol needs for its own fit.
        default: the cost model of a fallback; None uses ``CostModel()``.

    Returns:
        Symbol -> its fit, in panel order.

    Raises:
        ConfigError: not exactly one of ``train_rows`` and ``train_end``, an unknown
            estimator, bad window or bin settings, or a training window without bars.
    """
    if estimator not in ESTIMATORS:
        raise ConfigError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if not window_days > 0:
        raise ConfigError(f"window_days must be > 0, got {window_days}")
    check_fit_config(n_bins, min_bars, "min_bars")
    default = CostModel() if default is None else default
    end = _last_training_row(panel, train_rows, train_end)
    start = int(
        panel.timestamps.searchsorted(
            panel.timestamps[end] - pd.Timedelta(days=window_days), side="right"
        )
    )
    first = max(0, start - vol_window - 2)  # enough history for the volatility of `start`
    rows = slice(first, end + 1)  # nothing after the training end is read from here on
    high, low, close = panel.high[rows], panel.low[rows], panel.close[rows]
    traded = ~panel.filled[rows]
    if volatility is None:
        if int(vol_window) != vol_window or vol_window < 2:
            raise ConfigError(f"vol_window must be a whole number >= 2, got {vol_window}")
        volatility = realized_volatility(close, vol_window)
    elif np.shape(volatility) != panel.close.shape:
        raise ValueError(f"volatility has shape {np.shape(volatility)}, bars {panel.close.shape}")
    else:
        volatility = np.asarray(volatility, dtype=np.float64)[rows]
    in_window = np.arange(first, end + 1)[:, None] >= start

    pair_traded = traded & lag(traded, 1, fill=False)
    if estimator == "corwin_schultz":
        moment, to_spread = cs_pair_spread(high, low, close) * 1e4, identity
    else:
        moment, to_spread = ar_pair_moment(high, low, close) * 1e8, _sqrt_positive
    x, moment = observations(in_window & pair_traded, 100 * lag(volatility, 2), moment)
    use_quotes = np.zeros(panel.n_assets, dtype=bool)
    if panel.spread_bps is not None:
        x_quoted, quoted = observations(
            in_window & traded, 100 * lag(volatility, 1), panel.spread_bps[rows]
        )
        use_quotes = np.isfinite(quoted).sum(0) >= min_bars
        x = np.where(use_quotes, x_quoted, x)
        moment = np.where(use_quotes, quoted, moment)

    def to_spread_by_symbol(means: np.ndarray) -> np.ndarray:
        return np.where(use_quotes, means, to_spread(means))

    base, slope, r2, clipped = fit_spread_lines(x, moment, to_spread_by_symbol, n_bins)
    times = panel.timestamps[rows]
    methods = np.where(use_quotes, "quoted", estimator)
    return {
        symbol: make_fit(
            symbol,
            base[j],
            slope[j] / 2,  # the fitted line's slope covers both sides of the round trip
            r2[j],
            int(clipped[j]),
            times[np.isfinite(x[:, j])],
            panel.timestamps[end],
            str(methods[j]),
            min_bars,
            default,
        )
        for j, symbol in enumerate(panel.symbols)
    }


def _last_training_row(
    panel: Panel, train_rows: np.ndarray | None, train_end: str | pd.Timestamp | None
) -> int:
    if (train_rows is None) == (train_end is None):
        raise ConfigError("pass exactly one of train_rows and train_end")
    if train_rows is not None:
        train_rows = np.asarray(train_rows)
        if train_rows.size == 0:
            raise ConfigError("train_rows is empty")
        end = int(train_rows.max())
        if not 0 <= end < panel.n_bars:
            raise ConfigError(f"train_rows reach row {end}; the panel has {panel.n_bars} rows")
        return end
    end_ts = pd.Timestamp(train_end)
    end_ts = end_ts.tz_localize("UTC") if end_ts.tzinfo is None else end_ts.tz_convert("UTC")
    end = int(panel.timestamps.searchsorted(end_ts, side="left")) - 1
    if end < 0:
        raise ConfigError(f"no bar before train_end {end_ts.isoformat()}")
    return end


def observations(
    mask: np.ndarray, volatility_pct: np.ndarray, spread: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(regressor, spread), both NaN wherever either is missing or ``mask`` is False."""
    keep = mask & np.isfinite(volatility_pct) & np.isfinite(spread)
    return np.where(keep, volatility_pct, np.nan), np.where(keep, spread, np.nan)


def make_fit(
    symbol: str,
    base: float,
    slippage: float,
    r2: float,
    clipped: int,
    times: pd.DatetimeIndex,
    fit_date: pd.Timestamp,
    method: str,
    min_obs: int,
    default: CostModel,
) -> SlippageFit:
    n_obs = len(times)
    note = _CLIP_NOTES[clipped]
    if n_obs < min_obs:
        base, slippage, r2 = default.spread_bps, default.slippage_bps_per_sigma, np.nan
        note = f"fallback: {n_obs} observations < {min_obs} ({method}); default cost model"
        method = "default"
    return SlippageFit(
        symbol=symbol,
        slippage_bps_per_sigma=float(slippage),
        base_spread_bps=float(base),
        fit_date=_iso(fit_date),
        window_start=_iso(times[0]) if n_obs else None,
        window_end=_iso(times[-1]) if n_obs else None,
        n_bars=n_obs,
        r2=float(r2),
        method=method,
        note=note,
    )


def identity(values: np.ndarray) -> np.ndarray:
    return values


def _sqrt_positive(values: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(values, 0.0))
