"""Cost model, spread estimators, slippage calibration and per-symbol after-cost metrics."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bidask import edge

from huracan.costs import (
    SYMBOL_COLUMNS,
    WINDOW_ESTIMATORS,
    CostModel,
    SlippageFit,
    SpreadTier,
    abdi_ranaldo_spread,
    calibrate_slippage_from_candles,
    calibrate_slippage_from_ticks,
    corwin_schultz_spread,
    cost_arrays,
    estimate_spreads,
    jackknife_spread,
    spread_from_ticks,
    symbol_metrics,
    tier_spread,
)
from huracan.costs.edge import edge_columns
from huracan.data.panel import Panel
from huracan.errors import ConfigError, DataError
from huracan.metrics import asset_metrics

TICKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "binance_ticks"


def simulate_bars(
    n_bars: int,
    n_assets: int,
    sigma: float | np.ndarray,
    spread: float | np.ndarray,
    trades_per_bar: int = 100,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OHLC of trades at the bid or the ask (at random) around a random-walk mid.

    ``sigma`` (per-bar volatility) and ``spread`` (full spread) are fractions, scalars or
    (T, N).
    """
    rng = np.random.default_rng(seed)
    shape = (n_bars, 1, n_assets)
    sigma = np.broadcast_to(np.asarray(sigma, float), (n_bars, n_assets)).reshape(shape)
    spread = np.broadcast_to(np.asarray(spread, float), (n_bars, n_assets)).reshape(shape)
    steps = rng.normal(0, 1, (n_bars, trades_per_bar, n_assets)) * sigma / np.sqrt(trades_per_bar)
    log_mid = np.cumsum(steps.reshape(-1, n_assets), axis=0).reshape(steps.shape)
    side = rng.choice([-1.0, 1.0], steps.shape)
    price = 100 * np.exp(log_mid) * (1 + side * spread / 2)  # (T, trades, N)
    return price[:, 0], price.max(1), price.min(1), price[:, -1]


def make_panel(
    bars: tuple[np.ndarray, ...], spread_bps: np.ndarray | None = None, freq: str = "1h"
) -> Panel:
    open_, high, low, close = (np.array(b, dtype=float) for b in bars)
    fields = {"open": open_, "high": high, "low": low, "close": close}
    fields["volume"] = np.ones_like(close)
    if spread_bps is not None:
        fields["spread_bps"] = np.array(spread_bps, dtype=float)
    timestamps = pd.date_range("2024-01-01", periods=len(close), freq=freq, tz="UTC")
    symbols = [f"C{j}" for j in range(close.shape[1])]
    return Panel(timestamps, symbols, fields, freq, np.zeros(close.shape, dtype=bool))


# --- the cost model ----------------------------------------------------------------------
def test_cost_model_round_trip_is_unchanged():
    model = CostModel(fee_bps=5.0, spread_bps=3.0, slippage_bps_per_sigma=2.0)
    assert model.round_trip_bps() == 13.0
    assert CostModel().round_trip_bps() == 2 * 7.5 + 2.0
    spread = np.array([[1.0, np.nan]])
    vol = np.array([[0.01, np.nan]])  # 1 % -> 2 bps per side; NaN -> no slippage
    np.testing.assert_allclose(model.round_trip_bps(spread, vol), [[10 + 1 + 4, 10 + 3 + 0]])
    np.testing.assert_allclose(model.round_trip_bps(None, vol), [[17.0, 13.0]])
    np.testing.assert_allclose(model.slippage_bps(vol), [[4.0, 0.0]])
    assert model.slippage_bps() == 0.0


# --- spread estimators -------------------------------------------------------------------
@pytest.mark.parametrize("estimator", [corwin_schultz_spread, abdi_ranaldo_spread])
def test_estimators_recover_a_known_spread(estimator):
    spread = np.array([0.002, 0.004, 0.006])  # 20, 40 and 60 bps against 50 bps per bar
    bars = simulate_bars(3000, 3, sigma=0.005, spread=spread, seed=1)
    whole = estimator(*bars[1:], window=3000)[-1]  # the sample's average estimate
    assert whole.shape == (3,)
    tolerance = 0.35 if estimator is corwin_schultz_spread else 0.15
    np.testing.assert_allclose(whole, spread, rtol=tolerance)
    two_bar = estimator(*bars[1:])
    assert np.isnan(two_bar[0]).all() and (two_bar[1:] >= 0).all()


def test_known_biases_of_the_estimators():
    """Documented in huracan.costs: CS reads too low with discrete trades, clipping reads high."""
    bars = simulate_bars(3000, 2, sigma=np.array([0.004, 0.012]), spread=0.002, seed=2)
    cs_averaged = corwin_schultz_spread(*bars[1:], window=3000)[-1]
    assert (cs_averaged < 0.9 * 0.002).all() and cs_averaged[1] < cs_averaged[0]
    ar_clipped_two_bar = np.nanmean(abdi_ranaldo_spread(*bars[1:]), axis=0)
    assert ar_clipped_two_bar[1] > 2 * 0.002  # the bias grows with volatility
    assert ar_clipped_two_bar[1] > 1.5 * ar_clipped_two_bar[0]


def test_estimators_are_causal():
    bars = simulate_bars(200, 2, sigma=0.005, spread=0.002, seed=3)
    changed = [b.copy() for b in bars]
    for b in changed:
        b[150:] *= 1.05
    for estimator in (corwin_schultz_spread, abdi_ranaldo_spread):
        before = estimator(*bars[1:], window=10)[:150]
        np.testing.assert_array_equal(before, estimator(*changed[1:], window=10)[:150])


# --- calibration from candles ------------------------------------------------------------
def planted_quotes(n_bars: int = 24 * 40, seed: int = 0):
    """Bars whose quoted spread is a known line in a slowly varying volatility."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_bars)[:, None]
    volatility = 0.004 + 0.003 * np.sin(2 * np.pi * t / 150 + np.array([0.0, 1.0, 2.0]))
    base, slip = np.array([5.0, 1.0, 12.0]), np.array([2.0, 6.0, 0.5])
    spread_bps = base + 2 * slip * 100 * volatility + rng.normal(0, 0.3, volatility.shape)
    bars = simulate_bars(n_bars, 3, sigma=volatility, spread=spread_bps / 1e4, seed=seed)
    return make_panel(bars, spread_bps), volatility, base, slip


def test_fit_recovers_a_planted_slope_from_quoted_spreads():
    panel, volatility, base, slip = planted_quotes()
    fits = calibrate_slippage_from_candles(
        panel, train_rows=np.arange(panel.n_bars), volatility=volatility
    )
    assert list(fits) == panel.symbols
    got_slip = np.array([f.slippage_bps_per_sigma for f in fits.values()])
    got_base = np.array([f.base_spread_bps for f in fits.values()])
    np.testing.assert_allclose(got_slip, slip, rtol=0.05)
    np.testing.assert_allclose(got_base, base, rtol=0.05, atol=0.2)
    for fit in fits.values():
        assert fit.method == "quoted" and fit.r2 > 0.9 and fit.note == ""
        assert fit.n_bars == 30 * 24  # the last 30 days, one observation per bar


def test_fit_recovers_a_planted_slope_from_candles():
    """Spread regimes that follow volatility, read back by Abdi-Ranaldo from OHLC alone."""
    n_bars, n_assets = 24 * 90, 24
    rng = np.random.default_rng(4)
    regime = np.repeat(rng.choice([0.002, 0.004, 0.008], (n_bars // 480 + 1, n_assets)), 480, 0)
    sigma = regime[:n_bars]  # 20-day volatility regimes
    spread_bps = 10.0 + 2 * 10.0 * 100 * sigma  # base 10 bps, 10 bps per side per 1 %
    panel = make_panel(simulate_bars(n_bars, n_assets, sigma, spread_bps / 1e4, seed=4))
    fits = calibrate_slippage_from_candles(panel, train_rows=np.arange(n_bars), window_days=90)
    slips = np.array([f.slippage_bps_per_sigma for f in fits.values()])
    bases = np.array([f.base_spread_bps for f in fits.values()])
    # Each symbol's slope is noisy (about 5 bps per 1 % here); the fleet's mean is not, but
    # it reads low, as noisier high-volatility bins pull their square roots down.
    assert 10.0 * 0.6 < slips.mean() < 10.0 * 1.4
    assert 10.0 * 0.6 < bases.mean() < 10.0 * 1.4
    assert {f.method for f in fits.values()} == {"abdi_ranaldo"}


def test_calibration_reads_nothing_after_the_training_end():
    panel, _, _, _ = planted_quotes()
    ohlc = simulate_bars(panel.n_bars, 3, sigma=0.005, spread=0.001, seed=9)
    panels = {"quoted": panel, "candles": make_panel(ohlc)}
    end = 24 * 35
    for name, before in panels.items():
        after = replace(before, bars={k: v.copy() for k, v in before.bars.items()})
        for values in after.bars.values():
            values[end:] *= np.random.default_rng(0).uniform(0.5, 2.0, values[end:].shape)
        train = np.arange(end)
        fit_before = calibrate_slippage_from_candles(before, train_rows=train)
        fit_after = calibrate_slippage_from_candles(after, train_rows=train)
        assert {k: f.to_dict() for k, f in fit_before.items()} == {
            k: f.to_dict() for k, f in fit_after.items()
        }, name
        by_time = calibrate_slippage_from_candles(after, train_end=before.timestamps[end])
        assert by_time == fit_after
        fit = fit_after["C0"]
        assert fit.fit_date == before.timestamps[end - 1].isoformat() == fit.window_end
        assert pd.Timestamp(fit.window_start) > before.timestamps[end - 1] - pd.Timedelta(days=30)

    moved = replace(before, bars={k: v.copy() for k, v in before.bars.items()})
    moved.bars["high"][end - 2] *= 1.01  # inside the window: the fit must see it
    assert calibrate_slippage_from_candles(moved, train_rows=train) != fit_before


def test_short_or_missing_history_falls_back_and_says_so():
    bars = [b.copy() for b in simulate_bars(24 * 40, 3, sigma=0.005, spread=0.002, seed=5)]
    for b in bars:
        b[: -24 * 3, 1] = np.nan  # listed three days before the training end
        b[:, 2] = np.nan  # no bars at all
    panel = make_panel(bars)
    panel.filled[-200:-152, 0] = True  # filled bars give no observation
    default = CostModel(fee_bps=10.0, spread_bps=7.0, slippage_bps_per_sigma=3.0)
    fits = calibrate_slippage_from_candles(
        panel, train_rows=np.arange(panel.n_bars), min_bars=100, default=default
    )
    full, short, empty = fits.values()
    assert full.method == "abdi_ranaldo" and not full.note.startswith("fallback")
    assert full.n_bars == 30 * 24 - 48 - 1  # the filled bars, and the first pair after them
    assert short.method == "default" and short.note.startswith("fallback")
    assert "< 100" in short.note
    assert (short.base_spread_bps, short.slippage_bps_per_sigma) == (7.0, 3.0)
    assert 0 < short.n_bars < 100 and np.isnan(short.r2)
    assert empty.n_bars == 0 and empty.window_start is None and empty.note.startswith("fallback")
    json.dumps([f.to_dict() for f in fits.values()], allow_nan=False)


def test_quotes_are_used_per_symbol_where_they_exist():
    panel, volatility, _, _ = planted_quotes()
    panel.bars["spread_bps"][:, 1] = np.nan
    fits = calibrate_slippage_from_candles(
        panel,
        train_rows=np.arange(panel.n_bars),
        volatility=volatility,
        estimator="corwin_schultz",
    )
    assert [f.method for f in fits.values()] == ["quoted", "corwin_schultz", "quoted"]


def test_bad_calibration_settings_are_clear_errors():
    panel, _, _, _ = planted_quotes(24 * 5)
    with pytest.raises(ConfigError, match="exactly one"):
        calibrate_slippage_from_candles(panel)
    with pytest.raises(ConfigError, match="estimator"):
        calibrate_slippage_from_candles(panel, train_rows=[10], estimator="roll")
    with pytest.raises(ConfigError, match="no bar before"):
        calibrate_slippage_from_candles(panel, train_end="2023-01-01")
    with pytest.raises(ConfigError, match="min_bars"):
        calibrate_slippage_from_candles(panel, train_rows=[10], min_bars=3)


def test_fit_round_trips_through_json_and_builds_a_cost_model():
    panel, volatility, _, _ = planted_quotes()
    fit = calibrate_slippage_from_candles(
        panel, train_rows=np.arange(panel.n_bars), volatility=volatility
    )["C1"]
    assert SlippageFit.from_dict(json.loads(json.dumps(fit.to_dict()))) == fit
    model = fit.cost_model(fee_bps=7.5)
    assert model == CostModel(7.5, fit.base_spread_bps, fit.slippage_bps_per_sigma)
    vol = np.array([[0.01]])
    fitted_line = fit.base_spread_bps + 2 * fit.slippage_bps_per_sigma * 1.0
    np.testing.assert_allclose(model.round_trip_bps(None, vol), 15.0 + fitted_line)
    np.testing.assert_allclose(
        model.round_trip_bps(np.array([[4.0]]), vol) - 4.0, 15.0 + 2 * fit.slippage_bps_per_sigma
    )
    assert fit.cost_model(7.5, spread_bps=1.5).spread_bps == 1.5


# --- calibration from ticks --------------------------------------------------------------
def synthetic_ticks(slip_bps, vol_per_minute: tuple[float, float], seed: int = 0):
    """Quotes every 100 ms around a mid whose volatility switches once; a trade 50 ms after
    each quote pays ``slip_bps(sigma_per_minute)`` per side against that quote's mid."""
    rng = np.random.default_rng(seed)
    n_quotes = 10 * 60 * 30  # 30 minutes
    per_minute = np.where(np.arange(n_quotes) < n_quotes // 2, *vol_per_minute)
    mid = 100 * np.exp(np.cumsum(rng.normal(0, 1, n_quotes) * per_minute / np.sqrt(600)))
    t0 = int(pd.Timestamp("2024-08-09", tz="UTC").value)
    quote_ns = t0 + np.arange(n_quotes) * 100_000_000
    bbo = pd.DataFrame(
        {"local_ts_ns": quote_ns, "bid": mid - 0.005, "ask": mid + 0.005, "exch_ts_ms": 0}
    )
    sold = rng.random(n_quotes) < 0.5  # the buyer was the maker: the aggressor sold
    side = np.where(sold, -1.0, 1.0)
    price = mid * (1 + side * slip_bps(100 * per_minute) / 1e4)
    trades = pd.DataFrame(
        {"local_ts_ns": quote_ns + 50_000_000, "price": price, "is_buyer_maker": sold}
    )
    return trades, bbo


def test_ticks_calibration_recovers_a_known_half_spread():
    trades, bbo = synthetic_ticks(lambda x: 0.8 + 0 * x, (0.001, 0.004))
    fit = calibrate_slippage_from_ticks(trades, bbo, symbol="SYN", timeframe="1h")
    assert fit.method == "ticks" and fit.n_bars > 17_000
    np.testing.assert_allclose(fit.base_spread_bps, 1.6, rtol=1e-9)  # twice the half spread
    np.testing.assert_allclose(fit.slippage_bps_per_sigma, 0.0, atol=1e-9)


def test_ticks_calibration_recovers_a_slope_and_converts_its_unit():
    per_side = 3.0  # bps per side per 1 % of one-minute volatility
    trades, bbo = synthetic_ticks(lambda x: 0.5 + per_side * x, (0.001, 0.004), seed=1)
    per_minute = calibrate_slippage_from_ticks(trades, bbo, symbol="SYN", timeframe="1min")
    hourly = calibrate_slippage_from_ticks(trades, bbo, symbol="SYN", timeframe="1h")
    np.testing.assert_allclose(per_minute.slippage_bps_per_sigma, per_side, rtol=0.1)
    np.testing.assert_allclose(per_minute.base_spread_bps, 1.0, rtol=0.15)
    # A 1 % hourly move is a 1/sqrt(60) % minute move: the same slippage per hourly sigma.
    np.testing.assert_allclose(
        hourly.slippage_bps_per_sigma * np.sqrt(60), per_minute.slippage_bps_per_sigma
    )
    assert hourly.base_spread_bps == per_minute.base_spread_bps


def test_ticks_calibration_uses_nothing_after_end_and_reads_text_flags():
    trades, bbo = synthetic_ticks(lambda x: 0.5 + 2.0 * x, (0.001, 0.004), seed=2)
    end = pd.Timestamp("2024-08-09 00:20", tz="UTC")
    fit = calibrate_slippage_from_ticks(trades, bbo, symbol="SYN", end=end)
    late = trades["local_ts_ns"] >= end.value
    trades2, bbo2 = trades.copy(), bbo.copy()
    trades2.loc[late, "price"] *= 1.01
    bbo2.loc[bbo2["local_ts_ns"] >= end.value, ["bid", "ask"]] *= 0.99
    trades2["is_buyer_maker"] = trades2["is_buyer_maker"].map({True: "True", False: "false"})
    assert calibrate_slippage_from_ticks(trades2, bbo2, symbol="SYN", end=end) == fit
    assert fit.fit_date == end.isoformat() and pd.Timestamp(fit.window_end) < end

    trades2.loc[3, "is_buyer_maker"] = "maybe"
    with pytest.raises(DataError, match="is_buyer_maker"):
        calibrate_slippage_from_ticks(trades2, bbo2, symbol="SYN")
    with pytest.raises(DataError, match="missing columns"):
        calibrate_slippage_from_ticks(trades.drop(columns="price"), bbo, symbol="SYN")


def test_too_few_trades_fall_back():
    trades, bbo = synthetic_ticks(lambda x: 0.5 + 0 * x, (0.001, 0.004))
    fit = calibrate_slippage_from_ticks(trades.iloc[:700], bbo, symbol="SYN", min_trades=1000)
    assert fit.method == "default" and fit.note.startswith("fallback")
    assert fit.base_spread_bps == CostModel().spread_bps


@pytest.mark.parametrize("coin", ["btcusdt", "ethusdt"])
def test_ticks_calibration_on_real_binance_ticks(coin):
    if not (TICKS / f"spot_{coin}_trades.csv.gz").is_file():
        pytest.skip(f"tick data not found at {TICKS}")
    trades = pd.read_csv(TICKS / f"spot_{coin}_trades.csv.gz")
    bbo = pd.read_csv(TICKS / f"spot_{coin}_bbo.csv.gz")
    fit = calibrate_slippage_from_ticks(trades, bbo, symbol=coin.upper())
    assert fit.n_bars > 0.8 * len(trades) and not fit.note.startswith("fallback")
    values = [fit.base_spread_bps, fit.slippage_bps_per_sigma]
    assert np.isfinite(values).all() and min(values) >= 0
    assert fit.base_spread_bps / 2 < 1.0  # effective half-spread of a major: well under 1 bp
    assert fit.slippage_bps_per_sigma < 5.0
    json.dumps(fit.to_dict(), allow_nan=False)


# --- per-symbol metrics ------------------------------------------------------------------
def test_symbol_metrics_on_a_hand_made_example():
    timestamps = pd.date_range("2024-01-01", periods=10, freq="1D", tz="UTC")
    gross = np.array(
        [[0.02, 0.01], [-0.01, 0.00], [0.03, 0.02], [0.00, -0.02], [0.01, 0.01],
         [0.02, 0.00], [-0.02, 0.01], [0.01, 0.03], [0.02, 0.00], [np.nan, np.nan]]
    )  # fmt: skip
    cost_bps = np.full_like(gross, 20.0)
    net = gross - cost_bps / 1e4
    signals = np.zeros(gross.shape, dtype=bool)
    signals[[0, 1, 2, 8, 9], 0] = True  # row 9 has no return: not a trade
    signals[[3, 7], 1] = True
    slip = np.full_like(gross, 4.0)
    table = symbol_metrics(
        signals,
        net,
        gross,
        symbols=["A", "B"],
        timestamps=timestamps,
        bars_per_year=365.0,
        cost_bps=cost_bps,
        slippage_bps=slip,
    )
    assert list(table.columns) == SYMBOL_COLUMNS and list(table.index) == ["A", "B"]
    a, b = table.loc["A"], table.loc["B"]
    assert a.n_trades == 4 and b.n_trades == 2
    assert a.hit_rate == 0.75 and b.hit_rate == 0.5
    np.testing.assert_allclose(a.net_bps, (0.018 - 0.012 + 0.028 + 0.018) * 1e4)
    np.testing.assert_allclose(a.net_return, 0.052)
    np.testing.assert_allclose(a.expectancy, 0.052 / 4)
    daily = np.array([0.018, -0.012, 0.028, 0, 0, 0, 0, 0, 0.018, 0])  # every day counts
    np.testing.assert_allclose(a.t_stat, daily.mean() / (daily.std(ddof=1) / np.sqrt(10)))
    assert a.ci_low < a.expectancy < a.ci_high
    np.testing.assert_allclose(a.gross_bps, 600.0)
    np.testing.assert_allclose(b.net_bps, (-0.022 + 0.028) * 1e4)
    # Last 7 days of the window: entries after 2024-01-03 (rows 3..9).
    np.testing.assert_allclose(a.last_7d_net_bps, 180.0)
    np.testing.assert_allclose(b.last_7d_net_bps, 60.0)
    assert a.avg_cost_bps == 20.0 and a.avg_slip_bps == 4.0
    pnl = np.where(signals[:9, 0], net[:9, 0], 0.0)
    np.testing.assert_allclose(a.sharpe, pnl.mean() / pnl.std(ddof=1) * np.sqrt(365))
    labels = np.where(np.isfinite(net), (net > 0).astype(float), np.nan)
    reference = asset_metrics(signals, labels, net, symbols=["A", "B"], bars_per_year=365.0)
    np.testing.assert_allclose(table["sharpe"], reference["sharpe"])

    derived = symbol_metrics(
        signals, net, gross, symbols=["A", "B"], timestamps=timestamps, bars_per_year=365.0
    )
    np.testing.assert_allclose(derived["avg_cost_bps"], 20.0)
    assert derived["avg_slip_bps"].isna().all()

    first_half = symbol_metrics(
        signals,
        net,
        gross,
        symbols=["A", "B"],
        timestamps=timestamps,
        bars_per_year=365.0,
        rows=np.arange(5),
    )
    assert first_half.loc["A", "n_trades"] == 3
    np.testing.assert_allclose(
        first_half.loc["A", "last_7d_net_bps"], (0.018 - 0.012 + 0.028) * 1e4
    )
    with pytest.raises(ValueError, match="timestamps"):
        symbol_metrics(
            signals, net, gross, symbols=["A", "B"], timestamps=timestamps[:5], bars_per_year=1.0
        )


# --- window estimates: EDGE, standard errors, the tier fallback --------------------------
TIERS = [SpreadTier(1e6, 1.0), SpreadTier(1e3, 5.0), SpreadTier(0.0, 20.0)]


def test_window_estimate_of_edge_is_bidasks():
    bars = simulate_bars(24 * 30, 3, sigma=0.004, spread=np.array([0.0005, 0.001, 0.002]))
    s2, se2 = jackknife_spread(*bars, "edge")
    for j in range(3):
        assert np.sign(s2[j]) * np.sqrt(abs(s2[j])) == pytest.approx(
            edge(*(b[:, j] for b in bars), sign=True)
        )
    assert (se2 > 0).all() and (s2[1:] / se2[1:] > 2).all()  # 5 bps in 40 bps bars: not


def test_edge_of_every_column_is_bidasks_bit_for_bit():
    """``costs.edge.edge_columns`` against ``bidask.edge`` per column: bars with gaps, a
    jackknife's blanked block, flat bars (the library's NaN), an all-NaN column, a column
    of two bars, and fewer than three rows."""
    bars = [b.copy() for b in simulate_bars(24 * 30, 8, sigma=0.004, spread=0.001, seed=5)]
    gaps = np.random.default_rng(5).random(bars[0].shape) < 0.05
    for b in bars:
        b[gaps] = np.nan
        b[200:272, 1] = np.nan  # a jackknife block
        b[:, 3] = np.nan
        b[2:, 4] = np.nan
    for b in bars[:3]:
        b[:, 2] = bars[3][:, 2]  # open = high = low = close
    for rows in (slice(None), slice(0, 2)):
        part = [b[rows] for b in bars]
        want = [edge(*(b[:, j] for b in part), sign=True) for j in range(8)]
        np.testing.assert_array_equal(edge_columns(*part), want)
    assert np.isfinite(edge_columns(*bars)).sum() == 5  # the library's NaNs are NaN


@pytest.mark.parametrize("estimator", WINDOW_ESTIMATORS)
def test_window_estimates_recover_a_planted_spread_with_an_honest_error(estimator):
    """Over 40 independent markets, the estimates scatter about as their errors say."""
    spread = 0.002
    bars = simulate_bars(24 * 30, 40, sigma=0.003, spread=spread, seed=11)
    s2, se2 = jackknife_spread(*bars, estimator)
    s = np.sqrt(np.maximum(s2, 0))
    assert np.median(s) == pytest.approx(spread, rel=0.3 if estimator != "corwin_schultz" else 0.5)
    z = (s2 - np.mean(s2)) / se2
    assert 0.5 < np.std(z) < 2.0  # the jackknife error is the size of the scatter


def test_estimate_falls_back_to_the_tier_default_when_not_significant():
    n = 24 * 30
    wide = simulate_bars(n, 1, sigma=0.002, spread=0.003, seed=3)
    none = simulate_bars(n, 1, sigma=0.01, spread=0.0, seed=4)
    bars = [np.hstack([a, b]) for a, b in zip(wide, none, strict=True)]
    panel = make_panel(bars)
    panel.bars["volume"] = np.hstack([np.full((n, 1), 1e5), np.full((n, 1), 10.0)])
    fits = estimate_spreads(panel, end_row=n, window_days=30, tiers=TIERS, slippage_bps_per_sigma=1)
    wide_fit, none_fit = fits["C0"], fits["C1"]
    assert wide_fit.method == "edge" and wide_fit.base_spread_bps == pytest.approx(30, rel=0.25)
    assert wide_fit.spread_se_bps > 0 and wide_fit.estimator_t > 2
    # no spread: the estimate is not significantly above 0, so the tier's default is used,
    # never a clipped 0 (volume 10 x ~100 per bar x 24 a day: the 1e3 tier)
    assert none_fit.method == "tier_default" and none_fit.base_spread_bps == 5.0
    assert none_fit.liquidity_tier == 1 and "not significantly above 0" in none_fit.note
    assert none_fit.spread_se_bps is None and none_fit.estimator_t <= 2
    assert SlippageFit.from_dict(json.loads(json.dumps(none_fit.to_dict()))) == none_fit


def test_estimate_reads_nothing_at_or_after_the_window_it_prices():
    n, end = 24 * 50, 24 * 40
    panel = make_panel(simulate_bars(n, 3, sigma=0.004, spread=0.001, seed=6))
    shifted = replace(panel, bars={k: v.copy() for k, v in panel.bars.items()})
    for values in shifted.bars.values():
        values[end:] *= np.random.default_rng(0).uniform(0.5, 2.0, values[end:].shape)
    options = {"end_row": end, "window_days": 30, "tiers": TIERS, "slippage_bps_per_sigma": 1}
    for estimator in WINDOW_ESTIMATORS:
        before = estimate_spreads(panel, estimator=estimator, **options)
        assert estimate_spreads(shifted, estimator=estimator, **options) == before
        fit = before["C0"]
        assert fit.fit_date == panel.timestamps[end].isoformat()
        assert fit.window_end == panel.timestamps[end - 1].isoformat()
        assert fit.window_start == (panel.timestamps[end] - pd.Timedelta(days=30)).isoformat()
    moved = replace(panel, bars={k: v.copy() for k, v in panel.bars.items()})
    moved.bars["high"][end - 1] *= 1.01  # the last bar before the window: it must be read
    assert estimate_spreads(moved, **options) != estimate_spreads(panel, **options)


def test_quoted_spreads_come_first_and_bad_settings_are_clear_errors():
    n = 24 * 30
    bars = simulate_bars(n, 2, sigma=0.004, spread=0.001, seed=8)
    quotes = np.full((n, 2), np.nan)
    quotes[:, 0] = 3.0
    panel = make_panel(bars, spread_bps=quotes)
    fits = estimate_spreads(panel, end_row=n, window_days=30, tiers=TIERS, slippage_bps_per_sigma=1)
    assert fits["C0"].method == "quoted" and fits["C0"].base_spread_bps == 3.0
    assert fits["C1"].method == "edge"
    options = {"end_row": n, "window_days": 30, "tiers": TIERS, "slippage_bps_per_sigma": 1}
    with pytest.raises(ConfigError, match="estimator"):
        estimate_spreads(panel, **{**options, "estimator": "roll"})
    with pytest.raises(ConfigError, match="end_row"):
        estimate_spreads(panel, **{**options, "end_row": 0})
    with pytest.raises(ConfigError, match="tier"):
        estimate_spreads(panel, **{**options, "tiers": []})


def test_tiers_match_from_the_most_liquid_down():
    spread, tier = tier_spread(np.array([5e6, 1e6, 999.0, np.nan]), TIERS[::-1])
    assert spread.tolist() == [1.0, 1.0, 20.0, 20.0] and tier.tolist() == [0, 0, 2, 2]


def test_cost_arrays_are_the_cost_models_and_report_slippage_once():
    """The slippage reported is the slippage charged: round trip = 2 fee + spread + slip."""
    fits = {
        s: SlippageFit(s, k, b, None, None, None, 0, np.nan, "edge")
        for s, k, b in (("A", 1.0, 2.0), ("B", 0.5, 7.0))
    }
    volatility = np.random.default_rng(0).uniform(0.001, 0.01, (50, 2))
    volatility[3, 1] = np.nan
    cost, slip = cost_arrays(fits, 7.5, volatility)
    for j, fit in enumerate(fits.values()):
        model = fit.cost_model(7.5)
        assert np.allclose(cost[:, j], model.round_trip_bps(None, volatility[:, j]))
        assert np.allclose(slip[:, j], model.slippage_bps(volatility[:, j]))
    assert np.allclose(cost - slip, 2 * 7.5 + np.array([2.0, 7.0]))


def test_spread_from_ticks_reads_only_the_window_before_it_prices():
    trades, bbo = synthetic_ticks(lambda x: 1.5 + 0 * x, (0.002, 0.002))
    t0 = pd.Timestamp("2024-08-09", tz="UTC")
    start, end = t0, t0 + pd.Timedelta(minutes=20)
    options = {"symbol": "X", "start": start, "end": end, "slippage_bps_per_sigma": 1.0}
    fit = spread_from_ticks(trades, bbo, **options)
    assert fit.method == "ticks" and fit.base_spread_bps == pytest.approx(3.0, abs=0.01)
    assert pd.Timestamp(fit.window_end) < end and fit.spread_se_bps < 0.01
    late = trades["local_ts_ns"].to_numpy() >= end.value
    shifted = trades.assign(price=np.where(late, trades["price"] * 1.01, trades["price"]))
    assert spread_from_ticks(shifted, bbo, **options) == fit
    assert spread_from_ticks(trades, bbo, **options, min_trades=10**6) is None
