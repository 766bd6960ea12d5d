"""``pipeline=per_coin``: one tailored, validated, costed model per coin, and the roster.

1. Features for the whole panel (as the hierarchical run).
2. One split: training window, validation slice at its end, out-of-sample test window of
   ``pipeline.test_days`` (purged), whose last ``pipeline.report_days`` are the report
   window: never used to choose a champion or set ``trade_ok``, only for the roster's
   figures. Clusters (``clusters.json``; with ``cluster=hierarchy`` the level tree, which
   every checkpoint carries too), factor, fracdiff and scalers are fitted on the training
   window.
   Every coin's spread is estimated on the ``pipeline.calibration_days`` before the end
   of the training window, for its training and validation labels and its threshold (all
   coins at once, since the joint heads need every coin's labels). Each coin's job
   calibrates its test cost model (evaluation, champion, roster entry) on the days right
   before its test window, from those bars only (``huracan.pipelines.per_coin.costs``).
3. The shared encoder is trained once on the union of all coins' training data and saved
   to ``meta/shared_encoder.*`` (not retrained by a rerun that finds every coin's model
   complete: see ``huracan.pipelines.per_coin.resume`` for what a run id records).
4. Coin heads, one output per label horizon (``labels.horizons``): trained jointly as one
   grouped model (``heads=joint``), or each in its own job (``heads=alone``).
5. One job per coin through the queue: choose the coin's horizon and threshold together
   on validation after its own costs, evaluate out of sample at that horizon, permutation
   importance, export a one-output head for it, challenge the champion (scored as the
   signal service scores it, from its own stored state: ``champion_scores``).
6. ``meta/feature_bank.json``, then ``champions/roster.json`` last: every coin of the
   universe, tradable or not and why.

The whole run, from loading the data on, holds the artifact root's lock
(``huracan.store.lock``), so no other run writes models or pointers meanwhile; every
store it builds, the jobs' too, carries the lock's generation and refuses to write once
another run has taken the lock over (``LockLost``, exit 3).

Longer than most modules on purpose: the per-coin run's stages (jobs, queue, champions,
roster, feature bank, sync) in the order they run, each a function under 60 lines.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from huracan.baseline_rule import applied_gate
from huracan.coins import CoinJob
from huracan.config import build
from huracan.data import GateReport, Panel
from huracan.errors import ConfigError
from huracan.io import atomic_write_text, plain
from huracan.lead_fit import refuse_lead_fit
from huracan.loggers import stage_logger
from huracan.models.checkpoint import encoder_spec
from huracan.names import check_segment
from huracan.pipelines.base import Pipeline
from huracan.pipelines.per_coin.champion_scores import with_champion_scores
from huracan.pipelines.per_coin.costs import CostCalibration, calibrate_costs, coin_costs
from huracan.pipelines.per_coin.history import history_gap
from huracan.pipelines.per_coin.job import run_coin_job
from huracan.pipelines.per_coin.report import format_strategies, pooled_report
from huracan.pipelines.per_coin.resume import check_inputs, job_done_key, run_inputs
from huracan.pipelines.per_coin.specs import Split, build_jobs, shared_spec
from huracan.progress import interactive
from huracan.queue import QueueReport
from huracan.registry.artifacts import is_complete, model_prefix
from huracan.registry.champions import usable_champion
from huracan.registry.feature_bank import write_feature_bank
from huracan.registry.roster import TABLE_FIELDS, format_table, roster_entry, write_roster
from huracan.report import StageTimer
from huracan.store import ArtifactNotFound, Store, content_hash
from huracan.store.lock import run_lock
from huracan.strong_baselines import baseline_options
from huracan.training.arrays import build_fleet_arrays
from huracan.training.fit import fit_encoder, fit_heads
from huracan.training.folds import (
    FoldData,
    horizon_samples,
    horizon_weights,
    label_horizons,
    prepare_fold,
    run_baselines,
    single_split,
)

log = logging.getLogger("huracan")


def run_per_coin(
    panel: Panel, gates: GateReport, cfg: DictConfig, out: Path, timer: StageTimer
) -> dict:
    """Trains, validates, exports and ranks one model per coin; returns the run summary."""
    store = build(cfg.store)
    inputs = run_inputs(panel, gates, cfg)
    run_id = resolve_run_id(cfg, inputs)
    removed = store.clean_temporary()  # under the run's lock: no other writer
    if removed:
        log.warning("removed %d temporary files of interrupted writes in %s", removed, store)
    check_inputs(store, run_id, inputs)
    split = prepare_split(panel, cfg, timer)
    write_clusters(split, out)
    encoder, joint, encoder_hash = shared_models(store, panel, cfg, split, run_id, timer)
    shared = shared_spec(panel, cfg, split, encoder, encoder_hash, run_id)
    jobs = build_jobs(panel, gates, cfg, split, shared, joint)
    test_window = split.test_window
    selection, report_window = split.windows(cfg.pipeline.report_days)
    # the jobs hold their coins' samples now: the run's grids (features, labels, channels;
    # 400 coins x 1 year: most of a gigabyte) go before the queue and its workers start
    del split
    with timer("champions") as note:  # each coin's champion as served, on its test bars
        jobs = with_champion_scores(store, panel, jobs)
        served = sum("prob" in job.champion for job in jobs)
        held = sum(bool(job.champion) for job in jobs)  # from earlier runs on this store
        note(
            f"{served} of the store's {held} champions from earlier runs scored as served, "
            "to compare with this run's challengers"
            if held
            else "no champion from an earlier run on this store: every coin's model is new"
        )
    report = run_jobs(jobs, store, cfg, out, timer)
    with timer("roster") as note:
        importance = coin_importance(store, report, jobs)
        bank = write_feature_bank(store, importance, cfg.pipeline.shared_feature_share, run_id)
        entries = roster_entries(store, gates, cfg, jobs, report, selection)
        roster = write_roster(store, entries, run_id)
        tradable = sum(e["trade_ok"] for e in roster["entries"])
        note(f"{len(roster['entries'])} entries, {tradable} trade_ok")
    log.info(
        "roster (top 10 of %d)\n%s",
        len(roster["entries"]),
        format_table(roster["entries"][:10], TABLE_FIELDS),
    )
    windows = {"test": test_window, "selection": selection, "report": report_window}
    summary = run_summary(store, run_id, windows, report, bank, roster)
    results = {r.symbol: r for r in report}
    metrics = {j.symbol: run_output(store, j, results.get(j.symbol), "metrics") for j in jobs}
    rule = baseline_options(cfg).rule
    peers = (rule, applied_gate(cfg.get("thresholds"), rule))  # the baselines' rule and gate
    pooled = pooled_report(metrics, {"selection": selection, "report": report_window}, peers)
    log.info(
        "every coin's model beside the baselines, pooled over coins (same bars, each coin's "
        "test costs)\n%s",
        format_strategies(pooled),
    )
    return {"per_coin": summary | pooled}


def prepare_split(panel: Panel, cfg: DictConfig, timer: StageTimer) -> Split:
    """Features, the split, what the training window fits, and every coin's costs."""
    with timer("features") as note:
        arrays = build_fleet_arrays(panel, cfg, label_horizons(cfg))
        [fold] = single_split(panel, cfg).split(panel)
        data = prepare_fold(arrays, fold, cfg, None)
        note(
            f"train ..{fold.train_times[-1]:%Y-%m-%d}, "
            f"test {fold.test_times[0]:%Y-%m-%d}..{fold.test_times[-1]:%Y-%m-%d}, "
            f"horizons {list(arrays.horizons)} bar(s)"
        )
    with timer("costs") as note:  # the training window's; each job calibrates its test's
        fits = calibrate_costs(panel, cfg, int(fold.train[-1]) + 1)
        arrays = coin_costs(arrays, fits, cfg)
        methods = [f.method for f in fits.values()]
        note(
            "at training end: " + ", ".join(f"{m} {methods.count(m)}" for m in sorted(set(methods)))
        )
    with timer("baselines") as note:  # rules chosen on validation, scored in each job
        # by the coins' models' own rule (thresholds, its gate included: coin_rule.py)
        baselines = run_baselines(arrays, [fold], cfg)
        note(", ".join(baselines))
    weights = horizon_weights(arrays, fold)
    return Split(arrays, data, fits, data.valid(arrays), weights, baselines)


def write_clusters(split: Split, out: Path) -> None:
    """``clusters.json``: the clusters the training window fitted (with ``cluster=hierarchy``
    the level tree, ``tree``: what every checkpoint carries and serving rebuilds from)."""
    fold = split.fold
    clusters = {
        "train_window": [str(fold.train_times[0]), str(fold.train_times[-1])],
        **split.data.clusters.to_dict(),
    }
    atomic_write_text(out / "clusters.json", json.dumps(clusters, indent=2, default=plain))


def resolve_run_id(cfg: DictConfig, inputs: dict) -> str:
    """``pipeline.run_id``; ``auto`` is today's date and the first 8 hex digits of the
    run's inputs fingerprint (data and config): a rerun of the same inputs the same day
    resumes, a changed setting is a new run instead of a refused one. The resolved id
    replaces ``auto`` in the config (the jobs, the summary and the roster read it there)."""
    run_id = str(cfg.pipeline.run_id)
    if run_id == "auto":
        run_id = f"{pd.Timestamp.now(tz='UTC'):%Y%m%d}-{inputs['fingerprint'][:8]}"
        with open_dict(cfg):
            cfg.pipeline.run_id = run_id
        log.info("pipeline.run_id=auto: %s", run_id)
    return run_id


def shared_models(store: Store, panel: Panel, cfg: DictConfig, split: Split, run_id, timer):
    """The shared encoder (saved) and joint heads, and the encoder's hash; ``None, None, ""``
    when every coin's model version of the run is complete already (a resumed run)."""
    if not to_train(store, panel, split, run_id):
        with_history = [j for j in range(panel.n_assets) if not history_gap(panel, split, j)]
        if with_history:
            log.info("every coin's model of run %s is complete: nothing to train", run_id)
        else:  # it said "complete" of a fresh store where no coin could train
            log.info("no coin has the history to train in run %s: nothing to train", run_id)
        return None, None, ""
    encoder, joint = train_shared(panel, cfg, split, timer)
    return encoder, joint, save_shared_encoder(store, encoder, split.data, split.fold, run_id)


def to_train(store: Store, panel: Panel, split: Split, run_id: str) -> list[str]:
    """The coins with a job whose model version is not complete yet."""
    return [
        symbol
        for j, symbol in enumerate(panel.symbols)
        if not history_gap(panel, split, j) and not is_complete(store, model_prefix(symbol, run_id))
    ]


def train_shared(panel: Panel, cfg: DictConfig, split: Split, timer: StageTimer):
    """The shared encoder on every coin's training data, and the joint coin heads."""
    fold = split.fold
    train, _, _ = horizon_samples(split.data, split.arrays, split.weights, fold.train, split.valid)
    val, _, _ = horizon_samples(split.data, split.arrays, split.weights, fold.val, split.valid)
    make_trainer = instantiate(cfg.trainer)
    with timer("shared encoder") as note:
        logger = stage_logger(cfg, "per_coin_encoder")
        encoder = fit_encoder(
            cfg.encoder, train, val, make_trainer, logger, cfg.seed, "shared encoder"
        )
        note(f"{len(train['y']):,} training samples of {panel.n_assets} coins")
    if cfg.pipeline.heads != "joint":
        return encoder, None
    with timer("joint heads") as note:
        logger = stage_logger(cfg, "per_coin_heads")
        codes = build(cfg.head).encode(encoder, train, val)
        if codes:  # the heads learn from the codes: the raw inputs can go
            train, val = codes
        joint = fit_heads(
            cfg.head,
            encoder,
            panel.n_assets,
            train,
            val,
            make_trainer,
            logger,
            cfg.seed,
            "joint heads",
            codes,
        )
        note(f"{panel.n_assets} coin heads in one grouped model")
    return joint.encoder, joint  # the same encoder, or its fine-tuned copy


def run_jobs(jobs: list[CoinJob], store: Store, cfg: DictConfig, out: Path, timer) -> QueueReport:
    """One job per coin through the configured queue; finished coins are not redone.

    A coin is finished when its model version is complete and its job recorded its last
    stage; a complete version without that record goes through the job again, which
    takes the stored model and finishes the stages after the export.
    """
    queue = build(
        cfg.queue,
        log_dir=out / "logs",
        progress=bool(cfg.trainer.enable_progress_bar) and interactive(),
    )
    with timer("jobs") as note:
        report = queue.run(
            run_coin_job,
            jobs,
            done=lambda job: (
                store.exists(job_done_key(job.run_id, job.symbol))
                and is_complete(store, job.model_prefix, verify_hashes=True)
            ),
        )
        note(", ".join(f"{k} {v}" for k, v in report.counts().items() if v))
    return report


def run_summary(store, run_id: str, windows: dict, report: QueueReport, bank, roster) -> dict:
    """The per-coin part of ``summary.json``; ``windows``: the ``test``, ``selection`` and
    ``report`` windows (``Split.test_window``, ``Split.windows``)."""
    return {
        "run_id": run_id,
        "store": store.describe(),
        "test_window": windows["test"],
        "selection_window": windows["selection"],
        "report_window": windows["report"],
        "jobs": {
            r.symbol: {
                "status": str(r.status),
                "reason": r.reason,
                "seconds": round(r.seconds, 2),
                "champion": r.result.get("champion", {}).get("reason"),
                "champion_note": r.result.get("champion", {}).get("note"),
                "n_trades": r.result.get("metrics", {}).get("n_trades"),
            }
            for r in report
        },
        "counts": report.counts(),
        "shared_features": bank["shared_features"],
        "roster": roster["entries"],
    }


def save_shared_encoder(store: Store, encoder, data: FoldData, fold, run_id: str) -> str:
    """``meta/shared_encoder.safetensors`` + ``.json`` (weights, config; no pickle)."""
    from safetensors.torch import save

    weights = save({k: v.contiguous() for k, v in encoder.state_dict().items()})
    store.write_bytes("meta/shared_encoder.safetensors", weights)
    store.write_json(
        "meta/shared_encoder.json",
        {
            "spec": encoder_spec(encoder),
            "features": data.feature_names,
            "train_end": str(fold.train_times[-1]),
            "run_id": run_id,
            "content_hash": content_hash(weights),
        },
    )
    return content_hash(weights)


def coin_importance(store: Store, report: QueueReport, jobs: list[CoinJob]) -> dict:
    """Each completed coin's permutation importance: its job's, or its cached version's."""
    importance = {}
    for job in jobs:
        if job.skip_reason or str(report[job.symbol].status) != "completed":
            continue
        result = report[job.symbol].result
        if "importance" in result:
            importance[job.symbol] = result["importance"]
            continue
        try:  # cached: read what the completed version recorded
            features = store.read_json(f"{job.model_prefix}/features.json")
        except ArtifactNotFound:
            continue
        importance[job.symbol] = features["importance"]
    return importance


def roster_entries(
    store: Store,
    gates: GateReport,
    cfg: DictConfig,
    jobs: list[CoinJob],
    report: QueueReport,
    test_window: list[str],
) -> list[dict]:
    """One entry per symbol of the universe, tradable or not (policy: ``roster_entry``);
    ``test_window`` is the selection window a current champion was scored on."""
    by_symbol = {job.symbol: job for job in jobs}
    results = {r.symbol: r for r in report}
    entries = []
    for symbol in sorted(gates.skip_reasons):
        champion, problem = usable_champion(store, symbol)
        job = by_symbol.get(symbol)
        result = results.get(symbol)
        entries.append(
            roster_entry(
                symbol,
                champion=champion,
                costs=run_output(store, job, result, "costs"),
                test_window=test_window,
                gate_codes=[r["code"] for r in gates.skip_reasons[symbol]],
                job_status="missing" if result is None else str(result.status),
                job_reason="" if result is None else result.reason,
                daily_quote_volume=gates.metrics.get(symbol, {}).get("daily_quote_volume"),
                max_round_trip_bps=cfg.pipeline.max_round_trip_bps,
                min_trades=cfg.pipeline.champion_min_trades,
                run_metrics=run_output(store, job, result, "metrics"),
                champion_problem=problem,
            )
        )
    return entries


def run_output(store: Store, job: CoinJob | None, result, name: str) -> dict:
    """This run's ``metrics`` or ``costs`` of a coin's model (out of sample, calibrated in
    its job): the job's, or its cached version's ``<name>.json``."""
    if job is None or result is None or str(result.status) != "completed":
        return {}
    if name in result.result:
        return result.result[name]
    try:
        return store.read_json(f"{job.model_prefix}/{name}.json")
    except ArtifactNotFound:
        return {}


@dataclass(frozen=True)
class PerCoinPipeline(Pipeline):
    """``pipeline=per_coin``: one validated, costed, exported model per coin, and the roster.

    The fields are the ``pipeline`` config's options (typed here, read from the config by
    the stages).
    """

    run_id: str | int = ""
    test_days: float = 30
    report_days: float = 7
    heads: Literal["joint", "alone"] = "joint"
    calibration_days: float = 30
    costs: CostCalibration = field(default_factory=CostCalibration)
    importance_repeats: int = 2
    champion_min_trades: int = 10
    max_round_trip_bps: float = 40
    shared_feature_share: float = 0.5
    services = ("queue", "store")

    def session(self, cfg: DictConfig):
        """The artifact root's lock, held from loading the data to the roster; it fences
        every store built from ``cfg.store`` meanwhile."""
        return run_lock(cfg.store, str(cfg.pipeline.run_id))

    def test_start(self, panel: Panel, cfg: DictConfig):
        return single_split(panel, cfg).first_test_bar(panel)

    def __post_init__(self):
        if isinstance(self.costs, dict):  # from the config: checked, then typed
            object.__setattr__(self, "costs", CostCalibration(**self.costs))

    def check(self, cfg: DictConfig) -> None:
        refuse_lead_fit(cfg, "per_coin")
        # it names runs/<run_id>/ and models/<SYMBOL>/baseline_<run_id>/
        model_prefix("BTC", check_segment(self.run_id, "pipeline.run_id"))
        if not 0 <= self.report_days < self.test_days:
            raise ConfigError(
                f"pipeline.report_days must be >= 0 and below pipeline.test_days "
                f"({self.test_days}), got {self.report_days}"
            )
        if not self.costs.tiers:
            raise ConfigError("pipeline.costs.tiers is empty: the fallback spreads need a tier")
        if self.costs.ticks_dir and not Path(self.costs.ticks_dir).is_dir():
            raise ConfigError(f"pipeline.costs.ticks_dir {self.costs.ticks_dir} is not a directory")
        if cfg.head.granularity != "coin":
            raise ConfigError(
                f"pipeline=per_coin trains one head per coin; head.granularity is "
                f"{cfg.head.granularity!r} (drop the head override, or use head=coin)"
            )

    def __call__(
        self, panel: Panel, gates: GateReport, cfg: DictConfig, out: Path, timer: StageTimer
    ) -> dict:
        return run_per_coin(panel, gates, cfg, out, timer)
