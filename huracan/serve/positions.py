"""Each coin's position beside its signal: a bot follows ``trade`` as the backtest did.

The per-coin backtest holds a long for the champion's horizon and takes no signal while a
trade is open (``huracan.metrics.take_trades``); a new trade may start at the close where
the previous one exits. ``with_positions`` gives the signals the same state: the caller
passes the positions it holds (entry time, exit due), and each signal row gets a
``position``:

- ``state``: ``open`` after this bar (held, or entered now) or ``flat``;
- ``entry_time`` and ``exit_due``: the open position's entry bar and the bar at whose close
  it exits (entry + horizon bars); None when flat;
- ``exit_now``: a position passed in is due at this bar: close it at this bar's close
  (the row may enter a new one at the same close).

``trade`` then means exactly one thing: enter a new long at this bar's close. A coin whose
position is still open does not trade, and its ``reasons`` say until when.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from huracan.errors import ConfigError
from huracan.io import atomic_write_text

# what ``trade`` means, written beside the signals in the CLI's JSON
TRADE_MEANS = (
    "trade=true: enter a new long at this bar's close and hold it horizon bars (exit at "
    "position.exit_due's close); never true while the coin's position is open"
)


@dataclass(frozen=True)
class Position:
    """An open long: entered at the close of ``entry_time``, exits at the close of
    ``exit_due``."""

    entry_time: pd.Timestamp
    exit_due: pd.Timestamp

    def to_dict(self) -> dict:
        return {"entry_time": self.entry_time.isoformat(), "exit_due": self.exit_due.isoformat()}


def with_positions(
    signals: pd.DataFrame, positions: Mapping[str, Position] | None, bar: pd.Timedelta
) -> pd.DataFrame:
    """The signals with a ``position`` column, and no ``trade`` while a position is open.

    Args:
        signals: ``Fleet.signals`` rows for one bar (``trade``, ``horizon``, ``reasons``).
        positions: symbol -> the open position held before this bar (None: all flat).
        bar: the bar length (the exit is due ``horizon`` bars after the entry).
    """
    positions = positions or {}
    out = signals.copy()
    states, trades, reasons = [], [], []
    for row in signals.to_dict("records"):
        held = positions.get(row["symbol"])
        now = pd.Timestamp(row["bar_time"])
        due = held is not None and now >= held.exit_due
        why = list(row["reasons"] or [])
        trade = bool(row["trade"])
        if held is not None and not due:
            trade = False
            why.append(f"position open since {held.entry_time} until {held.exit_due}")
            state = {"state": "open", **held.to_dict()}
        elif trade:
            entered = Position(now, now + int(row["horizon"]) * bar)
            state = {"state": "open", **entered.to_dict()}
        else:
            state = {"state": "flat", "entry_time": None, "exit_due": None}
        states.append({**state, "exit_now": bool(due)})
        trades.append(trade)
        reasons.append(why)
    out["trade"], out["reasons"], out["position"] = trades, reasons, states
    return out


def open_positions(signals: pd.DataFrame) -> dict[str, Position]:
    """The positions open after the signals' bar (what to pass with the next bar)."""
    out = {}
    for symbol, state in zip(signals["symbol"], signals["position"], strict=True):
        if state["state"] == "open":
            out[symbol] = Position(
                pd.Timestamp(state["entry_time"]), pd.Timestamp(state["exit_due"])
            )
    return out


def read_positions(path: str | Path) -> dict[str, Position]:
    """Open positions from a JSON file ``{symbol: {entry_time, exit_due}}``; none where the
    file does not exist yet.

    Raises:
        ConfigError: the file is not such a document (one line naming it and the key).
    """
    path = Path(path)
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text())
        return {
            str(s): Position(pd.Timestamp(p["entry_time"]), pd.Timestamp(p["exit_due"]))
            for s, p in document["positions"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ConfigError(
            f"{path}: not a positions file (positions: SYMBOL: entry_time, exit_due): "
            f"{type(err).__name__} {err}"
        ) from None


def write_positions(path: str | Path, positions: Mapping[str, Position], bar_time) -> None:
    """The open positions after ``bar_time``, atomically (read back by the next call)."""
    document = {
        "after_bar": pd.Timestamp(bar_time).isoformat(),
        "positions": {s: p.to_dict() for s, p in sorted(positions.items())},
    }
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")
