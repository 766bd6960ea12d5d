"""``pipeline=per_coin``: one tailored, validated, costed model per coin, and the roster.

1. Features and after-cost labels for the whole panel (as the hierarchical run).
2. One split: training window, validation slice at its end, out-of-sample test window of
   ``pipeline.test_days`` (purged). Clusters, factor, fracdiff and scalers are fitted on
   the training window.
3. The shared encoder is trained once on the union of all coins' training data and saved
   to ``meta/shared_encoder.*``.
4. Coin heads: trained jointly as one grouped model (``heads=joint``), or each in its own
   job (``heads=alone``).
5. Slippage is calibrated for every coin at once on the end of the training window.
6. One job per coin through the queue: validate after the coin's own costs, permutation
   importance, export the model version, challenge the champion.
7. ``meta/feature_bank.json``, then ``champions/roster.json`` last.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from huracan.config import build
from huracan.costs import CostModel, calibrate_slippage_from_candles
from huracan.data import GateReport, Panel
from huracan.errors import ConfigError
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
from huracan.registry.roster import write_roster
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
    with timer("costs") as note:
        fits = calibrate_slippage_from_candles(
            panel,
            train_rows=fold.train,
            window_days=cfg.pipeline.calibration_days,
            volatility=arrays.volatility,
            vol_window=cfg.labels.vol_window,
            default=CostModel(**cfg.costs),
        )
        note(f"{sum(f.method != 'default' for f in fits.values())} fitted")
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
        roster = write_roster(store, roster_entries(store, panel, gates, cfg), run_id)
        tradable = sum(e["trade_ok"] for e in roster["entries"])
        note(f"{len(roster['entries'])} entries, {tradable} trade_ok")
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
        CoinJob(symbol=s, skip_reason="gates: " + ", ".join(r["code"] for r in reasons))
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
    for j, symbol in enumerate(panel.symbols):
        fit = fits[symbol]
        model = fit.cost_model(cfg.costs.fee_bps)
        # the fitted line (base spread + slope x volatility) already holds how the spread
        # widens with volatility, so the bars' quoted spreads are not charged on top
        cost = np.asarray(model.round_trip_bps(None, arrays.volatility[:, j]), float)
        slip = 2 * np.asarray(model.slippage_bps(arrays.volatility[:, j]), float)
        parts = {
            name: coin_part(arrays, data, valid, rows, j, cost, slip)
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


def roster_entries(store: Store, panel: Panel, gates: GateReport, cfg: DictConfig) -> list[dict]:
    """One entry per symbol of the universe that has a champion (complete version)."""
    entries = []
    for symbol in sorted(gates.skip_reasons):
        champion = read_champion(store, symbol)
        if champion is None or not is_complete(store, champion["model_path"], False):
            continue
        # the pointer holds the metrics and costs of the window it was last scored on
        metrics = champion["metrics"]
        costs = champion.get("costs") or store.read_json(f"{champion['model_path']}/costs.json")
        reasons = [f"gates: {r['code']}" for r in gates.skip_reasons[symbol]]
        round_trip = costs.get("expected_round_trip_bps") or 0.0
        if round_trip > cfg.pipeline.max_round_trip_bps:
            reasons.append(f"round trip {round_trip:.1f} bps > {cfg.pipeline.max_round_trip_bps}")
        if (metrics.get("n_trades") or 0) < cfg.pipeline.champion_min_trades:
            reasons.append(f"{metrics.get('n_trades')} out-of-sample trades")
        if (metrics.get("net_pnl_bps") or 0) <= 0:
            reasons.append("no net profit out of sample")
        volume = gates.metrics.get(symbol, {}).get("daily_quote_volume")
        slip = metrics.get("avg_slip_bps")
        entries.append(
            {
                "symbol": symbol,
                "model_path": champion["model_path"],
                "spread_bps": round(float(costs["base_spread_bps"]), 4),
                "fee_bps": float(costs["fee_bps"]),
                "avg_slip_bps": round(
                    float(slip if slip is not None else costs.get("expected_slip_bps") or 0.0), 4
                ),
                "last_7d_net_bps": round(float(metrics.get("last_7d_net_bps") or 0.0), 4),
                "trade_ok": not reasons,
                "reasons": reasons,
                "sharpe": metrics.get("sharpe"),
                "round_trip_bps": round_trip,
                "daily_quote_volume": volume,
            }
        )
    return entries


def _state(module) -> dict:
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


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
