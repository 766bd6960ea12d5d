"""Trading costs: the cost model, its calibration from candles or ticks, per-symbol metrics.

Units, everywhere in this module:

- Spreads are full quoted (or effective) spreads in basis points of the mid: a round trip
  crosses the spread once in total, half on the way in and half on the way out.
- Volatility is per bar, as a fraction (0.005 for 0.5 % per bar); ``100 * volatility`` is
  that in percent, the unit ``slippage_bps_per_sigma`` is quoted against.
- ``slippage_bps_per_sigma`` is per side: a round trip slips
  ``2 * slippage_bps_per_sigma * 100 * volatility`` bps.

So a calibration fits the effective spread a round trip pays on top of its fees,
``spread_bps = base_spread_bps + 2 * slippage_bps_per_sigma * (100 * sigma)``, and
``CostModel(fee, base_spread_bps, slippage_bps_per_sigma).round_trip_bps(None, sigma)``
is then ``2 * fee`` plus that fitted line.

Spread estimators from candles (both vectorised over (T, N) bars; row t reads bars t - 1
and t, so it is known at the close of bar t):

- Corwin and Schultz (2012): the high-low range of two bars holds twice the variance of
  one bar's range but the spread only once. Known biases: it reads the range of trades,
  so with few trades per bar the ranges understate the true ones and the spread comes out
  too low, more so as volatility grows (on simulated bars with 100 trades each and a
  spread of 40 % of the bar's volatility it recovers about 75 % of the spread, on bars
  with twice that volatility about 65 %); setting the negative two-bar estimates to 0
  biases averages up, in proportion to volatility; it assumes constant volatility over
  the two bars.
- Abdi and Ranaldo (2017): the close is a trade at the bid or the ask, the mid-range of
  the bar (and of the next) proxies the mid, so
  ``s^2 = 4 E[(c_t - eta_t)(c_t - eta_{t+1})]`` in logs. Nearly unbiased on the same
  simulated bars once the moment is averaged before the square root, but noisier than
  Corwin-Schultz; the square root of a single two-bar moment, with negatives set to 0,
  is biased up, again in proportion to volatility.

Both need the spread to be large against the bar's range. On real Binance 1h bars
(``bench/bench_costs.py``, 30 days to 2024-05-08) they read base spreads of 0 to 22 bps
and slopes of 0 to 14 bps per 1 %, mostly with R^2 below 0.5, for coins whose ticks show
effective half-spreads under 0.3 bp (BTC 0.08, ETH 0.24 on 2024-08-09): hourly reversals
and changes of volatility within the bars, not the spread, dominate them. Quoted spreads
(a ``spread_bps`` column) or ticks are far better where available.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from huracan.errors import ConfigError, DataError
from huracan.metrics import asset_metrics

if TYPE_CHECKING:
    from huracan.data.panel import Panel

Estimator = Literal["corwin_schultz", "abdi_ranaldo"]
ESTIMATORS = ("corwin_schultz", "abdi_ranaldo")
SYMBOL_COLUMNS = [
    "n_trades",
    "hit_rate",
    "sharpe",
    "net_return",
    "net_bps",
    "gross_bps",
    "last_7d_net_bps",
    "avg_cost_bps",
    "avg_slip_bps",
]
_CS_K = 3 - 2 * np.sqrt(2)


@dataclass
class CostModel:
    """Round-trip cost of a trade, in basis points, for every asset and bar.

    A round trip pays the fee on each side, crosses the spread once in total (half on the
    way in, half on the way out) and slips on each side by ``slippage_bps_per_sigma`` times
    the bar's volatility in units of 1 % (so calm bars slip less than turbulent ones).

    Attributes:
        fee_bps: exchange fee per side.
        spread_bps: quoted spread used where the data has none.
        slippage_bps_per_sigma: slippage per side per 1 % of per-bar volatility.
    """

    fee_bps: float = 7.5
    spread_bps: float = 2.0
    slippage_bps_per_sigma: float = 1.0

    def round_trip_bps(
        self, spread_bps: np.ndarray | None = None, volatility: np.ndarray | None = None
    ) -> np.ndarray | float:
        """Cost of one round trip in bps: a scalar, or (T, N) where inputs are arrays.

        Args:
            spread_bps: observed spread per asset and bar (NaN falls back to the default).
            volatility: per-bar volatility as a fraction (e.g. 0.005 for 0.5 %).
        """
        spread = (
            self.spread_bps
            if spread_bps is None
            else np.where(np.isnan(spread_bps), self.spread_bps, spread_bps)
        )
        return 2 * self.fee_bps + spread + self.slippage_bps(volatility)

    def slippage_bps(self, volatility: np.ndarray | None = None) -> np.ndarray | float:
        """The slippage part of one round trip in bps (both sides), 0 where volatility is NaN.

        Args:
            volatility: per-bar volatility as a fraction; None for no slippage.
        """
        slip = 0.0 if volatility is None else self.slippage_bps_per_sigma * 100 * volatility
        return 2 * np.nan_to_num(slip)


# --- spread estimators from candles -------------------------------------------------------
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
    return np.maximum(_rolling_mean(_cs_pair_spread(high, low, close), window), 0.0)


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
    moment = _rolling_mean(_ar_pair_moment(high, low, close), window)
    return np.sqrt(np.maximum(moment, 0.0))


def _cs_pair_spread(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
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


def _ar_pair_moment(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
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


# --- the fitted slippage of one symbol ----------------------------------------------------
@dataclass
class SlippageFit:
    """A symbol's spread and slippage, fitted on the end of one training window.

    Attributes:
        symbol: the asset.
        slippage_bps_per_sigma: slippage per side per 1 % of per-bar volatility.
        base_spread_bps: full spread at zero volatility, in bps.
        fit_date: end of the training window: its last bar, or for ticks ``end`` (else
            the last trade), ISO-8601 UTC; None for ticks without trades or ``end``.
        window_start: first observation used, ISO-8601; None without observations.
        window_end: last observation used, ISO-8601; None without observations.
        n_bars: observations used (bars, or trades for ``method == "ticks"``).
        r2: weighted R^2 of the line through the volatility bins; NaN on a fallback.
        method: where the spreads came from: ``"quoted"``, ``"corwin_schultz"``,
            ``"abdi_ranaldo"`` or ``"ticks"``; ``"default"`` where there were too few
            observations and the values are the default cost model's.
        note: why a default or a clipped value was used; empty when the fit is plain.
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
        unknown, missing = sorted(set(data) - names), sorted(names - set(data) - {"note"})
        if unknown or missing:
            raise DataError("slippage fit", f"unknown fields {unknown}, missing {missing}")
        values = dict(data)
        values["r2"] = np.nan if values.get("r2") is None else float(values["r2"])
        return cls(**values)


def _fit_spread_lines(
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


def _check_fit_config(n_bins: int, min_obs: int, what: str) -> None:
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
    _check_fit_config(n_bins, min_bars, "min_bars")
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
        volatility = _trailing_volatility(close, vol_window)
    elif np.shape(volatility) != panel.close.shape:
        raise ValueError(f"volatility has shape {np.shape(volatility)}, bars {panel.close.shape}")
    else:
        volatility = np.asarray(volatility, dtype=np.float64)[rows]
    in_window = np.arange(first, end + 1)[:, None] >= start

    pair_traded = traded & _lag(traded, 1, fill=False)
    if estimator == "corwin_schultz":
        moment, to_spread = _cs_pair_spread(high, low, close) * 1e4, _identity
    else:
        moment, to_spread = _ar_pair_moment(high, low, close) * 1e8, _sqrt_positive
    x, moment = _observations(in_window & pair_traded, 100 * _lag(volatility, 2), moment)
    use_quotes = np.zeros(panel.n_assets, dtype=bool)
    if panel.spread_bps is not None:
        x_quoted, quoted = _observations(
            in_window & traded, 100 * _lag(volatility, 1), panel.spread_bps[rows]
        )
        use_quotes = np.isfinite(quoted).sum(0) >= min_bars
        x = np.where(use_quotes, x_quoted, x)
        moment = np.where(use_quotes, quoted, moment)

    def to_spread_by_symbol(means: np.ndarray) -> np.ndarray:
        return np.where(use_quotes, means, to_spread(means))

    base, slope, r2, clipped = _fit_spread_lines(x, moment, to_spread_by_symbol, n_bins)
    times = panel.timestamps[rows]
    methods = np.where(use_quotes, "quoted", estimator)
    return {
        symbol: _make_fit(
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


def _observations(
    mask: np.ndarray, volatility_pct: np.ndarray, spread: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(regressor, spread), both NaN wherever either is missing or ``mask`` is False."""
    keep = mask & np.isfinite(volatility_pct) & np.isfinite(spread)
    return np.where(keep, volatility_pct, np.nan), np.where(keep, spread, np.nan)


def _make_fit(
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


def _trailing_volatility(close: np.ndarray, window: int) -> np.ndarray:
    """Rolling std of one-bar log returns, as ``features.technical.realized_volatility``.

    Not imported from there: ``huracan.features`` imports the labels, which import this
    module.
    """
    if int(window) != window or window < 2:
        raise ConfigError(f"vol_window must be a whole number >= 2, got {window}")
    with np.errstate(invalid="ignore", divide="ignore"):
        returns = np.diff(np.log(close), axis=0, prepend=np.nan)
    return pd.DataFrame(returns, copy=False).rolling(window).std().to_numpy()


def _lag(values: np.ndarray, bars: int, fill: float | bool = np.nan) -> np.ndarray:
    """``values`` shifted down by ``bars`` rows (row t holds row t - bars)."""
    out = np.full_like(values, fill)
    out[bars:] = values[: len(values) - bars]
    return out


def _identity(values: np.ndarray) -> np.ndarray:
    return values


def _sqrt_positive(values: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(values, 0.0))


# --- calibration from ticks ---------------------------------------------------------------
TRADE_COLUMNS = ("local_ts_ns", "price", "is_buyer_maker")
QUOTE_COLUMNS = ("local_ts_ns", "bid", "ask")


def calibrate_slippage_from_ticks(
    trades: pd.DataFrame,
    bbo: pd.DataFrame,
    *,
    symbol: str,
    timeframe: str = "1h",
    vol_seconds: int = 60,
    quote_lag_ms: float = 20.0,
    max_quote_age_s: float = 1.0,
    end: str | pd.Timestamp | None = None,
    n_bins: int = 5,
    min_trades: int = 200,
    default: CostModel | None = None,
) -> SlippageFit:
    """Fits a symbol's base spread and slippage from its trades and best bid/offer quotes.

    Each trade is joined to the last quote received at least ``quote_lag_ms`` before it
    (both streams on the local receive clock ``local_ts_ns``; quotes older than
    ``max_quote_age_s`` are not used). The lag is there because the book update a trade
    causes can reach us before the trade itself: on the Binance capture in
    ``shared/data/binance_ticks`` 48 % of the trades look better than the mid of the last
    quote strictly before them, 11 % against a quote 20 ms older, and the median trade
    then pays half a tick. Its slippage per side is ``side * (price - mid) / mid`` in bps,
    with side -1 where the buyer was the maker (the aggressor sold) and +1 otherwise; twice
    that is the effective spread the trade paid, which is fitted, as for candles, against
    ``100 * sigma``, with ``sigma`` the realised volatility of mids over the last
    ``vol_seconds`` (from mids sampled every second). Every print counts once, so an order
    that sweeps several levels counts once per level it fills.

    Unit conversion: the fit gives slippage per side per 1 % of ``vol_seconds``
    volatility, ``k_h``. A bar of ``timeframe`` has, for a random walk, a volatility
    ``sigma_bar = sigma_h * sqrt(bar_seconds / vol_seconds)``, so the same slippage is
    ``k_h * sqrt(vol_seconds / bar_seconds)`` per 1 % of per-bar volatility, the unit of
    ``CostModel`` (1-minute volatility and hourly bars: ``k_h / sqrt(60)``). Tick-level
    mean reversion makes short-horizon volatility scale up by less than the square root,
    which this conversion ignores.

    Args:
        trades: one symbol's trades, columns ``local_ts_ns, price, is_buyer_maker``.
        bbo: its best bid and offer, columns ``local_ts_ns, bid, ask``.
        symbol: the asset, for the fit and for errors.
        timeframe: bar length of the cost model the fit is for, e.g. ``"1h"``.
        vol_seconds: horizon of the mid volatility, in seconds.
        quote_lag_ms: how much older than the trade its quote must be.
        max_quote_age_s: oldest quote a trade may be measured against.
        end: only ticks received before it are used (the training end); None for all.
        n_bins: volatility bins the line is fitted through.
        min_trades: trades needed for a fit; fewer fall back to ``default`` (method
            ``"default"``).
        default: the cost model of a fallback; None uses ``CostModel()``.

    Returns:
        The fit, method ``"ticks"`` (or ``"default"``); ``n_bars`` counts the trades used;
        ``note`` also counts the quotes and trades left out.

    Raises:
        DataError: missing columns or an unreadable ``is_buyer_maker``.
        ConfigError: bad timeframe, horizon, lag or bin settings.
    """
    _check_fit_config(n_bins, min_trades, "min_trades")
    bar_seconds = _seconds(timeframe)
    if int(vol_seconds) != vol_seconds or vol_seconds < 2:
        raise ConfigError(f"vol_seconds must be a whole number >= 2, got {vol_seconds}")
    if not (quote_lag_ms >= 0 and max_quote_age_s > 0):
        raise ConfigError(
            f"need quote_lag_ms >= 0 and max_quote_age_s > 0, got {quote_lag_ms}, {max_quote_age_s}"
        )
    _require_columns(trades, TRADE_COLUMNS, f"{symbol} trades")
    _require_columns(bbo, QUOTE_COLUMNS, f"{symbol} bbo")
    end_ns = None if end is None else _utc(end).value
    quotes, n_bad_quotes = _valid_quotes(bbo, end_ns)
    trades = trades.loc[:, list(TRADE_COLUMNS)].sort_values("local_ts_ns", kind="stable")
    trades = trades.assign(local_ts_ns=trades["local_ts_ns"].astype(np.int64))
    if end_ns is not None:
        trades = trades[trades["local_ts_ns"].to_numpy() < end_ns]
    side = np.where(_buyer_maker(trades["is_buyer_maker"], symbol), -1.0, 1.0)
    # Everything about a trade is read as of `seen`: its receive time less the quote lag.
    seen = trades.assign(seen_ns=trades["local_ts_ns"] - int(quote_lag_ms * 1e6))
    joined = pd.merge_asof(
        seen,
        quotes[["local_ts_ns", "mid"]].rename(columns={"local_ts_ns": "seen_ns"}),
        on="seen_ns",
        allow_exact_matches=False,
        tolerance=int(max_quote_age_s * 1e9),
    )
    joined = pd.merge_asof(
        joined, _mid_volatility(quotes, vol_seconds), left_on="seen_ns", right_on="known_ns"
    )
    price, mid = joined["price"].to_numpy(np.float64), joined["mid"].to_numpy(np.float64)
    effective_bps = 2 * side * (price - mid) / mid * 1e4
    x, y = _observations(
        np.isfinite(effective_bps), 100 * joined["sigma"].to_numpy(), effective_bps
    )
    base, slope, r2, clipped = _fit_spread_lines(x[:, None], y[:, None], _identity, n_bins)
    used = np.isfinite(x)
    stamps = pd.to_datetime(joined["local_ts_ns"].to_numpy()[used], unit="ns", utc=True)
    last_seen = _utc(end) if end is not None else (stamps[-1] if len(stamps) else None)
    fit = _make_fit(
        symbol,
        base[0],
        slope[0] / 2 * np.sqrt(vol_seconds / bar_seconds),
        r2[0],
        int(clipped[0]),
        stamps,
        last_seen,
        "ticks",
        min_trades,
        CostModel() if default is None else default,
    )
    left_out = [
        f"{n_bad_quotes} crossed or non-positive quotes ignored" if n_bad_quotes else "",
        f"{(~used).sum()} trades without a fresh quote or volatility" if (~used).any() else "",
    ]
    fit.note = "; ".join(n for n in [fit.note, *left_out] if n)
    return fit


def _valid_quotes(bbo: pd.DataFrame, end_ns: int | None) -> tuple[pd.DataFrame, int]:
    """Quotes sorted by receive time with their mid, and how many were crossed or <= 0."""
    quotes = bbo.loc[:, list(QUOTE_COLUMNS)].sort_values("local_ts_ns", kind="stable")
    quotes = quotes.assign(local_ts_ns=quotes["local_ts_ns"].astype(np.int64))
    if end_ns is not None:
        quotes = quotes[quotes["local_ts_ns"].to_numpy() < end_ns]
    bid, ask = quotes["bid"].to_numpy(np.float64), quotes["ask"].to_numpy(np.float64)
    good = (bid > 0) & (ask > bid)
    return quotes[good].assign(mid=(bid[good] + ask[good]) / 2), int((~good).sum())


def _mid_volatility(quotes: pd.DataFrame, vol_seconds: int) -> pd.DataFrame:
    """Realised volatility of mids over the last ``vol_seconds``, on a one-second grid.

    Returns:
        Columns ``known_ns`` (the end of the grid second, when the value is known) and
        ``sigma`` (as a fraction; NaN until ``vol_seconds`` seconds of quotes are seen).
    """
    if quotes.empty:
        return pd.DataFrame({"known_ns": np.array([], np.int64), "sigma": np.array([])})
    second = quotes["local_ts_ns"].to_numpy() // 1_000_000_000
    last_mid = quotes["mid"].groupby(second).last()
    grid = np.arange(second[0], second[-1] + 1)
    log_mid = np.log(last_mid.reindex(grid).ffill().to_numpy())
    squared = np.diff(log_mid, prepend=np.nan) ** 2
    variance = pd.Series(squared).rolling(vol_seconds).sum().to_numpy()
    return pd.DataFrame({"known_ns": (grid + 1) * 1_000_000_000, "sigma": np.sqrt(variance)})


def _buyer_maker(values: pd.Series, symbol: str) -> np.ndarray:
    if values.dtype == bool:
        return values.to_numpy()
    text = values.astype(str).str.strip().str.lower()
    known = text.isin(["true", "false", "1", "0"]).to_numpy()
    if not known.all():
        row = int(np.argmin(known))
        raise DataError(
            f"{symbol} trades",
            f"is_buyer_maker must be true/false, got {values.iloc[row]!r}",
            row=row,
        )
    return text.isin(["true", "1"]).to_numpy()


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(source, f"missing columns {missing}; has {list(frame.columns)}")


def _seconds(timeframe: str) -> float:
    try:
        seconds = pd.Timedelta(timeframe).total_seconds()
    except ValueError:
        raise ConfigError(f"timeframe must be a bar length like '1h', got {timeframe!r}") from None
    if not seconds > 0:
        raise ConfigError(f"timeframe must be positive, got {timeframe!r}")
    return seconds


def _utc(value: str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


# --- per-symbol metrics after costs -------------------------------------------------------
def symbol_metrics(
    signals: np.ndarray,
    net_return: np.ndarray,
    gross_return: np.ndarray,
    *,
    symbols: Sequence[str],
    timestamps: pd.DatetimeIndex,
    bars_per_year: float,
    horizon: int = 1,
    rows: np.ndarray | None = None,
    cost_bps: np.ndarray | None = None,
    slippage_bps: np.ndarray | None = None,
) -> pd.DataFrame:
    """After-cost trading metrics of each symbol, with what its trades paid.

    Trades, hit rate and Sharpe are those of ``huracan.metrics.asset_metrics`` (a trade is
    a signal on an evaluated bar with a net return; Sharpe of the per-bar P&L of
    ``horizon`` staggered books, annualised).

    Args:
        signals: (T, N) bool, True where a long trade is entered at bar t.
        net_return: (T, N) return of a trade entered at t after costs, as a fraction.
        gross_return: (T, N) the same before costs.
        symbols: the N asset names.
        timestamps: the T bar times.
        bars_per_year: bars in a year, e.g. ``panel.bars_per_year``.
        horizon: bars a trade is held.
        rows: grid rows evaluated, e.g. ``fold.test``; None for all.
        cost_bps: (T, N) round-trip cost of a trade entered at t in bps; None takes
            ``(gross_return - net_return) * 1e4``.
        slippage_bps: (T, N) the slippage part of that cost (both sides, e.g.
            ``CostModel.slippage_bps(volatility)``); None leaves ``avg_slip_bps`` NaN.

    Returns:
        One row per symbol (index ``symbol``), columns ``SYMBOL_COLUMNS``: ``n_trades``;
        ``hit_rate`` (share of trades with a net return > 0); ``sharpe``; ``net_return``
        (sum of net returns, a fraction) and ``net_bps`` (the same in bps); ``gross_bps``
        (sum before costs); ``last_7d_net_bps`` (net bps of the trades entered in the last
        7 days of the evaluated bars); ``avg_cost_bps`` and ``avg_slip_bps`` (mean round
        trip cost and its slippage part over the trades). NaN where there are no trades.
    """
    shape = np.shape(signals)
    arrays = {"gross_return": gross_return, "cost_bps": cost_bps, "slippage_bps": slippage_bps}
    for name, values in arrays.items():
        if values is not None and np.shape(values) != shape:
            raise ValueError(f"{name} has shape {np.shape(values)}, signals {shape}")
    if len(timestamps) != shape[0]:
        raise ValueError(f"{len(timestamps)} timestamps given for {shape[0]} bars")
    labels = np.where(np.isfinite(net_return), (net_return > 0).astype(np.float64), np.nan)
    table = asset_metrics(
        signals,
        labels,
        net_return,
        symbols=symbols,
        bars_per_year=bars_per_year,
        horizon=horizon,
        rows=rows,
    )
    evaluated = np.zeros(shape[0], dtype=bool)
    evaluated[np.arange(shape[0]) if rows is None else rows] = True
    trade = signals & np.isfinite(net_return) & evaluated[:, None]
    times = pd.DatetimeIndex(timestamps)
    recent = evaluated & (times > times[evaluated].max() - pd.Timedelta(days=7))
    cost_bps = (gross_return - net_return) * 1e4 if cost_bps is None else cost_bps
    out = pd.DataFrame(
        {
            "n_trades": table["n_trades"].to_numpy(),
            "hit_rate": table["precision"].to_numpy(),
            "sharpe": table["sharpe"].to_numpy(),
            "net_return": table["net_bps"].to_numpy() / 1e4,
            "net_bps": table["net_bps"].to_numpy(),
            "gross_bps": np.where(trade, gross_return, 0.0).sum(0) * 1e4,
            "last_7d_net_bps": np.where(trade & recent[:, None], net_return, 0.0).sum(0) * 1e4,
            "avg_cost_bps": _mean_over(trade, cost_bps),
            "avg_slip_bps": _mean_over(trade, slippage_bps),
        },
        index=pd.Index(list(symbols), name="symbol"),
    )
    return out[SYMBOL_COLUMNS]


def _mean_over(mask: np.ndarray, values: np.ndarray | None) -> np.ndarray:
    """Column means of ``values`` where ``mask`` holds and the value is known; NaN if none."""
    if values is None:
        return np.full(mask.shape[1], np.nan)
    keep = mask & np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(keep, values, 0.0).sum(0) / keep.sum(0)
