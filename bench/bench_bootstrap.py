"""Bootstrap coverage: does the nominal 95 % interval of expectancy cover the true mean?

Synthetic daily P&L with a known mean (0.1 % a day): AR(1) noise of lag-one
autocorrelation phi (the overlap of multi-day holds, slow-moving edges) and a two-regime
Markov market whose mean and volatility persist for about 30 days. For each process and
series length, 400 series are drawn; each gets the interval of single days resampled (the
bootstrap before the moving-block one) and the pipeline's moving-block interval
(``significance.day_statistics`` with one-day holds: ``block_days``). The share of series
whose interval holds the true mean is the coverage; 95 % is nominal::

    .venv/bin/python bench/bench_bootstrap.py
"""

from __future__ import annotations

import numpy as np
from _util import print_table, verdict
from statsmodels.tsa.arima_process import ArmaProcess

from huracan.significance import block_days, block_draws, day_statistics

MEAN = 0.001  # the true daily mean, as a fraction
SERIES = 400
N_BOOT = 1000
HOLD_DAYS = 1.0  # 24 bars of 1h: the per-coin pipeline's longest default hold


def ar1(n_days: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    """(n_days, SERIES) P&L: MEAN plus AR(1) noise of unit-free sd 1 %."""
    process = ArmaProcess(ar=[1, -phi])
    noise = process.generate_sample(
        (n_days, SERIES), scale=0.01 * np.sqrt(1 - phi**2), distrvs=rng.standard_normal, burnin=200
    )
    return MEAN + noise


def regimes(n_days: int, rng: np.random.Generator, stay: float = 30 / 31) -> np.ndarray:
    """(n_days, SERIES) P&L of a two-regime market (mean MEAN +- 0.4 %, sd 2 % or 0.5 %),
    each regime lasting 1 / (1 - stay) days on average; the stationary mean is MEAN."""
    flips = rng.random((n_days, SERIES)) > stay
    state = (rng.integers(0, 2, SERIES) + np.cumsum(flips, axis=0)) % 2
    mean = np.where(state == 1, MEAN + 0.004, MEAN - 0.004)
    return mean + np.where(state == 1, 0.02, 0.005) * rng.standard_normal((n_days, SERIES))


def coverage_single_days(daily: np.ndarray, seed: int) -> float:
    """Coverage of the interval that resamples single days (blocks of one)."""
    n_days = len(daily)
    means = block_draws(n_days, 1, N_BOOT, seed) @ daily / n_days
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    return float(((low <= MEAN) & (MEAN <= high)).mean())


def coverage_blocks(daily: np.ndarray, seed: int) -> float:
    """Coverage of the pipeline's moving-block interval (one trade a day)."""
    n_days = len(daily)
    day = np.arange(n_days)
    _, low, high = day_statistics(
        day, daily, np.ones_like(daily), N_BOOT, seed, hold_days=HOLD_DAYS
    )
    return float(((low <= MEAN) & (MEAN <= high)).mean())


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for n_days in (20, 60, 120, 360):
        cases = [(f"AR(1) phi={phi}", ar1(n_days, phi, rng)) for phi in (0.0, 0.3, 0.6, 0.8)]
        cases.append(("regimes of ~30 days", regimes(n_days, rng)))
        for name, daily in cases:
            rows.append(
                {
                    "process": name,
                    "days": n_days,
                    "block": block_days(n_days, HOLD_DAYS),
                    "single days": round(coverage_single_days(daily, 1), 3),
                    "blocks": round(coverage_blocks(daily, 1), 3),
                }
            )
    print_table(
        f"coverage of the nominal 95 % interval ({SERIES} series each, {N_BOOT} draws)", rows
    )
    # one standard error of a coverage near 0.9 over 400 series is 0.015
    not_worse = all(r["blocks"] >= r["single days"] - 0.03 for r in rows)
    persistent = [r for r in rows if r["process"] == "AR(1) phi=0.6" and r["days"] >= 120]
    print(
        f"\nblocks never cover worse than single days (-0.03): {verdict(not_worse)}"
        f"\nAR(1) phi=0.6, 120+ days: blocks cover >= 0.85: "
        f"{verdict(all(r['blocks'] >= 0.85 for r in persistent))}"
    )


if __name__ == "__main__":
    main()
