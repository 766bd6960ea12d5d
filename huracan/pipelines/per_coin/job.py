"""One symbol's job in the per-coin pipeline: train (or take) its head, validate it after
its own calibrated costs, export it, and decide whether it becomes the champion.

The job gets everything it needs in a ``CoinJob`` (plain arrays and dicts), so it runs the
same in-process, in a worker process or on a Dask worker, and writes only through the
store: its model version (manifest last), then its champion pointer.

Its parts hold one label column per horizon of the run; the job chooses the coin's horizon
and threshold together on validation (``choose_horizon``) and from then on works on the
job cut to that horizon (``CoinJob.at_horizon``): evaluation, export, the champion
challenge. Over 300 lines on purpose: those stages read the same job and rules, and the
champion's rescoring must mirror the challenger's evaluation line for line.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from huracan.coin_rule import choose_coin_cut
from huracan.coins import CoinJob, grid_rows, part_tensors, predict, window_rows
from huracan.config import build
from huracan.memory import fix_mmap_threshold
from huracan.models import FleetModule, GroupedMoEHead
from huracan.models.checkpoint import build_encoder, checkpoint_files, module_from_files
from huracan.pipelines.per_coin.costs import price_test
from huracan.pipelines.per_coin.importance import permutation_importance
from huracan.pipelines.per_coin.resume import job_done_key
from huracan.queue import JobSkipped
from huracan.registry.artifacts import is_complete, json_bytes, write_version
from huracan.registry.champions import Rescore, challenge
from huracan.scoring import baseline_metrics, evaluate
from huracan.training.fit import fit_heads

log = logging.getLogger("huracan")


def run_coin_job(job: CoinJob) -> dict:
    """Train or take the head, validate after costs, export, update the champion.

    A coin whose model version is already complete (a run killed after its export) is not
    trained or exported again: its stored model finishes the later stages. The job's last
    write records that every stage is done (``resume.job_done_key``).
    """
    if job.rules.get("torch_threads"):
        torch.set_num_threads(job.rules["torch_threads"])
    fix_mmap_threshold()  # in a Dask worker too, as train() set it in the run
    job = price_test(job)  # the test window's costs, calibrated on the bars right before it
    store = build(job.store)
    if is_complete(store, job.model_prefix, verify_hashes=True):
        module, metrics, importance, horizon = stored_version(store, job.model_prefix)
        chosen = job.held(horizon)
        signals = predict(module, chosen.test) >= _threshold(metrics["threshold"])
    else:
        module, metrics, importance, signals, chosen = validate_and_export(store, job)
    champion = challenge(
        store,
        job.symbol,
        job.model_prefix,
        job.meta["selection_window"],
        metrics,
        job.costs,
        job.rules["champion_min_trades"],
        lambda current: rescore(current, job, chosen, signals),
    )
    record = {"symbol": job.symbol, "model_path": job.model_prefix, "champion": champion}
    store.write_bytes(job_done_key(job.run_id, job.symbol), json_bytes(record))
    return {
        "metrics": metrics,
        "importance": importance,
        "champion": champion,
        "costs": job.costs,
    }


def stored_version(store, prefix: str) -> tuple[FleetModule, dict, dict, int]:
    """A complete version's module, out-of-sample metrics, permutation importance and the
    label horizon it trades."""
    module, description = module_from_files(
        store.read_bytes(f"{prefix}/weights.safetensors"),
        store.read_bytes(f"{prefix}/checkpoint.json"),
    )
    metrics = store.read_json(f"{prefix}/metrics.json")
    importance = store.read_json(f"{prefix}/features.json")["importance"]
    return module, metrics, importance, int(description["config"]["labels"]["horizon"])


def validate_and_export(store, job: CoinJob):
    """The coin's horizon and threshold on validation, metrics on the test window,
    importance, and its model version written (manifest last): a one-output head for the
    chosen horizon. Returns the job cut to that horizon too."""
    module = build_module(job)
    val_prob = predict(module, job.val)
    index, threshold = choose_horizon(job, val_prob)
    if val_prob.ndim == 2:  # the chosen horizon's column: what the threshold was cut on
        val_prob = val_prob[:, index]
    job, module = job.at_horizon(index), one_output(module, index)
    val = job.val
    signals = predict(module, job.test) >= threshold  # the exported model's, as served
    selection, report = window_rows(job)
    metrics = evaluate(job, signals, selection)  # what the champion and trade_ok are decided on
    metrics["report"] = evaluate(job, signals, report) if report.any() else None
    baselines = baseline_metrics(job)
    metrics["baselines"] = baselines["selection"]
    if metrics["report"] is not None:
        metrics["report"]["baselines"] = baselines["report"]
    metrics["threshold"] = None if np.isinf(threshold) else float(threshold)
    metrics["val_trades"] = val_trades(val_prob >= threshold, job)
    if metrics["val_trades"] == 0:
        metrics["note"] = "no trades in validation: the model shows no edge after costs"
    importance = permutation_importance(
        module, val, job.meta["inputs"], job.rules, job.seed, predict
    )
    files = checkpoint_files(module, {**job.meta, "thresholds": [metrics["threshold"]]})
    files |= {
        "metrics.json": json_bytes(metrics),
        "costs.json": json_bytes(job.costs),
        "features.json": json_bytes({**job.meta, "importance": importance}),
    }
    write_version(store, job.model_prefix, files, {"symbol": job.symbol, "run_id": job.run_id})
    return module, metrics, importance, signals, job


def choose_horizon(job: CoinJob, prob: np.ndarray) -> tuple[int, float]:
    """The index of the coin's label horizon and its threshold, chosen together on the
    validation slice after the coin's costs by the job's rule (``huracan.coin_rule``: the
    run's ``thresholds``, family gate included; a job stored before it: the uncorrected
    search); threshold +inf (and the shortest horizon) where none shows an edge.

    Args:
        prob: (M,) validation probabilities of a one-horizon head, or (M, H) one column
            per ``rules["horizons"]``.
    """
    val, rules = job.val, job.rules
    net = val["gross"] - val["cost_bps"][:, None] / 1e4  # (M, H)
    legacy = {
        "min_trades": rules["min_trades"],
        "z": rules["z"],
        "unit": rules.get("threshold_unit", "trade"),
        "cut_z": rules.get("cut_z"),  # a job of a run from before thresholds.cut_z: z
    }
    index, cut = choose_coin_cut(
        job.meta.get("cut_rule"),
        legacy,
        prob.reshape(len(prob), -1),
        net,
        grid_rows(val["timestamps"], rules["bars_per_year"]),
        val["timestamps"],
        tuple(job.horizons),
    )
    return max(index, 0), cut


def val_trades(entries: np.ndarray, job: CoinJob) -> int:
    """Validation trades at the chosen cut, counted as the cut was chosen: on every h-th
    bar, where trades held h bars never overlap."""
    row = grid_rows(job.val["timestamps"], job.rules["bars_per_year"])
    judged = (row % int(job.rules["horizon"]) == 0) & np.isfinite(job.val["gross"])
    return int((entries & judged).sum())


def one_output(module: FleetModule, index: int) -> FleetModule:
    """The module with only output ``index`` of its heads (itself when it has one)."""
    if module.head.n_outputs == 1:
        return module
    head = module.head.output_slice(index)
    out = FleetModule(
        module.encoder, head, module.lr, module.finetune_encoder, module.balance_weight
    )
    return out.eval()


def build_module(job: CoinJob) -> FleetModule:
    """The shared encoder plus this coin's head: the joint head's slice, or trained here."""
    encoder = build_encoder(job.encoder_spec)
    encoder.load_state_dict({k: torch.as_tensor(v) for k, v in job.encoder_state.items()})
    encoder.eval()
    cfg = OmegaConf.create(job.head_cfg)
    if job.head_state is not None:
        head = GroupedMoEHead(**job.head_args)
        head.load_state_dict({k: torch.as_tensor(v) for k, v in job.head_state.items()})
        return FleetModule(encoder, head, cfg.lr, cfg.finetune_encoder, cfg.balance_weight)
    train = part_tensors(job.train)
    if len(train["y"]) < job.rules["min_train_samples"]:
        raise JobSkipped(f"{len(train['y'])} training samples < {job.rules['min_train_samples']}")

    # the run's own trainer config (trainer=gpu reaches the job too), quiet in a worker
    make_trainer = instantiate(job.trainer_cfg, enable_progress_bar=False)
    return fit_heads(
        job.head_cfg, encoder, 1, train, part_tensors(job.val), make_trainer, False, job.seed
    )


def rescore(champion: dict, job: CoinJob, chosen: CoinJob, signals: np.ndarray) -> Rescore:
    """Scores the champion, and the challenger, on the selection bars out of sample for both,
    and the champion on the report bars out of sample for it (the roster's figures where
    it stays champion).

    The champion is scored as it is served (``job.champion``: the signal service's
    probabilities from its own stored features, FFD order, scaler and market factor, on
    the raw bars), with its own threshold and horizon, at this job's test costs. Its last
    label ends ``horizon`` bars after its last training bar; only test bars after that are
    out of sample for it, and the challenger (``chosen``: the job at the challenger's
    horizon) is scored on the same bars.
    """
    served = job.champion
    if served.get("model_path") != champion["model_path"]:
        why = f"champion {champion['model_path']} was not scored before the jobs ran"
        return Rescore(None, None, why)
    if "unreadable" in served:  # a champion that cannot be read cannot defend its title
        return Rescore(None, None, f"champion unreadable ({served['unreadable']})", True)
    horizon = int(served["horizon"])
    bar = pd.Timedelta(seconds=365.25 * 86400 / job.rules["bars_per_year"])
    label_end = pd.Timestamp(served["data_end"]) + int(served["seen_horizon"]) * bar
    unseen = np.asarray(pd.to_datetime(job.test["timestamps"], utc=True) > label_end)
    # both exit before the report window: the longer of the two holds decides
    selection, report = window_rows(job, max(horizon, int(chosen.rules["horizon"])))
    rows = unseen & selection
    if not rows.any():
        return Rescore(
            None, None, f"champion's labels reach {label_end}, past this whole test window"
        )
    if "unscored" in served:
        return Rescore(None, None, f"champion cannot be served on these bars: {served['unscored']}")
    at_own = job.held(horizon)
    champion_signals = served["prob"] >= _threshold(served["threshold"])  # NaN: no trade
    champion_metrics = evaluate(at_own, champion_signals, rows)
    on_report = (
        evaluate(at_own, champion_signals, report & unseen) if (report & unseen).any() else None
    )
    challenger = evaluate(chosen, signals, rows)  # on the champion's bars, always
    own = window_rows(chosen)[0]
    note = (
        "champion re-scored on this window"
        if unseen[own].all()
        else f"both scored on {int(rows.sum())} of {int(own.sum())} selection bars after "
        f"the champion's last label ({label_end})"
    )
    return Rescore(champion_metrics, challenger, note, report=on_report)


def _threshold(value: float | None) -> float:
    """A stored threshold; None (JSON for inf) means the model never trades."""
    return np.inf if value is None else value
