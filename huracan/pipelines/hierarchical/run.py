"""``pipeline=hierarchical``: walk-forward training of the whole fleet, and its report.

For each fold: fit clusters, market factor, fracdiff and scalers on the training rows;
pretrain the shared encoder; train the grouped heads (one output per label horizon);
choose each head's horizon and decision threshold on the validation slice; predict the
test window. The out-of-sample trades of all test windows are then scored after costs, per
asset and per cluster, beside the baselines (and, on the synthetic market, the oracle).

Longer than most modules on purpose: it is the whole fold loop of the hierarchical
pipeline as named stages (each function under 60 lines); the report lives in
``hierarchical.report``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from huracan.config import build
from huracan.data import GateReport
from huracan.data.panel import Panel
from huracan.errors import ConfigError
from huracan.features.per_cluster import feature_sets
from huracan.loggers import log_results, stage_logger
from huracan.memory import release_memory
from huracan.models import save_checkpoint
from huracan.pipelines.base import Pipeline
from huracan.pipelines.hierarchical.book import Book, FleetRun
from huracan.pipelines.hierarchical.ensemble import ensemble_config, fold_components, stack_run
from huracan.pipelines.hierarchical.factor_report import log_factor_lines
from huracan.pipelines.hierarchical.report import write_report
from huracan.pipelines.hierarchical.validation import describe, validation_daily_bps
from huracan.report import StageTimer, format_table
from huracan.threads import apply_threads
from huracan.thresholds import choose_by_rule
from huracan.training.arrays import FleetArrays, build_fleet_arrays
from huracan.training.crossfit import (
    Block,
    CrossFit,
    Evidence,
    block_lead_fits,
    fitted_on_labels,
    moved_leaders,
    out_of_fold,
    refuse_fitted_features,
)
from huracan.training.fit import fit_encoder, fit_heads, without_factor
from huracan.training.folds import (
    FoldData,
    fracdiff_report,
    horizon_samples,
    horizon_weights,
    label_horizons,
    prepare_fold,
    scored_baselines,
    walk_forward,
)
from huracan.training.late import LateFold, admit_late, late_candidates, late_mode
from huracan.training.universe import absent_cells, fold_arrays, fold_universe
from huracan.validation import Fold

log = logging.getLogger("huracan")


class HierarchicalPipeline(Pipeline):
    """Walk-forward training of the whole fleet, its report and its part of summary.json."""

    def test_start(self, panel: Panel, cfg: DictConfig) -> pd.Timestamp:
        return fleet_walk_forward(cfg).first_test_bar(panel)

    def fold_starts(self, panel: Panel, cfg: DictConfig) -> list[pd.Timestamp]:
        return fleet_walk_forward(cfg).test_starts(panel)

    def __call__(
        self, panel: Panel, gates: GateReport, cfg: DictConfig, out: Path, timer: StageTimer
    ) -> dict:
        run = run_hierarchical(panel, cfg, out, timer, gates)
        logger = stage_logger(cfg, "report", hparams=False)
        with timer("report"):
            report = write_report(run, panel, cfg, out, logger)
        log_report(report)
        overall = report["clusters"]["all"]["model"]
        log_results(
            logger, cfg, {f"hp/{k}": v for k, v in overall.items() if isinstance(v, int | float)}
        )
        return {
            "verdict": report["verdict"],
            "clusters": report["clusters"],
            "baselines": report["baselines"],
            "cluster_agreement": report["cluster_agreement"],
            **({"tree_recovery": report["tree_recovery"]} if report["tree_recovery"] else {}),
            "folds": report["folds"],
            "per_fold": json.loads(report["per_fold"].to_json(orient="index")),
            "criteria": report["criteria"],
            "diagnostics": report["diagnostics"],
            "daily_net_bps": report["daily_net_bps"],
            "validation": report["validation"],
            "ic": report["ic"],
            "books": report["books"],
            "universe": universe_summary(run, gates),
            **({"ensemble": report["ensemble"]} if "ensemble" in report else {}),
            "objects": {"run": run},
        }


def universe_summary(run: FleetRun, gates: GateReport) -> dict:
    """``summary.json``'s ``universe``: where the gates were measured, the coins of each
    fold, and the fold each coin joined (``gates.json`` says why it was out before)."""
    symbols = run.arrays.symbols
    first = run.universe.argmax(0)
    return {
        "gates_measured": "per fold" if gates.fold_starts else "once",
        "assets_per_fold": run.universe.sum(1).tolist(),
        "joined": {
            symbols[j]: int(first[j]) for j in range(len(symbols)) if run.universe[:, j].any()
        },
    }


def log_report(report: dict) -> None:
    """The console report: per asset, per cluster beside the baselines, criteria, verdict."""
    results = report["results"].set_index("asset")
    log.info("out-of-sample results per asset (after costs)\n%s", format_table(results))
    rows = []
    for name, entry in report["clusters"].items():
        for variant, metrics in entry.items():
            if isinstance(metrics, dict):
                rows.append({"group": name, "variant": variant, **metrics})
    table = pd.DataFrame(rows).set_index(["group", "variant"])
    table = table[
        [
            "net_bps",
            "n_trades",
            "expectancy",
            "t_stat",
            "ci_low",
            "ci_high",
            "precision",
            "recall",
            "sharpe",
        ]
    ]
    log.info(
        "per cluster, model beside its ablation, the oracle and the baselines (pooled trades, "
        "after costs, same test windows)\n%s",
        format_table(table, max_rows=120),
    )
    shares = {k: v["oracle_share"] for k, v in report["clusters"].items() if "oracle_share" in v}
    if shares:
        log.info(
            "share of the oracle's net profit at equal costs: %s",
            ", ".join(f"{k} {'n/a' if v is None else f'{v:.2f}'}" for k, v in shares.items()),
        )
    log.info("per fold (all assets' test-window trades)\n%s", format_table(report["per_fold"]))
    lines = [f"  {c['result']}  {c['name']}: {c['value']}" for c in report["criteria"]]
    log.info("success criteria (none passes on a loss)\n%s", "\n".join(lines))
    lines = [
        f"  {'n/a  ' if d['holds'] is None else 'holds' if d['holds'] else 'fails'}  "
        f"{d['name']}: {d['value']}"
        for d in report["diagnostics"]
    ]
    log.info(
        "diagnostics (not success criteria: they say nothing about profit)\n%s", "\n".join(lines)
    )
    log.info(
        "validation slices at the chosen cuts (what a search optimises; not a result): %s",
        describe(report["validation"]),
    )
    log_factor_lines(report)
    log.info("verdict: %s", report["verdict"])


def fleet_walk_forward(cfg: DictConfig):
    """The folds of a fleet run: purged for its longest label horizon."""
    return walk_forward(cfg, horizon=max(label_horizons(cfg)))


def run_hierarchical(
    panel: Panel, cfg: DictConfig, out: Path, timer: StageTimer, gates: GateReport | None = None
) -> FleetRun:
    """Walk-forward training and out-of-sample prediction of the whole fleet.

    Args:
        gates: the run's gate report: each fold's universe (``training.universe``) is
            read from it and why a coin is out of a fold is added to it; None: every
            coin of the panel passed the gates for every fold.
    """
    apply_threads(cfg.threads)  # train() has; a direct caller gets the same threads
    stacking = ensemble_config(cfg).enabled
    horizons = label_horizons(cfg)
    with timer("features") as note:
        arrays = build_fleet_arrays(panel, cfg, horizons)
        note(f"{len(arrays.feature_names)} features, horizons {list(horizons)} bar(s)")
    folds = fleet_walk_forward(cfg).split(panel)
    shape = arrays.grid_shape
    min_bars = int(cfg.cluster.get("min_overlap") or 2)  # 2 bars: a correlation at least
    universe = fold_universe(gates, arrays, folds, min_bars, cfg.universe.min_assets)
    late = np.zeros_like(universe)
    if late_mode(cfg) == "assign":  # too new to cluster: assigned one (training.late)
        late = late_candidates(gates, arrays, folds, universe, min_bars)
    compare = cfg.report.compare_without_factor and build(cfg.factor).n_factors > 0
    make_trainer = instantiate(cfg.trainer)  # before any book's file is created
    run = FleetRun(
        arrays=arrays,
        folds=folds,
        model=Book.empty(arrays, stored=out / "books" / "model"),
        cluster_ids=np.full(shape, -1, dtype=np.int16),
        test_rows=np.concatenate([f.test for f in folds]),
        universe=universe,
    )
    # a failure before every fold is written removes the books' files (NaN-filled so far)
    with run.discarded_on_failure():
        if compare:
            run.without_factor = Book.empty(arrays, stored=out / "books" / "without_factor")
        previous = None
        for fold in folds:
            with timer(f"fold {fold.index + 1}/{len(folds)}") as note:
                part = fold_arrays(arrays, panel, universe[fold.index])  # the fold's coins only
                fold_cfg = fold_cluster_config(cfg, part, fold, arrays)
                data = prepare_fold(part, fold, fold_cfg, previous)
                newcomers = None
                if late[fold.index].any():
                    newcomers = admit_late(data, part, arrays, panel, late[fold.index], cfg, gates)
                if newcomers is not None:  # scored on the test window from here on
                    universe[fold.index] |= np.isin(arrays.symbols, newcomers.arrays.symbols)
                info = train_fold(data, part, cfg, out, make_trainer, run, compare, newcomers)
                previous = data.clusters
                # without a cluster, a coin has no head under head.granularity=cluster,
                # unless a refit inside the test window clusters it (cluster.refit_every)
                headless = cfg.head.granularity == "cluster" and not cfg.cluster.get("refit_every")
                unclustered = without_cluster(
                    previous.excluded, fold.index, len(folds), gates if headless else None
                )
                del data, part, newcomers
                for book in (run.model, run.without_factor):
                    if book is not None:  # the fold's results to disk, out of memory
                        book.unmap()
                release_memory()
                sizes = "/".join(str(len(m)) for m in previous.cluster_members.values())
                note(
                    f"train {fold.train_times[0]:%Y-%m-%d}..{fold.train_times[-1]:%Y-%m-%d}, "
                    f"test {fold.test_times[0]:%Y-%m-%d}..{fold.test_times[-1]:%Y-%m-%d}, "
                    f"{universe[fold.index].sum()} coins{unclustered}, clusters of {sizes}, "
                    f"{info['test_signals']} test signals"
                )
    with timer("baselines"):
        validation = run.baseline_validation if stacking else None
        run.baselines, run.baseline_scores = fleet_baselines(
            arrays, folds, cfg, panel, universe, validation
        )
    if stacking:
        with timer("ensemble") as note:
            started = time.perf_counter()
            stack_run(run, cfg)
            run.ensemble_seconds += time.perf_counter() - started
            note(f"{len(run.components)} head components, {run.ensemble_seconds:.1f} s in all")
    if panel.truth is not None and 1 in horizons:
        # the oracle knows each bar's expected next-bar return; it trades when that beats
        # the same round-trip cost the models pay (the run's own cost model)
        with np.errstate(invalid="ignore"):
            signals = np.expm1(panel.truth.expected_return) > arrays.cost_bps / 1e4
        signals[np.setdiff1d(np.arange(len(signals)), run.test_rows)] = False
        absent = absent_cells(universe, folds, shape)
        run.oracle = Book.at_horizon(signals & ~absent, arrays, 1, absent)
    return run


def fold_cluster_config(
    cfg: DictConfig, part: FleetArrays, fold: Fold, arrays: FleetArrays
) -> DictConfig:
    """``cfg``, or a copy cutting the tree into as many clusters as the fold has coins where
    it has fewer than ``cluster.n_clusters`` and the run (``arrays``) has enough: a fold
    before the coins listed during the run join it. A run with fewer coins than
    ``n_clusters`` in all keeps the clusterer's error; ``cluster=hierarchy`` keeps its
    levels (its own check names them)."""
    wanted, coins = cfg.cluster.get("n_clusters"), len(part.symbols)
    if not isinstance(wanted, int) or cfg.cluster.get("levels"):
        return cfg
    if not 2 <= coins < wanted <= len(arrays.symbols):
        return cfg
    log.info(
        "fold %d holds %d coins, fewer than cluster.n_clusters=%d: cut into %d clusters",
        fold.index, coins, wanted, coins,
    )  # fmt: skip
    capped = cfg.copy()
    capped.cluster.n_clusters = coins
    return capped


def fleet_baselines(
    arrays: FleetArrays,
    folds: list[Fold],
    cfg: DictConfig,
    panel: Panel | None = None,
    universe: np.ndarray | None = None,
    validation: dict | None = None,
) -> tuple[dict[str, Book], dict[str, np.ndarray]]:
    """The baselines (``folds.scored_baselines``) as books on the same test windows and
    costs, and their scores: each fold's on the arrays of its universe alone.

    Args:
        panel: the panel ``arrays`` were built from (needed where a coin is out of a fold).
        universe: (K, N) the folds' universes (``training.universe``); None: every coin.
        validation: where given, receives LightGBM's per-fold (V, N, H) validation
            probabilities over the run's coins (NaN for a coin out of the fold), what
            ``ensemble=stack`` stacks.
    """
    if universe is None:
        universe = np.ones((len(folds), len(arrays.symbols)), dtype=bool)
    trades, scores = {}, {}
    for fold in folds:
        columns = np.flatnonzero(universe[fold.index])
        part = fold_arrays(arrays, panel, universe[fold.index])
        own = None if validation is None else {}
        fold_trades, fold_scores = scored_baselines(part, [fold], cfg, own)
        for name, by_fold in (own or {}).items():
            for k, probs in by_fold.items():  # the fold's coins -> the run's columns
                full = np.full((len(probs), len(arrays.symbols), probs.shape[2]), np.nan)
                full[:, columns] = probs
                validation.setdefault(name, {})[k] = full.astype(np.float32)
        for name, (signals, index) in fold_trades.items():
            if name not in trades:
                trades[name] = (
                    np.zeros(arrays.grid_shape, dtype=bool),
                    np.full(arrays.grid_shape, -1, dtype=index.dtype),
                )
            cells = np.ix_(fold.test, columns)
            trades[name][0][cells] = signals[fold.test]
            trades[name][1][cells] = index[fold.test]
        for name, score in fold_scores.items():
            scores[name] = merged_score(scores.get(name), score, fold, columns, len(arrays.symbols))
        del part
    absent = absent_cells(universe, folds, arrays.grid_shape)
    books = {
        name: Book.chosen(signals, index, arrays, absent)
        for name, (signals, index) in trades.items()
    }
    scores = {
        name: np.broadcast_to(score, (len(arrays.horizons), *score.shape))
        if score.ndim == 2
        else score
        for name, score in scores.items()
    }
    return books, scores


def merged_score(
    merged: np.ndarray | None, score: np.ndarray, fold: Fold, columns: np.ndarray, n_assets: int
) -> np.ndarray:
    """``merged`` (NaN where no fold wrote) with one fold's (H, T, n) ``score`` written on
    its test rows and its universe's columns; a score that is the same for every horizon
    (a read-only view repeated over them) is kept as one (T, N) array."""
    repeated = score.strides[0] == 0
    if merged is None:
        shape = score.shape[1:-1] if repeated else score.shape[:-1]
        merged = np.full((*shape, n_assets), np.nan, dtype=np.float32)
    if repeated:
        merged[np.ix_(fold.test, columns)] = score[0][fold.test]
    else:
        merged[:, fold.test[:, None], columns[None, :]] = score[:, fold.test]
    return merged


def _days(times: pd.DatetimeIndex) -> float:
    return (times[-1] - times[0]) / pd.Timedelta(days=1) if len(times) else 0.0


def empty_fold_error(fold: Fold, n_train: int, n_val: int, cfg: DictConfig) -> ConfigError:
    """The error for a fold whose training or validation slice holds no labelled sample:
    the split's doing (too short a history for its folds, or too high a floor)."""
    floor = OmegaConf.select(cfg, "validation.min_val_days")
    floor_note = f", validation.min_val_days {floor}" if floor else ""
    advice = (
        "lower validation.min_val_days or use fewer folds"
        if floor
        else "use fewer folds or a longer history (the features' warm-up and the labels "
        "need bars before and after each sample)"
    )
    return ConfigError(
        f"fold {fold.index + 1} (index {fold.index}): no usable training or validation "
        f"samples: {_days(fold.train_times):.1f} training days ({len(fold.train)} rows, "
        f"{n_train} samples) and {_days(fold.val_times):.1f} validation days "
        f"({len(fold.val)} rows, {n_val} samples){floor_note}; {advice}"
    )


def train_fold(
    data: FoldData,
    arrays: FleetArrays,
    cfg: DictConfig,
    out: Path,
    make_trainer,
    run: FleetRun,
    compare: bool,
    late: LateFold | None = None,
) -> dict:
    """Trains one fold's models and writes its out-of-sample trades into ``run``; the
    ``late`` coins (``training.late``) are scored on the test window only."""
    fold = data.fold
    weights = horizon_weights(arrays, fold)
    learn, predict = data.valid(arrays), data.valid(arrays, labelled=False)
    # the inputs are read from the fold's grids a chunk at a time (``LazyInputs``): the
    # encoder fits on a subset, the heads learn from codes, predictions go in chunks
    parts = [(fold.train, learn), (fold.val, learn), (fold.test, predict)]
    (train, train_t, train_a), (val, val_t, val_a), (test, test_t, test_a) = (
        horizon_samples(data, arrays, weights, rows, valid, lazy_inputs=True)
        for rows, valid in parts
    )
    del weights, learn, predict, parts
    plan = cross_fit_plan(data, arrays, cfg)  # before the channels are freed
    data.drop_inputs(inputs=False)  # the samples hold the rest of what the models read
    # the books have a column per coin of the run; ``arrays`` those of the fold's universe
    columns = np.array([run.arrays.symbols.index(s) for s in arrays.symbols])
    test_cols, tests = columns[test_a], [test]  # the test samples, predicted part by part
    if late is not None:
        extra, extra_t, extra_cols = late_samples(late, run)
        tests.append(extra)
        test_t, test_cols = (
            np.concatenate([test_t, extra_t]),
            np.concatenate([test_cols, extra_cols]),
        )
    if len(train["y"]) == 0 or len(val["y"]) == 0:
        raise empty_fold_error(fold, len(train["y"]), len(val["y"]), cfg)
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
    codes = build(cfg.head).encode(encoder, train, val)  # one encoding for both trainings
    inputs = train  # what the heads predict from (validation.cross_fit's blocks)
    if codes:  # the heads learn from the codes
        train = codes[0]
    release_memory()
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
        codes,
    )
    rows = (val_t, val_a, test_t, test_cols)
    cross = None
    if plan is not None:  # the gate's evidence: the training window out of fold, too
        fit = block_fitter(cfg, encoder, data.n_groups, make_trainer, name, stage, seed)
        sample_rows = (train_t, train_a, val_a)
        cross = cross_fitted(fit, plan, (train, inputs, val), codes, sample_rows)
    choice = trade_decisions(module, val, tests, rows, arrays, data.n_groups, cfg, run.model, cross)
    run.cluster_ids[fold.test] = data.clusters.labels(run.arrays.symbols)[None, :]
    for symbol, assigned in data.clusters.late.items():
        run.cluster_ids[fold.test, run.arrays.symbols.index(symbol)] = assigned["cluster"]
    if data.group_rows is not None:  # refitted inside the window: head g is cluster g
        run.cluster_ids[np.ix_(fold.test, columns)] = data.group_rows[fold.test]
    if ensemble_config(cfg).enabled:
        started = time.perf_counter()
        parts = fold_components(
            cfg,
            fold.index,
            module,
            encoder,
            (train, val, joined(tests)),
            codes,
            (val_t, columns[val_a], test_t, test_cols),  # the run's columns
            data.n_groups,
            make_trainer,
            stage_logger(cfg, f"{name}_global_head"),
            seed,
            f"{stage} global head",
        )
        run.ensemble_parts.append(parts)
        run.ensemble_seconds += time.perf_counter() - started
    release_memory()
    if compare:
        samples = (train, val, tests, inputs)
        blocks = None if plan is None else (plan[0], (train_t, train_a, val_a), plan[2])
        train_without_factor(
            data, encoder, samples, codes, rows, arrays, make_trainer, run, cfg, blocks
        )
    save_fold_checkpoint(out, module, data, arrays.symbols, choice, cfg)
    n_test = sum(len(part["y"]) for part in tests)  # counted, not joined: no input is read
    info = record_fold(run, data, arrays, train, n_test, choice)
    info["cross_fit_blocks"] = 0 if plan is None else len(plan[0])
    info["cross_fit_left_out"] = left_out_coins(plan, arrays.symbols)
    info["cross_fit_samples"] = 0 if cross is None else len(cross.rows)  # of train_samples
    return info


def cross_fit_plan(
    data: FoldData, arrays: FleetArrays, cfg: DictConfig
) -> tuple[list[Block], list | None, list[np.ndarray] | None] | None:
    """``validation.cross_fit``'s blocks of the fold's training rows, with
    ``factor.lead_fit`` each block's lead fit, and with ``cluster.level_factor=leader``
    each block's (N,) coins left out of the evidence (``training.crossfit``); None where
    the fold is not cross-fitted."""
    cross = CrossFit.of(cfg)
    if cross is None or not cross.applies(data.fold):
        return None
    if cross.auto and fitted_on_labels(cfg, data.trend is not None):
        log.info(
            "fold %d: validation.cross_fit=auto: the slice alone gates (the inputs are "
            "fitted on the training labels: features.per_cluster=learned or the trend "
            "aggregate)",
            data.fold.index + 1,
        )
        return None
    refuse_fitted_features(cfg, data.trend is not None)
    purge, embargo = fleet_walk_forward(cfg).gaps()
    blocks = cross.split(data.fold.train, purge, embargo)
    leads, moved = None, None
    if data.lead_fit is not None:  # its channel is the last: refitted without each block
        raw = data.channels[..., :-1]
        leads = block_lead_fits(raw, arrays.returns, data.fold.train, blocks)
    if data.tree is not None and data.tree.level_factor == "leader":
        market = data.factor.transform(arrays.returns, arrays.quote_volume)
        moved = moved_leaders(data.tree, arrays.returns, market, data.fold.train, blocks)
        for b, coins in enumerate(moved):
            if coins.any():
                log.info(
                    "fold %d, cross_fit block %d: %d coin(s) left out of its heads and the "
                    "gate's evidence (without the block their level leaders change): %s",
                    data.fold.index + 1,
                    b + 1,
                    coins.sum(),
                    ", ".join(np.asarray(arrays.symbols)[coins][:10]),
                )
    return blocks, leads, moved


def left_out_coins(plan: tuple | None, symbols: list[str]) -> list[list[str]] | None:
    """Per block, the coins whose samples ``cross_fitted`` leaves out of the evidence
    (``cluster.level_factor=leader``); None without cross-fitting or level leaders."""
    if plan is None or plan[2] is None:
        return None
    return [np.asarray(symbols)[coins].tolist() for coins in plan[2]]


def block_fitter(cfg: DictConfig, encoder, n_groups: int, make_trainer, name, stage, seed):
    """``out_of_fold``'s ``fit``: the fold's head recipe on one block's samples, each
    block its own seed and log."""

    def fit(train, val, codes, b):
        return fit_heads(
            cfg.head,
            encoder,
            n_groups,
            train,
            val,
            make_trainer,
            stage_logger(cfg, f"{name}_block{b}"),
            seed + 1000 * (b + 1),
            f"{stage} block {b + 1}",
            codes,
        )

    return fit


def cross_fitted(fit, plan: tuple, samples: tuple, codes, rows: tuple) -> Evidence:
    """The training samples' out-of-fold probabilities (``training.crossfit.out_of_fold``)
    as evidence for the gate: ``rows`` are the training samples' grid rows and columns and
    the validation samples' columns."""
    blocks, leads, moved = plan
    train_t, train_a, val_a = rows
    assets = (train_a, val_a)
    prob, keep = out_of_fold(fit, blocks, train_t, samples, codes, assets, leads, moved)
    group = samples[0]["group"].numpy()
    return Evidence(prob[keep], train_t[keep], train_a[keep], group[keep])


def late_samples(late: LateFold, run: FleetRun) -> tuple[dict, np.ndarray, np.ndarray]:
    """The late coins' test samples, their grid rows and their columns in ``run``."""
    arrays, data = late.arrays, late.data
    weights = np.zeros((*arrays.grid_shape, len(arrays.horizons)), np.float32)  # never read
    predict = data.valid(arrays, labelled=False)
    extra, extra_t, extra_a = horizon_samples(data, arrays, weights, data.fold.test, predict)
    data.drop_inputs()
    columns = np.array([run.arrays.symbols.index(s) for s in arrays.symbols])
    return extra, extra_t, columns[extra_a]


def joined(parts: list[dict]) -> dict:
    """Sample tensors of several parts as one."""
    if len(parts) == 1:
        return parts[0]
    # ``[:]``: a part's inputs may be read lazily (``LazyInputs``), a tensor's is a view
    return {key: torch.cat([part[key][:] for part in parts]) for key in parts[0]}


def record_fold(run: FleetRun, data: FoldData, arrays, train, n_test: int, choice) -> dict:
    """Adds the fold's clusters, factor and summary to ``run``; returns the summary."""
    traded = int(run.model.signals[data.fold.test].sum())
    info = fold_info(data, arrays.symbols, train, n_test, traded, choice, arrays.horizons)
    run.fold_clusters.append(data.clusters)
    run.fold_factor.append(data.factor.to_dict())
    run.fold_info.append(info)
    return info


def train_without_factor(
    data: FoldData,
    encoder,
    samples: tuple,
    codes: tuple | None,
    rows: tuple,
    arrays: FleetArrays,
    make_trainer,
    run,
    cfg,
    cross: tuple | None = None,
) -> None:
    """The ablation: the same heads without the factor channels, written into ``run``.

    Args:
        samples: the fold's train and val sample tensors, its test parts' and the train
            samples' inputs (before encoding).
        codes: the train and val samples encoded (``MoEHeads.encode``), or None.
        rows: the grid rows and asset columns of the validation and test samples.
        arrays: the fold's arrays (its universe's coins).
        cross: ``validation.cross_fit``'s blocks, the training samples' rows and the
            heads' left-out coins per block (see :func:`cross_fitted`), or None: the
            ablation's gate is chosen as the heads'.
    """
    fold = data.fold
    train, val, inputs = (without_factor(part) for part in (*samples[:2], samples[3]))
    tests = [without_factor(part) for part in samples[2]]
    codes = None if codes is None else tuple(without_factor(part) for part in codes)
    name, stage = (
        f"fold{fold.index}_heads_without_factor",
        f"fold {fold.index + 1}/{len(run.folds)}",
    )
    seed = cfg.seed + fold.index
    plain = fit_heads(
        cfg.head,
        encoder,
        data.n_groups,
        train,
        val,
        make_trainer,
        stage_logger(cfg, name),
        seed,
        f"{stage} heads without factor",
        codes,
    )
    evidence = None
    if cross is not None:  # no factor channel: no lead fit to refit per block
        fit = block_fitter(cfg, encoder, data.n_groups, make_trainer, name, stage, seed)
        # no channel, no lead fit; the heads' left-out coins too: both arms gate on the
        # same samples
        plan = (cross[0], None, cross[2])
        evidence = cross_fitted(fit, plan, (train, inputs, val), codes, cross[1])
    trade_decisions(
        plain, val, tests, rows, arrays, data.n_groups, cfg, run.without_factor, evidence
    )


def save_fold_checkpoint(
    out: Path, module, data: FoldData, symbols: list[str], choice: dict, cfg: DictConfig
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
            "trend_weights": None if data.trend is None else data.trend.coef_,
            # factor.lead_fit: per coin the intercept and channel coefficients, and the scale
            "lead_fit": None
            if data.lead_fit is None
            else {
                "coef": dict(zip(symbols, data.lead_fit.coef_.tolist(), strict=True)),
                "scale": data.lead_fit.scale_,
            },
            "feature_sets": feature_sets(data.masks, data.feature_names),
            "cluster_refits": data.clusters.refits,  # the heads from each refit's start on
            "cluster_map": data.clusters.cluster_map,
            "cluster_tree": data.clusters.tree,
            "head_groups": dict(zip(symbols, data.groups.tolist(), strict=True)),
            "factor": data.factor.to_dict(),
            "thresholds": choice["thresholds"],
            "horizons": choice["horizons"],
            "train_end": str(data.fold.train_times[-1]),
            "config": OmegaConf.to_container(cfg, resolve=True),
        },
    )


def without_cluster(
    excluded: dict[str, str], fold: int, n_folds: int, gates: GateReport | None
) -> str:
    """Records in ``gates`` (where given: the coins have no head, so no trade, in the
    fold) the fold's coins the clusterer left without a cluster, so that ``gates.json``
    does not count them in it; returns their mention for the fold's console line (they
    still count among the fold's coins: the baselines trade them)."""
    for symbol, why in excluded.items() if gates is not None else ():
        message = f"no cluster, so no head, in fold {fold + 1}/{n_folds}: {why}"
        gates.exclude_from_fold(symbol, fold, n_folds, {"code": "no_cluster", "message": message})
    if not excluded:
        return ""
    names = sorted(excluded)
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f" ({', '.join(names[:3])}{more} without a cluster)"


def fold_info(
    data: FoldData,
    symbols: list[str],
    train: dict,
    n_test: int,
    trades: int,
    choice: dict,
    horizons: tuple[int, ...],
) -> dict:
    """The fold's line in ``summary.json``: sizes, trades, each head's horizon and
    threshold and validation bound, what was filled."""
    fold = data.fold
    return {
        "fold": fold.index,
        "train_rows": len(fold.train),
        "val_rows": len(fold.val),
        "test_rows": len(fold.test),
        "train_samples": len(train["y"]),
        "test_samples": n_test,
        "test_signals": trades,
        "heads_trading": sum(h is not None for h in choice["horizons"]),
        "horizons": choice["horizons"],
        "thresholds": choice["thresholds"],
        "validation_bound_bps": choice["bound_bps"],
        "validation_trades": choice["validation_trades"],
        "validation_daily_bps": choice["validation_daily_bps"],
        "factor_bars_filled": data.factor_filled,
        "factor_bars_zeroed": data.factor_zeroed,
        "assets_without_cluster": sorted(data.clusters.excluded),
        "late_coins": dict(data.clusters.late),
        "fracdiff": fracdiff_report(data, symbols),
        "trend_weights": None if data.trend is None else data.trend.coef_.round(6).tolist(),
        "feature_sets": feature_sets(data.masks, data.feature_names),
        "cluster_refits": [
            {k: v for k, v in r.items() if k != "cluster_map"} for r in data.clusters.refits
        ],
    }


def trade_decisions(
    module,
    val: dict,
    tests: list[dict],
    rows: tuple,
    arrays: FleetArrays,
    n_groups: int,
    cfg,
    book: Book,
    cross: Evidence | None = None,
) -> dict:
    """Per head, horizon and threshold chosen on validation; the test trades go into ``book``.

    Args:
        tests: the test samples, in parts (the fold's coins, then its late coins).
        arrays: the fold's arrays: ``val_a`` are their columns.
        rows: grid rows and asset columns of the validation and the test samples (the
            parts in order); the test samples' columns are those of ``book`` (the run's
            coins).
        cross: ``validation.cross_fit``'s out-of-fold predictions of the training window,
            chosen on together with the validation slice's; None: the slice's alone.

    Returns:
        Per head: ``horizons`` (bars, None where it does not trade), ``thresholds`` and
        ``bound_bps`` (its validation lower bound on profit), and the validation trades
        at those cuts with their P&L per day (``hierarchical.validation``), JSON-ready.
    """
    val_t, val_a, test_t, test_a = rows
    val_prob = _columns(module.predict_proba(val["x"], val["factor"], val["group"]))
    val_net = arrays.net_at(val_t, val_a)
    prob, net, group, row = val_prob, val_net, val["group"].numpy(), val_t
    if cross is not None:  # in time order: the training window, then the slice
        prob = np.concatenate([cross.prob, val_prob])
        net = np.concatenate([arrays.net_at(cross.rows, cross.assets), val_net])
        group, row = np.concatenate([cross.group, group]), np.concatenate([cross.rows, row])
    index, cuts, bounds = choose_by_rule(
        cfg.thresholds,
        prob,
        net,
        group,
        row,
        arrays.horizons,
        n_groups,
        arrays.timestamps_ns,
        cfg.seed,
    )
    daily, n_trades = validation_daily_bps(
        val_prob,
        val_net,
        val["group"].numpy(),
        val_t,
        arrays.timestamps_ns[val_t],
        (index, cuts),
        arrays.horizons,
    )
    # part by part: a batch's float sums depend on its size, so each coin's probabilities
    # are the same whatever other part (the late coins, training.late) is predicted
    prob = np.concatenate(
        [_columns(module.predict_proba(t["x"], t["factor"], t["group"])) for t in tests]
    )
    group = np.concatenate([t["group"].numpy() for t in tests])
    chosen = np.maximum(index[group], 0)  # a head without a horizon does not trade
    p = prob[np.arange(len(prob)), chosen]
    book.probability[test_t, test_a] = p
    if book.scores is not None:
        book.scores[:, test_t, test_a] = prob.T
    book.signals[test_t, test_a] = (index[group] >= 0) & (p >= cuts[group])
    book.index[test_t, test_a] = chosen
    return {
        "horizons": [arrays.horizons[i] if i >= 0 else None for i in index.tolist()],
        "thresholds": [None if np.isinf(c) else round(float(c), 4) for c in cuts],
        "bound_bps": [None if np.isinf(b) else round(float(b) * 1e4, 1) for b in bounds],
        "validation_trades": n_trades,
        "validation_daily_bps": daily,
    }


def _columns(prob: torch.Tensor) -> np.ndarray:
    """Probabilities as (B, H), also from a one-output head."""
    prob = prob.numpy()
    return prob[:, None] if prob.ndim == 1 else prob
