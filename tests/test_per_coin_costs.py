"""The per-coin run's costs: which bars calibrate the prices of which rows.

The training-end calibration runs in the parent (``prepare_split``); the test window's
runs inside each coin's job (``price_test``, which ``run_coin_job`` calls first) from the
bars its frozen spec carries. Both are exercised here on the objects the run builds.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir

from huracan.config import build
from huracan.data import GateReport
from huracan.errors import DataError
from huracan.pipelines.per_coin.costs import price_test
from huracan.pipelines.per_coin.run import prepare_split
from huracan.pipelines.per_coin.specs import build_jobs, shared_spec
from huracan.report import StageTimer


def priced_jobs(panel, cfg, split):
    """Every coin's job as the run builds it (no encoder needed to price), priced in-job."""
    gates = GateReport(skip_reasons={s: [] for s in panel.symbols})
    shared = shared_spec(panel, cfg, split, None, "", "shift")
    jobs = build_jobs(panel, gates, cfg, split, shared, None)
    return {job.symbol: price_test(job) for job in jobs}


@pytest.fixture(scope="module")
def setup():
    with initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "pipeline=per_coin",
                "debug=fast",
                "data.n_assets=4",
                "pipeline.test_days=20",
                "pipeline.calibration_days=10",
            ],
        )
    panel = build(cfg.data).load()
    split = prepare_split(panel, cfg, StageTimer())
    return cfg, panel, split, priced_jobs(panel, cfg, split)


def widened(panel, rows: slice):
    """The panel with every bar of ``rows`` quoting 4x its spread and a 2 % wider range;
    closes (hence returns, volatility and labels before costs) unchanged."""
    bars = {name: values.copy() for name, values in panel.bars.items()}
    bars["spread_bps"][rows] *= 4
    bars["high"][rows] *= 1.02
    bars["low"][rows] /= 1.02
    return replace(panel, bars=bars)


def test_training_labels_and_threshold_inputs_ignore_bars_after_the_training_window(setup):
    """Bars between the training window's end and the test window (validation slice,
    purges) never change a training or validation label, net return or cost, which are all
    the threshold is chosen from besides the model's own scores; the test costs do move."""
    cfg, panel, split, jobs = setup
    fold = split.fold
    train_end, test_start = int(fold.train[-1]) + 1, int(fold.test[0])
    assert test_start - train_end > 24 * cfg.pipeline.calibration_days  # a real gap
    moved = widened(panel, slice(train_end, test_start))
    after = prepare_split(moved, cfg, StageTimer())
    before_test = slice(0, test_start)
    for name in ("label", "net_return", "cost_bps"):
        old, new = getattr(split.arrays, name), getattr(after.arrays, name)
        np.testing.assert_array_equal(new[before_test], old[before_test], err_msg=name)
    assert split.fits == after.fits
    # each job prices its test window on the bars right before it: those moved, so did it
    jobs_after = priced_jobs(moved, cfg, after)
    for symbol, job in jobs_after.items():
        old = jobs[symbol]
        np.testing.assert_array_equal(job.val["cost_bps"], old.val["cost_bps"])
        assert np.all(job.test["cost_bps"] > old.test["cost_bps"] + 1)
        assert job.costs["method"] == "quoted"
        assert job.costs["base_spread_bps"] == pytest.approx(4 * old.costs["base_spread_bps"])
        assert job.costs["expected_round_trip_bps"] > old.costs["expected_round_trip_bps"] + 1


def test_no_cost_reads_a_bar_of_the_window_it_prices(setup):
    """Bars from the test window's first on change no cost at all; bars at the end of the
    training window change the training calibration."""
    cfg, panel, split, jobs = setup
    fold = split.fold
    train_end, test_start = int(fold.train[-1]) + 1, int(fold.test[0])
    inside = widened(panel, slice(test_start, None))
    inside_split = prepare_split(inside, cfg, StageTimer())
    np.testing.assert_array_equal(inside_split.arrays.cost_bps, split.arrays.cost_bps)
    assert inside_split.fits == split.fits
    for symbol, job in priced_jobs(inside, cfg, inside_split).items():
        np.testing.assert_array_equal(job.test["cost_bps"], jobs[symbol].test["cost_bps"])
        np.testing.assert_array_equal(job.test["y"], jobs[symbol].test["y"])
        assert job.costs == jobs[symbol].costs
    end_of_training = prepare_split(widened(panel, slice(0, train_end)), cfg, StageTimer())
    assert np.all(end_of_training.arrays.cost_bps[:test_start] > split.arrays.cost_bps[:test_start])
    window_ends = {f.window_end for f in split.fits.values()}
    assert max(window_ends) == str(fold.train_times[-1].isoformat())


def test_a_job_carries_only_bars_before_its_test_window(setup):
    """The frozen spec holds the calibration days right before the test window and no
    later bar; its test costs come from those bars (fit_date is the test's first bar)."""
    cfg, panel, split, jobs = setup
    test_start = split.fold.test_times[0]
    for job in jobs.values():
        stamps = pd.to_datetime(job.calibration["timestamps_ns"], utc=True)
        assert stamps[-1] == test_start - pd.Timedelta(hours=1)
        assert stamps[0] >= test_start - pd.Timedelta(days=cfg.pipeline.calibration_days)
        assert all(len(v) == len(stamps) for v in job.calibration["bars"].values())
        assert job.costs["fit_date"] == test_start.isoformat()
        assert pd.Timestamp(job.costs["window_end"]) < test_start
        assert job.costs["training_fit"]["window_end"] == split.fold.train_times[-1].isoformat()
        # labels of the test rows follow the in-job price
        net = job.test["gross"] - job.test["cost_bps"][:, None] / 1e4  # one column a horizon
        assert net.shape == (len(job.test["x"]), len(split.arrays.horizons))
        np.testing.assert_array_equal(job.test["y"], (net > 0).astype(float))


def test_a_spec_with_a_bar_inside_its_window_is_refused(setup):
    _, _, _, jobs = setup
    job = next(iter(jobs.values()))
    bars = dict(job.calibration, end_ns=int(job.calibration["timestamps_ns"][-1]))
    with pytest.raises(DataError, match="inside the window"):
        price_test(replace(job, calibration=bars))


def test_jobs_price_with_ccxt_snapshots_taken_before_their_window_only(setup):
    """Without a quoted column, the snapshots data=ccxt took (quote_snapshot_bps) during
    the calibration days price the test window; snapshots inside it are never read."""
    cfg, panel, split, _ = setup
    test_start = int(split.fold.test[0])
    bars = {k: v for k, v in panel.bars.items() if k != "spread_bps"}
    snapshots = np.full(panel.close.shape, np.nan)
    snapshots[test_start - 48 : test_start : 6] = 3.0  # eight snapshots, the last 2 days
    snapshots[test_start:] = 100.0  # inside the test window: must not count
    unquoted = replace(panel, bars={**bars, "quote_snapshot_bps": snapshots})
    jobs = priced_jobs(unquoted, cfg, prepare_split(unquoted, cfg, StageTimer()))
    for job in jobs.values():
        assert job.costs["method"] == "ccxt_snapshot"
        assert job.costs["base_spread_bps"] == pytest.approx(3.0)
        assert "8 ccxt bid/ask snapshots" in job.costs["note"]
    snapshots[:test_start] = np.nan  # only the test window's: the next source down
    late = replace(panel, bars={**bars, "quote_snapshot_bps": snapshots})
    jobs = priced_jobs(late, cfg, prepare_split(late, cfg, StageTimer()))
    assert all(job.costs["method"] != "ccxt_snapshot" for job in jobs.values())


def shaken(panel, rows: slice, seed: int = 0):
    """The panel with the bars of ``rows`` moved: every price there times a random walk of
    2 % steps (returns, volatility and the slippage priced on them change; bars before
    ``rows`` do not)."""
    walk = np.exp(
        np.cumsum(np.random.default_rng(seed).normal(0, 0.02, panel.close[rows].shape), 0)
    )
    bars = {name: values.copy() for name, values in panel.bars.items()}
    for name in ("open", "high", "low", "close"):
        bars[name][rows] *= walk
    return replace(panel, bars=bars)


def test_report_window_prices_change_no_trade_ok_reason_or_rank(setup):
    """A price change inside the report window moves the report window's costs only: the
    round trip that sets cost_above_limit and enters the rank is the selection bars'."""
    from huracan.coins import report_rows
    from huracan.registry.roster import rank_entries, roster_entry

    cfg, panel, split, jobs = setup
    job = next(iter(jobs.values()))
    opens = pd.Timestamp(job.meta["report_window"][0])
    moved = shaken(panel, slice(int(panel.timestamps.searchsorted(opens)), None))
    after = priced_jobs(moved, cfg, prepare_split(moved, cfg, StageTimer()))
    metrics = {"n_trades": 12, "val_trades": 9, "net_pnl_bps": 30.0, "sharpe": 1.0}

    def roster(priced: dict, limit: float) -> list[dict]:
        entries = [
            roster_entry(
                symbol,
                champion={"model_path": f"models/{symbol}/v", "metrics": metrics, "window": "w"},
                costs=job.costs,
                test_window="w",
                gate_codes=[],
                job_status="completed",
                job_reason="",
                daily_quote_volume=1e6 * (i + 1),
                max_round_trip_bps=limit,
                min_trades=3,
            )
            for i, (symbol, job) in enumerate(sorted(priced.items()))
        ]
        return [
            (e["symbol"], e["rank"], e["score"], e["trade_ok"], e["reasons"])
            for e in rank_entries(entries)
        ]

    for symbol, job in after.items():
        old = jobs[symbol]
        report = report_rows(job.test["timestamps"], job.meta["report_window"])
        assert report.any() and not report.all()
        assert not np.array_equal(job.test["cost_bps"][report], old.test["cost_bps"][report])
        assert job.costs["report_round_trip_bps"] != old.costs["report_round_trip_bps"]
        assert job.costs["expected_round_trip_bps"] == old.costs["expected_round_trip_bps"]
        assert job.costs["expected_slip_bps"] == old.costs["expected_slip_bps"]
    # a limit at each coin's round trip: any move of it would flip that coin's trade_ok
    for limit in sorted(j.costs["expected_round_trip_bps"] for j in jobs.values()):
        assert roster(after, limit) == roster(jobs, limit)
