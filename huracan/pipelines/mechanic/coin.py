"""One champion's turn in the Mechanic: fine-tune its head on the bars since its training
ended (encoder frozen), score challenger and champion on the holdout, export, challenge.

The bars a champion has not seen are split in time: the fine-tuning rows (the last
``mechanic.val_fraction`` of them, after a purge of the champion's own label horizon, for
early stopping and the threshold) end the fleet's longest champion horizon before the
holdout, so no label of theirs reaches it; labels, threshold and scores all hold trades
the champion's horizon, the threshold judged on every h-th bar as the per-coin job did;
the holdout is the newest ``mechanic.holdout_days``, which neither model trained on. Both
are scored there with the coin's current costs (calibrated on the bars before the
holdout), each with its own threshold and preprocessing (the challenger keeps the
champion's: FFD order, scaler, market factor; only its head changes). The challenger is
exported as a new model version (manifest last) before ``champions.challenge`` decides,
by the champion rule, whether its pointer replaces the champion's.

A holdout is used to judge a champion once. Cycles a day apart would otherwise compare on
holdouts that overlap by all but a day, and the champion would defend its title on the
very bars that won it (a model selected because it did well there is expected to do worse
on new bars: the comparison and its figures favour it). So the coin's holdout is only the
part of the cycle's holdout after the last bar of the window on which its champion was
promoted (``judged_until``); ``mechanic.json`` records how many holdout bars that left
out (``holdout.reused_bars_excluded``). After a promotion the coin is compared again once
fresh bars have come: on the 1 to ``holdout_days`` days since.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from functools import cached_property

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from huracan.coin_rule import choose_coin_cut
from huracan.coins import CoinJob, grid_rows, part_tensors, predict
from huracan.data import Panel
from huracan.features.drift import reference_bins
from huracan.features.labels import energy_weights, forward_return
from huracan.io import plain
from huracan.models import FleetModule
from huracan.models.batches import FoldSamples
from huracan.models.callbacks import stopping
from huracan.models.checkpoint import checkpoint_files, module_from_files
from huracan.pipelines.per_coin.costs import CoinFits
from huracan.progress import stage_trainer
from huracan.registry.artifacts import is_complete, json_bytes, model_prefix, write_version
from huracan.registry.champions import Rescore, challenge
from huracan.scoring import evaluate
from huracan.serve.finetune import HeadFit, finetune_heads
from huracan.serve.model import CoinModel
from huracan.training.arrays import FleetArrays

log = logging.getLogger("huracan")


@dataclass(frozen=True)
class Market:
    """What every coin of one Mechanic cycle shares.

    Attributes:
        panel: the gated bars.
        arrays: features, returns, and labels at each coin's calibrated costs.
        cost_bps, slip_bps: (T, N) round trip and its slippage part: rows before the
            holdout priced by the calibration up to the fine-tuning rows' end, holdout
            rows by the one right before the holdout.
        fits: both calibrations.
        inputs: symbol -> (scaled features (T, F), factor channels (T, C)), each as its
            champion's own preprocessing gives them.
        problems: symbol -> why its inputs cannot be built.
        holdout_start: first holdout row; ``tune_end``: first row whose label reaches it.
        version_id: names this cycle's versions (``models/<SYMBOL>/baseline_<id>``).
        trained: the champions' training config (features, labels, costs, thresholds).
    """

    panel: Panel
    arrays: FleetArrays
    cost_bps: np.ndarray
    slip_bps: np.ndarray
    fits: CoinFits
    inputs: dict
    problems: dict
    holdout_start: int
    tune_end: int
    version_id: str
    trained: DictConfig

    @cached_property
    def labelled_bars(self) -> np.ndarray:
        """(T, H) bars where any coin has a label at each horizon: the bars the market
        itself has (once per cycle, not per coin)."""
        return np.isfinite(self.arrays.net_h).any(axis=1)

    @property
    def holdout_window(self) -> list[str]:
        stamps = self.panel.timestamps
        return [str(stamps[self.holdout_start]), str(stamps[-1])]

    def costs(self, symbol: str) -> dict:
        """The coin's current costs (``costs.json``): the calibration before the holdout."""
        j = self.panel.index_of(symbol)
        rows = slice(self.holdout_start, None)
        return {
            **self.fits.test[symbol].to_dict(),
            "fee_bps": float(self.trained.costs.fee_bps),
            "training_fit": self.fits.train[symbol].to_dict(),
            "expected_round_trip_bps": plain(np.nanmean(self.cost_bps[rows, j])),
            "expected_slip_bps": plain(np.nanmean(self.slip_bps[rows, j])),
        }


class Waiting(str):
    """A skip reason that new bars clear (too few since the champion's training, none after
    the window it was promoted on): the champion is not due a rescore, nothing is wrong."""


def skipped(*reasons: str) -> dict:
    """The outcome of a coin the cycle did not score; ``waiting`` where only time is short."""
    return {
        "status": "skipped",
        "reasons": [str(r) for r in reasons],
        "waiting": bool(reasons) and all(isinstance(r, Waiting) for r in reasons),
        "champion": None,
        "challenger": None,
    }


def mechanic_coin(
    store, model: CoinModel, market: Market, cfg: DictConfig, tuned: Tuned | None = None
) -> dict:
    """The coin's outcome: ``promoted | kept | skipped``, reasons, both holdout scores
    (``tuned``: its samples and challenger from ``fit_challengers``, else fitted here)."""
    symbol = model.symbol
    if symbol in market.problems:
        return skipped(*market.problems[symbol])
    prefix = model_prefix(symbol, market.version_id)
    if model.model_path == prefix:  # promoted by this cycle before a restart, or a rerun
        return skipped(Waiting(f"already the champion: {prefix} is this cycle's version"))
    parts = tuned.parts if tuned else coin_parts(model, market, cfg.mechanic)
    if isinstance(parts, str):
        return skipped(parts)
    holdout = holdout_record(parts, model)
    resumed = is_complete(store, prefix)
    if resumed:  # a restarted cycle: the exported challenger as it is
        challenger, chosen = stored_challenger(store, prefix)
    elif tuned and tuned.module is not None:
        challenger, chosen = tuned.module, choose_threshold(tuned.module, model, parts, market)
    else:
        challenger, chosen = fit_challenger(model, parts, market, cfg)
    job = scoring_job(symbol, parts["holdout"], holdout["window"], market, model.horizon)
    champion_scores = evaluate(
        job, predict(model.module, parts["holdout"]) >= _cut(model.threshold)
    )
    scores = evaluate(job, predict(challenger, parts["holdout"]) >= _cut(chosen["threshold"]))
    scores |= chosen
    costs = market.costs(symbol)
    if not resumed:
        exported = (challenger, model, parts, market, holdout)
        export_challenger(store, prefix, *exported, scores, costs)
    note = f"both scored on the {holdout['bars']} holdout bars after {holdout['judged_until']}"
    outcome = challenge(
        store,
        symbol,
        prefix,
        market.holdout_window,
        scores,
        costs,
        _min_trades(cfg, market),
        lambda _: Rescore(champion_scores, scores, note),
    )
    return {
        "status": "promoted" if outcome["replaced"] else "kept",
        "reasons": [outcome["reason"]] + ([outcome["note"]] if outcome["note"] else []),
        "champion": _scores(champion_scores, model.threshold),
        "challenger": _scores(scores, chosen["threshold"]),
        "champion_path": model.model_path,
        "challenger_path": prefix,
        "holdout": holdout,
    }


def coin_parts(model: CoinModel, market: Market, options) -> dict | str:
    """The coin's fine-tuning (train, val) and holdout samples; a str says why none."""
    panel, arrays = market.panel, market.arrays
    j = panel.index_of(model.symbol)
    x, channels = market.inputs[model.symbol]
    usable = np.isfinite(x).all(1) & np.isfinite(channels).all(1)
    index = arrays.horizons.index(int(model.horizon))
    usable &= np.isfinite(arrays.net_h[:, j, index])  # a label at the champion's horizon
    row = np.arange(panel.n_bars)
    # bars the market itself has (any coin labelled at this horizon): where the market has
    # them and the coin does not, its own bars are at fault, not time (not Waiting)
    market_rows = market.labelled_bars[:, index]
    after = (panel.timestamps > model.data_end) & (row < market.tune_end)
    new = np.flatnonzero(usable & after)
    if len(new) < options.min_new_bars:
        why = (
            f"{len(new)} new bars since its training ended ({model.data_end}) "
            f"< mechanic.min_new_bars={options.min_new_bars}"
        )
        market_new = int((market_rows & after).sum())
        if market_new < options.min_new_bars:
            return Waiting(why)
        return f"{why}, against {market_new} of the market: its own bars are missing or unusable"
    in_holdout = usable & (row >= market.holdout_start)
    if not in_holdout.any():
        return "no holdout bar with every input and a label"
    judged = judged_until(model)
    later = row >= 0 if judged is None else panel.timestamps > judged
    fresh = in_holdout & later
    if not fresh.any():
        if (market_rows & (row >= market.holdout_start) & later).any():
            return f"no holdout bar of its own after {judged}, though the market has some"
        return Waiting(
            f"no holdout bar after {judged}, the last bar of the window its champion was "
            "promoted on: compared again once new bars come"
        )
    holdout = np.flatnonzero(fresh)
    val = new[-max(int(len(new) * options.val_fraction), 1) :]
    train = new[new < val[0] - model.horizon]  # purged: no train label reaches val
    if len(train) < options.min_new_bars // 2 or not len(val):
        return f"{len(train)} fine-tuning rows after the validation slice: too few"
    # float64 returns of a trade held the champion's horizon, as the per-coin run prices them
    gross = forward_return(panel.close[:, j], int(model.horizon))
    return {
        "train": _part(market, j, train, gross, model.horizon, weighted=True),
        "val": _part(market, j, val, gross, model.horizon, weighted=True),
        "holdout": _part(market, j, holdout, gross, model.horizon, weighted=False),
        "reused": int((in_holdout & ~fresh).sum()),  # holdout bars that promoted the champion
    }


def judged_until(model: CoinModel) -> pd.Timestamp | None:
    """The last bar of the window on which the champion won its title: a Mechanic
    version's holdout (its ``test_window``), a per-coin version's selection window (its
    ``test_window`` where the checkpoint has no ``selection_window``); None where it
    records neither."""
    description = model.description
    key = "test_window" if description.get("finetuned_from") else "selection_window"
    window = description.get(key) or description.get("test_window")
    return pd.Timestamp(window[1]) if window else None


def holdout_record(parts: dict, model: CoinModel) -> dict:
    """What ``mechanic.json`` says of the coin's holdout: the bars compared on, and the
    bars of the cycle's holdout left out because its champion was promoted on them."""
    stamps = parts["holdout"]["timestamps"]
    judged = judged_until(model)
    return {
        "window": [str(pd.Timestamp(int(t), tz="UTC")) for t in (stamps[0], stamps[-1])],
        "bars": len(stamps),
        "reused_bars_excluded": parts["reused"],
        "judged_until": None if judged is None else str(judged),
    }


def _part(
    market: Market, j: int, rows: np.ndarray, gross: np.ndarray, horizon: int, weighted: bool
) -> dict:
    """Coin ``j``'s samples on ``rows``, labelled for trades held ``horizon`` bars (their
    returns ``gross``, (T,)) at its calibrated costs."""
    arrays, symbol = market.arrays, market.panel.symbols[j]
    x, channels = market.inputs[symbol]
    gross = gross[rows]
    net = gross - market.cost_bps[rows, j] / 1e4
    w = np.ones(len(rows))
    if weighted:  # as prepare_fold: each slice normalised on its own
        w = energy_weights(gross[:, None], arrays.volatility[rows, j][:, None], horizon).ravel()
    return {
        "x": x[rows],
        "factor": channels[rows],
        "y": np.where(np.isnan(net), np.nan, (net > 0).astype(np.float64)),
        "w": w,
        "gross": gross,
        "cost_bps": market.cost_bps[rows, j],
        "slip_bps": market.slip_bps[rows, j],
        "timestamps": arrays.timestamps_ns[rows],
    }


def fit_challenger(model: CoinModel, parts: dict, market: Market, cfg: DictConfig):
    """The champion's head fine-tuned on the new rows, its encoder frozen; its threshold
    chosen on the validation slice after the coin's costs."""
    module = finetuned_head(model, parts, cfg)
    return module, choose_threshold(module, model, parts, market)


def finetuned_head(model: CoinModel, parts: dict, cfg: DictConfig) -> FleetModule:
    """A copy of the champion with its head fine-tuned in one Lightning fit (early stopping
    on the validation slice, its best epoch kept), its encoder frozen."""
    module = copy.deepcopy(model.module)
    module.finetune_encoder = False
    module.encoder.requires_grad_(False)
    module.lr = float(cfg.mechanic.lr or module.lr)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    trainer = stage_trainer(
        instantiate(cfg.trainer),
        f"mechanic {model.symbol}",
        max_epochs=int(cfg.mechanic.max_epochs),
        logger=False,
        callbacks=stopping("val/loss", int(cfg.mechanic.patience)),
    )
    batch = int(model.config["head"]["batch_size"])
    samples = FoldSamples(
        part_tensors(parts["train"]), part_tensors(parts["val"]), batch, int(cfg.seed)
    )
    trainer.fit(module, datamodule=samples)
    return module.cpu().eval()


def choose_threshold(module: FleetModule, model: CoinModel, parts: dict, market: Market) -> dict:
    """The challenger's threshold, chosen on the validation slice after the coin's costs
    (after checking that its encoder is the champion's)."""
    frozen = model.module.encoder.state_dict()
    if any(not torch.equal(v, frozen[k]) for k, v in module.encoder.state_dict().items()):
        raise RuntimeError(f"{model.symbol}: fine-tuning changed the frozen encoder")
    val = parts["val"]
    prob = predict(module, val)
    # the rule the champion was trained under (huracan.coin_rule); a champion stored before
    # the per-coin gate: its own run's uncorrected search (runs from before
    # thresholds.unit counted trades, before thresholds.cut_z chose by z)
    rules = model.config["thresholds"]
    legacy = {**rules, "unit": rules.get("unit", "trade"), "cut_z": rules.get("cut_z")}
    net = val["gross"] - val["cost_bps"] / 1e4
    # judged on every h-th bar, as the per-coin job chose it: trades never overlap
    horizon = int(model.horizon)
    row = grid_rows(val["timestamps"], market.panel.bars_per_year)
    _, cut = choose_coin_cut(
        model.description.get("cut_rule"),
        legacy,
        prob[:, None],
        net[:, None],
        row,
        val["timestamps"],
        (horizon,),
    )
    threshold = None if np.isinf(cut) else float(cut)
    trades = int(((prob >= cut) & (row % horizon == 0)).sum())
    return {"threshold": threshold, "val_trades": trades}


def stored_challenger(store, prefix: str) -> tuple[FleetModule, dict]:
    module, _ = module_from_files(
        store.read_bytes(f"{prefix}/weights.safetensors"),
        store.read_bytes(f"{prefix}/checkpoint.json"),
    )
    metrics = store.read_json(f"{prefix}/metrics.json")
    return module, {"threshold": metrics["threshold"], "val_trades": metrics["val_trades"]}


def export_challenger(
    store, prefix, module, model: CoinModel, parts, market, holdout, scores, costs
):
    """The challenger's version: the champion's description with its new head, threshold,
    windows (``test_window``: the holdout bars it is judged on) and reference bins; files
    first, manifest last."""
    description = json.loads(store.read_bytes(f"{model.model_path}/checkpoint.json"))
    meta = {k: v for k, v in description.items() if k not in ("format", "encoder", "head")}
    meta.pop("module", None)
    train, val = parts["train"], parts["val"]
    meta |= {
        "thresholds": [scores["threshold"]],
        "reference": reference_bins(np.concatenate([train["x"], train["factor"]], axis=1)),
        "train_end": str(pd.Timestamp(int(train["timestamps"][-1]), tz="UTC")),
        "data_end": str(pd.Timestamp(int(val["timestamps"][-1]), tz="UTC")),
        "test_window": holdout["window"],
        "finetuned_from": model.model_path,
    }
    files = checkpoint_files(module, meta)
    files |= {
        "metrics.json": json_bytes(scores),
        "costs.json": json_bytes(costs),
        "features.json": json_bytes({**meta, "importance": {}}),
    }
    info = {"symbol": model.symbol, "run_id": market.version_id, "finetuned_from": model.model_path}
    write_version(store, prefix, files, info)


def scoring_job(
    symbol: str, holdout: dict, window: list[str], market: Market, horizon: int
) -> CoinJob:
    """What ``scoring.evaluate`` reads: the holdout bars (``window``: the first and the
    last) and the scoring rules."""
    return CoinJob(
        symbol=symbol,
        test=holdout,
        meta={"test_window": window},
        rules={
            "bars_per_year": market.panel.bars_per_year,
            "horizon": int(horizon),
        },
    )


def _min_trades(cfg: DictConfig, market: Market) -> int:
    given = cfg.mechanic.champion_min_trades
    return int(market.trained.pipeline.champion_min_trades if given is None else given)


def _scores(metrics: dict, threshold: float | None) -> dict:
    keys = ("sharpe", "net_pnl_bps", "n_trades", "hit_rate", "window")
    return {k: metrics.get(k) for k in keys} | {"threshold": threshold}


def _cut(value: float | None) -> float:
    return np.inf if value is None else value


@dataclass(frozen=True)
class Tuned:
    """A coin's fine-tuning samples (``coin_parts``: a str says why none) and its
    challenger from the batch (None: not batched, ``mechanic_coin`` fits it alone)."""

    parts: dict | str
    module: FleetModule | None


def fit_challengers(store, models: dict[str, CoinModel], market: Market, cfg) -> dict:
    """symbol -> ``Tuned``: one batched fine-tune (``huracan.serve.finetune``) of every
    champion ``mechanic_coin`` would fit itself; the others (skipped, resumed, a head of
    several groups) are left to it, with the samples (or why none) already cut for them.
    None where ``trainer`` limits steps or batches, which the batch does not imitate
    (``unbatchable``): every coin is then fitted alone."""
    why = unbatchable(cfg.trainer)
    if why:
        log.info("mechanic: one fit per coin (%s)", why)
        return {}
    jobs, parts_of, left = [], {}, {}
    for symbol, model in models.items():
        prefix = model_prefix(symbol, market.version_id)
        if symbol in market.problems or model.model_path == prefix:
            continue
        parts = coin_parts(model, market, cfg.mechanic)
        if isinstance(parts, str) or model.module.head.n_groups != 1:
            left[symbol] = Tuned(parts, None)
            continue
        if not len(parts["train"]["y"]) or is_complete(store, prefix):
            left[symbol] = Tuned(parts, None)
            continue
        parts_of[symbol] = parts
        jobs.append(
            HeadFit(
                model.module,
                part_tensors(parts["train"]),
                part_tensors(parts["val"]),
                float(cfg.mechanic.lr or model.module.lr),
                int(model.config["head"]["batch_size"]),
            )
        )
    gpu = cfg.trainer.get("accelerator") in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    epochs, patience = int(cfg.mechanic.max_epochs), int(cfg.mechanic.patience)
    modules = finetune_heads(jobs, epochs, patience, int(cfg.seed), "cuda" if gpu else "cpu")
    return left | {s: Tuned(parts_of[s], m) for s, m in zip(parts_of, modules, strict=True)}


def unbatchable(trainer: DictConfig) -> str | None:
    """Why the Mechanic's batch would not train as this trainer's fits do (None: it would):
    it imitates a fit of whole epochs, validated after each, without clipping."""
    limits = {
        "max_steps": (None, -1),
        "limit_train_batches": (None, 1.0),
        "val_check_interval": (None, 1.0),
        "check_val_every_n_epoch": (None, 1),
        "min_epochs": (None, 0),
        "min_steps": (None, -1),
        "max_time": (None,),
        "gradient_clip_val": (None, 0, 0.0),
        "limit_val_batches": (None, 1.0),
        "accumulate_grad_batches": (None, 1),
        "devices": (None, 1, "1"),
        "num_nodes": (None, 1),
        "strategy": (None, "auto"),
        "precision": (None, 32, "32", "32-true"),
    }
    set_ = [f"trainer.{k}={trainer[k]}" for k, free in limits.items() if trainer.get(k) not in free]
    return ", ".join(set_) or None
