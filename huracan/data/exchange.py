"""``data=ccxt``: candles from an exchange through ``ccxt``, cached as per-symbol files.

The cache is a directory of ``<SYMBOL>.parquet`` files in the input contract's format, so
once downloaded it is read exactly like ``data=csv``. Downloads are incremental: only bars
after the last cached one are fetched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import ccxt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from huracan.data.align import timeframe_ns
from huracan.data.files import CsvSource, check_symbol
from huracan.data.panel import Panel, to_utc
from huracan.data.validate import MAX_BAR_MOVE, check_max_bar_move
from huracan.errors import ConfigError, DataError
from huracan.io import atomic_write_bytes

log = logging.getLogger(__name__)
COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]
QUOTE_COLUMNS = ["timestamp", "bid", "ask", "spread_bps", "source"]
SNAPSHOT_FIELD = "quote_snapshot_bps"


class CcxtSource:
    """Downloads OHLCV candles for a list of symbols, then reads the cache like ``data=csv``.

    Args:
        exchange: a ccxt exchange id (``binance``) or an exchange object with ``fetch_ohlcv``.
        symbols: base assets, e.g. ``[BTC, ETH]``; markets are ``<SYMBOL>/<quote>``.
        quote: quote currency.
        timeframe: exchange timeframe of the candles (``1h``).
        start: first bar wanted when nothing is cached yet.
        end: bars before this time (default: up to the last closed bar).
        cache_dir: root of the cache; files go to ``<cache_dir>/<exchange>/<timeframe>/``.
        page_limit: candles asked for per request.
        max_retries: retries of a request after a network error or rate limit.
        retry_wait_s: first back-off wait; it doubles with each retry.
        max_ffill: longest gap, in bars, forward-filled when the panel is built.
        on_error: ``raise`` or ``skip`` a symbol the exchange refuses (or whose cached
            bars fail validation).
        max_bar_move: largest ``|log(close / previous close)|`` of a bar (None: no check).
        quotes: take a bid/ask snapshot per symbol at each download (see the module).
        book_depth: order-book levels asked for by a snapshot.
        ragged_end: the panel ends at the latest bar that at least this share of the
            symbols trading in its last 90 days reach (``CsvSource``); None keeps every bar.
        sleep: the wait function (tests pass a no-op).
        clock: the time in seconds (tests pass a fixed clock).
    """

    def __init__(
        self,
        exchange: str | object = "binance",
        symbols: Sequence[str] = ("BTC", "ETH"),
        quote: str = "USDT",
        timeframe: str = "1h",
        start: str = "2024-01-01",
        end: str | None = None,
        cache_dir: str = "data_cache",
        page_limit: int = 1000,
        max_retries: int = 5,
        retry_wait_s: float = 1.0,
        max_ffill: int = 3,
        on_error: Literal["raise", "skip"] = "raise",
        max_bar_move: float | None = MAX_BAR_MOVE,
        quotes: bool = True,
        book_depth: int = 5,
        ragged_end: float | None = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        self.exchange = exchange
        self.symbols = symbols
        self.quote = quote
        self.timeframe = timeframe
        self.start = start
        self.end = end
        self.cache_dir = cache_dir
        self.page_limit = page_limit
        self.max_retries = max_retries
        self.retry_wait_s = retry_wait_s
        self.max_ffill = max_ffill
        self.on_error = on_error
        self.max_bar_move = check_max_bar_move(max_bar_move)
        self.quotes = quotes
        self.book_depth = book_depth
        self.ragged_end = ragged_end
        self.sleep = sleep
        self.clock = clock
        self.taker_fee_bps: dict[str, float] = {}

    def client(self):
        if not isinstance(self.exchange, str):
            return self.exchange
        if self.exchange not in ccxt.exchanges:
            raise ConfigError(f"data.exchange {self.exchange!r} is not a ccxt exchange id")
        return getattr(ccxt, self.exchange)({"enableRateLimit": True})

    def cache_path(self, client) -> Path:
        name = getattr(client, "id", None) or type(client).__name__
        return Path(self.cache_dir).expanduser() / str(name) / self.timeframe

    def download(self) -> tuple[Path, dict[str, str]]:
        """Brings the cache up to date.

        Returns:
            The cache directory and, per symbol, how it went (``+N bars``, or the error).
        """
        client = self.client()
        directory = self.cache_path(client)
        directory.mkdir(parents=True, exist_ok=True)
        symbols = [check_symbol(s, "data.symbols entry") for s in self.symbols]
        status = {}
        bar = tqdm(symbols, desc="download", unit="symbol")
        for symbol in bar:
            try:
                added = self._update_symbol(client, symbol, directory / f"{symbol}.parquet")
                status[symbol] = f"+{added} bars"
                if self.quotes:
                    status[symbol] += self._snapshot(client, symbol, directory)
                self._record_fee(client, symbol)
            except ccxt.BaseError as err:
                message = f"{type(err).__name__}: {err}"
                if self.on_error == "raise":
                    raise DataError(f"{symbol}/{self.quote}", f"exchange error: {message}") from err
                status[symbol] = message
                log.warning("skipping %s: %s", symbol, message)
            bar.set_postfix_str(f"{symbol} {status[symbol]}")
        return directory, status

    def load(self) -> Panel:
        directory, status = self.download()
        available = [s for s in status if (directory / f"{s}.parquet").exists()]
        if not available:
            raise DataError(str(directory), f"no symbol could be downloaded: {status}")
        panel = CsvSource(
            str(directory),
            symbols=available,
            start=self.start,
            end=self.end,
            max_ffill=self.max_ffill,
            on_error="raise" if self.on_error == "raise" else "skip",
            max_bar_move=self.max_bar_move,
            ragged_end=self.ragged_end,
        ).load()
        return with_snapshots(panel, directory)

    def _record_fee(self, client, symbol: str) -> None:
        """The market's taker fee from ccxt's market info, where it has one."""
        if not isinstance(client, ccxt.Exchange):  # a stand-in exchange object
            return
        market = (client.markets or {}).get(f"{symbol}/{self.quote}") or {}
        if market.get("taker") is not None:
            self.taker_fee_bps[symbol] = float(market["taker"]) * 1e4

    def _snapshot(self, client, symbol: str, directory: Path) -> str:
        """Appends one bid/ask snapshot to ``<SYMBOL>.quotes.parquet``; a status suffix."""
        market = f"{symbol}/{self.quote}"
        quote = None
        for source in ("order_book", "ticker"):
            try:
                quote = _best_quote(client, market, source, self.book_depth)
            except (ccxt.NotSupported, ccxt.ExchangeError, ccxt.NetworkError) as err:
                log.info("%s: no %s snapshot (%s)", market, source, type(err).__name__)
            if quote is not None:
                break
        if quote is None:
            return ", no quote snapshot"
        bid, ask, stamp = quote
        spread = (ask - bid) / ((ask + bid) / 2) * 1e4
        row = [int(stamp or self.clock() * 1000), bid, ask, spread, source]
        path = directory / f"{symbol}.quotes.parquet"
        fresh = pd.DataFrame([row], columns=QUOTE_COLUMNS)
        frame = pd.concat([pd.read_parquet(path), fresh]) if path.exists() else fresh
        atomic_write_bytes(path, frame.to_parquet(index=False))
        return f", spread {spread:.2f} bps ({source})"

    def _update_symbol(self, client, symbol: str, path: Path) -> int:
        step_ms = timeframe_ns(self.timeframe) // 1_000_000
        cached = pd.read_parquet(path) if path.exists() else None
        if cached is not None and len(cached):
            since = int(cached["timestamp"].iloc[-1]) + step_ms
        else:
            since = int(to_utc(self.start).value // 1_000_000)
        now_ms = int(self.clock() * 1000)
        until = now_ms if self.end is None else int(to_utc(self.end).value // 1_000_000)
        rows = self._fetch_range(client, f"{symbol}/{self.quote}", since, until, step_ms, now_ms)
        if not rows:
            return 0
        fresh = pd.DataFrame(rows, columns=COLUMNS)
        frame = fresh if cached is None else pd.concat([cached, fresh], ignore_index=True)
        frame = frame.drop_duplicates("timestamp", keep="first").sort_values("timestamp")
        atomic_write_bytes(path, frame.to_parquet(index=False))
        return len(fresh)

    def _fetch_range(
        self, client, market: str, since: int, until: int, step_ms: int, now_ms: int
    ) -> list[list[float]]:
        """Pages through ``fetch_ohlcv`` from ``since`` to ``until`` (closed candles only)."""
        rows: list[list[float]] = []
        while since < until:
            page = self._request(client, market, since)
            page = [r[:6] for r in page if since <= r[0] < until and r[0] + step_ms <= now_ms]
            if not page:
                break
            rows.extend(page)
            next_since = int(page[-1][0]) + step_ms
            if next_since <= since:  # an exchange that does not advance would loop forever
                break
            since = next_since
        return rows

    def _request(self, client, market: str, since: int) -> list:
        attempt = 0
        while True:
            try:
                return client.fetch_ohlcv(market, self.timeframe, since, self.page_limit)
            except (ccxt.NetworkError, ccxt.RateLimitExceeded) as err:
                if attempt >= self.max_retries:
                    raise
                wait = self.retry_wait_s * 2**attempt
                log.info("%s: %s, retrying in %.1fs", market, type(err).__name__, wait)
                self.sleep(wait)
                attempt += 1


def _best_quote(client, market: str, source: str, depth: int):
    """(bid, ask, timestamp ms or None) from the order book's best levels or the ticker;
    None where the exchange gives no usable pair (missing, or bid above ask) or the client
    has no such method (a stand-in exchange object)."""
    if not hasattr(client, "fetch_order_book" if source == "order_book" else "fetch_ticker"):
        return None
    if source == "order_book":
        book = client.fetch_order_book(market, depth)
        if not book.get("bids") or not book.get("asks"):
            return None
        bid, ask, stamp = book["bids"][0][0], book["asks"][0][0], book.get("timestamp")
    else:
        ticker = client.fetch_ticker(market)
        bid, ask, stamp = ticker.get("bid"), ticker.get("ask"), ticker.get("timestamp")
    if bid is None or ask is None or not 0 < bid <= ask:
        return None
    return float(bid), float(ask), stamp


def with_snapshots(panel: Panel, directory: Path) -> Panel:
    """The panel with ``bars["quote_snapshot_bps"]``: each snapshot's spread on the bar
    whose interval holds it (the mean where a bar holds several); unchanged without any."""
    values = np.full((panel.n_bars, panel.n_assets), np.nan)
    found = False
    for j, symbol in enumerate(panel.symbols):
        path = directory / f"{symbol}.quotes.parquet"
        if not path.exists():
            continue
        try:
            quotes = pd.read_parquet(path)
            stamps = pd.to_datetime(quotes["timestamp"], unit="ms", utc=True)
            spread = quotes["spread_bps"].astype(float)
        except (OSError, ValueError, KeyError) as err:
            raise DataError(str(path), f"unreadable quote snapshots: {err}") from None
        bars = pd.DatetimeIndex(stamps.dt.floor(pd.Timedelta(seconds=panel.bar_seconds)))
        means = spread.groupby(bars).mean()
        rows = panel.timestamps.get_indexer(pd.DatetimeIndex(means.index))
        keep = rows >= 0
        values[rows[keep], j] = means.values[keep]
        found = found or bool(keep.any())
    if not found:
        return panel
    return replace(panel, bars={**panel.bars, SNAPSHOT_FIELD: values})
