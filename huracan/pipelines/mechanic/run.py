"""``pipeline=mechanic``: keep a trained fleet current on new bars, encoder frozen.

On an existing artifact root (``store=...``, written by ``pipeline=per_coin``), each cycle:

1. Loads the roster's champions with their preprocessing (``huracan.serve.Fleet``) and
   rebuilds every coin's inputs on the bars given (``data=...``: the history plus the new
   bars); prices labels and holdout with each coin's current costs (the per-coin run's
   calibration, ``huracan.pipelines.per_coin.costs``, on the bars before the holdout).
2. Per champion (``huracan.pipelines.mechanic.coin``): fine-tunes its head on the bars
   since its training ended, the newest ``mechanic.holdout_days`` kept out; scores
   challenger and champion on that holdout (its bars after the window that promoted the
   champion: no holdout judges a champion twice); exports the challenger as a new version
   and promotes it only by the champion rule (``champions.challenge``). The heads are
   fine-tuned all at once (``mechanic.batched``: ``mechanic_coin.fit_challengers``, as
   each coin's own Lightning fit would, up to float rounding).
3. Drift (``huracan.pipelines.mechanic.drift``): each coin's PSI against its reference
   bins, and a re-clustering compared with the clusters the models were trained under
   (with a level tree, ``cluster=hierarchy``: every level, the served tree kept).
4. Rewrites ``champions/roster.json`` last, then purges model versions beyond
   ``mechanic.keep_versions`` (never a champion's; manifest deleted first).
5. Writes ``mechanic.json`` in the run directory.

``mechanic.max_cycles`` cycles run ``mechanic.every_hours`` apart (the data is read again
before each), all under the artifact root's lock (``huracan.store.lock``), whose
generation fences every write (a Mechanic whose lock was taken over stops). Every write is
a whole file, model files before their manifest, manifest before the pointer, pointers
before the roster: a Mechanic killed anywhere leaves every pointer on a complete version,
and a rerun on the same bars takes the versions it finds complete and finishes the rest.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from huracan.config import build
from huracan.data import GateReport, Panel
from huracan.errors import ConfigError
from huracan.io import atomic_write_text, plain
from huracan.lead_fit import refuse_lead_fit
from huracan.pipelines.base import Pipeline
from huracan.pipelines.mechanic.coin import Market, fit_challengers, mechanic_coin, skipped
from huracan.pipelines.mechanic.drift import check_levels, cluster_drift, feature_drift
from huracan.pipelines.per_coin.costs import calibrate_coin_costs, fee_bps, priced_costs
from huracan.registry.artifacts import purge_versions
from huracan.registry.champions import usable_champion
from huracan.registry.roster import load_roster, roster_entry, write_roster
from huracan.report import StageTimer
from huracan.serve import Fleet, ServeConfig
from huracan.store import Store, content_hash
from huracan.store.lock import run_lock
from huracan.training.arrays import FleetArrays, build_fleet_arrays

log = logging.getLogger("huracan")

ENCODER_KEY = "meta/shared_encoder.safetensors"


@dataclass(frozen=True)
class MechanicConfig:
    """The ``mechanic`` options (documented in ``conf/pipeline/mechanic.yaml``)."""

    holdout_days: float = 7.0
    every_hours: float = 24.0
    max_cycles: int = 1
    keep_versions: int | None = 3
    min_new_bars: int = 100
    val_fraction: float = 0.2
    max_epochs: int = 10
    patience: int = 3
    lr: float | None = None
    champion_min_trades: int | None = None
    batched: bool = True


def run_mechanic(pipeline, panel: Panel, gates: GateReport, cfg, out: Path, timer) -> dict:
    """``mechanic.max_cycles`` cycles, ``every_hours`` apart; ``mechanic.json`` after each."""
    from huracan.run import check_universe, load_and_gate  # run imports the pipelines

    cycles = []
    for cycle in range(1, int(cfg.mechanic.max_cycles) + 1):
        started = time.monotonic()
        if cycle > 1:  # the bars that arrived meanwhile
            panel, gates = load_and_gate(cfg, pipeline, StageTimer())
            check_universe(panel, cfg.universe)
        report = {"cycle": cycle, **run_cycle(panel, gates, cfg, timer)}
        cycles.append(report)
        payload = {**report, "cycles": [summary_of(c) for c in cycles]}
        atomic_write_text(out / "mechanic.json", json.dumps(payload, indent=2, default=plain))
        log.info("mechanic cycle %d: %s", cycle, summary_of(report)["counts"])
        if cycle < cfg.mechanic.max_cycles:
            wait = max(cfg.mechanic.every_hours * 3600 - (time.monotonic() - started), 0.0)
            log.info(
                "mechanic: next cycle (%d of %d) at %s, mechanic.every_hours=%s after this "
                "one began; the store stays locked meanwhile (Ctrl-C ends the loop and "
                "releases it; for a schedule, run mechanic.max_cycles=1 from cron or a timer)",
                cycle + 1,
                cfg.mechanic.max_cycles,
                f"{pd.Timestamp.now(tz='UTC') + pd.Timedelta(seconds=wait):%Y-%m-%d %H:%M:%S} UTC",
                cfg.mechanic.every_hours,
            )
            time.sleep(wait)
    return {"mechanic": {"cycles": [summary_of(c) for c in cycles]}}


def run_cycle(
    panel: Panel,
    gates: GateReport,
    cfg: DictConfig,
    timer: StageTimer,
    fleet: Fleet | None = None,
    computed: Computed | None = None,
) -> dict:
    """One pass over the roster's champions; returns the cycle's ``mechanic.json`` part.

    A caller that holds the store's fleet as loaded now (the replay) passes it as
    ``fleet``, and may pass ``computed``: its arrays and inputs for these bars (see
    ``compute_inputs``, which is used without it)."""
    store = build(cfg.store)
    removed = store.clean_temporary()  # under the lock: no other writer
    if removed:
        log.warning("removed %d temporary files of interrupted writes in %s", removed, store)
    encoder = encoder_hash(store)
    roster = load_roster(store)
    fleet = fleet or Fleet.load(store, config=ServeConfig(expire_hours=None))
    if not fleet.models:
        raise ConfigError(f"{store.describe()}: no roster coin has a usable champion")
    check_levels(fleet, cfg)  # before anything is written
    with timer("mechanic inputs") as note:
        market = prepare_market(panel, fleet, cfg, computed or compute_inputs)
        note(f"holdout {market.holdout_window[0]}..{market.holdout_window[1]}")
    with timer("mechanic heads") as note:
        coins = {s: skipped(why) for s, why in fleet.unusable.items()}
        tuned = fit_challengers(store, fleet.models, market, cfg) if cfg.mechanic.batched else {}
        for symbol, model in fleet.models.items():
            coins[symbol] = mechanic_coin(store, model, market, cfg, tuned.get(symbol))
        note(", ".join(f"{s} {c['status']}" for s, c in coins.items()))
    with timer("mechanic drift"):
        drift = feature_drift(fleet, market, cfg.drift.max_psi)
        for symbol, value in drift.items():
            coins[symbol]["drift"] = value
        clusters = cluster_drift(store, fleet, market, cfg)
    entries = roster_entries(store, roster, gates, market, coins)
    write_roster(store, entries, market.version_id)  # the last pointer written
    purged = purge_versions(store, list(coins), cfg.mechanic.keep_versions)
    if encoder_hash(store) != encoder:
        raise RuntimeError(f"{ENCODER_KEY} changed during the Mechanic's cycle")
    return {
        "version_id": market.version_id,
        "holdout_window": market.holdout_window,
        "shared_encoder_hash": encoder,
        "coins": coins,
        "queued_for_retraining": sorted(s for s, d in drift.items() if d["drifted"]),
        "cluster_drift": clusters,
        "full_retrain_due": bool(clusters["retrain_due"]),
        "purged": purged,
    }


Computed = Callable[[Panel, Fleet, DictConfig, tuple], tuple[FleetArrays, tuple[dict, dict]]]


def compute_inputs(panel: Panel, fleet: Fleet, trained: DictConfig, horizons: tuple) -> tuple:
    """The panel's arrays at the champions' horizons, and every coin's inputs and problems
    (``Fleet.inputs``), computed on all of the panel's bars."""
    return build_fleet_arrays(panel, trained, horizons), fleet.inputs(panel)


def prepare_market(
    panel: Panel, fleet: Fleet, cfg: DictConfig, computed: Computed = compute_inputs
) -> Market:
    """The cycle's shared state: the holdout, costs, labels and every coin's inputs."""
    trained = OmegaConf.create(next(iter(fleet.models.values())).config)
    if "costs" not in trained.get("pipeline", {}):
        raise ConfigError("the champions were not trained by pipeline=per_coin (no pipeline.costs)")
    stamps = panel.timestamps
    start = stamps[-1] - pd.Timedelta(days=cfg.mechanic.holdout_days)
    holdout_start = int(stamps.searchsorted(start, "right"))
    # every champion's own horizon (the per-coin run chooses one per coin)
    horizons = tuple(sorted({int(model.horizon) for model in fleet.models.values()}))
    tune_end = holdout_start - max(horizons)
    if tune_end < 2:
        raise ConfigError(f"mechanic.holdout_days={cfg.mechanic.holdout_days} covers all bars")
    arrays, (inputs, problems) = computed(panel, fleet, trained, horizons)
    fits = calibrate_coin_costs(panel, trained, tune_end, holdout_start)
    cost, slip = priced_costs(fits, fee_bps(trained), arrays.volatility)
    net = np.where(np.isnan(arrays.net_return), np.nan, arrays.gross_return - cost / 1e4)
    label = np.where(np.isnan(net), np.nan, (net > 0).astype(np.float64))
    # held once: every coin's tuning reads its column of the net returns (``coin.py``)
    arrays = arrays.replaced(label=label, net_return=net, cost_bps=cost, net_h=arrays.net_h)
    return Market(
        panel=panel,
        arrays=arrays,
        cost_bps=cost,
        slip_bps=slip,
        fits=fits,
        inputs=inputs,
        problems=problems,
        holdout_start=holdout_start,
        tune_end=tune_end,
        version_id=f"mechanic_{stamps[-1]:%Y%m%dT%H%M}",
        trained=trained,
    )


def roster_entries(
    store: Store, roster: dict, gates: GateReport, market: Market, coins: dict
) -> list[dict]:
    """Every roster coin again: from its (new or kept) champion pointer and current costs;
    a coin without a champion keeps its entry, and so does a champion the cycle skipped
    only because it is not due a rescore (``waiting``: too few new bars in the market, none
    after the window it was promoted on) while the entry still names it: between cycles
    that is its normal state, not ``champion_not_rescored``, and the serving path's expiry
    ages it."""
    trained = market.trained
    entries = []
    for old in roster["entries"]:
        symbol = old["symbol"]
        champion, problem = usable_champion(store, symbol)
        result = coins.get(symbol) or {}
        waiting = champion is not None and result.get("waiting")
        if (champion is None and problem is None) or (
            waiting and champion["model_path"] == old.get("model_path")
        ):  # nothing to judge, or not due a rescore: the entry as it was judged last
            entries.append({k: v for k, v in old.items() if k not in ("rank", "score")})
            continue
        in_panel = symbol in market.panel.symbols
        costs = market.costs(symbol) if in_panel else _old_costs(old)
        entries.append(
            roster_entry(
                symbol,
                champion=champion,
                costs=costs,
                test_window=market.holdout_window,
                gate_codes=[r["code"] for r in gates.skip_reasons.get(symbol, [])],
                job_status="completed",
                job_reason="",
                daily_quote_volume=gates.metrics.get(symbol, {}).get("daily_quote_volume")
                or old.get("daily_quote_volume"),
                max_round_trip_bps=trained.pipeline.max_round_trip_bps,
                min_trades=int(trained.pipeline.champion_min_trades),
                run_metrics=result.get("challenger") or {},
                champion_problem=problem,
            )
        )
    return entries


def _old_costs(entry: dict) -> dict:
    return {
        "base_spread_bps": entry.get("spread_bps"),
        "fee_bps": entry.get("fee_bps"),
        "expected_round_trip_bps": entry.get("round_trip_bps"),
        "expected_slip_bps": entry.get("avg_slip_bps"),
        "method": entry.get("cost_method"),
    }


def encoder_hash(store: Store) -> str | None:
    """The shared encoder file's content hash (None where the store has none)."""
    return content_hash(store.read_bytes(ENCODER_KEY)) if store.exists(ENCODER_KEY) else None


def summary_of(report: dict) -> dict:
    """A cycle in a line or two: counts, queued coins, cluster ARI."""
    statuses = [c["status"] for c in report["coins"].values()]
    return {
        "cycle": report["cycle"],
        "version_id": report["version_id"],
        "counts": {s: statuses.count(s) for s in ("promoted", "kept", "skipped")},
        "queued_for_retraining": report["queued_for_retraining"],
        "cluster_ari": report["cluster_drift"]["ari"],
        "full_retrain_due": report["full_retrain_due"],
        "purged": report["purged"],
    }


class MechanicPipeline(Pipeline):
    """``pipeline=mechanic``: fine-tune, score and promote champions on new bars (see the
    module docstring); options in the ``mechanic`` and ``drift`` sections."""

    services = ("store",)

    def session(self, cfg: DictConfig):
        """The artifact root's lock, held from loading the data to the last cycle's roster."""
        return run_lock(cfg.store, "mechanic")

    def test_start(self, panel: Panel, cfg: DictConfig):
        """The holdout's start: the data gates look at the bars before it."""
        return panel.timestamps[-1] - pd.Timedelta(days=cfg.mechanic.holdout_days)

    def check(self, cfg: DictConfig) -> None:
        refuse_lead_fit(cfg, "mechanic")
        options = cfg.get("mechanic")
        if options is None or cfg.get("drift") is None:
            raise ConfigError("pipeline=mechanic needs its mechanic and drift sections")
        if options.max_cycles < 1:
            raise ConfigError(f"mechanic.max_cycles must be >= 1, got {options.max_cycles}")
        if options.holdout_days <= 0 or options.every_hours < 0:
            raise ConfigError("mechanic.holdout_days must be > 0 and every_hours >= 0")
        if options.keep_versions is not None and options.keep_versions < 1:
            raise ConfigError(f"mechanic.keep_versions must be >= 1, got {options.keep_versions}")
        if not 0 < options.val_fraction < 1:
            raise ConfigError(
                f"mechanic.val_fraction must be in (0, 1), got {options.val_fraction}"
            )

    def __call__(
        self, panel: Panel, gates: GateReport, cfg: DictConfig, out: Path, timer: StageTimer
    ) -> dict:
        return run_mechanic(self, panel, gates, cfg, out, timer)
