"""The hierarchical report's two largest parts on generated books, in CPU seconds.

    .venv/bin/python bench/bench_report.py                  # 100 coins x 2 years of hours
    .venv/bin/python bench/bench_report.py --coins 400

- cluster table: every variant's (``--variants``) metrics pooled over 5 overlapping sets
  of coins (3 clusters, the alt clusters, all), as ``report.cluster_table`` scores them:
  one ``metrics.group_metrics`` call per set (the path before ``pooled_group_metrics``),
  then ``pooled_group_metrics`` once per variant; both must agree bit for bit.
- IC section: ``evaluation.factor_summary`` of 3 strategies x 4 horizons of float32
  scores, as ``factor_report.ic_section``.

Run it under each checkout's ``PYTHONPATH`` to compare commits (a checkout without
``pooled_group_metrics`` times the per-set path only). CPU seconds of this process, best of
``--repeat``; on a shared machine they move less than wall time, but still move.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _util import print_table

from huracan import metrics
from huracan.evaluation import factor_summary

BARS_PER_YEAR = 8766.0
HORIZONS = (1, 4, 12, 24)


def books(coins: int, bars: int, seed: int = 0) -> dict:
    """A book's (T, N) arrays as the report reads them, and the test rows."""
    rng = np.random.default_rng(seed)
    net = rng.normal(0, 0.01, (bars, coins))
    net[rng.random(net.shape) < 0.05] = np.nan
    return {
        "signals": rng.random((bars, coins)) < 0.05,
        "label": np.where(np.isfinite(net), net > 0, np.nan).astype(np.float32),
        "net_return": net,
        "hold": rng.choice(HORIZONS, (bars, coins)).astype(np.int32),
        "rows": np.arange(bars // 5, bars),
        "days": np.arange(bars) // 24,
        "sets": _sets(rng.integers(0, 3, coins)),
    }


def _sets(clusters: np.ndarray) -> list[np.ndarray]:
    sets = [np.flatnonzero(clusters == c) for c in range(3)]
    return [*sets, np.flatnonzero(clusters > 0), np.arange(len(clusters))]


def per_set(book: dict) -> list[dict]:
    return [
        metrics.group_metrics(
            book["signals"][:, columns],
            book["label"][:, columns],
            book["net_return"][:, columns],
            book["rows"],
            np.zeros(len(columns), dtype=np.int64),
            BARS_PER_YEAR,
            book["hold"][:, columns],
            book["days"],
        )
        for columns in book["sets"]
    ]


def pooled(book: dict) -> list[dict]:
    keys = ("signals", "label", "net_return", "rows", "sets")
    signals, label, net, rows, sets = (book[k] for k in keys)
    return metrics.pooled_group_metrics(
        signals, label, net, rows, sets, BARS_PER_YEAR, book["hold"], book["days"]
    )


def ic_section(book: dict, scores: list[np.ndarray]) -> list[dict]:
    return [
        factor_summary(score, book["net_return"], book["rows"], h)
        for score in scores
        for h in HORIZONS
    ]


def cpu_seconds(work, argument, times: int, repeat: int) -> float:
    """The fewest CPU seconds of ``times`` calls of ``work(argument)`` in ``repeat`` tries."""
    best = np.inf
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(times):
            work(argument)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=100)
    parser.add_argument("--years", type=float, default=2.0)
    parser.add_argument("--variants", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    book = books(args.coins, int(args.years * BARS_PER_YEAR))
    rng = np.random.default_rng(1)
    scores = [rng.random(book["net_return"].shape).astype(np.float32) for _ in range(3)]
    for score in scores:
        score[rng.random(score.shape) < 0.2] = np.nan
    rows = [
        ["cluster table, one group_metrics per set", per_set, args.variants],
        ["IC section, 12 factor_summary", lambda _: ic_section(book, scores), 1],
    ]
    if hasattr(metrics, "pooled_group_metrics"):
        old, new = per_set(book), pooled(book)
        same = all(
            np.array_equal(a[k], b[k], equal_nan=True)
            for a, b in zip(old, new, strict=True)
            for k in a
        )
        rows.insert(1, [f"cluster table, pooled (bit for bit: {same})", pooled, args.variants])
    table = [
        {
            "part": name,
            "cpu_s": f"{cpu_seconds(work, book, times, args.repeat):.2f}",
        }
        for name, work, times in rows
    ]
    title = f"{args.coins} coins x {args.years:g} years, {args.variants} variants"
    print_table(f"{title}; CPU seconds, best of {args.repeat}", table)


if __name__ == "__main__":
    main()
