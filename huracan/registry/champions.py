"""Champion models: a pointer per symbol, replaced only by a better challenger.

``champions/<SYMBOL>.json`` points at the model version that trades the symbol. A
challenger replaces it only when, on bars out of sample for both, it has at least
``min_trades`` trades and beats the champion on both Sharpe ratio and net PnL after costs;
a champion that cannot be scored on such bars is kept (the caller says why), and only a
missing or unreadable one is replaced unchallenged.
The pointer is written only after the challenger's version is complete (manifest last),
so it never points at a model that is not fully written. :func:`challenge` is the whole
contest; the job that trained the challenger hands it a ``rescore`` callback, since only
the job holds the bars, costs and signals both models are scored with.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from huracan.errors import DataError
from huracan.registry.artifacts import (
    champion_key,
    is_complete,
    read_champion,
    read_manifest,
)
from huracan.store import Store

log = logging.getLogger("huracan")


@dataclass
class Decision:
    replace: bool
    reason: str


@dataclass
class Rescore:
    """The champion's and the challenger's metrics on bars out of sample for both, as the
    caller (the job, which can run both models) measured them."""

    champion: dict | None
    challenger: dict | None
    note: str
    unreadable: bool = False
    report: dict | None = None  # the champion on the report window (out of sample for it)


def pointer_problem(store: Store, symbol: str, pointer: dict) -> str | None:
    """Why the pointer's version is not the symbol's own, if it is not.

    A version proves its coin twice: its path is ``models/<symbol>/...`` and its manifest
    names the symbol; a pointer edited or copied to another coin fails one or both.
    """
    path = pointer["model_path"]
    owner = path.split("/")[1] if path.count("/") == 2 else None
    if owner != symbol:
        return f"champions/{symbol}.json points at {path}, a version of {owner}, not {symbol}"
    if pointer.get("symbol", symbol) != symbol:
        return f"champions/{symbol}.json names symbol {pointer['symbol']!r}"
    manifest = read_manifest(store, path)
    if manifest is not None and manifest.get("symbol") != symbol:
        return f"{path}/manifest.json names symbol {manifest.get('symbol')!r}, not {symbol}"
    return None


def usable_champion(store: Store, symbol: str) -> tuple[dict | None, str | None]:
    """The symbol's pointer where it names a complete version of this symbol's own.

    Returns:
        (pointer, None); (None, why) for a malformed pointer or one whose version is
        another coin's; (None, None) without a pointer or with an incomplete version.
    """
    try:
        champion = read_champion(store, symbol)
    except DataError as err:
        return None, str(err)
    if champion is None:
        return None, None
    problem = pointer_problem(store, symbol, champion)
    if problem is not None:
        return None, problem
    if not is_complete(store, champion["model_path"], verify_hashes=False):
        return None, None
    return champion, None


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
    report: dict | None = None,
) -> dict:
    """Writes the pointer: the model, the selection window it was last scored on, its
    metrics there, its metrics on the report window after it (``report``, never used to
    choose it; None where the run has none), the costs it was charged (``costs``), and the
    model it replaced."""
    pointer = {
        "symbol": symbol,
        "model_path": model_path,
        "window": window,
        "metrics": metrics,
        "report": None if report is None else _pointer_metrics(report),
        "costs": costs or {},
        "reason": reason,
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "previous_model_path": None if previous is None else previous["model_path"],
    }
    store.write_bytes(champion_key(symbol), json.dumps(pointer, indent=2).encode())
    return pointer


def _num(value: float | None) -> float:
    return float("-inf") if value is None else float(value)


POINTER_METRICS = (
    "sharpe",
    "net_pnl_bps",
    "n_trades",
    "hit_rate",
    "last_7d_net_bps",
    "avg_slip_bps",
    "val_trades",
    "window",
    "horizon",
)


def challenge(
    store: Store,
    symbol: str,
    model_prefix: str,
    test_window: list[str],
    metrics: dict,
    costs: dict,
    min_trades: int,
    rescore: Callable[[dict], Rescore],
) -> dict:
    """Compares with the current champion out of sample for both; replaces it only if beaten.

    ``test_window`` is the selection window (the test window before its report days) and
    ``metrics`` the challenger's metrics there, with ``metrics["report"]`` those on the
    report window, which only go into the pointer. Both are scored on the selection bars
    that lie after the champion's last label (all of them, unless the champion saw part
    of the window), the champion as the signal service serves it. Where no such bar
    exists, or this run's bars cannot give the champion's inputs, the champion is kept and
    ``note`` says why; only an unreadable champion is replaced unchallenged (it cannot be
    traded either). The pointer carries the metrics
    of the window its model was last scored on, its report-window metrics (``report``)
    and this run's costs; ``metrics.window`` says which bars that was.
    A pointer that already names this version (a resumed job) is left as it is.
    """
    if not is_complete(store, model_prefix, verify_hashes=False):
        raise RuntimeError(f"{model_prefix} is not complete; champion left unchanged")
    challenger, on_window, note, kept, report = metrics, None, "", False, None
    try:
        champion = read_champion(store, symbol)
        unusable = None if champion is None else pointer_problem(store, symbol, champion)
    except DataError as err:
        champion, unusable = None, str(err)
    if unusable is not None:  # never scored nor kept: replaced as an unreadable one is
        log.warning("%s: %s; replaced unchallenged", symbol, unusable)
        champion, note = None, unusable
    if champion is not None and champion["model_path"] == model_prefix:
        # a resumed job whose pointer was written before the kill: the pointer stands as is
        return {
            "replaced": False,
            "reason": f"already the champion ({champion['reason']})",
            "note": "re-run of the champion itself",
            "champion_on_window": None,
        }
    if champion is not None and champion["window"] == test_window:
        on_window = champion["metrics"]
    elif champion is not None:
        scored = rescore(champion)
        note = scored.note
        if scored.champion is not None:
            challenger, on_window = scored.challenger or metrics, scored.champion
            report = scored.report
        kept = scored.champion is None and not scored.unreadable
    if kept:
        decision = Decision(False, f"champion kept unscored: {note}")
    else:
        decision = decide(
            {k: challenger[k] for k in ("sharpe", "net_pnl_bps", "n_trades")},
            on_window,
            min_trades,
        )
    if decision.replace:
        write_champion(
            store,
            symbol,
            model_prefix,
            test_window,
            _pointer_metrics(metrics),
            decision.reason,
            champion,
            costs,
            metrics.get("report"),
        )
    elif on_window is not None and champion["window"] != test_window:
        _repoint_kept_champion(
            store, champion, test_window, on_window, decision.reason, costs, report
        )
    return {
        "replaced": decision.replace,
        "reason": decision.reason,
        "note": note,
        "champion_on_window": on_window,
    }


def _repoint_kept_champion(
    store: Store,
    champion: dict,
    window: list[str],
    on_window: dict,
    reason: str,
    costs: dict,
    report: dict | None,
) -> None:
    """The kept champion's pointer, now with its metrics on this run's windows."""
    before = champion.get("previous_model_path")
    write_champion(
        store,
        champion["symbol"],
        champion["model_path"],
        window,
        _pointer_metrics({**champion["metrics"], **on_window}),
        f"kept: {reason}",
        {"model_path": before} if before else None,
        costs,
        report,
    )


def _pointer_metrics(metrics: dict) -> dict:
    return {k: metrics.get(k) for k in POINTER_METRICS}
