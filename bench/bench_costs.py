"""Costs: speed at fleet scale, candle spread estimators against tick truth, real round trips.

Times the candle calibrations and ``symbol_metrics`` on a 400-coin, 2-year hourly
synthetic market and the tick calibration on the Binance capture; compares the effective
spread the BTC and ETH ticks paid with EDGE, Abdi-Ranaldo and Corwin-Schultz read from
candles; prints the distribution of the implied round trips of the 46 Binance coins under
the per-coin pipeline's default calibration (``conf/pipeline/per_coin.yaml``)::

    .venv/bin/python bench/bench_costs.py

The 1h files end 2024-05-08 and the ticks were captured on 2024-08-09, so no 1h candle
covers the tick days: the 1h estimates use the last 30 days of 1h bars, and the 1d
estimates the 90 daily bars up to the capture.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from _util import ROOT, SHARED_DATA, print_table, verdict
from omegaconf import OmegaConf

from huracan.costs import (
    WINDOW_ESTIMATORS,
    CostModel,
    SpreadTier,
    calibrate_slippage_from_candles,
    calibrate_slippage_from_ticks,
    effective_spreads,
    estimate_spreads,
    symbol_metrics,
)
from huracan.costs.model import DEFAULT_FEE_BPS
from huracan.data import CsvSource, SyntheticMarket
from huracan.features.labels import after_cost_labels, forward_return
from huracan.features.technical import realized_volatility

REAL_TRAIN_END = "2024-05-08"  # the last day of the full-history coins' 1h files
TICK_DAY = "2024-08-09"  # the Binance tick capture (2024-08-08 23:54 to 00:05)
CONF = ROOT / "huracan" / "conf"
MAX_SECONDS = 5.0  # per call, 400 coins x 2 years of hourly bars, 2-core reference machine


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def fleet_rows() -> list[dict]:
    panel = SyntheticMarket(n_assets=400, years=2.0, n_clusters=8).load()
    rows = []
    for estimator in ("abdi_ranaldo", "corwin_schultz"):
        seconds, fits = timed(
            calibrate_slippage_from_candles,
            panel,
            train_rows=np.arange(panel.n_bars - 24 * 90),
            estimator=estimator,
        )
        fallbacks = sum(f.method == "default" for f in fits.values())
        rows.append(
            _row(f"candles ({estimator}), 400 x 30 days", seconds, f"{fallbacks} fallbacks")
        )
    for estimator in WINDOW_ESTIMATORS:
        seconds, fits = timed(
            estimate_spreads,
            panel,
            end_row=panel.n_bars - 24 * 90,
            estimator=estimator,
            **pipeline_costs(),
        )
        fallbacks = sum(f.method == "tier_default" for f in fits.values())
        rows.append(
            _row(f"window + jackknife ({estimator}), 400 x 30 days", seconds, f"{fallbacks} tier")
        )
    volatility = realized_volatility(panel.close, 24, min_periods=2)
    model = CostModel()
    _, net = after_cost_labels(panel, 1, model, volatility)
    gross = forward_return(panel.close, 1)
    signals = np.random.default_rng(0).random(net.shape) < 0.1
    seconds, table = timed(
        symbol_metrics,
        signals,
        net,
        gross,
        symbols=panel.symbols,
        timestamps=panel.timestamps,
        bars_per_year=panel.bars_per_year,
        cost_bps=np.asarray(model.round_trip_bps(panel.spread_bps, volatility)),
        slippage_bps=np.asarray(model.slippage_bps(volatility)),
    )
    rows.append(_row("symbol_metrics, 400 x 2 years", seconds, f"{len(table)} symbols"))
    return rows


def _row(case: str, seconds: float, detail: str) -> dict:
    return {
        "case": case,
        "seconds": f"{seconds:.3f}",
        "detail": detail,
        "target": f"< {MAX_SECONDS:g} s",
        "result": verdict(seconds < MAX_SECONDS),
    }


def tick_rows() -> list[dict]:
    ticks = SHARED_DATA / "binance_ticks"
    rows = []
    for coin in ("btcusdt", "ethusdt"):
        if not (ticks / f"spot_{coin}_trades.csv.gz").is_file():
            continue
        trades = pd.read_csv(ticks / f"spot_{coin}_trades.csv.gz")
        bbo = pd.read_csv(ticks / f"spot_{coin}_bbo.csv.gz")
        seconds, fit = timed(calibrate_slippage_from_ticks, trades, bbo, symbol=coin.upper())
        rows.append(
            {
                "symbol": fit.symbol,
                "trades": fit.n_bars,
                "seconds": f"{seconds:.3f}",
                "half_spread_bps": f"{fit.base_spread_bps / 2:.3f}",
                "slip_bps_per_sigma": f"{fit.slippage_bps_per_sigma:.3f}",
                "note": fit.note,
            }
        )
    return rows


def pipeline_costs() -> dict:
    """The per-coin pipeline's default calibration settings, read from its config."""
    pipeline = OmegaConf.load(CONF / "pipeline" / "per_coin.yaml")
    costs = OmegaConf.load(CONF / "config.yaml").costs
    tiers = [SpreadTier(t.min_daily_quote_volume, t.spread_bps) for t in pipeline.costs.tiers]
    return {
        "window_days": pipeline.calibration_days,
        "tiers": tiers,
        "slippage_bps_per_sigma": costs.slippage_bps_per_sigma,
        "z": pipeline.costs.z,
        "n_blocks": pipeline.costs.jackknife_blocks,
    }


def tick_truth() -> dict[str, tuple[float, float, int]]:
    """Mean effective spread of each tick coin's trades: (bps, its standard error, trades)."""
    ticks = SHARED_DATA / "binance_ticks"
    truth = {}
    for coin in ("BTC", "ETH"):
        trades = ticks / f"spot_{coin.lower()}usdt_trades.csv.gz"
        if not trades.is_file():
            continue
        bbo = pd.read_csv(ticks / f"spot_{coin.lower()}usdt_bbo.csv.gz")
        spread = effective_spreads(pd.read_csv(trades), bbo, symbol=coin)["effective_bps"]
        spread = spread.dropna().to_numpy()
        truth[coin] = (spread.mean(), spread.std() / np.sqrt(len(spread)), len(spread))
    return truth


def estimator_rows(truth: dict[str, tuple[float, float, int]]) -> list[dict]:
    """Each candle estimator on BTC and ETH against the ticks' effective spread."""
    settings = pipeline_costs()
    cases = [("1h", REAL_TRAIN_END, 30.0, 100), ("1d", TICK_DAY, 90.0, 30)]
    rows = []
    for timeframe, end, days, min_bars in cases:
        path = SHARED_DATA / "binance_spot" / timeframe
        if not path.is_dir():
            continue
        panel = CsvSource(path, symbols=list(truth)).load()
        end_row = int(panel.timestamps.searchsorted(pd.Timestamp(end, tz="UTC")))
        for estimator in WINDOW_ESTIMATORS:
            fits = estimate_spreads(
                panel,
                end_row=end_row,
                estimator=estimator,
                min_bars=min_bars,
                **{**settings, "window_days": days},
            )
            for coin, (tick_bps, tick_se, _) in truth.items():
                fit = fits[coin]
                raw = fit.estimator_spread_bps
                rows.append(
                    {
                        "coin": coin,
                        "candles": f"{timeframe}, {days:g} d to {end}",
                        "estimator": estimator,
                        "ticks_bps": f"{tick_bps:.3f} +- {tick_se:.3f}",
                        "estimate_bps": "nan" if raw is None else f"{raw:.2f}",
                        "t": "nan" if fit.estimator_t is None else f"{fit.estimator_t:.2f}",
                        "ratio": "nan" if raw is None else f"{raw / tick_bps:.1f}",
                        "charged_bps": f"{fit.base_spread_bps:.2f} ({fit.method})",
                        "charged_ratio": f"{fit.base_spread_bps / tick_bps:.1f}",
                    }
                )
    return rows


def round_trip_table() -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Implied round trips of the Binance 1h coins, 30 days to 2024-05-08, every estimator."""
    path = SHARED_DATA / "binance_spot" / "1h"
    if not path.is_dir():
        return None
    panel = CsvSource(path).load()
    end_row = int(panel.timestamps.searchsorted(pd.Timestamp(REAL_TRAIN_END, tz="UTC")))
    fee = float(OmegaConf.load(CONF / "config.yaml").costs.fee_bps or DEFAULT_FEE_BPS)
    volatility = realized_volatility(panel.close, 24, min_periods=2)
    window = slice(end_row - 24 * 30, end_row)
    mean_vol = np.nanmean(np.where(panel.filled[window], np.nan, volatility[window]), 0)
    columns, methods = {}, {}
    for estimator in WINDOW_ESTIMATORS:
        fits = estimate_spreads(panel, end_row=end_row, estimator=estimator, **pipeline_costs())
        spread = np.array([f.base_spread_bps for f in fits.values()])
        slip = np.array([2 * f.slippage_bps_per_sigma * 100 for f in fits.values()]) * mean_vol
        columns[f"{estimator}_round_trip_bps"] = 2 * fee + spread + slip
        columns[f"{estimator}_raw_spread_bps"] = [f.estimator_spread_bps for f in fits.values()]
        methods[estimator] = pd.Series([f.method for f in fits.values()]).value_counts()
    table = pd.DataFrame(columns, index=pd.Index(panel.symbols, name="symbol")).astype(float)
    return table, pd.DataFrame(methods).fillna(0).astype(int)


def main() -> None:
    print_table("Fleet scale (400 coins, 2 years of 1h bars)", fleet_rows())
    ticks = tick_rows()
    if ticks:
        print_table("Ticks (Binance spot, about 11 minutes)", ticks)
    truth = tick_truth()
    if truth:
        print_table(
            "Spread from candles vs the ticks' effective spread (bps; ratio = estimate / ticks)",
            estimator_rows(truth),
        )
    real = round_trip_table()
    if real is not None:
        table, methods = real
        print(f"\nBinance 1h, 46 coins, 30 days to {REAL_TRAIN_END}: implied round trips (bps)")
        print("(fee 2 x 7.5 + spread charged + slippage at the window's mean volatility)")
        print(table.describe(percentiles=[0.1, 0.25, 0.5, 0.75, 0.9]).round(2).to_string())
        print("\nmethod used per estimator (estimate significant, else tier default):")
        print(methods.to_string())
        print("\nper coin:")
        print(table.round(2).to_string())


if __name__ == "__main__":
    main()
