"""data=ccxt quote snapshots and taker fees, through the real ccxt binance client whose
``requests`` transport is a local fake of Binance's REST routes (``fake_binance``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from fake_binance import FakeBinance, binance_client
from hydra import compose, initialize_config_dir

from huracan.costs import SpreadTier, estimate_spreads
from huracan.data.exchange import SNAPSHOT_FIELD, CcxtSource
from huracan.run import resolve_fee

START = pd.Timestamp("2024-02-20", tz="UTC")
TIERS = [SpreadTier(0.0, 15.0)]


class Clock:
    def __init__(self, when: str):
        self.now = pd.Timestamp(when, tz="UTC")

    def __call__(self) -> float:
        return self.now.value / 1e9


def setup(tmp_path, books=None, clock=None):
    clock = clock or Clock("2024-03-01 00:30")
    books = {"BTCUSDT": (100.0, 100.02), "ETHUSDT": (50.0, 50.05)} if books is None else books
    tickers = {"BTCUSDT": (100.0, 100.04), "ETHUSDT": (50.0, 50.1)}
    fake = FakeBinance(START.value // 10**6, clock, books, tickers)
    source = CcxtSource(
        exchange=binance_client(fake),
        symbols=["BTC", "ETH"],
        start=str(START.date()),
        cache_dir=str(tmp_path),
        sleep=lambda s: None,
        clock=clock,
    )
    return source, fake, clock


def test_snapshots_accumulate_and_enter_only_closed_bars(tmp_path):
    source, fake, clock = setup(tmp_path)
    _, status = source.download()
    assert "spread 2.00 bps (order_book)" in status["BTC"]
    assert {path for path, _ in fake.calls} >= {"/api/v3/exchangeInfo", "/api/v3/depth"}
    depth = [q for p, q in fake.calls if p == "/api/v3/depth"]
    assert depth[0] == {"symbol": "BTCUSDT", "limit": "5"}
    quotes = pd.read_parquet(tmp_path / "binance" / "1h" / "BTC.quotes.parquet")
    assert list(quotes.columns) == ["timestamp", "bid", "ask", "spread_bps", "source"]
    assert quotes["spread_bps"].iloc[0] == pytest.approx(0.02 / 100.01 * 1e4)
    # the snapshot was taken during the 00:00 bar, still open: not in this run's panel
    panel = source.load()
    assert panel.timestamps[-1] < pd.Timestamp("2024-03-01 00:00", tz="UTC")
    assert SNAPSHOT_FIELD not in panel.bars
    clock.now = pd.Timestamp("2024-03-01 02:30", tz="UTC")
    panel = source.load()  # a later run: the 00:00 bar has closed and carries it
    snap = panel.frame("BTC")[SNAPSHOT_FIELD]
    assert snap.notna().sum() == 1
    assert snap.first_valid_index() == pd.Timestamp("2024-03-01 00:00", tz="UTC")
    assert snap.dropna().iloc[0] == pytest.approx(0.02 / 100.01 * 1e4)
    assert len(pd.read_parquet(tmp_path / "binance" / "1h" / "BTC.quotes.parquet")) == 3
    assert "spread_bps" not in panel.bars  # features and labels never see the sparse quotes


def test_order_book_refused_falls_back_to_the_ticker(tmp_path):
    source, fake, _ = setup(tmp_path, books={"BTCUSDT": (100.0, 100.02)})
    _, status = source.download()
    assert "(ticker)" in status["ETH"] and "(order_book)" in status["BTC"]
    assert ("/api/v3/ticker/24hr", {"symbol": "ETHUSDT"}) in fake.calls
    quotes = pd.read_parquet(tmp_path / "binance" / "1h" / "ETH.quotes.parquet")
    assert quotes["source"].tolist() == ["ticker"]
    assert quotes["spread_bps"].iloc[0] == pytest.approx(0.1 / 50.05 * 1e4)


def _cfg(*overrides):
    with initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"):
        return compose("config", overrides=["data=ccxt", *overrides])


def test_fee_from_the_exchange_unless_the_config_sets_one(tmp_path):
    source, _, _ = setup(tmp_path)
    panel = source.load()
    assert source.taker_fee_bps == {"BTC": pytest.approx(10.0), "ETH": pytest.approx(10.0)}
    cfg = _cfg()
    assert cfg.costs.fee_bps is None
    assert "exchange taker" in resolve_fee(cfg, source, panel.symbols)
    assert cfg.costs.fee_bps == pytest.approx(10.0)
    cfg = _cfg("costs.fee_bps=7.5")
    assert "(config)" in resolve_fee(cfg, source, panel.symbols)
    assert cfg.costs.fee_bps == 7.5
    cfg = _cfg()
    assert "(default)" in resolve_fee(cfg, object(), panel.symbols)
    assert cfg.costs.fee_bps == 7.5


def _snapshot_panel(tmp_path):
    """Three hourly downloads, each leaving a snapshot, then a run after the last."""
    source, _, clock = setup(tmp_path)
    for when in ("2024-03-01 00:30", "2024-03-01 01:30", "2024-03-01 02:30"):
        clock.now = pd.Timestamp(when, tz="UTC")
        source.download()
    clock.now = pd.Timestamp("2024-03-01 05:10", tz="UTC")
    return source.load()


def test_calibration_uses_snapshots_before_the_window_only(tmp_path):
    panel = _snapshot_panel(tmp_path)
    options = dict(tiers=TIERS, slippage_bps_per_sigma=1.0, window_days=5, min_bars=50)
    row = int(panel.timestamps.get_loc(pd.Timestamp("2024-03-01 03:00", tz="UTC")))
    fits = estimate_spreads(panel, end_row=row, **options)
    btc = fits["BTC"]
    assert btc.method == "ccxt_snapshot" and btc.n_bars > 50
    assert btc.base_spread_bps == pytest.approx(0.02 / 100.01 * 1e4)
    assert fits["ETH"].base_spread_bps == pytest.approx(0.05 / 50.025 * 1e4)
    assert "3 ccxt bid/ask snapshots" in btc.note
    # a window that ends where the first snapshot's bar starts never reads it
    first = int(panel.timestamps.get_loc(pd.Timestamp("2024-03-01 00:00", tz="UTC")))
    before = estimate_spreads(panel, end_row=first, **options)["BTC"]
    assert before.method != "ccxt_snapshot"
    # one snapshot in the window: its spread, no standard error
    one = estimate_spreads(panel, end_row=first + 1, **options)["BTC"]
    assert one.method == "ccxt_snapshot" and one.spread_se_bps is None
    # min_snapshots above what the window holds: the next source down
    fewer = estimate_spreads(panel, end_row=row, min_snapshots=4, **options)["BTC"]
    assert fewer.method != "ccxt_snapshot"


def test_a_quoted_column_outranks_snapshots(tmp_path):
    panel = _snapshot_panel(tmp_path)
    quoted = np.full(panel.close.shape, 3.0)
    panel = replace(panel, bars={**panel.bars, "spread_bps": quoted})
    fit = estimate_spreads(
        panel, end_row=panel.n_bars, tiers=TIERS, slippage_bps_per_sigma=1.0, window_days=5
    )["BTC"]
    assert fit.method == "quoted" and fit.base_spread_bps == pytest.approx(3.0)
