"""What describes one coin's window in the per-coin design: the ``CoinJob`` a coin's job
(and the Mechanic's fine-tune) is given, its test rows split into the selection and the
report window, and the model's probabilities on a coin part. Plain arrays and dicts, shared
by the per-coin pipeline, the Mechanic, the replay and :mod:`huracan.scoring`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from huracan.models import FleetModule
from huracan.models.batches import sample_tensors

# what a coin's metrics keep of each baseline beside the model (``baseline_metrics``)
BASELINE_KEYS = ("net_bps", "n_trades", "expectancy", "sharpe", "t_stat", "horizon", "daily_bps")


@dataclass(frozen=True)
class CoinJob:
    """Everything one symbol's job needs; picklable, no open handles.

    ``val`` and ``test`` hold ``x`` (M, F), ``factor`` (M, C), ``y``, ``gross`` (return
    before costs), ``cost_bps`` and ``slip_bps`` (this coin's calibrated round trip and
    its slippage part), ``volatility`` and ``timestamps`` (ns). ``train`` is only filled
    when the head is trained alone in the job. ``calibration`` holds the coin's bars of
    the calibration days before the test window (``per_coin.costs.calibration_bars``); the
    job prices its test rows on them (``per_coin.costs.price_test``) before anything else.
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


def grid_rows(timestamps: np.ndarray, bars_per_year: float) -> np.ndarray:
    """(M,) each sample's bar number counted from the first (ns timestamps of a regular
    grid): what ``choose_horizons`` keeps every h-th of, so that trades never overlap."""
    stamps = np.asarray(timestamps, dtype=np.int64)
    return np.rint((stamps - stamps[:1]) / (365.25 * 86400e9 / bars_per_year)).astype(np.int64)


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


def predict(module: FleetModule, part: dict) -> np.ndarray:
    t = part_tensors(part)
    return module.predict_proba(t["x"], t["factor"], t["group"]).numpy()


def part_tensors(part: dict) -> dict[str, torch.Tensor]:
    """A coin part as the model's sample tensors (one group, unit weights where none)."""
    n = len(part["y"])
    return sample_tensors(
        part["x"], part["factor"], np.zeros(n, np.int64), part["y"], part.get("w", np.ones(n))
    )


def report_rows(timestamps_ns: np.ndarray, window: list[str] | None) -> np.ndarray:
    """(M,) which test bars lie in the report window (opening at ``window[0]``); none where
    the run has no report window or every bar would be in it."""
    stamps = np.asarray(timestamps_ns, dtype=np.int64)
    report = np.zeros(len(stamps), bool)
    if window:
        report = stamps >= pd.Timestamp(window[0]).value
    return report if not report.all() else np.zeros(len(stamps), bool)
