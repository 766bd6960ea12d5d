"""``pipeline=hierarchical``: walk-forward training of the whole fleet, and its report.

For each fold: fit clusters, market factor, fracdiff and scalers on the training rows;
pretrain the shared encoder; train the grouped heads; choose decision thresholds on the
validation slice; predict the test window. The out-of-sample signals of all test windows
are then scored after costs, per asset and per cluster.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from huracan.clustering import ClusterResult
from huracan.config import build
from huracan.data import GateReport
from huracan.data.panel import Panel
from huracan.loggers import log_results, stage_logger
from huracan.models import save_checkpoint
from huracan.pipelines.base import Pipeline
from huracan.pipelines.fleet_report import write_report
from huracan.pipelines.fold_data import (
    FleetArrays,
    FoldData,
    build_fleet_arrays,
    fracdiff_report,
    prepare_fold,
    walk_forward,
)
from huracan.pipelines.training import fit_encoder, fit_heads, without_factor
from huracan.report import StageTimer, format_table
from huracan.thresholds import choose_thresholds
from huracan.validation import Fold

log = logging.getLogger("huracan")


@dataclass
class FleetRun:
    """Everything a hierarchical run produced, for the report and the tests."""

    arrays: FleetArrays
    folds: list[Fold]
    signals: np.ndarray  # (T, N) bool, out-of-sample trades
    probability: np.ndarray  # (T, N) out-of-sample probabilities, NaN outside test rows
    cluster_ids: np.ndarray  # (T, N) cluster of each asset during each test window, -1 else
    test_rows: np.ndarray
    fold_clusters: list[ClusterResult] = field(default_factory=list)
    fold_factor: list[dict] = field(default_factory=list)
    fold_info: list[dict] = field(default_factory=list)
    signals_without_factor: np.ndarray | None = None
    probability_without_factor: np.ndarray | None = None
    oracle_signals: np.ndarray | None = None


class HierarchicalPipeline(Pipeline):
    """Walk-forward training of the whole fleet, its report and its part of summary.json."""

    def test_start(self, panel: Panel, cfg: DictConfig) -> pd.Timestamp:
        return walk_forward(cfg).first_test_bar(panel)

    def __call__(
        self, panel: Panel, gates: GateReport, cfg: DictConfig, out: Path, timer: StageTimer
    ) -> dict:
        run = run_hierarchical(panel, cfg, out, timer)
        logger = stage_logger(cfg, "report", hparams=False)
        with timer("report"):
            report = write_report(run, panel, cfg, out, logger)
        log_report(report)
        overall = report["clusters"]["all"]["model"]
        log_results(
            logger, cfg, {f"hp/{k}": v for k, v in overall.items() if isinstance(v, int | float)}
        )
        return {
            "clusters": report["clusters"],
            "cluster_agreement": report["cluster_agreement"],
            "folds": report["folds"],
            "per_fold": json.loads(report["per_fold"].to_json(orient="index")),
            "criteria": report["criteria"],
            "objects": {"run": run},
        }


def log_report(report: dict) -> None:
    """The console report: clusters, per-asset table, per-cluster table, criteria."""
    results = report["results"].set_index("asset")
    log.info("out-of-sample results per asset (after costs)\n%s", format_table(results))
    rows = []
    for name, entry in report["clusters"].items():
        for variant in ("model", "without_factor", "oracle"):
            if variant in entry:
                rows.append({"group": name, "variant": variant, **entry[variant]})
    table = pd.DataFrame(rows).set_index(["group", "variant"])
    log.info("per cluster (pooled trades, after costs)\n%s", format_table(table, max_rows=80))
    log.info("per fold (all assets' test-window trades)\n%s", format_table(report["per_fold"]))
    lines = [f"  {c['result']}  {c['name']}: {c['value']}" for c in report["criteria"]]
    log.info("success criteria\n%s", "\n".join(lines))


def run_hierarchical(panel: Panel, cfg: DictConfig, out: Path, timer: StageTimer) -> FleetRun:
    """Walk-forward training and out-of-sample prediction of the whole fleet."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with timer("features") as note:
        arrays = build_fleet_arrays(panel, cfg)
        note(f"{len(arrays.feature_names)} features, horizon {cfg.labels.horizon} bar(s)")
    folds = walk_forward(cfg).split(panel)
    shape = arrays.net_return.shape
    run = FleetRun(
        arrays=arrays,
        folds=folds,
        signals=np.zeros(shape, dtype=bool),
        probability=np.full(shape, np.nan),
        cluster_ids=np.full(shape, -1, dtype=np.int64),
        test_rows=np.concatenate([f.test for f in folds]),
    )
    compare = cfg.report.compare_without_factor and build(cfg.factor).n_factors > 0
    if compare:
        run.signals_without_factor = np.zeros(shape, dtype=bool)
        run.probability_without_factor = np.full(shape, np.nan)
    make_trainer = instantiate(cfg.trainer)
    previous = None
    for fold in folds:
        with timer(f"fold {fold.index + 1}/{len(folds)}") as note:
            data = prepare_fold(arrays, fold, cfg, previous)
            info = train_fold(data, arrays, cfg, out, make_trainer, run, compare)
            previous = data.clusters
            note(
                f"train {fold.train_times[0]:%Y-%m-%d}..{fold.train_times[-1]:%Y-%m-%d}, "
                f"test {fold.test_times[0]:%Y-%m-%d}..{fold.test_times[-1]:%Y-%m-%d}, "
                f"{data.clusters.n_clusters} clusters, {info['test_trades']} test trades"
            )
    if panel.truth is not None and cfg.labels.horizon == 1:
        # the oracle knows each bar's expected next-bar return; it trades when that beats
        # the same round-trip cost the models pay
        with np.errstate(invalid="ignore"):
            run.oracle_signals = np.expm1(panel.truth.expected_return) > arrays.cost_bps / 1e4
    return run


def train_fold(
    data: FoldData,
    arrays: FleetArrays,
    cfg: DictConfig,
    out: Path,
    make_trainer,
    run: FleetRun,
    compare: bool,
) -> dict:
    """Trains one fold's models and writes its out-of-sample signals into ``run``."""
    fold = data.fold
    valid = data.valid(arrays)
    train, _, _ = data.samples(arrays, fold.train, valid)
    val, val_t, val_a = data.samples(arrays, fold.val, valid)
    test, test_t, test_a = data.samples(arrays, fold.test, valid)
    if len(train["y"]) == 0 or len(val["y"]) == 0:
        raise ValueError(f"fold {fold.index}: no usable training or validation samples")
    seed = cfg.seed + fold.index
    stage = f"fold {fold.index + 1}/{len(run.folds)}"
    # each stage logs to a run of its own: fold0_encoder, fold0_heads, ...
    name = f"fold{fold.index}"
    encoder = fit_encoder(
        cfg.encoder,
        train,
        val,
        make_trainer,
        stage_logger(cfg, f"{name}_encoder"),
        seed,
        f"{stage} encoder",
    )
    module = fit_heads(
        cfg.head,
        encoder,
        data.n_groups,
        train,
        val,
        make_trainer,
        stage_logger(cfg, f"{name}_heads"),
        seed,
        f"{stage} heads",
    )
    val_net = arrays.net_return[val_t, val_a]
    thresholds, prob, traded = trade_decisions(module, val, test, val_net, data.n_groups, cfg)
    run.probability[test_t, test_a] = prob
    run.signals[test_t, test_a] = traded
    run.cluster_ids[fold.test] = data.clusters.labels(arrays.symbols)[None, :]
    if compare:
        rows = (test_t, test_a)
        train_without_factor(
            data, encoder, (train, val, test), val_net, rows, make_trainer, run, cfg
        )
    save_fold_checkpoint(out, module, data, arrays.symbols, thresholds, cfg)
    info = fold_info(data, arrays.symbols, train, test, int(traded.sum()), thresholds)
    run.fold_clusters.append(data.clusters)
    run.fold_factor.append(data.factor.to_dict())
    run.fold_info.append(info)
    return info


def train_without_factor(
    data: FoldData, encoder, samples: tuple, val_net, rows: tuple, make_trainer, run, cfg
) -> None:
    """The ablation: the same heads without the factor channels, written into ``run``.

    Args:
        samples: the fold's (train, val, test) sample tensors.
        rows: the grid rows and asset columns of the test samples.
    """
    fold = data.fold
    train, val, test = (without_factor(part) for part in samples)
    plain = fit_heads(
        cfg.head,
        encoder,
        data.n_groups,
        train,
        val,
        make_trainer,
        stage_logger(cfg, f"fold{fold.index}_heads_without_factor"),
        cfg.seed + fold.index,
        f"fold {fold.index + 1}/{len(run.folds)} heads without factor",
    )
    _, prob, traded = trade_decisions(plain, val, test, val_net, data.n_groups, cfg)
    test_t, test_a = rows
    run.probability_without_factor[test_t, test_a] = prob
    run.signals_without_factor[test_t, test_a] = traded


def save_fold_checkpoint(
    out: Path, module, data: FoldData, symbols: list[str], thresholds, cfg: DictConfig
) -> None:
    """The fold's model with everything needed to use it: ``models/fold<k>/``."""
    save_checkpoint(
        out / "models" / f"fold{data.fold.index}",
        module,
        {
            "features": data.feature_names,
            "factor_channels": data.channel_names,
            "scaler": data.scaler.state_dict(),
            "fracdiff_d": None if data.fracdiff is None else data.fracdiff.d_,
            "cluster_map": data.clusters.cluster_map,
            "head_groups": dict(zip(symbols, data.groups.tolist(), strict=True)),
            "factor": data.factor.to_dict(),
            "thresholds": thresholds,
            "train_end": str(data.fold.train_times[-1]),
            "config": OmegaConf.to_container(cfg, resolve=True),
        },
    )


def fold_info(
    data: FoldData, symbols: list[str], train: dict, test: dict, trades: int, thresholds
) -> dict:
    """The fold's line in ``summary.json``: sizes, trades, thresholds, what was filled."""
    fold = data.fold
    return {
        "fold": fold.index,
        "train_rows": len(fold.train),
        "val_rows": len(fold.val),
        "test_rows": len(fold.test),
        "train_samples": len(train["y"]),
        "test_samples": len(test["y"]),
        "test_trades": trades,
        "thresholds": [None if np.isinf(t) else round(float(t), 4) for t in thresholds],
        "factor_bars_filled": data.factor_filled,
        "factor_bars_zeroed": data.factor_zeroed,
        "assets_without_cluster": sorted(data.clusters.excluded),
        "fracdiff": fracdiff_report(data, symbols),
    }


def trade_decisions(
    module, val: dict, test: dict, val_net: np.ndarray, n_groups: int, cfg: DictConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds chosen on validation; test probabilities and the trades they make."""
    val_prob = module.predict_proba(val["x"], val["factor"], val["group"]).numpy()
    thresholds = choose_thresholds(
        val_prob,
        val_net,
        val["group"].numpy(),
        n_groups,
        cfg.thresholds.min_trades,
        cfg.thresholds.z,
    )
    prob = module.predict_proba(test["x"], test["factor"], test["group"]).numpy()
    return thresholds, prob, prob >= thresholds[test["group"].numpy()]
