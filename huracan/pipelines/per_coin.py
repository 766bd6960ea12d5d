"""``pipeline=per_coin``: one tailored, validated, costed model per coin, and the roster.

1. Features for the whole panel (as the hierarchical run).
2. One split: training window, validation slice at its end, out-of-sample test window of
   ``pipeline.test_days`` (purged). Clusters, factor, fracdiff and scalers are fitted on
   the training window.
   Every coin's spread is estimated on the ``pipeline.calibration_days`` right before the
   test window (``huracan.costs.estimate``), for all coins at once since the joint heads
   need every coin's labels: one cost model per coin for its labels, threshold,
   evaluation and roster entry.
3. The shared encoder is trained once on the union of all coins' training data and saved
   to ``meta/shared_encoder.*``.
4. Coin heads: trained jointly as one grouped model (``heads=joint``), or each in its own
   job (``heads=alone``).
5. One job per coin through the queue: validate after the coin's own costs, permutation
   importance, export the model version, challenge the champion.
6. ``meta/feature_bank.json``, then ``champions/roster.json`` last: every coin of the
   universe, tradable or not and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from huracan.config import build
from huracan.costs import (
    SlippageFit,
    SpreadTier,
    cost_arrays,
    estimate_spreads,
    spread_from_ticks,
)
from huracan.data import GateReport, Panel
from huracan.errors import ConfigError, DataError
from huracan.features.drift import reference_bins
from huracan.loggers import stage_logger
from huracan.models.checkpoint import encoder_spec
from huracan.pipelines.base import Pipeline
from huracan.pipelines.coin_job import CoinJob, run_coin_job
from huracan.pipelines.fold_data import (
    FleetArrays,
    FoldData,
    build_fleet_arrays,
    prepare_fold,
    single_split,
)
from huracan.pipelines.training import fit_encoder, fit_heads
from huracan.progress import interactive
from huracan.queue import QueueReport
from huracan.registry.artifacts import is_complete, json_bytes, model_prefix
from huracan.registry.champions import read_champion
from huracan.registry.roster import TABLE_FIELDS, format_table, roster_entry, write_roster
from huracan.report import StageTimer
from huracan.store import ArtifactNotFound, Store, content_hash

log = logging.getLogger("huracan")


def run_per_coin(
    panel: Panel, gates: GateReport, cfg: DictConfig, out: Path, timer: StageTimer
) -> dict:
    """Trains, validates, exports and ranks one model per coin; returns the run summary."""
    store_options = OmegaConf.to_container(cfg.store, resolve=True)
    store = build(cfg.store)
    run_id = str(cfg.pipeline.run_id)
    with timer("features") as note:
        arrays = build_fleet_arrays(panel, cfg)
        [fold] = single_split(panel, cfg).split(panel)
        data = prepare_fold(arrays, fold, cfg, None)
        note(
            f"train ..{fold.train_times[-1]:%Y-%m-%d}, "
            f"test {fold.test_times[0]:%Y-%m-%d}..{fold.test_times[-1]:%Y-%m-%d}"
        )
    with timer("costs") as note:
        fits = calibrate_costs(panel, cfg, int(fold.test[0]))
        arrays = coin_costs(arrays, fits, cfg)
        methods = [f.method for f in fits.values()]
        note(", ".join(f"{m} {methods.count(m)}" for m in sorted(set(methods))))
    valid = data.valid(arrays)
    train, _, _ = data.samples(arrays, fold.train, valid)
    val, _, _ = data.samples(arrays, fold.val, valid)
    make_trainer = instantiate(cfg.trainer)
    with timer("shared encoder") as note:
        logger = stage_logger(cfg, "per_coin_encoder")
        encoder = fit_encoder(
            cfg.encoder, train, val, make_trainer, logger, cfg.seed, "shared encoder"
        )
        note(f"{len(train['y']):,} training samples of {panel.n_assets} coins")
    joint = None
    if cfg.pipeline.heads == "joint":
        with timer("joint heads") as note:
            joint = fit_heads(
                cfg.head,
                encoder,
                panel.n_assets,
                train,
                val,
                make_trainer,
                stage_logger(cfg, "per_coin_heads"),
                cfg.seed,
                "joint heads",
            )
            encoder = joint.encoder  # the same one, or its fine-tuned copy
            note(f"{panel.n_assets} coin heads in one grouped model")
    encoder_hash = save_shared_encoder(store, encoder, data, fold, run_id)
    jobs = build_jobs(
        panel,
        gates,
        cfg,
        arrays,
        data,
        valid,
        encoder,
        joint,
        fits,
        store_options,
        encoder_hash,
        run_id,
    )
    queue = build(
        cfg.queue,
        log_dir=out / "logs",
        progress=bool(cfg.trainer.enable_progress_bar) and interactive(),
    )
    with timer("jobs") as note:
        report = queue.run(
            run_coin_job,
            jobs,
            done=lambda job: is_complete(store, job.model_prefix, verify_hashes=True),
        )
        note(", ".join(f"{k} {v}" for k, v in report.counts().items() if v))
    with timer("roster") as note:
        bank = write_feature_bank(store, report, jobs, cfg, run_id)
        test_window = [str(fold.test_times[0]), str(fold.test_times[-1])]
        entries = roster_entries(store, gates, cfg, jobs, report, test_window)
        roster = write_roster(store, entries, run_id)
        tradable = sum(e["trade_ok"] for e in roster["entries"])
        note(f"{len(roster['entries'])} entries, {tradable} trade_ok")
    log.info(
        "roster (top 10 of %d)\n%s",
        len(roster["entries"]),
        format_table(roster["entries"][:10], TABLE_FIELDS),
    )
    return {
        "per_coin": {
            "run_id": run_id,
            "store": store.describe(),
            "test_window": [str(fold.test_times[0]), str(fold.test_times[-1])],
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


def build_jobs(
    panel: Panel,
    gates: GateReport,
    cfg: DictConfig,
    arrays: FleetArrays,
    data: FoldData,
    valid: np.ndarray,
    encoder,
    joint,
    fits: dict,
    store_options: dict,
    encoder_hash: str,
    run_id: str,
) -> list[CoinJob]:
    """One job per symbol of the universe; gate failures become skipped jobs."""
    fold = data.fold
    jobs = [
        CoinJob(
            symbol=s,
            skip_reason="gates: " + ", ".join(r["code"] for r in reasons),
            costs={**fits[s].to_dict(), "fee_bps": cfg.costs.fee_bps} if s in fits else {},
        )
        for s, reasons in gates.skip_reasons.items()
        if reasons
    ]
    encoder_state = {k: v.numpy() for k, v in encoder.state_dict().items()}
    head_cfg = OmegaConf.to_container(cfg.head, resolve=True)
    inputs = data.feature_names + data.channel_names
    rules = {
        "min_trades": cfg.thresholds.min_trades,
        "z": cfg.thresholds.z,
        "champion_min_trades": cfg.pipeline.champion_min_trades,
        "importance_repeats": cfg.pipeline.importance_repeats,
        "bars_per_year": panel.bars_per_year,
        "horizon": cfg.labels.horizon,
        "min_train_samples": 100,
        # worker processes share the cores: one torch thread each avoids oversubscription
        "torch_threads": 1 if cfg.queue.workers > 1 else None,
    }
    test_window = [str(fold.test_times[0]), str(fold.test_times[-1])]
    heads = None if joint is None else [joint.head.group_slice(j) for j in range(panel.n_assets)]
    # the labels were built with these same costs (coin_costs): one cost model per coin
    costs, slips = cost_arrays(fits, cfg.costs.fee_bps, arrays.volatility)
    for j, symbol in enumerate(panel.symbols):
        fit = fits[symbol]
        parts = {
            name: coin_part(arrays, data, valid, rows, j, costs[:, j], slips[:, j])
            for name, rows in (("train", fold.train), ("val", fold.val), ("test", fold.test))
        }
        reason = ""
        if len(parts["val"]["y"]) == 0 or len(parts["test"]["y"]) == 0:
            reason = "no validation or test bars with every input (history too short)"
        jobs.append(
            CoinJob(
                symbol=symbol,
                skip_reason=reason,
                run_id=run_id,
                model_prefix=model_prefix(symbol, run_id),
                store=store_options,
                encoder_spec=encoder_spec(encoder),
                encoder_state=encoder_state,
                head_state=None if joint is None else _state(heads[j]),
                head_args=None if joint is None else heads[j].model_args,
                head_cfg=head_cfg,
                trainer_cfg=OmegaConf.to_container(cfg.trainer, resolve=True),
                train=parts["train"] if joint is None else None,
                val=parts["val"],
                test=parts["test"],
                meta={
                    "symbol": symbol,
                    "inputs": inputs,
                    "features": data.feature_names,
                    "factor_channels": data.channel_names,
                    "scaler": {"mean": data.scaler.mean_[j], "std": data.scaler.std_[j]},
                    "fracdiff_d": None if data.fracdiff is None else _f(data.fracdiff.d_[j]),
                    "cluster": int(data.clusters.cluster_map.get(symbol, -1)),
                    "reference": reference_bins(
                        np.concatenate([parts["train"]["x"], parts["train"]["factor"]], axis=1)
                    ),
                    "factor": data.factor.to_dict(),
                    "timeframe": panel.timeframe,
                    "train_end": str(fold.train_times[-1]),
                    # the last bar the model saw: early stopping and threshold read the validation
                    "data_end": str((fold.val_times if len(fold.val) else fold.train_times)[-1]),
                    "test_window": test_window,
                    "shared_encoder_hash": encoder_hash,
                    "config": OmegaConf.to_container(cfg, resolve=True),
                },
                costs={
                    **fit.to_dict(),
                    "fee_bps": cfg.costs.fee_bps,
                    "expected_round_trip_bps": _f(np.nanmean(parts["test"]["cost_bps"])),
                    "expected_slip_bps": _f(np.nanmean(parts["test"]["slip_bps"])),
                },
                rules=rules,
                seed=cfg.seed + j,
            )
        )
    return jobs


def calibrate_costs(panel: Panel, cfg: DictConfig, end_row: int) -> dict[str, SlippageFit]:
    """Every coin's spread on the ``pipeline.calibration_days`` before grid row ``end_row``.

    ``end_row`` is the first bar of the window the costs price (the test window), so the
    calibration reads only the bars right before it (``huracan.costs.estimate``).
    """
    options = cfg.pipeline.costs
    tiers = [
        SpreadTier(float(t.min_daily_quote_volume), float(t.spread_bps)) for t in options.tiers
    ]
    fits = estimate_spreads(
        panel,
        end_row=end_row,
        window_days=cfg.pipeline.calibration_days,
        tiers=tiers,
        slippage_bps_per_sigma=cfg.costs.slippage_bps_per_sigma,
        estimator=options.estimator,
        z=options.z,
        n_blocks=options.jackknife_blocks,
        min_bars=options.min_bars,
    )
    if options.get("ticks_dir"):
        end = panel.timestamps[end_row]
        start = end - pd.Timedelta(days=cfg.pipeline.calibration_days)
        for symbol, fit in tick_fits(panel.symbols, options, start, end, cfg).items():
            fits[symbol] = replace(
                fit,
                estimator=fits[symbol].estimator,
                estimator_spread_bps=fits[symbol].estimator_spread_bps,
                estimator_t=fits[symbol].estimator_t,
                liquidity_tier=fits[symbol].liquidity_tier,
                daily_quote_volume=fits[symbol].daily_quote_volume,
            )
    return fits


def tick_fits(
    symbols: list[str],
    options: DictConfig,
    start: pd.Timestamp,
    end: pd.Timestamp,
    cfg: DictConfig,
) -> dict[str, SlippageFit]:
    """Spreads from the tick files of ``pipeline.costs.ticks_dir`` received in [start, end)."""
    directory = Path(options.ticks_dir)
    if not directory.is_dir():
        raise ConfigError(f"pipeline.costs.ticks_dir {directory} is not a directory")
    fits = {}
    for symbol in symbols:
        names = {
            kind: directory
            / options.ticks_pattern.format(symbol=symbol, symbol_lower=symbol.lower(), kind=kind)
            for kind in ("trades", "bbo")
        }
        if not all(path.is_file() for path in names.values()):
            continue
        frames = {}
        for kind, path in names.items():
            try:
                frames[kind] = pd.read_csv(path)
            except (OSError, ValueError) as err:
                raise DataError(str(path), f"unreadable tick file: {err}") from None
        fit = spread_from_ticks(
            frames["trades"],
            frames["bbo"],
            symbol=symbol,
            start=start,
            end=end,
            slippage_bps_per_sigma=cfg.costs.slippage_bps_per_sigma,
            min_trades=options.min_trades,
        )
        if fit is not None:
            fits[symbol] = fit
    return fits


def coin_costs(arrays: FleetArrays, fits: dict[str, SlippageFit], cfg: DictConfig) -> FleetArrays:
    """The arrays with labels, net returns and costs from each coin's calibrated model.

    ``build_fleet_arrays`` labels with the configured costs; the per-coin run trains,
    thresholds and evaluates every coin at its own calibrated round trip instead.
    """
    cost, _ = cost_arrays(fits, cfg.costs.fee_bps, arrays.volatility)
    net = np.where(np.isnan(arrays.net_return), np.nan, arrays.gross_return - cost / 1e4)
    label = np.where(np.isnan(net), np.nan, (net > 0).astype(np.float64))
    return replace(arrays, label=label, net_return=net, cost_bps=cost)


def coin_part(
    arrays: FleetArrays,
    data: FoldData,
    valid: np.ndarray,
    rows: np.ndarray,
    j: int,
    cost: np.ndarray,
    slip: np.ndarray,
) -> dict:
    """One coin's samples on some grid rows, with its own costs."""
    t = rows[valid[rows, j]]
    return {
        "x": data.x[t, j],
        "factor": data.channels[t, j],
        "y": arrays.label[t, j],
        "w": data.weights[t, j],
        "gross": arrays.gross_return[t, j],
        "cost_bps": cost[t],
        "slip_bps": slip[t],
        "timestamps": arrays.timestamps_ns[t],
    }


def write_feature_bank(
    store: Store, report: QueueReport, jobs: list[CoinJob], cfg: DictConfig, run_id: str
) -> dict:
    """Per-coin permutation importance and the features important across many coins."""
    per_coin = {}
    for job in jobs:
        if job.skip_reason or str(report[job.symbol].status) != "completed":
            continue
        result = report[job.symbol].result
        if "importance" in result:
            per_coin[job.symbol] = result["importance"]
        else:  # cached: read what the completed version recorded
            try:
                per_coin[job.symbol] = store.read_json(f"{job.model_prefix}/features.json")[
                    "importance"
                ]
            except ArtifactNotFound:
                continue
    top_counts: dict[str, int] = {}
    for importance in per_coin.values():
        ranked = sorted((v, k) for k, v in importance.items() if v is not None)[::-1][:5]
        for _, name in ranked:
            top_counts[name] = top_counts.get(name, 0) + 1
    need = cfg.pipeline.shared_feature_share * max(len(per_coin), 1)
    bank = {
        "run_id": run_id,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "method": "permutation importance: validation AUROC lost when the input is shuffled",
        "per_coin": per_coin,
        "top5_counts": dict(sorted(top_counts.items(), key=lambda kv: -kv[1])),
        "shared_features": sorted(k for k, v in top_counts.items() if v >= need),
    }
    store.write_bytes("meta/feature_bank.json", json_bytes(bank))
    return bank


def roster_entries(
    store: Store,
    gates: GateReport,
    cfg: DictConfig,
    jobs: list[CoinJob],
    report: QueueReport,
    test_window: list[str],
) -> list[dict]:
    """One entry per symbol of the universe, tradable or not (policy: ``roster_entry``)."""
    by_symbol = {job.symbol: job for job in jobs}
    results = {r.symbol: r for r in report}
    entries = []
    for symbol in sorted(gates.skip_reasons):
        champion = read_champion(store, symbol)
        if champion is not None and not is_complete(store, champion["model_path"], False):
            champion = None
        job = by_symbol.get(symbol)
        result = results.get(symbol)
        entries.append(
            roster_entry(
                symbol,
                champion=champion,
                costs=job.costs if job is not None else {},
                test_window=test_window,
                gate_codes=[r["code"] for r in gates.skip_reasons[symbol]],
                job_status="missing" if result is None else str(result.status),
                job_reason="" if result is None else result.reason,
                daily_quote_volume=gates.metrics.get(symbol, {}).get("daily_quote_volume"),
                max_round_trip_bps=cfg.pipeline.max_round_trip_bps,
                min_trades=cfg.pipeline.champion_min_trades,
                run_metrics=run_metrics(store, job, result),
            )
        )
    return entries


def _state(module) -> dict:
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def run_metrics(store: Store, job: CoinJob | None, result) -> dict:
    """This run's out-of-sample metrics of a coin's model: the job's, or its cached version's."""
    if job is None or result is None or str(result.status) != "completed":
        return {}
    if "metrics" in result.result:
        return result.result["metrics"]
    try:
        return store.read_json(f"{job.model_prefix}/metrics.json")
    except ArtifactNotFound:
        return {}


def _f(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


@dataclass(frozen=True)
class PerCoinPipeline(Pipeline):
    """``pipeline=per_coin``: one validated, costed, exported model per coin, and the roster.

    The fields are the ``pipeline`` config's options (typed here, read from the config by
    the stages).
    """

    run_id: str | int = ""
    test_days: float = 30
    heads: Literal["joint", "alone"] = "joint"
    calibration_days: float = 30
    costs: dict = field(default_factory=dict)
    importance_repeats: int = 2
    champion_min_trades: int = 10
    max_round_trip_bps: float = 40
    shared_feature_share: float = 0.5
    services = ("queue", "store")

    def test_start(self, panel: Panel, cfg: DictConfig):
        return single_split(panel, cfg).first_test_bar(panel)

    def check(self, cfg: DictConfig) -> None:
        if cfg.head.granularity != "coin":
            raise ConfigError(
                f"pipeline=per_coin trains one head per coin; head.granularity is "
                f"{cfg.head.granularity!r} (drop the head override, or use head=coin)"
            )

    def __call__(
        self, panel: Panel, gates: GateReport, cfg: DictConfig, out: Path, timer: StageTimer
    ) -> dict:
        return run_per_coin(panel, gates, cfg, out, timer)
