"""Slippage calibration and per-symbol metrics: speed at fleet scale, and what real data says.

Times the candle calibration and ``symbol_metrics`` on a 400-coin, 2-year hourly synthetic
market, the tick calibration on the Binance capture, and prints the fits of the real
Binance 1h coins (30 days to 2024-05-08) from both candle estimators::

    .venv/bin/python bench/bench_costs.py
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from _util import SHARED_DATA, print_table, verdict

from huracan.costs import (
    CostModel,
    calibrate_slippage_from_candles,
    calibrate_slippage_from_ticks,
    symbol_metrics,
)
from huracan.data import CsvSource, SyntheticMarket
from huracan.features.labels import after_cost_labels, forward_return
from huracan.features.technical import realized_volatility

REAL_TRAIN_END = "2024-05-08"  # the last day of the full-history coins' 1h files
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


def real_candle_table() -> pd.DataFrame | None:
    path = SHARED_DATA / "binance_spot" / "1h"
    if not path.is_dir():
        return None
    panel = CsvSource(path).load()
    columns = {}
    for estimator in ("abdi_ranaldo", "corwin_schultz"):
        fits = calibrate_slippage_from_candles(panel, train_end=REAL_TRAIN_END, estimator=estimator)
        columns[f"{estimator}_base_bps"] = [f.base_spread_bps for f in fits.values()]
        columns[f"{estimator}_slip"] = [f.slippage_bps_per_sigma for f in fits.values()]
        columns[f"{estimator}_r2"] = [f.r2 for f in fits.values()]
    return pd.DataFrame(columns, index=pd.Index(panel.symbols, name="symbol")).round(2)


def main() -> None:
    print_table("Fleet scale (400 coins, 2 years of 1h bars)", fleet_rows())
    ticks = tick_rows()
    if ticks:
        print_table("Ticks (Binance spot, about 11 minutes)", ticks)
    real = real_candle_table()
    if real is not None:
        print(f"\nBinance 1h, 30 days to {REAL_TRAIN_END}: candle fits")
        print("(base spread in bps; slippage per side per 1 % of hourly volatility)")
        print(real.to_string())
        print("\nmedian over coins:")
        print(real.median().to_string())


if __name__ == "__main__":
    main()
