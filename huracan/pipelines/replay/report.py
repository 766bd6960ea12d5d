"""The replay's outputs, and its trades beside never-trade and always-long on the same bars.

Written into the run directory:

- ``trades.csv``: one closed trade per row (``book.TRADE_FIELDS``: entry and exit time
  and price, horizon, probability and threshold, gross, cost, slippage and net bps, the
  champion that entered it);
- ``equity.csv``: one row per replayed bar: open positions, realised and marked net bps,
  entries and exits, the seconds the signal call and the whole bar took, and the
  always-long baseline's realised net bps;
- ``coins.csv``: per coin, the model's trades, net bps, expectancy, hit rate, t of its
  daily P&L and the interval of its expectancy, beside always-long's;
- ``mechanic.json`` (every cycle's report) and ``mechanic_decisions.csv`` (coin, status,
  reasons per cycle);
- ``equity.png``; ``replay.json``: the summary (also in ``summary.json``).

Always-long (``huracan.baselines``' rule): every coin the replay serves enters at every
bar with a real close, holding the longest label horizon of its champion's run, trades
never overlapping, at the costs calibrated before the replay's first bar. Never-trade
makes 0. The t-statistic is that of the daily P&L over every day of the window (a day
without a trade counts 0) and the interval the day-block bootstrap of the expectancy
(``huracan.significance.day_statistics``, as every report of the project).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from huracan.costs import cost_arrays
from huracan.features.technical import realized_volatility
from huracan.io import atomic_write_text, plain
from huracan.metrics import take_trades
from huracan.pipelines.replay.book import TRADE_FIELDS, fleet_costs
from huracan.plots import save_figure
from huracan.report import above, fmt
from huracan.significance import day_statistics, t_stat

if TYPE_CHECKING:
    from huracan.data import Panel
    from huracan.pipelines.replay.book import Book
    from huracan.serve import Fleet
    from huracan.store import Store


class Replay(Protocol):
    """What the outputs read of a replay (``run.Replay``; named here so that the loop
    imports its report and never the other way round)."""

    panel: Panel
    first: int
    end: int
    book: Book
    costs: dict
    cycles: list[dict]
    fleet: Fleet
    store: Store
    options: Any


DAY_NS = 86_400_000_000_000


def write_outputs(replay: Replay, out: Path) -> dict:
    """Every output file; returns the summary (``replay.json``)."""
    panel, rows = replay.panel, np.arange(replay.first, replay.end)
    stamps = panel.timestamps[rows]
    trades = pd.DataFrame(replay.book.trades, columns=TRADE_FIELDS)
    trades.to_csv(out / "trades.csv", index=False)
    symbols = sorted(set(replay.costs) | set(trades["symbol"]))  # a coin that left still counts
    model = trade_book(trades, stamps, symbols)
    always = always_long(replay, rows, symbols)
    equity = pd.DataFrame(replay.book.equity)
    equity["always_long_bps"] = np.cumsum(always["realized"].sum(1))[: len(equity)]
    equity.to_csv(out / "equity.csv", index=False)
    books = {"model": model, "always_long": always, "never_trade": None}
    coins = coin_table(books, stamps, symbols)
    coins.to_csv(out / "coins.csv")
    decisions = mechanic_decisions(replay.cycles)
    decisions.to_csv(out / "mechanic_decisions.csv", index=False)
    atomic_write_text(
        out / "mechanic.json", json.dumps({"cycles": replay.cycles}, indent=2, default=plain)
    )
    plot(equity, [c["after_bar"] for c in replay.cycles], out / "equity.png")
    strategies = {name: pooled(book, stamps) for name, book in books.items()}
    wall = equity["wall_s"] if len(equity) else pd.Series(dtype=float)
    summary = {
        "window": [str(stamps[0]), str(stamps[-1])],
        "bars": len(rows),
        "coins": symbols,
        "store": replay.store.describe(),
        "promote": replay.options.promote,
        "precompute": replay.options.precompute,
        "strategies": strategies,
        "criteria": criteria(strategies, books, stamps),
        "open_at_end": list(replay.book.open.values()),
        "mechanic_cycles": len(replay.cycles),
        "promotions": int((decisions["status"] == "promoted").sum()) if len(decisions) else 0,
        "bar_seconds": {
            "mean": plain(wall.mean()),
            "max": plain(wall.max()),
            "signals_mean": plain(equity["signals_s"].mean()) if len(equity) else None,
        },
    }
    atomic_write_text(out / "replay.json", json.dumps(summary, indent=2, default=plain))
    return summary


def trade_book(trades: pd.DataFrame, stamps: pd.DatetimeIndex, symbols: list[str]) -> dict:
    """The closed trades as (bars, coins) arrays: net return and count by entry bar."""
    pnl = np.zeros((len(stamps), len(symbols)))
    count = np.zeros_like(pnl)
    if len(trades):
        row = stamps.get_indexer(pd.to_datetime(trades["entry_time"], utc=True))
        col = pd.Index(symbols).get_indexer(trades["symbol"])
        np.add.at(pnl, (row, col), trades["net_bps"].to_numpy() / 1e4)
        np.add.at(count, (row, col), 1.0)
    return {"pnl": pnl, "trades": count}


def always_long(replay: Replay, rows: np.ndarray, symbols: list[str]) -> dict:
    """Always-long's trades on the replayed bars (module docstring), as ``trade_book``'s
    arrays, and ``realized`` (bars, coins): each trade's net return at its exit bar."""
    panel = replay.panel
    cols = [panel.index_of(s) for s in symbols]
    models = {s: replay.fleet.models[s] for s in symbols if s in replay.fleet.models}
    costs = fleet_costs(panel, models, replay.first)
    close = panel.close[: replay.end][:, cols]
    hold = np.array([_longest_horizon(models[s].config) if s in models else 1 for s in symbols])
    ahead = rows[:, None] + hold[None, :]  # (R, N) exit rows
    inside = ahead < replay.end
    exit_close = np.take_along_axis(close, np.minimum(ahead, replay.end - 1), axis=0)
    gross = np.where(inside, exit_close / close[rows] - 1, np.nan)
    cost = np.full_like(gross, np.nan)  # a coin without a cost model: no baseline trade
    for k, symbol in enumerate(symbols):
        if symbol in costs:
            c = costs[symbol]
            vol = realized_volatility(close[:, [k]], c.vol_window)[rows]
            cost[:, k] = cost_arrays({symbol: c.fit}, c.fee_bps, vol)[0][:, 0]
    net = gross - cost / 1e4
    real = ~panel.filled[rows][:, cols] & np.isfinite(net)
    taken = take_trades(real, hold[None, :].repeat(len(rows), 0))
    pnl = np.where(taken, net, 0.0)
    realized = np.zeros_like(pnl)
    exit_at = np.where(taken, ahead - rows[0], -1)
    for k in range(len(symbols)):
        done = exit_at[:, k] >= 0
        np.add.at(realized[:, k], exit_at[done, k], pnl[done, k] * 1e4)
    return {"pnl": pnl, "trades": taken.astype(float), "realized": realized}


def _longest_horizon(config: dict) -> int:
    labels = config["labels"]
    return int(max(labels.get("horizons") or [labels["horizon"]]))


def pooled(book: dict | None, stamps: pd.DatetimeIndex) -> dict:
    """A strategy's figures over all coins: trades, net bps, expectancy, hit rate, t of the
    daily P&L and the 95 % interval of the expectancy (bps)."""
    if book is None:  # never trade: nothing to estimate
        return {"n_trades": 0, "net_bps": 0.0, "expectancy_bps": None, "hit_rate": None}
    return _figures(book["pnl"].sum(1), book["trades"].sum(1), book, stamps, None)


def coin_table(books: dict, stamps: pd.DatetimeIndex, symbols: list[str]) -> pd.DataFrame:
    """Per coin: the model's figures, and always-long's trades and net bps beside them."""
    rows = {}
    for k, symbol in enumerate(symbols):
        model, always = books["model"], books["always_long"]
        row = _figures(model["pnl"][:, k], model["trades"][:, k], model, stamps, k)
        row["always_long_trades"] = int(always["trades"][:, k].sum())
        row["always_long_net_bps"] = round(float(always["pnl"][:, k].sum() * 1e4), 4)
        rows[symbol] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("symbol")


def _figures(pnl, trades, book: dict, stamps: pd.DatetimeIndex, column: int | None) -> dict:
    n = int(trades.sum())
    day = stamps.as_unit("ns").asi8 // DAY_NS
    t, low, high = day_statistics(day, pnl[:, None], trades[:, None])
    entries = book["pnl"] if column is None else book["pnl"][:, [column]]
    won = (entries > 0) & ((book["trades"] if column is None else book["trades"][:, [column]]) > 0)
    return {
        "n_trades": n,
        "net_bps": round(float(pnl.sum() * 1e4), 4),
        "expectancy_bps": round(float(pnl.sum() / n * 1e4), 4) if n else None,
        "hit_rate": round(float(won.sum() / n), 4) if n else None,
        "t_stat": _finite(t[0]),
        "ci_low_bps": _finite(low[0] * 1e4),
        "ci_high_bps": _finite(high[0] * 1e4),
    }


def criteria(strategies: dict, books: dict, stamps: pd.DatetimeIndex) -> list[dict]:
    """PASS/FAIL from the measured figures: a significant profit; more than always-long."""
    model, always = strategies["model"], strategies["always_long"]
    day = stamps.as_unit("ns").asi8 // DAY_NS
    days, index = np.unique(day, return_inverse=True)
    daily = {
        name: np.bincount(index, weights=books[name]["pnl"].sum(1), minlength=len(days))
        for name in ("model", "always_long")
    }
    diff_t = _finite(t_stat(daily["model"] - daily["always_long"]))
    out = [
        {
            "name": "the replay makes a significant profit after costs (t of daily P&L > 2)",
            "value": f"{fmt(model['net_bps'], 1)} bps, t {fmt(model['t_stat'], 2)}, "
            f"{model['n_trades']} trades",
            "passed": above(model["net_bps"], 0) and above(model["t_stat"], 2),
        },
        {
            "name": "the replay beats always-long on the same bars (t of the daily difference > 2)",
            "value": f"{fmt(model['net_bps'], 1)} vs {fmt(always['net_bps'], 1)} bps, "
            f"t {fmt(diff_t, 2)}",
            "passed": above(model["net_bps"], 0) and above(diff_t, 2),
        },
    ]
    for c in out:
        c["result"] = "PASS" if c["passed"] else "FAIL"
    return out


def mechanic_decisions(cycles: list[dict]) -> pd.DataFrame:
    """One row per cycle and coin: what the Mechanic decided and why."""
    rows = [
        {
            "cycle": c["cycle"],
            "after_bar": c["after_bar"],
            "symbol": symbol,
            "status": coin["status"],
            "reasons": "; ".join(coin.get("reasons") or []),
            "champion_path": coin.get("champion_path"),
            "challenger_path": coin.get("challenger_path"),
            "drift_psi": (coin.get("drift") or {}).get("psi"),
        }
        for c in cycles
        for symbol, coin in c["coins"].items()
    ]
    columns = ["cycle", "after_bar", "symbol", "status", "reasons", "champion_path"]
    return pd.DataFrame(rows, columns=[*columns, "challenger_path", "drift_psi"])


def plot(equity: pd.DataFrame, cycles: list[str], path: Path) -> None:
    """Equity after costs (bps, summed over coins), beside always-long and never-trade."""
    fig = Figure(figsize=(10, 5), layout="constrained")
    ax = fig.add_subplot()
    if len(equity):
        stamps = pd.to_datetime(equity["bar_time"], utc=True)
        ax.plot(stamps, equity["equity_bps"], lw=2, color="black", label="replay (marked)")
        ax.plot(stamps, equity["always_long_bps"], lw=1.2, label="always long (realised)")
        ax.axhline(0, color="grey", lw=0.8, label="never trade")
    for when in cycles:
        ax.axvline(pd.Timestamp(when), color="grey", lw=0.5, ls=":")
    ax.set_title("Replay: net P&L after costs, summed over coins; dotted: Mechanic cycles")
    ax.set_ylabel("cumulative net bps")
    ax.legend(loc="upper left", fontsize=8)
    save_figure(fig, path)


def format_summary(summary: dict) -> str:
    """The strategies and criteria as a few lines of text."""
    lines = [
        f"{'strategy':<12} {'trades':>7} {'net_bps':>10} {'exp_bps':>9} {'t':>7} {'ci_bps':>20}"
    ]
    for name, s in summary["strategies"].items():
        ci = f"[{fmt(s.get('ci_low_bps'), 1)}, {fmt(s.get('ci_high_bps'), 1)}]"
        lines.append(
            f"{name:<12} {s['n_trades']:>7} {fmt(s['net_bps'], 1):>10} "
            f"{fmt(s['expectancy_bps'], 1):>9} {fmt(s.get('t_stat'), 2):>7} {ci:>20}"
        )
    lines += [f"[{c['result']}] {c['name']}: {c['value']}" for c in summary["criteria"]]
    return "\n".join(lines)


def _finite(value) -> float | None:
    return round(float(value), 4) if value is not None and np.isfinite(value) else None
