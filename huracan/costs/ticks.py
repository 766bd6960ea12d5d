"""Slippage calibration from trades and best bid/offer quotes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from huracan.costs.calibration import (
    SlippageFit,
    check_fit_config,
    fit_spread_lines,
    identity,
    make_fit,
    observations,
)
from huracan.costs.model import CostModel
from huracan.errors import ConfigError, DataError

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
    check_fit_config(n_bins, min_trades, "min_trades")
    bar_seconds = _seconds(timeframe)
    if int(vol_seconds) != vol_seconds or vol_seconds < 2:
        raise ConfigError(f"vol_seconds must be a whole number >= 2, got {vol_seconds}")
    joined, quotes, n_bad_quotes = _trades_against_quotes(
        trades, bbo, symbol, quote_lag_ms, max_quote_age_s, end
    )
    joined = pd.merge_asof(
        joined, _mid_volatility(quotes, vol_seconds), left_on="seen_ns", right_on="known_ns"
    )
    effective_bps = joined["effective_bps"].to_numpy()
    x, y = observations(np.isfinite(effective_bps), 100 * joined["sigma"].to_numpy(), effective_bps)
    base, slope, r2, clipped = fit_spread_lines(x[:, None], y[:, None], identity, n_bins)
    used = np.isfinite(x)
    stamps = pd.to_datetime(joined["local_ts_ns"].to_numpy()[used], unit="ns", utc=True)
    last_seen = _utc(end) if end is not None else (stamps[-1] if len(stamps) else None)
    fit = make_fit(
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


def effective_spreads(
    trades: pd.DataFrame,
    bbo: pd.DataFrame,
    *,
    symbol: str,
    quote_lag_ms: float = 20.0,
    max_quote_age_s: float = 1.0,
    end: str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Each trade's effective spread, ``2 side (price - mid) / mid`` in bps.

    Trades are joined to quotes as in ``calibrate_slippage_from_ticks``.

    Returns:
        Columns ``local_ts_ns`` and ``effective_bps`` (NaN without a fresh quote), one row
        per trade received before ``end``, in receive order.
    """
    joined, _, _ = _trades_against_quotes(trades, bbo, symbol, quote_lag_ms, max_quote_age_s, end)
    return joined[["local_ts_ns", "effective_bps"]]


def _trades_against_quotes(
    trades: pd.DataFrame,
    bbo: pd.DataFrame,
    symbol: str,
    quote_lag_ms: float,
    max_quote_age_s: float,
    end: str | pd.Timestamp | None,
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Trades with the mid of their quote and their effective spread; the valid quotes."""
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
    price, mid = joined["price"].to_numpy(np.float64), joined["mid"].to_numpy(np.float64)
    joined["effective_bps"] = 2 * side * (price - mid) / mid * 1e4
    return joined, quotes, n_bad_quotes


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


def spread_from_ticks(
    trades: pd.DataFrame,
    bbo: pd.DataFrame,
    *,
    symbol: str,
    start: str | pd.Timestamp,
    end: str | pd.Timestamp,
    slippage_bps_per_sigma: float,
    min_trades: int = 200,
    quote_lag_ms: float = 20.0,
    max_quote_age_s: float = 1.0,
) -> SlippageFit | None:
    """The mean effective spread of the trades received in ``[start, end)``, method ``ticks``.

    Only ticks received before ``end`` are read (the window the spread prices starts
    there). None where fewer than ``min_trades`` trades have a fresh quote.

    Args:
        trades: the symbol's trades (``TRADE_COLUMNS``).
        bbo: its best bid and offer (``QUOTE_COLUMNS``).
        symbol: the asset.
        start: first receive time used.
        end: receive times at or after it are never read.
        slippage_bps_per_sigma: slippage per side per 1 % of per-bar volatility, kept
            from the configuration (the spread already holds what a small trade pays).
        min_trades: trades needed.
        quote_lag_ms: how much older than the trade its quote must be.
        max_quote_age_s: oldest quote a trade may be measured against.
    """
    spreads = effective_spreads(
        trades,
        bbo,
        symbol=symbol,
        quote_lag_ms=quote_lag_ms,
        max_quote_age_s=max_quote_age_s,
        end=end,
    )
    received = spreads["local_ts_ns"].to_numpy()
    keep = (received >= _utc(start).value) & np.isfinite(spreads["effective_bps"].to_numpy())
    values, stamps = spreads["effective_bps"].to_numpy()[keep], received[keep]
    if len(values) < min_trades:
        return None
    return SlippageFit(
        symbol=symbol,
        slippage_bps_per_sigma=float(slippage_bps_per_sigma),
        base_spread_bps=float(values.mean()),
        fit_date=_utc(end).isoformat(),
        window_start=pd.Timestamp(stamps.min(), tz="UTC").isoformat(),
        window_end=pd.Timestamp(stamps.max(), tz="UTC").isoformat(),
        n_bars=int(len(values)),
        r2=np.nan,
        method="ticks",
        note=f"mean effective spread of {len(values)} trades",
        spread_se_bps=float(values.std() / np.sqrt(len(values))),
    )
