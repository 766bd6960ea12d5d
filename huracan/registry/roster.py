"""``champions/roster.json``: every gated coin, tradable or not and why, ranked for a bot.

One entry per coin of the universe (``roster_entry`` holds the ``trade_ok`` policy): a
coin trades only with a champion whose out-of-sample figures on this run's test window
show trades, an edge on validation, a net profit, and a round trip under the limit; every
other coin is listed with ``trade_ok`` false and machine-readable ``reasons``.

Entries are ranked by a score that rewards net edge (out-of-sample Sharpe after costs on
the selection window) and liquidity and penalises cost: ``z(selection sharpe) + 0.5
z(log10 daily quote volume) - 0.5 z(round-trip bps)`` (z-scores over all entries; a
missing Sharpe counts as 0), with every ``trade_ok`` entry ahead of every other.

The test window is cut in two (``pipeline.report_days``): the selection window chooses
the champion, sets ``trade_ok`` and ranks; the report window after it is used for nothing
but the entry's figures (``sharpe``, ``net_pnl_bps``, ``n_trades``, ``hit_rate``,
``last_7d_net_bps``, ``avg_slip_bps``: ``figures: "report"``, ``report_window``), so they
are not optimistic after selection. Without a report window (``report_days: 0``, or a
champion scored before one existed) they are the selection window's (``figures:
"in_selection"``). ``selection`` holds the selection window's figures either way.
The round trip that sets ``cost_above_limit`` and enters the rank (``round_trip_bps``) is
the mean over the bars before the report window; the report window's is
``report_round_trip_bps``, a figure like the others.
``baselines_net_bps`` holds each baseline's net bps on the coin in this run's window of
the same kind, on the bars and test costs of this run's model of the coin.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import jsonschema
import numpy as np

from huracan.errors import DataError
from huracan.names import SEGMENT, SYMBOL
from huracan.store import Store, content_hash

ROSTER_KEY = "champions/roster.json"
ENTRY_FIELDS = [
    "symbol",
    "model_path",
    "rank",
    "spread_bps",
    "fee_bps",
    "avg_slip_bps",
    "last_7d_net_bps",
    "trade_ok",
    "reasons",
]
TABLE_FIELDS = [
    "rank",
    "symbol",
    "trade_ok",
    "horizon_bars",
    "round_trip_bps",
    "cost_method",
    "selection.n_trades",
    "figures",
    "sharpe",
    "n_trades",
    "last_7d_net_bps",
    "reasons",
]

ROSTER_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Huracan roster",
    "type": "object",
    "required": ["generated_at", "run_id", "entries"],
    "properties": {
        "generated_at": {"type": "string"},
        "run_id": {"type": "string"},
        "entries": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ENTRY_FIELDS,
                "properties": {
                    "symbol": {"type": "string", "pattern": f"^{SYMBOL}$"},
                    "model_path": {
                        "type": ["string", "null"],
                        "pattern": f"^models/{SEGMENT}/{SEGMENT}$",
                    },
                    "rank": {"type": "integer", "minimum": 1},
                    "spread_bps": {"type": "number", "minimum": 0},
                    "fee_bps": {"type": "number", "minimum": 0},
                    "avg_slip_bps": {"type": "number", "minimum": 0},
                    "last_7d_net_bps": {"type": "number"},
                    "trade_ok": {"type": "boolean"},
                    "reasons": {
                        "type": "array",
                        "items": {"type": "string", "pattern": "^[a-z_]+(:.*)?$"},
                    },
                    "n_trades": {"type": ["integer", "null"], "minimum": 0},
                    "val_trades": {"type": ["integer", "null"], "minimum": 0},
                    "horizon_bars": {"type": ["integer", "null"], "minimum": 1},
                    "cost_method": {"type": ["string", "null"]},
                    "report_round_trip_bps": {"type": ["number", "null"]},
                    "figures": {"enum": ["report", "in_selection"]},
                    "report_window": {
                        "type": ["array", "null"],
                        "items": {"type": "string"},
                        "minItems": 2,
                        "maxItems": 2,
                    },
                    "selection": {"type": "object"},
                    "baselines_net_bps": {
                        "type": "object",
                        "additionalProperties": {"type": ["number", "null"]},
                    },
                },
            },
        },
    },
}


def roster_entry(
    symbol: str,
    *,
    champion: dict | None,
    costs: dict,
    test_window: list[str],
    gate_codes: list[str],
    job_status: str,
    job_reason: str,
    daily_quote_volume: float | None,
    max_round_trip_bps: float,
    min_trades: int,
    run_metrics: dict | None = None,
    champion_problem: str | None = None,
) -> dict:
    """One coin's roster entry: the trade_ok policy, with every reason it fails.

    Args:
        symbol: the coin.
        champion: its champion pointer, None where it has none (or an incomplete one).
        costs: this run's calibrated costs of the coin (``costs.json``).
        test_window: this run's selection window (the test window before its report days),
            which a champion scored in this run carries as its ``window``.
        gate_codes: data gates the coin failed.
        job_status: its job's status (``completed``, ``failed``, ``skipped``, ...).
        job_reason: why it failed or was skipped.
        daily_quote_volume: its liquidity, for the ranking.
        max_round_trip_bps: the cost limit.
        min_trades: out-of-sample trades a champion needs.
        run_metrics: this run's out-of-sample metrics of the coin's model on the selection
            window (its ``metrics.json``), which say why a coin without a champion has none.
        champion_problem: why its pointer cannot be used (malformed, or another coin's
            version); the coin is listed without a model (``champion_unusable:<why>``).

    Returns:
        The entry (without ``rank``); ``reasons`` codes: ``gate:<name>``,
        ``failed:<error>``, ``skipped:<why>``, ``no_champion``, ``champion_not_rescored``
        (kept from an earlier window), ``champion_unusable:<why>``, ``no_trades_in_test``,
        ``few_trades_in_test``, ``no_edge_on_validation``, ``no_net_profit_in_test``,
        ``cost_above_limit``.
    """
    reasons = [f"gate:{code}" for code in gate_codes]
    if job_status == "failed":
        reasons.append(f"failed:{_one_line(job_reason)}")
    elif job_status == "skipped" and not gate_codes:
        reasons.append(f"skipped:{_one_line(job_reason)}")
    metrics = {} if champion is None else champion.get("metrics") or {}
    counts = metrics if champion is not None else run_metrics or {}  # the model's trades
    n_trades = counts.get("n_trades")
    n_trades = None if n_trades is None else int(n_trades)
    val_trades = counts.get("val_trades")
    val_trades = None if val_trades is None else int(val_trades)
    horizon = counts.get("horizon")  # bars a trade is held, chosen on validation per coin
    if champion_problem is not None:
        reasons.append(f"champion_unusable:{_one_line(champion_problem)}")
    if champion is None:
        reasons.append("no_champion")
        reasons += _trade_reasons(run_metrics or {}, min_trades)
    else:
        if champion.get("window") != test_window:
            reasons.append("champion_not_rescored")
        reasons += _trade_reasons(metrics, min_trades)
    round_trip = costs.get("expected_round_trip_bps")
    if round_trip is not None and round_trip > max_round_trip_bps:
        reasons.append("cost_above_limit")
    report = None if champion is None else champion.get("report")  # its report window's
    figures = report or metrics
    slip = figures.get("avg_slip_bps")
    slip = costs.get("expected_slip_bps") if slip is None else slip
    if report is not None:
        n_trades = None if report.get("n_trades") is None else int(report["n_trades"])
    return {
        "symbol": symbol,
        "model_path": None if champion is None else champion["model_path"],
        "spread_bps": round(float(costs.get("base_spread_bps") or 0.0), 4),
        "fee_bps": float(costs.get("fee_bps") or 0.0),
        "avg_slip_bps": round(float(slip or 0.0), 4),
        "last_7d_net_bps": round(float(figures.get("last_7d_net_bps") or 0.0), 4),
        "trade_ok": not reasons,
        "reasons": reasons,
        "sharpe": figures.get("sharpe"),
        "net_pnl_bps": figures.get("net_pnl_bps"),
        "hit_rate": figures.get("hit_rate"),
        "n_trades": n_trades,
        "val_trades": val_trades,
        "horizon_bars": None if horizon is None else int(horizon),
        "round_trip_bps": _rounded(round_trip),
        "report_round_trip_bps": _rounded(costs.get("report_round_trip_bps")),
        "cost_method": costs.get("method"),
        "daily_quote_volume": daily_quote_volume,
        "figures": "in_selection" if report is None else "report",
        "report_window": None if report is None else report.get("window"),
        "selection": {k: metrics.get(k) for k in ("sharpe", "net_pnl_bps", "n_trades", "window")},
        "baselines_net_bps": _baselines(run_metrics or {}, report is not None),
    }


def _baselines(run_metrics: dict, report: bool) -> dict[str, float | None]:
    """Each baseline's net bps on this coin in this run's report window (``report``) or
    selection window: the same bars and test costs as this run's model."""
    figures = (run_metrics.get("report") or {}) if report else run_metrics
    return {
        name: None if b is None else b.get("net_bps")
        for name, b in (figures.get("baselines") or {}).items()
    }


def _trade_reasons(metrics: dict, min_trades: int) -> list[str]:
    """Why out-of-sample metrics do not make a model tradable (nothing where they are empty)."""
    if not metrics:
        return []
    reasons = []
    n_trades = int(metrics.get("n_trades") or 0)
    if n_trades == 0:
        reasons.append("no_trades_in_test")
    elif n_trades < min_trades:
        reasons.append("few_trades_in_test")
    if metrics.get("val_trades") == 0:
        reasons.append("no_edge_on_validation")
    if n_trades and (metrics.get("net_pnl_bps") or 0.0) <= 0:
        reasons.append("no_net_profit_in_test")
    return reasons


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _one_line(text: str) -> str:
    line = (text or "unknown").strip().splitlines()[0] if (text or "").strip() else "unknown"
    return line[:200]


def rank_entries(entries: list[dict]) -> list[dict]:
    """Assigns ``rank`` (1 = best) to entries carrying sharpe, daily volume and cost."""
    if not entries:
        return []
    # on the selection window: the report window chooses nothing, not even the order
    sharpe = np.array(
        [(e.get("selection") or e).get("sharpe") or 0.0 for e in entries], dtype=float
    )
    liquidity = np.log10(np.maximum([e.get("daily_quote_volume") or 1.0 for e in entries], 1.0))
    cost = np.array([e.get("round_trip_bps") for e in entries], dtype=float)  # None: NaN
    # an unknown cost (a coin skipped before its costs were measured) is no advantage: it
    # scores as the dearest known one, and the known costs are standardised among
    # themselves (it read as 0, the cheapest, put a coin without a model first and moved
    # the other coins' cost scores)
    known = np.isfinite(cost)
    cost_z = np.zeros(len(cost))
    if known.any():
        cost_z[known] = _z(cost[known])
        cost_z[~known] = cost_z[known].max()
    score = _z(sharpe) + 0.5 * _z(liquidity) - 0.5 * cost_z
    ok = np.array([e["trade_ok"] for e in entries])
    modelled = np.array([e.get("model_path") is not None for e in entries])
    order = np.lexsort((-score, ~modelled, ~ok))  # trade_ok, then with a model, then by score
    ranked = []
    for rank, i in enumerate(order, start=1):
        ranked.append({**entries[i], "rank": rank, "score": round(float(score[i]), 4)})
    return ranked


def write_roster(store: Store, entries: list[dict], run_id: str) -> dict:
    """Ranks, validates against ``ROSTER_SCHEMA`` and writes the roster (atomically)."""
    roster = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": run_id,
        "entries": rank_entries(entries),
    }
    data = json.dumps(roster, indent=2).encode()
    _check_bytes(data, json.loads(data), f"the roster of run {run_id}")  # as it will be read
    store.write_bytes(ROSTER_KEY, data)
    return roster


def load_roster(store: Store) -> dict:
    """Reads and checks the roster.

    Raises:
        ArtifactNotFound: the store has no roster.
        DataError: it is not JSON, breaks the schema or lists a symbol twice (one line
            naming the file and the first fault).
    """
    source = f"{store.describe()}/{ROSTER_KEY}"
    data = store.read_bytes(ROSTER_KEY)
    try:
        roster = json.loads(data)
    except ValueError as err:  # empty, truncated, binary
        raise DataError(source, f"not valid JSON ({type(err).__name__}: {err})") from None
    _check_bytes(data, roster, source)
    return roster


# content hashes of the roster files that passed ``check_roster``, newest last: its verdict
# is a function of the bytes alone, and a Mechanic or replay cycle writes the roster and
# reads it back twice (its own start, the fleet's reload), 400 entries through jsonschema
_CHECKED: dict[str, None] = {}
_CHECKED_KEPT = 8


def _check_bytes(data: bytes, roster: object, source: str) -> None:
    """``check_roster`` of ``roster``, parsed from ``data``, unless these bytes passed it."""
    digest = content_hash(data)
    if digest in _CHECKED:
        return
    check_roster(roster, source)
    _CHECKED[digest] = None
    while len(_CHECKED) > _CHECKED_KEPT:
        del _CHECKED[next(iter(_CHECKED))]


def check_roster(roster: object, source: str) -> None:
    """Raises DataError, naming ``source`` and the first fault, unless the roster matches
    ``ROSTER_SCHEMA`` and lists each symbol once."""
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(ROSTER_SCHEMA).iter_errors(roster)
    )
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "the document"
        why = error.message[:200]
        if error.validator == "pattern":  # the regular expression says less than this
            why = f"{str(error.instance)[:100]!r} is not a safe name (see huracan.names)"
        raise DataError(source, f"breaks the roster schema at {where}: {why}")
    symbols = [entry["symbol"] for entry in roster["entries"]]
    doubled = sorted({s for s in symbols if symbols.count(s) > 1})
    if doubled:
        raise DataError(source, f"lists {', '.join(doubled)} more than once")


def select(
    roster: dict,
    top: int | None = None,
    allow: list[str] | None = None,
    block: list[str] | None = None,
    include_not_ok: bool = False,
) -> list[dict]:
    """The bot's view: trade_ok entries, allowlist and blocklist applied, best ``top``."""
    allowed = None if not allow else {s.upper() for s in allow}
    blocked = {s.upper() for s in block or []}
    chosen = [
        e
        for e in sorted(roster["entries"], key=lambda e: e["rank"])
        if (include_not_ok or e["trade_ok"])
        and (allowed is None or e["symbol"] in allowed)
        and e["symbol"] not in blocked
    ]
    return chosen[:top] if top else chosen


def format_table(entries: list[dict], fields: list[str]) -> str:
    """Entries as a fixed-width text table of ``fields`` (reasons joined by commas; a
    dotted field such as ``selection.n_trades`` reads a nested value)."""

    def get(entry: dict, field: str) -> object:
        for key in field.split("."):
            entry = entry.get(key) if isinstance(entry, dict) else None
        return entry

    def cell(value: object) -> str:
        if isinstance(value, list):
            return ",".join(value) or "-"
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    rows = [[cell(get(e, f)) for f in fields] for e in entries]
    widths = [max([len(f)] + [len(r[i]) for r in rows]) for i, f in enumerate(fields)]
    lines = ["  ".join(f.ljust(w) for f, w in zip(fields, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _z(values: np.ndarray) -> np.ndarray:
    std = values.std()
    return (values - values.mean()) / std if std > 0 else np.zeros_like(values)
