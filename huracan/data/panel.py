"""The fleet's bars on one time grid: wide (T, N) arrays, one column per symbol."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

OHLCV = ("open", "high", "low", "close", "volume")


@dataclass
class DropRecord:
    """Something that was left out of the panel, and why (never dropped silently)."""

    symbol: str
    reason: str  # machine-readable code, e.g. "gap_too_long", "bad_rows:high_below_low"
    count: int  # bars or rows affected
    detail: str = ""

    def to_dict(self) -> dict:
        return {
            "symbol": self.symbol,
            "reason": self.reason,
            "count": self.count,
            "detail": self.detail,
        }


@dataclass
class Panel:
    """Aligned OHLCV bars of a fleet of assets.

    Every field is a float64 array of shape (T, N): T bars of the common grid, N symbols.
    NaN means no bar: before a symbol's listing, after its delisting, or inside a gap
    longer than ``max_ffill`` bars. Gaps of at most ``max_ffill`` bars are forward-filled
    (flat bar at the previous close, zero volume) and flagged in ``filled``.

    Attributes:
        timestamps: bar open times, UTC, regular at ``timeframe``.
        symbols: asset names, one per column.
        bars: field name -> (T, N) array; always the OHLCV fields, ``spread_bps`` if known.
        timeframe: pandas-style bar length, e.g. ``"1h"``.
        filled: (T, N) bool, True where the bar was forward-filled.
        drops: what was dropped or filled, per symbol and reason.
        truth: planted ground truth when the panel comes from the synthetic market.
    """

    timestamps: pd.DatetimeIndex
    symbols: list[str]
    bars: dict[str, np.ndarray]
    timeframe: str
    filled: np.ndarray
    drops: list[DropRecord] = field(default_factory=list)
    truth: object | None = None

    def __post_init__(self) -> None:
        shape = (len(self.timestamps), len(self.symbols))
        for name, values in self.bars.items():
            if values.shape != shape:
                raise ValueError(f"field {name!r} has shape {values.shape}, expected {shape}")

    # --- shape and fields -------------------------------------------------------------
    @property
    def n_bars(self) -> int:
        return len(self.timestamps)

    @property
    def n_assets(self) -> int:
        return len(self.symbols)

    @property
    def open(self) -> np.ndarray:
        return self.bars["open"]

    @property
    def high(self) -> np.ndarray:
        return self.bars["high"]

    @property
    def low(self) -> np.ndarray:
        return self.bars["low"]

    @property
    def close(self) -> np.ndarray:
        return self.bars["close"]

    @property
    def volume(self) -> np.ndarray:
        return self.bars["volume"]

    @property
    def spread_bps(self) -> np.ndarray | None:
        return self.bars.get("spread_bps")

    @property
    def quote_volume(self) -> np.ndarray:
        """Traded value per bar in quote currency, (T, N)."""
        return self.close * self.volume

    @property
    def listed(self) -> np.ndarray:
        """(T, N) bool: the symbol has a bar (real or filled) at this time."""
        return ~np.isnan(self.close)

    @property
    def bar_seconds(self) -> float:
        return pd.Timedelta(self.timeframe).total_seconds()

    @property
    def bars_per_year(self) -> float:
        return 365.25 * 86400 / self.bar_seconds

    def index_of(self, symbol: str) -> int:
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise KeyError(
                f"symbol {symbol!r} is not in the panel ({self.n_assets} symbols)"
            ) from None

    # --- selections -------------------------------------------------------------------
    def select(self, symbols: list[str]) -> Panel:
        """The panel restricted to ``symbols``, in that order."""
        cols = [self.index_of(s) for s in symbols]
        return replace(
            self,
            symbols=list(symbols),
            bars={k: v[:, cols] for k, v in self.bars.items()},
            filled=self.filled[:, cols],
            drops=[d for d in self.drops if d.symbol in set(symbols)],
            truth=self.truth.select(cols) if self.truth is not None else None,
        )

    def between(self, start: str | pd.Timestamp | None, end: str | pd.Timestamp | None) -> Panel:
        """The bars with ``start <= timestamp < end`` (either bound may be None)."""
        lo = 0 if start is None else self.timestamps.searchsorted(to_utc(start), "left")
        hi = self.n_bars if end is None else self.timestamps.searchsorted(to_utc(end), "left")
        rows = slice(lo, hi)
        return replace(
            self,
            timestamps=self.timestamps[rows],
            bars={k: v[rows] for k, v in self.bars.items()},
            filled=self.filled[rows],
            truth=self.truth.slice_rows(rows) if self.truth is not None else None,
        )

    def frame(self, symbol: str) -> pd.DataFrame:
        """One symbol's bars as a DataFrame indexed by timestamp (rows without a bar kept)."""
        j = self.index_of(symbol)
        index = self.timestamps.rename("timestamp")
        return pd.DataFrame({k: v[:, j] for k, v in self.bars.items()}, index=index)

    def to_long(self) -> pd.DataFrame:
        """Long frame indexed by (timestamp, symbol), sorted, only rows with a bar."""
        mask = self.listed
        t_idx, a_idx = np.nonzero(mask)
        index = pd.MultiIndex.from_arrays(
            [self.timestamps[t_idx], np.asarray(self.symbols, dtype=object)[a_idx]],
            names=["timestamp", "symbol"],
        )
        data = {k: v[mask] for k, v in self.bars.items()}
        data["filled"] = self.filled[mask]
        return pd.DataFrame(data, index=index)

    def summary(self) -> pd.DataFrame:
        """Per-symbol overview: first and last bar, bars, filled bars, median quote volume."""
        listed = self.listed
        first = np.where(listed.any(0), listed.argmax(0), -1)
        last = np.where(listed.any(0), self.n_bars - 1 - listed[::-1].argmax(0), -1)
        ts = self.timestamps
        with np.errstate(all="ignore"):
            med_qv = np.nanmedian(np.where(listed, self.quote_volume, np.nan), axis=0)
        return pd.DataFrame(
            {
                "first": [ts[i] if i >= 0 else pd.NaT for i in first],
                "last": [ts[i] if i >= 0 else pd.NaT for i in last],
                "bars": listed.sum(0),
                "filled": self.filled.sum(0),
                "median_quote_volume": med_qv,
            },
            index=pd.Index(self.symbols, name="symbol"),
        )


def to_utc(value: str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
