"""Signals scored after costs: a coin's trades on its test bars (``evaluate``), their P&L by
day (``daily_bps``) and the baselines' figures beside the model's (``baseline_metrics``).
One rule for every pipeline that scores a coin: per-coin, the Mechanic, the replay."""

from __future__ import annotations

import numpy as np
import pandas as pd

from huracan.coins import BASELINE_KEYS, CoinJob, window_rows
from huracan.costs.symbol_metrics import symbol_columns
from huracan.io import plain
from huracan.metrics import take_trades


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
    columns = symbol_columns(  # one coin: its column of symbol_metrics, without the frame
        signals[rows, None],
        net[rows, None],
        test["gross"][rows, None],
        timestamps=stamps,
        bars_per_year=job.rules["bars_per_year"],
        horizon=job.rules["horizon"],
        cost_bps=test["cost_bps"][rows, None],
        slippage_bps=test["slip_bps"][rows, None],
        n_boot=n_boot,
    )
    metrics = {k: plain(v[0]) for k, v in columns.items()}
    metrics["n_trades"] = int(columns["n_trades"][0])
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
