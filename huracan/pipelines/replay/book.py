"""The replay's book: each coin's position, its closed trades, costs and the equity curve.

Entry price rule (the per-coin backtest's, so that the replay reproduces it): a signal at
bar t is entered at bar t's close; the trade exits at the close of the bar ``horizon``
bars later (the first bar at or after ``exit_due`` that has a close), and its gross return
is ``exit close / entry close - 1``. Its round trip is charged at entry, from the coin's
cost model calibrated on the ``pipeline.calibration_days`` before the bar the calibration
prices from (``per_coin.costs.price_test``'s rule, on the bars before that bar only) and the
coin's realised volatility at t (bars up to t only): ``net = gross - round trip``. A trade
whose exit bar is not reached by the replay's last bar stays open (not a closed trade).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from huracan.costs import SlippageFit, cost_arrays
from huracan.data import Panel
from huracan.errors import DataError
from huracan.features.technical import realized_volatility
from huracan.pipelines.per_coin.costs import bars_panel, calibrate_costs, calibration_bars, fee_bps
from huracan.serve.model import CoinModel, dict_config
from huracan.serve.positions import Position

TRADE_FIELDS = [
    "symbol",
    "entry_time",
    "exit_time",
    "exit_due",
    "horizon",
    "entry_price",
    "exit_price",
    "probability",
    "threshold",
    "gross_bps",
    "cost_bps",
    "slip_bps",
    "net_bps",
    "model_path",
]


@dataclass(frozen=True)
class CoinCosts:
    """One coin's cost model from one calibration: fee per side, the spread fit, and the
    volatility window its slippage reads."""

    fit: SlippageFit
    fee_bps: float
    vol_window: int

    def round_trip(self, close: np.ndarray) -> tuple[float, float]:
        """The round trip and its slippage part (bps) of an entry at the last of ``close``
        (the coin's closes up to the entry bar)."""
        volatility = realized_volatility(close[:, None], self.vol_window)[-1:]  # (1, 1)
        cost, slip = cost_arrays({"coin": self.fit}, self.fee_bps, volatility)
        return float(cost[0, 0]), float(slip[0, 0])


def calibrate(panel: Panel, model: CoinModel, row: int) -> CoinCosts:
    """The coin's costs calibrated on its bars before grid row ``row``, with the options
    its champion was trained under (what its per-coin job did before its test window).

    Raises:
        DataError: the coin has no bars in the calibration days.
    """
    cfg = dict_config({key: model.config[key] for key in ("pipeline", "costs")})
    j = panel.index_of(model.symbol)
    one = bars_panel(calibration_bars(panel, j, row, cfg.pipeline.calibration_days))
    [fit] = calibrate_costs(one, cfg, one.n_bars).values()
    return CoinCosts(fit, fee_bps(cfg), int(model.config["labels"]["vol_window"]))


@dataclass
class Book:
    """Positions, closed trades and the equity curve of one replay (all JSON-able, for
    the checkpoint).

    Attributes:
        open: symbol -> the open trade (a ``TRADE_FIELDS`` dict without its exit).
        trades: closed trades, in the order they closed.
        equity: one row per replayed bar (``record``).
        realized_bps: net bps of the closed trades, summed.
    """

    open: dict[str, dict] = field(default_factory=dict)
    trades: list[dict] = field(default_factory=list)
    equity: list[dict] = field(default_factory=list)
    realized_bps: float = 0.0

    def positions(self) -> dict[str, Position]:
        """The open positions, as the signal service takes them."""
        return {
            s: Position(pd.Timestamp(t["entry_time"]), pd.Timestamp(t["exit_due"]))
            for s, t in self.open.items()
        }

    def close_due(self, panel: Panel, t: int) -> int:
        """Closes every open trade due at bar ``t`` that has a close there; returns how many."""
        now = panel.timestamps[t]
        closed = 0
        for symbol in [
            s for s, trade in self.open.items() if pd.Timestamp(trade["exit_due"]) <= now
        ]:
            price = float(panel.close[t, panel.index_of(symbol)])
            if not np.isfinite(price):  # no bar: exit at the first close after it
                continue
            trade = self.open.pop(symbol)
            gross = price / trade["entry_price"] - 1
            net = gross - trade["cost_bps"] / 1e4
            trade |= {
                "exit_time": now.isoformat(),
                "exit_price": price,
                "gross_bps": gross * 1e4,
                "net_bps": net * 1e4,
            }
            self.trades.append({k: trade[k] for k in TRADE_FIELDS})
            self.realized_bps += net * 1e4
            closed += 1
        return closed

    def enter(self, panel: Panel, t: int, signal: dict, costs: CoinCosts) -> None:
        """Opens the long ``signal`` (a signal row that trades) at bar ``t``'s close."""
        j = panel.index_of(signal["symbol"])
        cost, slip = costs.round_trip(panel.close[: t + 1, j])
        due = panel.timestamps[t] + int(signal["horizon"]) * pd.Timedelta(panel.timeframe)
        self.open[signal["symbol"]] = {
            "symbol": signal["symbol"],
            "entry_time": panel.timestamps[t].isoformat(),
            "exit_due": due.isoformat(),
            "horizon": int(signal["horizon"]),
            "entry_price": float(panel.close[t, j]),
            "probability": signal["probability"],
            "threshold": signal["threshold"],
            "cost_bps": cost,
            "slip_bps": slip,
            "model_path": signal["model_path"],
        }

    def record(self, panel: Panel, t: int, **figures) -> dict:
        """Bar ``t``'s equity row: realised net bps so far, the open trades marked at this
        close net of their round trip, and ``figures`` (counts, wall time)."""
        unrealized = 0.0
        for symbol, trade in self.open.items():
            price = panel.close[t, panel.index_of(symbol)]
            if np.isfinite(price):
                unrealized += (price / trade["entry_price"] - 1) * 1e4 - trade["cost_bps"]
        row = {
            "bar_time": panel.timestamps[t].isoformat(),
            "open_positions": len(self.open),
            "realized_bps": round(self.realized_bps, 6),
            "unrealized_bps": round(unrealized, 6),
            "equity_bps": round(self.realized_bps + unrealized, 6),
            **figures,
        }
        self.equity.append(row)
        return row

    def to_dict(self) -> dict:
        return {
            "open": self.open,
            "trades": self.trades,
            "equity": self.equity,
            "realized_bps": self.realized_bps,
        }

    @classmethod
    def from_dict(cls, state: dict) -> Book:
        return cls(state["open"], state["trades"], state["equity"], state["realized_bps"])


class FleetCosts(Mapping[str, CoinCosts]):
    """``fleet_costs`` calibrated a coin at a time, when the replay first prices it: a
    calibration is tens of milliseconds, and between two Mechanic cycles most coins of a
    large fleet enter no trade. The same costs as ``fleet_costs`` (the same call per coin)."""

    def __init__(self, panel: Panel, models: dict[str, CoinModel], row: int):
        self.panel, self.models, self.row = panel, models, row
        self._costs: dict[str, CoinCosts | None] = {}

    def __getitem__(self, symbol: str) -> CoinCosts:
        if symbol not in self._costs:
            self._costs[symbol] = self._calibrated(symbol)
        costs = self._costs[symbol]
        if costs is None:
            raise KeyError(symbol)
        return costs

    def _calibrated(self, symbol: str) -> CoinCosts | None:
        model = self.models.get(symbol)
        if model is None or symbol not in self.panel.symbols:
            return None
        try:
            return calibrate(self.panel, model, self.row)
        except DataError:  # no bars to calibrate on: the coin cannot be priced
            return None

    def __iter__(self) -> Iterator[str]:
        return (symbol for symbol in self.models if symbol in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def fleet_costs(panel: Panel, models: dict[str, CoinModel], row: int) -> dict[str, CoinCosts]:
    """Every loaded coin's costs calibrated on the bars before ``row``; a coin without bars
    there is left out (it cannot be priced, so the replay does not enter it)."""
    out = {}
    for symbol, model in models.items():
        if symbol not in panel.symbols:
            continue
        try:
            out[symbol] = calibrate(panel, model, row)
        except DataError:
            continue
    return out
