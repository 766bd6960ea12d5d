"""The per-coin pipeline's jobs: what each coin's job receives, built from the run's split.

``SharedSpec`` is what every job of a run shares (encoder, recipes, rules, config);
``job_for_coin`` adds one coin's samples at its own costs, its head slice when the heads
were trained jointly, the metadata its checkpoint keeps, and the coin's bars of the
calibration days before its test window, on which the job prices its test rows
(``per_coin.costs.price_test``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from huracan.coin_rule import cut_rule
from huracan.coins import CoinJob
from huracan.costs import SlippageFit, cost_arrays
from huracan.data import GateReport, Panel
from huracan.features.drift import reference_bins
from huracan.features.labels import forward_return
from huracan.io import plain
from huracan.models.checkpoint import encoder_spec
from huracan.pipelines.per_coin.costs import calibration_bars, fee_bps
from huracan.pipelines.per_coin.history import history_gap
from huracan.registry.artifacts import model_prefix
from huracan.training.arrays import FleetArrays
from huracan.training.folds import FoldData


@dataclass(frozen=True)
class Split:
    """The per-coin run's one split and what was fitted on its training window."""

    arrays: FleetArrays  # labels and costs from each coin's own cost model
    data: FoldData  # clusters, factor, fracdiff and scalers of the training window
    fits: dict[str, SlippageFit]  # each coin's cost calibration at the training window's end
    valid: np.ndarray  # (T, N) rows with every input, a label and a head
    weights: np.ndarray  # (T, N, H) energy weights per label horizon (``horizon_weights``)
    # per baseline (signals, horizon index), each (T, N): ``training.folds.run_baselines``
    baselines: dict = field(default_factory=dict)

    @property
    def fold(self):
        return self.data.fold

    @property
    def test_window(self) -> list[str]:
        return [str(self.fold.test_times[0]), str(self.fold.test_times[-1])]

    def windows(self, report_days: float) -> tuple[list[str], list[str] | None]:
        """The test window cut in two: the selection window (champion, ``trade_ok``) and
        the report window of its last ``report_days`` (the roster's figures; None for 0)."""
        times = self.fold.test_times
        if not report_days:
            return self.test_window, None
        step = times[1] - times[0] if len(times) > 1 else pd.Timedelta(0)
        start = times[-1] + step - pd.Timedelta(days=report_days)
        before, after = times[times < start], times[times >= start]
        if not len(before) or not len(after):
            return self.test_window, None
        return [str(before[0]), str(before[-1])], [str(after[0]), str(after[-1])]


@dataclass(frozen=True)
class SharedSpec:
    """What every coin's job of one run shares: the encoder, the recipes, the rules."""

    run_id: str
    store: dict
    encoder_spec: dict
    encoder_state: dict
    encoder_hash: str
    head_cfg: dict
    trainer_cfg: dict
    rules: dict
    config: dict


def shared_spec(
    panel: Panel, cfg: DictConfig, split: Split, encoder, encoder_hash: str, run_id: str
) -> SharedSpec:
    """What every job shares; ``encoder`` None where no job trains (all models stored)."""
    return SharedSpec(
        run_id=run_id,
        store=OmegaConf.to_container(cfg.store, resolve=True),
        encoder_spec={} if encoder is None else encoder_spec(encoder),
        encoder_state={} if encoder is None else _state(encoder),
        encoder_hash=encoder_hash,
        head_cfg=OmegaConf.to_container(cfg.head, resolve=True),
        trainer_cfg=OmegaConf.to_container(cfg.trainer, resolve=True),
        rules={
            "min_trades": cfg.thresholds.min_trades,
            "z": cfg.thresholds.z,
            "cut_z": cfg.thresholds.cut_z,
            "threshold_unit": cfg.thresholds.unit,
            "champion_min_trades": cfg.pipeline.champion_min_trades,
            "importance_repeats": cfg.pipeline.importance_repeats,
            "bars_per_year": panel.bars_per_year,
            "horizon": cfg.labels.horizon,
            "horizons": list(split.arrays.horizons),  # each job chooses one on validation
            "report_days": cfg.pipeline.report_days,
            "min_train_samples": 100,
            # worker processes share the cores: one torch thread each avoids oversubscription
            "torch_threads": 1 if cfg.queue.workers > 1 else None,
        },
        config=OmegaConf.to_container(cfg, resolve=True),
    )


def build_jobs(
    panel: Panel, gates: GateReport, cfg: DictConfig, split: Split, shared: SharedSpec, joint
) -> list[CoinJob]:
    """One job per symbol of the universe; gate failures become skipped jobs."""
    jobs = gate_jobs(gates)
    # the labels were built with these same costs (coin_costs); the job reprices its test
    costs, slips = cost_arrays(split.fits, fee_bps(cfg), split.arrays.volatility)
    days = cfg.pipeline.calibration_days
    for j in range(panel.n_assets):
        head = None if joint is None else joint.head.group_slice(j)
        job = job_for_coin(panel, split, shared, j, costs[:, j], slips[:, j], head)
        bars = calibration_bars(panel, j, int(split.fold.test[0]), days)
        jobs.append(replace(job, calibration=bars))
    return jobs


def gate_jobs(gates: GateReport) -> list[CoinJob]:
    """The skipped jobs of the symbols a gate failed, each with what was measured against
    which limit, in the gate's units (e.g. ``gates: min_history (days of history 28 vs
    limit 60)``)."""
    return [
        CoinJob(
            symbol=symbol,
            skip_reason="gates: "
            + ", ".join(
                f"{r['code']} ({r['message']})" if r.get("message") else r["code"] for r in reasons
            ),
        )
        for symbol, reasons in gates.skip_reasons.items()
        if reasons
    ]


def job_for_coin(
    panel: Panel, split: Split, shared: SharedSpec, j: int, cost, slip, head
) -> CoinJob:
    """Coin ``j``'s job: its samples at its own costs, its head (if joint), its metadata."""
    symbol, fold, data = panel.symbols[j], split.fold, split.data
    # float64 returns of every horizon: the job prices its P&L from them
    gross = np.stack([forward_return(panel.close[:, j], h) for h in split.arrays.horizons], -1)
    parts = {
        name: coin_part(split, rows, j, cost, slip, gross)
        for name, rows in (("train", fold.train), ("val", fold.val), ("test", fold.test))
    }
    # the test window's closes to the last bar: a champion of another horizon is priced on them
    first = int(fold.test[0])
    parts["test"]["closes"] = panel.close[first:, j].copy()
    test_rows = fold.test[split.valid[fold.test, j]]  # the rows of its test part
    parts["test"]["grid_row"] = test_rows - first
    parts["test"]["baselines"] = coin_baselines(split, test_rows, j)
    return CoinJob(
        symbol=symbol,
        skip_reason=history_gap(panel, split, j),
        run_id=shared.run_id,
        model_prefix=model_prefix(symbol, shared.run_id),
        store=shared.store,
        encoder_spec=shared.encoder_spec,
        encoder_state=shared.encoder_state,
        head_state=None if head is None else _state(head),
        head_args=None if head is None else head.model_args,
        head_cfg=shared.head_cfg,
        trainer_cfg=shared.trainer_cfg,
        train=parts["train"] if head is None else None,
        val=parts["val"],
        test=parts["test"],
        meta={
            "symbol": symbol,
            # its horizon and cut's rule (the family gate's seed its own): the Mechanic's too
            "cut_rule": cut_rule(
                OmegaConf.create(shared.config["thresholds"]), shared.config["seed"], symbol
            ),
            "inputs": data.feature_names + data.channel_names,
            "features": data.feature_names,
            "factor_channels": data.channel_names,
            "scaler": data.scaler.select([j]).state_dict(),  # as every checkpoint saves it
            "fracdiff_d": None if data.fracdiff is None else plain(data.fracdiff.d_[j]),
            "cluster": int(data.clusters.cluster_map.get(symbol, -1)),
            "reference": reference_bins(
                np.concatenate([parts["train"]["x"], parts["train"]["factor"]], axis=1)
            ),
            "factor": data.factor.to_dict(),
            # cluster=hierarchy: the level tree its channels are rebuilt from when served
            **({} if data.clusters.tree is None else {"tree": data.clusters.tree}),
            "timeframe": panel.timeframe,
            "train_end": str(fold.train_times[-1]),
            # the last bar the model saw: early stopping and threshold read the validation
            "data_end": str((fold.val_times if len(fold.val) else fold.train_times)[-1]),
            "test_window": split.test_window,
            # the champion and trade_ok are decided on the first, the roster reports the second
            "selection_window": split.windows(shared.rules["report_days"])[0],
            "report_window": split.windows(shared.rules["report_days"])[1],
            "shared_encoder_hash": shared.encoder_hash,
            "config": shared.config,
        },
        # the test fit comes from the job (price_test); labels and threshold were priced so
        costs={
            "training_fit": split.fits[symbol].to_dict(),
        },
        rules=shared.rules,
        seed=shared.config["seed"] + j,
    )


def coin_part(
    split: Split,
    rows: np.ndarray,
    j: int,
    cost: np.ndarray,
    slip: np.ndarray,
    gross: np.ndarray,
) -> dict:
    """One coin's samples on some grid rows, with its own costs: labels ``y`` and weights
    ``w`` (M, H), one column per label horizon (weight 0 where a horizon has no label;
    (M,) for one horizon), and ``gross`` (M, H) the return of a trade held each horizon."""
    arrays, data = split.arrays, split.data
    t = rows[split.valid[rows, j]]
    label = arrays.label_h[t, j]
    known = np.isfinite(label)
    y = np.where(known, label, np.float32(0.0))
    w = np.where(known, split.weights[t, j], np.float32(0.0))
    if label.shape[1] == 1:
        y, w = y[:, 0], w[:, 0]
    return {
        "x": data.inputs(t, j),
        "factor": data.channels[t, j],
        "y": y,
        "w": w,
        "gross": gross[t],
        "cost_bps": cost[t],
        "slip_bps": slip[t],
        "timestamps": arrays.timestamps_ns[t],
        "volatility": arrays.volatility[t, j],
    }


def coin_baselines(split: Split, rows: np.ndarray, j: int) -> dict[str, tuple[np.ndarray, int]]:
    """Each baseline's entries on coin ``j``'s test rows (those of its ``coin_part``) and
    the bars it holds them: one horizon per coin in a fold, chosen on validation."""
    out = {}
    for name, (signals, index) in split.baselines.items():
        held = max(int(index[rows, j].max(initial=0)), 0)
        out[name] = (signals[rows, j].copy(), int(split.arrays.horizons[held]))
    return out


def _state(module) -> dict:
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}
