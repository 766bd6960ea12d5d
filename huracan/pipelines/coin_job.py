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
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from huracan.config import build
from huracan.costs import symbol_metrics
from huracan.io import plain
from huracan.metrics import take_trades
from huracan.models import FleetModule, GroupedMoEHead
from huracan.models.batches import sample_tensors
from huracan.models.checkpoint import build_encoder, checkpoint_files, module_from_files
from huracan.pipelines.coin_costs import price_test, report_rows
from huracan.pipelines.importance import permutation_importance
from huracan.pipelines.resume import job_done_key
from huracan.pipelines.training import fit_heads
from huracan.queue import JobSkipped
from huracan.registry.artifacts import is_complete, json_bytes, write_version
from huracan.registry.champions import Rescore, challenge
from huracan.thresholds import choose_horizons, validation_days

log = logging.getLogger("huracan")

# what a coin's metrics keep of each baseline beside the model (``baseline_metrics``)
BASELINE_KEYS = ("net_bps", "n_trades", "expectancy", "sharpe", "t_stat", "horizon", "daily_bps")


@dataclass(frozen=True)
class CoinJob:
    """Everything one symbol's job needs; picklable, no open handles.

    ``val`` and ``test`` hold ``x`` (M, F), ``factor`` (M, C), ``y``, ``gross`` (return
    before costs), ``cost_bps`` and ``slip_bps`` (this coin's calibrated round trip and
    its slippage part), ``volatility`` and ``timestamps`` (ns). ``train`` is only filled
    when the head is trained alone in the job. ``calibration`` holds the coin's bars of
    the calibration days before the test window (``coin_costs.calibration_bars``); the
    job prices its test rows on them (``coin_costs.price_test``) before anything else.
    ``champion`` holds the coin's current champion as the signal service scores it on the
    test bars (``champion_scores.with_champion_scores``); empty without one.
    """

    symbol: str
    skip_reason: str = ""
    run_id: str = ""
    model_prefix: str = ""
    store: dict = field(default_factory=dict)
    encoder_spec: dict = field(default_factory=dict)
    encoder_state: dict = field(default_factory=dict)
    head_state: dict | None = None
    head_args: dict | None = None
    head_cfg: dict = field(default_factory=dict)
    trainer_cfg: dict = field(default_factory=dict)
    train: dict | None = None
    val: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    costs: dict = field(default_factory=dict)
    rules: dict = field(default_factory=dict)
    seed: int = 0
    calibration: dict = field(default_factory=dict)
    champion: dict = field(default_factory=dict)

    @property
    def horizons(self) -> list[int]:
        """The label horizons the job's parts hold, one column each."""
        return [int(h) for h in self.rules.get("horizons", [self.rules["horizon"]])]

    def at_horizon(self, index: int) -> CoinJob:
        """The job cut to label horizon ``rules["horizons"][index]``: ``y``, ``w`` and
        ``gross`` of that horizon only, ``rules["horizon"]`` and the checkpoint's config
        saying it (what serving, the Mechanic and a later champion check read)."""
        horizon = self.horizons[index]
        config = self.meta.get("config")
        meta = self.meta
        if config is not None:  # ``labels.horizons`` stays: what early stopping saw
            labels = {**config["labels"], "horizon": horizon}
            meta = {**self.meta, "config": {**config, "labels": labels}}
        return replace(
            self,
            train=None if self.train is None else _column(self.train, index),
            val=_column(self.val, index),
            test=_column(self.test, index),
            rules={**self.rules, "horizon": horizon, "horizons": [horizon]},
            meta=meta,
        )

    def held(self, horizon: int) -> CoinJob:
        """The job scoring test trades held ``horizon`` bars: one of the run's horizons
        (``at_horizon``), or any other, its returns read off the coin's test closes (a
        champion trained with other labels)."""
        if horizon in self.horizons:
            return self.at_horizon(self.horizons.index(horizon))
        job = self.at_horizon(0)
        closes, row = self.test["closes"], self.test["grid_row"]
        ahead = row + horizon
        gross = np.full(len(row), np.nan)
        inside = ahead < len(closes)
        gross[inside] = closes[ahead[inside]] / closes[row[inside]] - 1
        rules = {**job.rules, "horizon": horizon, "horizons": [horizon]}
        return replace(job, test={**job.test, "gross": gross}, rules=rules)


def _column(part: dict, index: int) -> dict:
    """A coin part with one horizon's ``y``, ``w`` and ``gross``, each (M,)."""
    if not part:
        return part
    one = {k: part[k][:, index] for k in ("y", "w", "gross") if k in part and part[k].ndim == 2}
    return {**part, **one}


def run_coin_job(job: CoinJob) -> dict:
    """Train or take the head, validate after costs, export, update the champion.

    A coin whose model version is already complete (a run killed after its export) is not
    trained or exported again: its stored model finishes the later stages. The job's last
    write records that every stage is done (``resume.job_done_key``).
    """
    if job.rules.get("torch_threads"):
        torch.set_num_threads(job.rules["torch_threads"])
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
    validation slice after the coin's costs (``thresholds.choose_horizons``, the rule every
    head follows); threshold +inf (and the shortest horizon) where none shows an edge.

    Args:
        prob: (M,) validation probabilities of a one-horizon head, or (M, H) one column
            per ``rules["horizons"]``.
    """
    val, rules = job.val, job.rules
    net = val["gross"] - val["cost_bps"][:, None] / 1e4  # (M, H)
    day = validation_days(rules.get("threshold_unit", "trade"), val["timestamps"])
    row = grid_rows(val["timestamps"], rules["bars_per_year"])
    index, cuts, _ = choose_horizons(
        prob.reshape(len(prob), -1),
        net,
        np.zeros(len(prob), int),
        row,
        tuple(job.horizons),
        1,
        rules["min_trades"],
        rules["z"],
        day,
        rules.get("cut_z"),  # a job of a run from before thresholds.cut_z: z
    )
    return max(int(index[0]), 0), float(cuts[0])


def val_trades(entries: np.ndarray, job: CoinJob) -> int:
    """Validation trades at the chosen cut, counted as the cut was chosen: on every h-th
    bar, where trades held h bars never overlap."""
    row = grid_rows(job.val["timestamps"], job.rules["bars_per_year"])
    judged = (row % int(job.rules["horizon"]) == 0) & np.isfinite(job.val["gross"])
    return int((entries & judged).sum())


def grid_rows(timestamps: np.ndarray, bars_per_year: float) -> np.ndarray:
    """(M,) each sample's bar number counted from the first (ns timestamps of a regular
    grid): what ``choose_horizons`` keeps every h-th of, so that trades never overlap."""
    stamps = np.asarray(timestamps, dtype=np.int64)
    return np.rint((stamps - stamps[:1]) / (365.25 * 86400e9 / bars_per_year)).astype(np.int64)


def one_output(module: FleetModule, index: int) -> FleetModule:
    """The module with only output ``index`` of its heads (itself when it has one)."""
    if module.head.n_outputs == 1:
        return module
    head = module.head.output_slice(index)
    out = FleetModule(
        module.encoder, head, module.lr, module.finetune_encoder, module.balance_weight
    )
    return out.eval()


def window_rows(job: CoinJob, horizon: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the test bars in the selection window (champion, ``trade_ok``) and
    in the report window after it (the roster's figures, never selected on); all bars are
    selection bars where the run has no report window or the coin no trade that exits
    before it. A selection bar's trade, held ``horizon`` bars (the job's), must exit before
    the report window opens: no selection figure reads a report bar."""
    stamps = np.asarray(job.test["timestamps"], dtype=np.int64)  # ns, UTC
    window = job.meta.get("report_window")
    report = report_rows(stamps, window)
    selection = ~report
    if report.any():
        held = int(job.rules["horizon"] if horizon is None else horizon)
        bar = pd.Timedelta(seconds=365.25 * 86400 / job.rules["bars_per_year"]).value
        selection &= stamps + held * bar < pd.Timestamp(window[0]).value
    if not selection.any():  # no trade of the coin's exits before the report window
        return np.ones(len(stamps), bool), np.zeros(len(stamps), bool)
    return selection, report


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
    train = _tensors(job.train)
    if len(train["y"]) < job.rules["min_train_samples"]:
        raise JobSkipped(f"{len(train['y'])} training samples < {job.rules['min_train_samples']}")

    # the run's own trainer config (trainer=gpu reaches the job too), quiet in a worker
    make_trainer = instantiate(job.trainer_cfg, enable_progress_bar=False)
    return fit_heads(
        job.head_cfg, encoder, 1, train, _tensors(job.val), make_trainer, False, job.seed
    )


def predict(module: FleetModule, part: dict) -> np.ndarray:
    t = _tensors(part)
    return module.predict_proba(t["x"], t["factor"], t["group"]).numpy()


def evaluate(
    job: CoinJob, signals: np.ndarray, rows: np.ndarray | None = None, n_boot: int = 2000
) -> dict:
    """The coin's out-of-sample metrics after its calibrated costs.

    Args:
        job: the coin's job (its ``test`` part and rules).
        signals: (M,) entries on the test bars.
        rows: boolean (M,) mask of the test bars to score (all where None); ``window`` is
            then the first and last of them.
        n_boot: bootstrap draws of the expectancy's interval (0: none, ``ci_*`` None).
    """
    test = job.test
    rows = np.ones(len(signals), bool) if rows is None else rows
    net = test["gross"] - test["cost_bps"] / 1e4
    stamps = pd.DatetimeIndex(pd.to_datetime(test["timestamps"][rows], utc=True))
    table = symbol_metrics(
        signals[rows, None],
        net[rows, None],
        test["gross"][rows, None],
        symbols=[job.symbol],
        timestamps=stamps,
        bars_per_year=job.rules["bars_per_year"],
        horizon=job.rules["horizon"],
        cost_bps=test["cost_bps"][rows, None],
        slippage_bps=test["slip_bps"][rows, None],
        n_boot=n_boot,
    )
    row = table.iloc[0]
    metrics = {k: plain(v) for k, v in row.items()}
    metrics["n_trades"] = int(row["n_trades"])
    metrics["net_pnl_bps"] = metrics.get("net_bps")
    whole = bool(rows.all())
    metrics["window"] = job.meta["test_window"] if whole else [str(stamps[0]), str(stamps[-1])]
    metrics["n_test_bars"] = int(rows.sum())
    metrics["horizon"] = int(job.rules["horizon"])  # bars each trade is held
    metrics["daily_bps"] = daily_bps(signals[rows], net[rows], stamps, metrics["horizon"])
    return metrics


def daily_bps(signals: np.ndarray, net: np.ndarray, stamps: pd.DatetimeIndex, horizon: int):
    """{UTC day: net bps of the trades entered that day} (the trades ``evaluate`` counts),
    days with a trade only: what pools the coins' P&L by day in the run's summary."""
    taken = take_trades((signals & np.isfinite(net))[:, None], horizon)[:, 0]
    if not taken.any():
        return {}
    day = stamps.asi8[taken] // 86_400_000_000_000
    days, index = np.unique(day, return_inverse=True)
    pnl = np.bincount(index, weights=net[taken] * 1e4)
    names = np.datetime_as_string(days.astype("datetime64[D]"))
    return {str(d): round(float(v), 4) for d, v in zip(names, pnl, strict=True)}


def baseline_metrics(job: CoinJob) -> dict[str, dict[str, dict | None]]:
    """Each baseline's metrics (``BASELINE_KEYS``) on the coin's test bars of each window:
    ``{"selection": {name: ...}, "report": {name: ...}}``, at the baseline's own horizon
    (``window_rows``: its selection trades exit before the report window) and after the
    same test costs as the model; None where the window has no bar for it. A baseline
    without an entry (never_trade) has zero trades and is not scored."""
    out: dict[str, dict] = {"selection": {}, "report": {}}
    for name, (signals, horizon) in job.test.get("baselines", {}).items():
        held = job.held(horizon)
        selection, own_report = window_rows(held)
        report = window_rows(held, 1)[1]  # the report bars, whatever the hold
        if report.any() and not own_report.any():  # window_rows fell back to every bar:
            selection = np.zeros_like(selection)  # no trade this long exits before report
        for window, rows in (("selection", selection), ("report", report)):
            if not rows.any():
                out[window][name] = None
            elif not signals[rows].any():
                out[window][name] = _no_trades(horizon)
            else:
                metrics = evaluate(held, signals, rows, n_boot=0)
                out[window][name] = {k: metrics.get(k) for k in BASELINE_KEYS}
    return out


def _no_trades(horizon: int) -> dict:
    """The figures of a strategy that entered no trade (what ``evaluate`` gives it)."""
    none = dict.fromkeys(("expectancy", "sharpe", "t_stat"))
    return {"net_bps": 0.0, "n_trades": 0, **none, "horizon": int(horizon), "daily_bps": {}}


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


def _tensors(part: dict) -> dict[str, torch.Tensor]:
    n = len(part["y"])
    return sample_tensors(
        part["x"], part["factor"], np.zeros(n, np.int64), part["y"], part.get("w", np.ones(n))
    )
