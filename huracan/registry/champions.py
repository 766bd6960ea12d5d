"""Champion models: a pointer per symbol, replaced only by a better challenger.

``champions/<SYMBOL>.json`` points at the model version that trades the symbol. A
challenger replaces it only when, on bars out of sample for both, it has at least
``min_trades`` trades and beats the champion on both Sharpe ratio and net PnL after costs;
a champion that cannot be scored on such bars is kept (the caller says why), and only a
missing or unreadable one is replaced unchallenged.
The pointer is written only after the challenger's version is complete (manifest last),
so it never points at a model that is not fully written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from huracan.store import ArtifactNotFound, Store


@dataclass
class Decision:
    replace: bool
    reason: str


def champion_key(symbol: str) -> str:
    return f"champions/{symbol}.json"


def read_champion(store: Store, symbol: str) -> dict | None:
    try:
        return json.loads(store.read_bytes(champion_key(symbol)))
    except ArtifactNotFound:
        return None


def decide(challenger: dict, champion_on_window: dict | None, min_trades: int) -> Decision:
    """Whether the challenger replaces the champion.

    Args:
        challenger: ``sharpe``, ``net_pnl_bps``, ``n_trades`` on the out-of-sample window.
        champion_on_window: the champion's metrics on the same bars (None: no champion,
            or an unreadable one).
        min_trades: fewest out-of-sample trades a challenger needs.
    """
    n_trades = int(challenger["n_trades"] or 0)
    if n_trades < min_trades:
        return Decision(False, f"challenger made {n_trades} trades < {min_trades}")
    if champion_on_window is None:
        return Decision(True, "no readable champion")
    better_sharpe = _num(challenger["sharpe"]) > _num(champion_on_window["sharpe"])
    better_pnl = challenger["net_pnl_bps"] > champion_on_window["net_pnl_bps"]
    if better_sharpe and better_pnl:
        return Decision(True, "beats the champion on Sharpe and net PnL")
    return Decision(
        False,
        f"champion kept: Sharpe {_num(challenger['sharpe']):.2f} vs "
        f"{_num(champion_on_window['sharpe']):.2f}, net {challenger['net_pnl_bps']:.0f} vs "
        f"{champion_on_window['net_pnl_bps']:.0f} bps",
    )


def write_champion(
    store: Store,
    symbol: str,
    model_path: str,
    window: list[str],
    metrics: dict,
    reason: str,
    previous: dict | None,
    costs: dict | None = None,
) -> dict:
    """Writes the pointer: the model, the window it was last scored on, its metrics there
    and the costs it was charged (``costs``), and the model it replaced."""
    pointer = {
        "symbol": symbol,
        "model_path": model_path,
        "window": window,
        "metrics": metrics,
        "costs": costs or {},
        "reason": reason,
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "previous_model_path": None if previous is None else previous["model_path"],
    }
    store.write_bytes(champion_key(symbol), json.dumps(pointer, indent=2).encode())
    return pointer


def _num(value: float | None) -> float:
    return float("-inf") if value is None else float(value)
