"""A local fake of Binance's public REST routes, mounted as the ``requests`` transport of
a real ``ccxt.binance`` client: the client's own request building and response parsing
run; nothing leaves the process.

Routes: ``/api/v3/exchangeInfo``, ``/api/v3/klines``, ``/api/v3/depth``,
``/api/v3/ticker/24hr``. Every request is recorded in ``calls`` (path, query).
"""

from __future__ import annotations

import json
import urllib.parse

import ccxt
import numpy as np
import requests
from requests.adapters import BaseAdapter

HOUR_MS = 3_600_000


def _market(base: str) -> dict:
    return {
        "symbol": f"{base}USDT",
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": "USDT",
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "MARKET"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "permissions": ["SPOT"],
        "permissionSets": [["SPOT"]],
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.01",
                "maxPrice": "1e6",
                "tickSize": "0.01",
            },
            {"filterType": "LOT_SIZE", "minQty": "1e-5", "maxQty": "9000", "stepSize": "1e-5"},
        ],
    }


class FakeBinance(BaseAdapter):
    """Answers Binance's public routes from an in-memory market.

    Args:
        first_bar_ms: open time of every symbol's first hourly candle.
        clock: the server's time in seconds (candles open before it are served).
        books: symbol (``BTCUSDT``) -> (bid, ask) of the order book's best levels; a symbol
            missing here answers ``/depth`` with Binance's invalid-symbol error.
        tickers: symbol -> (bid, ask) of ``/ticker/24hr``.
    """

    def __init__(self, first_bar_ms: int, clock, books: dict, tickers: dict, bases=("BTC", "ETH")):
        super().__init__()
        self.first_bar_ms = first_bar_ms
        self.clock = clock
        self.books = books
        self.tickers = tickers
        self.bases = list(bases)
        self.calls: list[tuple[str, dict]] = []

    def send(self, request, **kwargs):
        url = urllib.parse.urlparse(request.url)
        query = dict(urllib.parse.parse_qsl(url.query))
        self.calls.append((url.path, query))
        status, body = 200, None
        if url.path == "/api/v3/exchangeInfo":
            body = {"timezone": "UTC", "serverTime": int(self.clock() * 1000), "rateLimits": []}
            body["symbols"] = [_market(b) for b in self.bases]
        elif url.path == "/api/v3/klines":
            body = self._klines(query)
        elif url.path == "/api/v3/depth":
            if query["symbol"] in self.books:
                bid, ask = self.books[query["symbol"]]
                body = {"lastUpdateId": 1, "bids": [[str(bid), "1.5"]], "asks": [[str(ask), "2.0"]]}
            else:
                status, body = 400, {"code": -1121, "msg": "Invalid symbol."}
        elif url.path == "/api/v3/ticker/24hr":
            bid, ask = self.tickers[query["symbol"]]
            body = {"symbol": query["symbol"], "bidPrice": str(bid), "askPrice": str(ask)}
            body |= {"lastPrice": str(ask), "closeTime": int(self.clock() * 1000)}
        else:
            status, body = 404, {"code": -1, "msg": f"no route {url.path}"}
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = request.url
        response.request = request
        return response

    def _klines(self, query: dict) -> list:
        step = HOUR_MS
        start = max(int(query.get("startTime", self.first_bar_ms)), self.first_bar_ms)
        start = self.first_bar_ms + -(-(start - self.first_bar_ms) // step) * step
        now = int(self.clock() * 1000)
        rows = []
        for t in range(start, now, step):
            if len(rows) >= int(query.get("limit", 500)):
                break
            k = (t - self.first_bar_ms) // step
            close = 100 * np.exp(0.01 * np.sin(k / 5.0))
            o, h, lo = close * 0.999, close * 1.004, close * 0.996
            rows.append([t, str(o), str(h), str(lo), str(close), "5.0", t + step - 1, "500", 10])
        return rows

    def close(self):
        pass


def binance_client(adapter: FakeBinance) -> ccxt.binance:
    """A real ccxt binance client (spot markets only) whose transport is ``adapter``."""
    client = ccxt.binance(
        {"enableRateLimit": False, "options": {"fetchMarkets": {"types": ["spot"]}}}
    )
    client.session.mount("https://", adapter)
    return client
