"""The feature bank: which inputs matter for each coin, and which matter for many.

``meta/feature_bank.json`` holds every coin's permutation importance (the validation AUROC
lost when the input is shuffled) and the features in the top 5 of at least
``shared_feature_share`` of the coins.
"""

from __future__ import annotations

from datetime import UTC, datetime

from huracan.registry.artifacts import json_bytes
from huracan.store import Store

BANK_KEY = "meta/feature_bank.json"


def write_feature_bank(
    store: Store, importance: dict[str, dict], shared_feature_share: float, run_id: str
) -> dict:
    """Writes the bank from each coin's importance (input -> score); returns it."""
    top_counts: dict[str, int] = {}
    for scores in importance.values():
        ranked = sorted((v, k) for k, v in scores.items() if v is not None)[::-1][:5]
        for _, name in ranked:
            top_counts[name] = top_counts.get(name, 0) + 1
    need = shared_feature_share * max(len(importance), 1)
    bank = {
        "run_id": run_id,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "method": "permutation importance: validation AUROC lost when the input is shuffled",
        "per_coin": importance,
        "top5_counts": dict(sorted(top_counts.items(), key=lambda kv: -kv[1])),
        "shared_features": sorted(k for k, v in top_counts.items() if v >= need),
    }
    store.write_bytes(BANK_KEY, json_bytes(bank))
    return bank
