"""The factor-style part of a hierarchical run's report: rank IC and quintile spreads of
every score, and the two books (``huracan.evaluation``).

The scores: the model's heads' test-window probability per horizon (``Book.scores``),
the ablation's the same way, and each baseline's ``FleetRun.baseline_scores`` where the
run has them; with ``book.score=mean_rank`` each strategy's mean percentile rank over its
horizons instead, one score for every horizon. Each is compared with that horizon's net
return of a long trade, on the test rows of every fold pooled.

``summary.json`` always holds both books: the long-short book is an evaluation (what a
score is worth across coins, beside the long-only trades the bot makes) and costs a
fraction of a second, so every run can be compared on it without a second run.
``results.csv`` gains the long-short book's rows only with ``book=long_short``: the
default run's file stays what it was.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from huracan import significance
from huracan.config import build
from huracan.evaluation import (
    DAYS_PER_YEAR,
    BookConfig,
    factor_summary,
    long_short_book,
    long_short_positions,
    mean_rank,
)
from huracan.metrics import asset_metrics
from huracan.report import fmt

if TYPE_CHECKING:
    from huracan.pipelines.hierarchical.book import FleetRun

log = logging.getLogger("huracan")

NS_PER_DAY = 86_400_000_000_000


def book_config(cfg: DictConfig) -> BookConfig:
    """The run's ``book`` group (the defaults where a config has none)."""
    node = cfg.get("book")
    return BookConfig() if node is None else build(node)


def strategy_scores(run: FleetRun, score: str = "horizon") -> dict[str, np.ndarray]:
    """Every (H, T, N) score of the run by strategy name, NaN where none: each horizon's
    own (``book.score=horizon``), or with ``mean_rank`` the one score of
    ``evaluation.mean_rank`` for every horizon (the same rule for every strategy)."""
    scores = _own_scores(run)
    if score == "mean_rank":
        return {k: np.broadcast_to(mean_rank(v), v.shape) for k, v in scores.items()}
    return scores


def _own_scores(run: FleetRun) -> dict[str, np.ndarray]:
    scores = {}
    if run.model.scores is not None:
        scores["model"] = run.model.scores
    if run.without_factor is not None and run.without_factor.scores is not None:
        scores["without_factor"] = run.without_factor.scores
    for name, score in getattr(run, "baseline_scores", {}).items():
        scores[f"baseline_{name}"] = score
    if getattr(run, "ensemble", None) is not None:
        scores |= {f"component_{k}": book.scores for k, book in run.components.items()}
        scores["ensemble"] = run.ensemble.scores
    return scores


def ic_section(run: FleetRun, score: str = "horizon") -> dict:
    """``summary.json``'s ``ic``: per strategy and horizon, rank IC and quintile figures of
    the score ``book.score`` names (:func:`strategy_scores`)."""
    rows = np.sort(run.test_rows)
    horizons = run.arrays.horizons
    section = {
        "returns": "per horizon, the net return of a long trade after its round-trip costs",
        "t": "Newey-West (HAC) with horizon - 1 lags over every test bar",
        "score": score,
    }
    for name, values in strategy_scores(run, score).items():
        section[name] = {
            str(h): factor_summary(values[i], run.arrays.net_of(i), rows, h)
            for i, h in enumerate(horizons)
        }
    return section


def books_section(
    run: FleetRun,
    cfg: DictConfig,
    long_only: dict,
    long_only_daily: np.ndarray,
    bars_per_year: float,
) -> dict:
    """``summary.json``'s ``books``: the long-only book (the model's trades, today's
    figures) and the long-short book of every score, each with t and 95 % interval.

    Args:
        long_only: the model's metrics over all assets (``cluster_table``'s ``all``).
        long_only_daily: the model's net P&L per test day, as a fraction.
    """
    sharpe = _daily_sharpe(long_only_daily)
    books = {
        "long_only": {
            "net_bps": long_only["net_bps"],
            "n_trades": long_only["n_trades"],
            "sharpe": long_only["sharpe"],
            "sharpe_daily": sharpe,
            "t_stat": long_only["t_stat"],
            "ci_low_bps": _bps(long_only["ci_low"]),
            "ci_high_bps": _bps(long_only["ci_high"]),
        }
    }
    config = book_config(cfg)
    rebalance = config.horizon(run.arrays.horizons)
    index = run.arrays.horizons.index(rebalance)
    rows = np.sort(run.test_rows)
    day = run.arrays.timestamps_ns // NS_PER_DAY
    short_books, daily = {"k": config.k, "rebalance": rebalance, "score": config.score}, {}
    for name, score in strategy_scores(run, config.score).items():
        book = long_short_book(
            score[index],
            run.arrays.net_of(index),
            run.arrays.cost_bps / 1e4,
            rows,
            day,
            rebalance,
            config.k,
            bars_per_year / 365.25,
        )
        daily[name] = book.pop("daily_bps")
        short_books[name] = book
    if "model" in daily:  # the t of the daily difference, as the long-only book's criterion
        for name in daily.keys() - {"model"}:
            difference = daily["model"] - daily[name]
            short_books[name]["t_model_minus_this"] = _none(significance.t_stat(difference))
    books["long_short"] = short_books
    return books


def with_long_short_rows(
    results: pd.DataFrame,
    run: FleetRun,
    cfg: DictConfig,
    clusters: np.ndarray,
    bars_per_year: float,
) -> pd.DataFrame:
    """``results.csv``: the long-only rows as they are, or with ``book=long_short`` a
    ``book`` column and the model's long-short book's rows per asset after them.

    A long-short row scores the asset's positions as trades (each one unit, its round
    trip paid when it opens, none while held on, a short's return negated); recall is
    NaN, as a book that always holds 2k positions trades no label.
    """
    config = book_config(cfg)
    if config.kind != "long_short" or run.model.scores is None:
        return results
    rebalance = config.horizon(run.arrays.horizons)
    index = run.arrays.horizons.index(rebalance)
    arrays, rows = run.arrays, np.sort(run.test_rows)
    net_long, cost = arrays.net_of(index), arrays.cost_bps / 1e4
    score = strategy_scores(run, config.score)["model"][index]
    book = long_short_positions(score, net_long, cost, rows, rebalance, config.k)
    held = np.zeros(net_long.shape, dtype=bool)
    net = np.full(net_long.shape, np.nan)
    held[book.rows] = book.long | book.short
    net[book.rows] = np.where(
        book.long, net_long[book.rows], -net_long[book.rows] - 2 * cost[book.rows]
    ) + np.where(book.held_on, cost[book.rows], 0.0)
    label = np.where(held, (net > 0).astype(np.float64), np.nan)
    table = asset_metrics(
        held,
        label,
        np.where(held, net, np.nan),
        symbols=arrays.symbols,
        bars_per_year=bars_per_year,
        horizon=rebalance,
        rows=rows,
        days=arrays.timestamps_ns // NS_PER_DAY,
    ).reset_index(names="asset")
    table["recall"] = np.nan
    table.insert(1, "cluster", clusters)
    table["folds"] = np.stack([held[f.test].any(0) for f in run.folds]).sum(0)
    both = [results.assign(book="long_only"), table[results.columns].assign(book="long_short")]
    combined = pd.concat(both, ignore_index=True)
    return combined[["book", *results.columns]]


def log_factor_lines(report: dict) -> None:
    """The console's factor lines (each under 120 columns): per horizon the model's rank
    IC and quintile spread, and its long-short book."""
    lines = [
        f"  h={h}: rank IC {fmt(m['ic_mean'], 4)}, t {fmt(m['ic_t'], 2)}, "
        f"IR {fmt(m['ic_ir'], 3)}; top-bottom quintile {fmt(m['spread_bps'], 1)} bps, "
        f"t {fmt(m['spread_t'], 2)}"
        for h, m in report.get("ic", {}).get("model", {}).items()
    ]
    short = report.get("books", {}).get("long_short", {})
    if "model" in short:
        book = short["model"]
        held = book.get("side_mean")
        fewer = f" ({held:.1f} held)" if held is not None and round(held, 1) < short["k"] else ""
        lines.append(
            f"  long-short k={short['k']}{fewer} every {short['rebalance']} bars: "
            f"{fmt(book['net_bps'], 1)} bps, Sharpe {fmt(book['sharpe'], 2)}, "
            f"t {fmt(book['t_stat'], 2)}"
        )
        lines.append(
            f"    mean per rebalance, 95% CI {fmt(book['ci_low_bps'], 1)} .. "
            f"{fmt(book['ci_high_bps'], 1)} bps"
        )
    if lines:
        log.info("the model's scores across coins (test windows; t: HAC)\n%s", "\n".join(lines))


def _daily_sharpe(daily: np.ndarray) -> float | None:
    std = daily.std(ddof=1) if len(daily) > 1 else np.nan
    return _none(daily.mean() / std * np.sqrt(DAYS_PER_YEAR)) if std > 0 else None


def _none(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _bps(value: float | None) -> float | None:
    return None if value is None else value * 1e4
