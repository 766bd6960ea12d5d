"""data=ccxt against a fake exchange object: pagination, retries, errors, incremental cache."""

from __future__ import annotations

import ccxt
import numpy as np
import pandas as pd
import pytest

from huracan.data.exchange import CcxtSource
from huracan.errors import DataError

HOUR = 3_600_000


def candles(start: str, n: int, seed: int = 0) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start, tz="UTC").value // 10**6
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return [[t0 + i * HOUR, c, c * 1.01, c * 0.99, c, 5.0] for i, c in enumerate(close)]


class FakeExchange:
    """Answers fetch_ohlcv like a ccxt exchange: pages of at most ``page`` candles."""

    id = "fakex"
    rateLimit = 50

    def __init__(self, markets: dict[str, list], page: int = 100, network_errors: int = 0):
        self.markets = markets
        self.page = page
        self.network_errors = network_errors
        self.calls: list[tuple[str, int, int]] = []

    def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None, params=None):
        self.calls.append((symbol, since, limit))
        if symbol not in self.markets:
            raise ccxt.BadSymbol(f"fakex does not have market symbol {symbol}")
        if self.network_errors:
            self.network_errors -= 1
            raise ccxt.NetworkError("fakex GET /klines: connection reset")
        rows = [r for r in self.markets[symbol] if since is None or r[0] >= since]
        return rows[: min(limit or self.page, self.page)]


def source(exchange, tmp_path, symbols=("BTC", "ETH"), **kwargs):
    waits = []
    src = CcxtSource(
        exchange=exchange,
        symbols=list(symbols),
        start="2024-01-01",
        cache_dir=str(tmp_path),
        sleep=waits.append,
        quotes=False,  # candles only: snapshots are tested on the real client (test_ccxt_quotes)
        **kwargs,
    )
    return src, waits


def test_paginates_and_builds_a_panel(tmp_path):
    fake = FakeExchange(
        {"BTC/USDT": candles("2024-01-01", 250), "ETH/USDT": candles("2024-01-03", 150, seed=1)}
    )
    src, _ = source(fake, tmp_path)
    panel = src.load()
    assert panel.symbols == ["BTC", "ETH"] and panel.n_bars == 250
    assert panel.frame("ETH")["close"].first_valid_index() == pd.Timestamp("2024-01-03", tz="UTC")
    btc_calls = [c for c in fake.calls if c[0] == "BTC/USDT"]
    assert [c[1] for c in btc_calls[:3]] == [
        candles("2024-01-01", 1)[0][0] + k * 100 * HOUR for k in range(3)
    ]
    assert (tmp_path / "fakex" / "1h" / "BTC.parquet").exists()


def test_network_errors_are_retried_with_backoff(tmp_path):
    fake = FakeExchange({"BTC/USDT": candles("2024-01-01", 50)}, network_errors=2)
    src, waits = source(fake, tmp_path, symbols=["BTC"], retry_wait_s=0.5)
    assert src.load().n_bars == 50
    assert waits == [0.5, 1.0]


def test_persistent_network_error_gives_a_clear_error(tmp_path):
    fake = FakeExchange({"BTC/USDT": candles("2024-01-01", 50)}, network_errors=10)
    src, _ = source(fake, tmp_path, symbols=["BTC"], max_retries=2)
    with pytest.raises(DataError, match="BTC/USDT.*NetworkError"):
        src.load()


def test_exchange_error_raises_or_skips(tmp_path):
    fake = FakeExchange({"BTC/USDT": candles("2024-01-01", 50)})
    src, _ = source(fake, tmp_path, symbols=["BTC", "NOPE"])
    with pytest.raises(DataError, match="NOPE/USDT.*BadSymbol"):
        src.load()
    src, _ = source(fake, tmp_path, symbols=["BTC", "NOPE"], on_error="skip")
    _, status = src.download()
    assert status["NOPE"].startswith("BadSymbol")
    assert src.load().symbols == ["BTC"]


def test_incremental_download_fetches_only_new_bars(tmp_path):
    history = candles("2024-01-01", 300)
    fake = FakeExchange({"BTC/USDT": history[:200]})
    src, _ = source(fake, tmp_path, symbols=["BTC"])
    assert src.download()[1] == {"BTC": "+200 bars"}
    fake.markets["BTC/USDT"] = history
    fake.calls.clear()
    assert src.download()[1] == {"BTC": "+100 bars"}
    assert fake.calls[0][1] == history[200][0]
    panel = src.load()
    assert panel.n_bars == 300
    np.testing.assert_allclose(panel.close[:, 0], [r[4] for r in history])


def test_unclosed_candle_is_not_cached(tmp_path):
    now_hour = pd.Timestamp.now(tz="UTC").floor("h").value // 10**6
    rows = candles("2024-01-01", 5) + [[now_hour, 1.0, 1.0, 1.0, 1.0, 1.0]]
    src, _ = source(FakeExchange({"BTC/USDT": rows}), tmp_path, symbols=["BTC"])
    assert src.download()[1] == {"BTC": "+5 bars"}


def test_unknown_exchange_id(tmp_path):
    with pytest.raises(ValueError, match="not a ccxt exchange"):
        CcxtSource(exchange="nosuchexchange", cache_dir=str(tmp_path)).load()
