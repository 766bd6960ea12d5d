"""``champions/roster.json``: the ranked list of tradable models a live bot reads.

Entries are ranked by a score that rewards net edge (out-of-sample Sharpe after costs)
and liquidity and penalises cost: ``z(sharpe) + 0.5 z(log10 daily quote volume) - 0.5
z(round-trip bps)``, with every ``trade_ok`` entry ahead of every other.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import jsonschema
import numpy as np

from huracan.store import Store

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
                    "symbol": {"type": "string", "pattern": "^[A-Z0-9][A-Z0-9.]{0,31}$"},
                    "model_path": {"type": "string", "pattern": "^models/"},
                    "rank": {"type": "integer", "minimum": 1},
                    "spread_bps": {"type": "number", "minimum": 0},
                    "fee_bps": {"type": "number", "minimum": 0},
                    "avg_slip_bps": {"type": "number", "minimum": 0},
                    "last_7d_net_bps": {"type": "number"},
                    "trade_ok": {"type": "boolean"},
                    "reasons": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}


def rank_entries(entries: list[dict]) -> list[dict]:
    """Assigns ``rank`` (1 = best) to entries carrying sharpe, daily volume and cost."""
    if not entries:
        return []
    sharpe = np.array([e.get("sharpe") or 0.0 for e in entries], dtype=float)
    liquidity = np.log10(np.maximum([e.get("daily_quote_volume") or 1.0 for e in entries], 1.0))
    cost = np.array([e.get("round_trip_bps") or 0.0 for e in entries], dtype=float)
    score = _z(sharpe) + 0.5 * _z(liquidity) - 0.5 * _z(cost)
    ok = np.array([e["trade_ok"] for e in entries])
    order = np.lexsort((-score, ~ok))  # trade_ok first, then by falling score
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
    jsonschema.validate(roster, ROSTER_SCHEMA)
    store.write_bytes(ROSTER_KEY, json.dumps(roster, indent=2).encode())
    return roster


def load_roster(store: Store) -> dict:
    """Reads and validates the roster (raises if it does not match the schema)."""
    roster = json.loads(store.read_bytes(ROSTER_KEY))
    jsonschema.validate(roster, ROSTER_SCHEMA)
    return roster


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


def _z(values: np.ndarray) -> np.ndarray:
    std = values.std()
    return (values - values.mean()) / std if std > 0 else np.zeros_like(values)
