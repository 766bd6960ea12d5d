"""What a per-coin run id remembers, so that a rerun under it resumes and only resumes.

``runs/<run_id>/inputs.json`` holds the fingerprint of the run's inputs: the data (range,
symbols, a hash of every bar) and the resolved config without the keys that only say where
or how visibly it runs (``COSMETIC``). A rerun under the same run id with other inputs is
refused: its models would mix with the first run's. ``runs/<run_id>/jobs/<SYMBOL>.json``
is written by a coin's job once its last stage (the champion challenge) is done, so a
coin is finished only when its model version is complete and that record exists.
"""

from __future__ import annotations

import hashlib
import json
import logging

from omegaconf import DictConfig, OmegaConf

from huracan.data import GateReport, Panel
from huracan.errors import ConfigError
from huracan.registry.artifacts import MANIFEST, model_prefix
from huracan.store import ArtifactNotFound, Store

log = logging.getLogger("huracan")

# Where the run writes, how it is shown or scheduled: none of it changes a model.
COSMETIC = (
    "output_dir",
    "logger",
    "queue",
    "store",
    "threads",
    "optimized_metric",
    "pipeline.run_id",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
)


def inputs_key(run_id: str) -> str:
    return f"runs/{run_id}/inputs.json"


def job_done_key(run_id: str, symbol: str) -> str:
    """The record a coin's job writes after its last stage."""
    return f"runs/{run_id}/jobs/{symbol}.json"


def run_inputs(panel: Panel, gates: GateReport, cfg: DictConfig) -> dict:
    """The inputs a run's models depend on: data and config, flat, with their fingerprint."""
    digest = hashlib.sha256()
    for name in sorted(panel.bars):
        digest.update(name.encode())
        digest.update(panel.bars[name].tobytes())
    data = {
        "start": str(panel.timestamps[0]),
        "end": str(panel.timestamps[-1]),
        "n_bars": panel.n_bars,
        "timeframe": panel.timeframe,
        "symbols": list(panel.symbols),
        "universe": sorted(gates.skip_reasons),
        "bars_sha256": digest.hexdigest(),
    }
    config = flat(OmegaConf.to_container(cfg, resolve=True))
    values = {f"data:{k}": v for k, v in data.items()}
    values |= {
        f"config:{k}": v
        for k, v in config.items()
        if not any(k == c or k.startswith(c + ".") for c in COSMETIC)
    }
    text = json.dumps(values, sort_keys=True, default=str)
    return {"fingerprint": hashlib.sha256(text.encode()).hexdigest(), "inputs": values}


def check_inputs(store: Store, run_id: str, inputs: dict) -> None:
    """Records the run's inputs under its run id, or checks them against those recorded.

    A record whose run made no model yet is replaced.

    Raises:
        ConfigError: the run id holds models of other inputs (the message names what
            differs).
    """
    key = inputs_key(run_id)
    try:
        recorded = store.read_json(key)
    except ArtifactNotFound:
        store.write_json(key, {"run_id": run_id, **inputs})
        return
    if recorded.get("fingerprint") == inputs["fingerprint"]:
        return
    if not has_models(store, run_id, recorded):  # nothing made from them to mix with
        log.warning("pipeline.run_id=%s: inputs changed before any model was made", run_id)
        store.write_json(key, {"run_id": run_id, **inputs})
        return
    old, new = recorded.get("inputs", {}), inputs["inputs"]
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    shown = "; ".join(f"{k} {_short(old.get(k))} -> {_short(new.get(k))}" for k in changed[:4])
    more = f"; and {len(changed) - 4} more" if len(changed) > 4 else ""
    raise ConfigError(
        f"pipeline.run_id={run_id} in {store.describe()} was run with other inputs "
        f"({shown or 'fingerprint differs'}{more}): use a new pipeline.run_id, or delete "
        f"{key} and models/*/baseline_{run_id} to start this one over"
    )


def has_models(store: Store, run_id: str, recorded: dict) -> bool:
    """Whether any coin of the recorded run has written a model version (its manifest)."""
    if store.list(f"runs/{run_id}/jobs"):
        return True
    symbols = recorded.get("inputs", {}).get("data:symbols", [])
    return any(store.exists(f"{model_prefix(s, run_id)}/{MANIFEST}") for s in symbols)


def flat(tree: dict, prefix: str = "") -> dict:
    """A nested dict as ``{"a.b.c": leaf}``."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= flat(value, name + ".")
        else:
            out[name] = value
    return out


def _short(value: object) -> str:
    text = "(none)" if value is None else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
