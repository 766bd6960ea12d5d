"""Fractional differentiation: Huracan's FFD and choice of d against fracdiff-modern.

Runs both on the same synthetic log prices in the same process and prints one table,
with PASS/FAIL for each target from the measured values::

    .venv/bin/python bench/bench_fracdiff.py

From a git worktree, run it as ``PYTHONPATH=. /work/main/.venv/bin/python bench/...``:
a script's own folder, not the working directory, heads ``sys.path``, so without it the
editable install's ``huracan`` (another checkout) is the one timed. Both sides get the
minimum of 3 calls after one untimed warm-up call (choosing d: one cold call); the load
average is printed because the machine is shared.
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
from fracdiff import fdiff
from fracdiff.sklearn import FracdiffStat

from huracan.data.synthetic import SyntheticMarket
from huracan.features.fracdiff import FracDiff, StationaryFracDiff, ffd

D = 0.4
MIN_SPEEDUP = 3.0
MAX_ABS_DIFF = 1e-9
MAX_CHOOSE_SECONDS = 5.0


def best_of(repeat: int, fn, *args, warm_up: bool = True, **kwargs) -> tuple[float, object]:
    """Fastest wall time of ``repeat`` calls after one untimed call (one-time costs: FFT
    plans, thread pools, first-touch of the allocator's pages; both sides get it), and the
    last result."""
    if warm_up:
        fn(*args, **kwargs)
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
    return min(seconds), result


def log_close(n_assets: int, years: float, seed: int, **market) -> np.ndarray:
    return np.log(SyntheticMarket(n_assets=n_assets, years=years, seed=seed, **market).load().close)


def ffd_rows(prices: np.ndarray) -> list[tuple]:
    """The function and the estimator against ``fdiff``, min of 3 each, in this run."""
    rows = []
    shape = f"{prices.shape[1]} x {len(prices)}"
    for window in (100, 1000):
        theirs_s, theirs = best_of(3, fdiff, prices, D, axis=0, window=window, mode="valid")
        estimator = FracDiff(D, threshold=0.0, max_window=window)
        for name, fn in (
            ("ffd", lambda w=window: ffd(prices, D, threshold=0.0, max_window=w)),
            ("FracDiff.fit_transform", lambda e=estimator: e.fit_transform(prices)),
        ):
            ours_s, ours = best_of(3, fn)
            ours = ours[window - 1 :]
            same_gaps = np.array_equal(np.isnan(ours), np.isnan(theirs))
            diff = np.nanmax(np.abs(ours - theirs)) if same_gaps else np.inf
            passed = diff <= MAX_ABS_DIFF and theirs_s / ours_s >= MIN_SPEEDUP
            target = f">= {MIN_SPEEDUP:g}x, <= {MAX_ABS_DIFF:g}"
            rows.append(
                (f"{name} {shape}, window {window}", ours_s, theirs_s, diff, target, passed)
            )
    return rows


def choose_d_rows(prices: np.ndarray, small: np.ndarray) -> list[tuple]:
    shape = f"{prices.shape[1]} x {len(prices)}"
    ours_s, model = best_of(1, StationaryFracDiff().fit, prices, warm_up=False)
    rows = [
        (
            f"choose d, {shape}",
            ours_s,
            None,
            None,
            f"< {MAX_CHOOSE_SECONDS:g} s",
            ours_s < MAX_CHOOSE_SECONDS,
        )
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        theirs_s, theirs = best_of(1, FracdiffStat(window=100).fit, small, warm_up=False)
    small_s, small_model = best_of(1, StationaryFracDiff().fit, small, warm_up=False)
    shape = f"{small.shape[1]} x {len(small)}"
    rows.append((f"choose d, {shape} (FracdiffStat)", small_s, theirs_s, None, "-", None))
    d_values, counts = np.unique(model.d_[~np.isnan(model.d_)], return_counts=True)
    spread = ", ".join(f"{d:g}: {n}" for d, n in zip(d_values, counts, strict=True))
    print(f"d_ over {prices.shape[1]} assets (d: count): {spread}")
    not_stationary = int((~model.stationary_).sum()) - len(model.skip_reasons_)
    print(f"skipped: {len(model.skip_reasons_)}, not stationary at max_d: {not_stationary}")
    same_window = StationaryFracDiff(threshold=0.0, max_window=100, step=0.01).fit(small)
    print(
        f"{shape} d_: ours {small_model.d_}, ours at window 100 and step 0.01 "
        f"{same_window.d_}; FracdiffStat (window 100, AIC lag search, bisection to 0.01) "
        f"{np.round(theirs.d_, 3)}"
    )
    return rows


def print_table(rows: list[tuple]) -> None:
    header = ("case", "ours s", "fracdiff-modern s", "speed-up", "max |diff|", "target", "result")
    lines = [header]
    for case, ours_s, theirs_s, diff, target, passed in rows:
        lines.append(
            (
                case,
                f"{ours_s:.3f}",
                "-" if theirs_s is None else f"{theirs_s:.3f}",
                "-" if theirs_s is None else f"{theirs_s / ours_s:.1f}x",
                "-" if diff is None else f"{diff:.1e}",
                target,
                "-" if passed is None else ("PASS" if passed else "FAIL"),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for k, line in enumerate(lines):
        print(" | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if k == 0:
            print("-+-".join("-" * width for width in widths))


def main() -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU cores: {os.cpu_count()}, load average (1 min) at start: {load:.1f}")
    # Late listings and outages longer than the forward fill: both sides see NaN gaps.
    long_prices = log_close(400, 4.0, seed=0, late_listing_share=0.2, n_outages=3)
    rows = ffd_rows(long_prices)
    del long_prices
    prices = log_close(400, 2.0, seed=1, late_listing_share=0.2, n_outages=3)
    # FracdiffStat cannot take NaN: four majors (never listed late), no outages.
    small = log_close(4, 5000 / 8760, seed=2)
    rows += choose_d_rows(prices, small)
    print_table(rows)


if __name__ == "__main__":
    main()
