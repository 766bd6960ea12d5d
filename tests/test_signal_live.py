"""The signal CLI's live inputs: the fleet on Dropbox (``--root dropbox:/PATH``) and the bars
from a ccxt exchange (``--exchange``), each through the real client with a fake transport.

The fleet is trained without the spread feature: an exchange's candles carry no quoted
spread, so only such a fleet can be served from them.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import ccxt
import dropbox.dropbox_client
import numpy as np
import pandas as pd
import pytest
import requests
from fake_dropbox import FakeDropboxAdapter
from requests.adapters import BaseAdapter
from test_per_coin import per_coin_config

from huracan.run import train
from huracan.serve import Fleet, ServeConfig
from huracan.signal import main
from huracan.store import LocalStore
from huracan.store.dropbox_store import DropboxStore

FEATURES = "features.names=[returns,realized_vol,parkinson_vol,rsi,macd,atr,bollinger,volume_z]"


@pytest.fixture(scope="module")
def fleet_root(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    cfg = per_coin_config(tmp, "debug=fast", "data.n_assets=4", FEATURES)
    cfg.pipeline.champion_min_trades = 0  # every coin a champion: every coin served
    _, objects = train(cfg)
    return tmp / "artifacts", objects["panel"]


def expected_signals(root, panel) -> pd.DataFrame:
    fleet = Fleet.load(root, config=ServeConfig(expire_hours=None))
    return fleet.signals(panel).set_index("symbol")


class FakeBinance(BaseAdapter):
    """Binance's REST API as ccxt calls it for candles: exchange info and klines, from a panel."""

    def __init__(self, panel):
        super().__init__()
        self.panel = panel
        self.paths: list[str] = []

    def send(self, request, **kwargs):
        url = urlparse(request.url)
        self.paths.append(url.path)
        if url.path.endswith("exchangeInfo"):
            spot = url.path.startswith("/api/")
            body = {"timezone": "UTC", "serverTime": 0, "symbols": self._markets() if spot else []}
        elif url.path == "/api/v3/klines":
            body = self._klines(parse_qs(url.query))
        else:
            return self._response(request, 404, {"code": -1, "msg": f"no {url.path}"})
        return self._response(request, 200, body)

    def close(self):
        pass

    def _markets(self):
        return [
            {
                "symbol": f"{s}USDT",
                "status": "TRADING",
                "baseAsset": s,
                "quoteAsset": "USDT",
                "baseAssetPrecision": 8,
                "quoteAssetPrecision": 8,
                "filters": [],
                "permissions": ["SPOT"],
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "orderTypes": ["LIMIT", "MARKET"],
            }
            for s in self.panel.symbols
        ]

    def _klines(self, query):
        symbol = query["symbol"][0].removesuffix("USDT")
        start, limit = int(query.get("startTime", ["0"])[0]), int(query["limit"][0])
        frame = self.panel.frame(symbol).dropna(subset=["close"])
        ms = frame.index.as_unit("ms").asi8
        frame = frame[ms >= start].iloc[:limit]
        return [
            [int(t), repr(r.open), repr(r.high), repr(r.low), repr(r.close), repr(r.volume)]
            + [int(t) + 3_599_999, "0", 1, "0", "0", "0"]
            for t, r in zip(frame.index.as_unit("ms").asi8, frame.itertuples(), strict=True)
        ]

    @staticmethod
    def _response(request, status, body):
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json"
        response.url, response.request = request.url, request
        return response


def test_signals_from_an_exchange_equal_those_from_the_same_bars(fleet_root, tmp_path, monkeypatch):
    root, panel = fleet_root
    adapter = FakeBinance(panel)

    class Binance(ccxt.binance):  # the real ccxt client, its HTTP answered by the fake
        def __init__(self, config=None):
            super().__init__(config or {})
            self.session.mount("https://", adapter)

    monkeypatch.setattr(ccxt, "binance", Binance)
    fleet = Fleet.load(root)
    since = panel.timestamps[-fleet.bars_needed - 5]
    out = tmp_path / "signals.json"
    argv = ["--root", str(root), "--exchange", "binance", "--since", str(since)]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--expire-hours", "0", "--out", str(out)]
    assert main(argv) == 0
    assert "/api/v3/klines" in adapter.paths  # through ccxt's own transport
    rows = {r["symbol"]: r for r in json.loads(out.read_text())["signals"]}
    expected = expected_signals(root, panel)
    assert sorted(rows) == sorted(expected.index)
    for symbol, row in rows.items():
        want = expected.loc[symbol]
        assert pd.Timestamp(row["bar_time"]) == want["bar_time"]
        assert row["probability"] is not None, row["reasons"]
        assert row["probability"] == pytest.approx(want["probability"], abs=1e-6)
        assert row["trade"] == want["trade"]


def test_signals_from_a_fleet_on_dropbox(fleet_root, tmp_path, monkeypatch, capsys):
    root, panel = fleet_root
    adapter = FakeDropboxAdapter()

    def create_session(*args, **kwargs):
        session = requests.Session()
        session.mount("https://", adapter)
        return session

    monkeypatch.setattr(dropbox.dropbox_client, "create_session", create_session)
    monkeypatch.setenv("DROPBOX_ACCESS_TOKEN", "test-token")
    monkeypatch.delenv("DROPBOX_REFRESH_TOKEN", raising=False)
    remote, local = DropboxStore("/huracan"), LocalStore(root)
    for key in local.list():
        remote.write_bytes(key, local.read_bytes(key))
    bars = tmp_path / "bars"
    bars.mkdir()
    for symbol in panel.symbols:
        frame = panel.frame(symbol).reset_index()
        frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        frame.to_csv(bars / f"{symbol}.csv", index=False)
    out = tmp_path / "signals.json"
    argv = ["--data", str(bars), "--expire-hours", "0", "--out", str(out)]
    assert main(["--root", "dropbox:/huracan", *argv]) == 0
    remote_rows = json.loads(out.read_text())["signals"]
    assert main(["--root", str(root), *argv]) == 0
    assert json.loads(out.read_text())["signals"] == remote_rows
    assert any(path.startswith("/huracan/champions/") for path in adapter.files)
    assert np.isfinite([r["probability"] for r in remote_rows if r["probability"]]).all()
    capsys.readouterr()


def test_an_unknown_exchange_is_one_line(fleet_root, capsys):
    root, _ = fleet_root
    assert main(["--root", str(root), "--exchange", "nosuchexchange"]) == 2
    assert "not a ccxt exchange id" in capsys.readouterr().err
