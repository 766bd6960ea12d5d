"""The current champions as they are served, on this run's test bars.

A per-coin job challenges its coin's champion on the bars it scores its challenger on. The
champion must be scored as it trades: from its own stored state (features, FFD order,
scaler, market factor, threshold, horizon) applied to the raw bars by the signal service
(``huracan.serve``), never from this run's inputs mapped back to its scale, which carry
this run's FFD order and factor. The run's own process holds the bars, so the champions
are scored here, all at once, before the jobs run; each job gets its champion's
probabilities as plain arrays (``CoinJob.champion``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from huracan.coins import CoinJob
from huracan.data import Panel
from huracan.registry.artifacts import read_champion
from huracan.serve import CoinModel, Fleet, ServeConfig
from huracan.serve.model import load_coin
from huracan.store import Store


def with_champion_scores(store: Store, panel: Panel, jobs: list[CoinJob]) -> list[CoinJob]:
    """The jobs, each with its current champion as served on its test bars.

    ``CoinJob.champion`` holds ``model_path`` and either ``unreadable`` (the champion
    cannot be loaded: it can neither be served nor defend its title), or ``threshold``,
    ``horizon``, ``data_end``, ``seen_horizon`` (the longest label horizon its early
    stopping read) and one of ``prob`` ((M,) the served probability on each of the job's
    test bars; NaN where the champion's own inputs are missing) or ``unscored`` (this
    run's bars cannot give its inputs: why). Jobs without a champion, or whose champion is
    their own version (a resumed run), are left as they are.
    """
    config = ServeConfig(expire_hours=None)
    models, out = {}, {}
    for job in jobs:
        pointer = None if job.skip_reason else read_champion(store, job.symbol)
        if pointer is None or pointer["model_path"] == job.model_prefix:
            continue
        path = pointer["model_path"]
        try:
            models[job.symbol] = load_coin(store, {"symbol": job.symbol}, config.ema_tolerance)
        except Exception as err:  # any fault of its files: it could not be served either
            out[job.symbol] = {"model_path": path, "unreadable": f"{type(err).__name__}: {err}"}
    out |= {symbol: _state(model) for symbol, model in models.items()}
    bar = pd.Timedelta(panel.timeframe)
    foreign = {s: m for s, m in models.items() if _timeframe(m) not in (None, bar)}
    for symbol, model in foreign.items():
        trained = model.description.get("timeframe")
        out[symbol]["unscored"] = f"trained on {trained} bars, this run's are {panel.timeframe}"
    models = {s: m for s, m in models.items() if s not in foreign}
    if models:
        fleet = Fleet(models, {}, {"entries": []}, None, config)
        for symbol, served in _served(panel, fleet, {j.symbol: j for j in jobs}).items():
            out[symbol] |= served
    return [replace(job, champion=out[job.symbol]) if job.symbol in out else job for job in jobs]


def _state(model: CoinModel) -> dict:
    """What the challenge reads of a loaded champion besides its probabilities."""
    labels = model.config["labels"]
    return {
        "model_path": model.model_path,
        "threshold": model.threshold,
        "horizon": model.horizon,
        "data_end": str(model.data_end),
        # early stopping read the validation labels of every horizon it trained on
        "seen_horizon": max([model.horizon, *(int(h) for h in labels.get("horizons") or [])]),
    }


def _served(panel: Panel, fleet: Fleet, jobs: dict[str, CoinJob]) -> dict[str, dict]:
    """Each coin's served probabilities on its job's test bars (``prob``), or why its
    inputs cannot be built (``unscored``); scored from the first test bar on."""
    first = min(int(np.min(jobs[s].test["timestamps"])) for s in fleet.models)
    start = pd.Timestamp(first, tz="UTC")
    row = int(panel.timestamps.searchsorted(start, "left"))
    window = panel.between(panel.timestamps[max(row - fleet.warmup_bars, 0)], None)
    probability, problems = fleet.probabilities(window, start)
    out = {}
    for symbol in fleet.models:
        if symbol in problems:
            out[symbol] = {"unscored": "; ".join(problems[symbol])}
            continue
        stamps = pd.to_datetime(jobs[symbol].test["timestamps"], utc=True)
        out[symbol] = {"prob": probability[symbol].reindex(stamps).to_numpy(np.float64)}
    return out


def _timeframe(model: CoinModel) -> pd.Timedelta | None:
    """The bar size the model was trained on (None: not recorded)."""
    timeframe = model.description.get("timeframe") or model.config["data"].get("timeframe")
    return pd.Timedelta(timeframe) if timeframe else None
