"""pipeline=per_coin with several label horizons: each coin's job chooses its horizon and
threshold on validation, exports a one-output head for it, and everything downstream
(metrics, roster, serving, the Mechanic) holds trades that horizon."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_config

from huracan.coins import CoinJob, window_rows
from huracan.models import GroupedMoEHead
from huracan.pipelines.per_coin.job import choose_horizon, val_trades
from huracan.run import train
from huracan.serve import Fleet, ServeConfig
from huracan.store import LocalStore
from huracan.thresholds import choose_thresholds

MARKET = [
    "debug=fast",
    "data.n_assets=6",
    "data.n_clusters=3",
    "cluster.n_clusters=3",
    "data.years=1.0",
    "features.fracdiff=false",
    "trainer.enable_progress_bar=false",
    "thresholds.min_trades=5",
    "thresholds.unit=trade",
    "thresholds.gate=search",  # the family gate needs unit=day (test_per_coin_gate.py)
]
PER_COIN = ["pipeline=per_coin", "pipeline.champion_min_trades=3", "pipeline.report_days=0"]


def config(tmp, *overrides):
    return run_config(tmp, *MARKET, *overrides)


def test_an_output_slice_computes_that_output():
    torch.manual_seed(0)
    head = GroupedMoEHead(3, 6, n_experts=2, hidden=8, n_outputs=4)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_()
    x, group = torch.randn(50, 6), torch.randint(0, 3, (50,))
    full, gate = head(x, group)
    for i in range(4):
        one = head.output_slice(i)
        assert one.n_outputs == 1 and "n_outputs" not in one.model_args
        logits, one_gate = one(x, group)
        torch.testing.assert_close(logits, full[:, i])
        torch.testing.assert_close(one_gate, gate)


def _job(prob_edge: np.ndarray, gross: np.ndarray, stamps: np.ndarray, **rules) -> CoinJob:
    return CoinJob(
        symbol="X",
        val={
            "gross": gross,
            "cost_bps": np.full(len(gross), 10.0),
            "timestamps": stamps,
        },
        rules={
            "horizon": 1,
            "horizons": [1, 4],
            "min_trades": 5,
            "z": 1.0,
            "threshold_unit": "trade",
            "bars_per_year": 24 * 365.25,
            **rules,
        },
    )


def test_a_coin_job_chooses_the_horizon_that_pays():
    """An edge that pays only over 4 bars: the job holds 4 bars; without one it abstains."""
    rng = np.random.default_rng(0)
    n = 2000
    stamps = np.arange(n, dtype=np.int64) * 3_600_000_000_000
    signal = rng.random(n) < 0.2
    gross = rng.normal(0, 0.002, (n, 2))
    gross[:, 1] += np.where(signal, 0.006, 0.0)  # +60 bps over 4 bars when signalled
    prob = np.column_stack([rng.random(n), np.where(signal, 0.9, 0.1) + rng.normal(0, 0.01, n)])
    index, cut = choose_horizon(_job(prob, gross, stamps), prob)
    assert index == 1 and 0.1 < cut <= 0.9
    flat = gross.copy()
    flat[:, 1] = rng.normal(0, 0.002, n)  # no edge at any horizon: costs make every cut lose
    index, cut = choose_horizon(_job(prob, flat, stamps), prob)
    assert index == 0 and np.isinf(cut)


def test_a_coin_job_chooses_its_cut_by_the_run_s_cut_z():
    """The job's rules carry thresholds.cut_z; a job without it (an older run) keeps z."""
    rng = np.random.default_rng(9)
    n = 4000
    stamps = np.arange(n, dtype=np.int64) * 3_600_000_000_000
    prob = rng.uniform(0, 1, n)
    # the 10 bps of costs are paid back above a probability of 0.6
    gross = 0.001 + 0.002 * (prob - 0.6) + rng.normal(0, 0.006, n)
    rules = {"horizons": [1], "z": 2.0}
    cut_old = choose_horizon(_job(prob, gross[:, None], stamps, **rules), prob)[1]
    cut_new = choose_horizon(_job(prob, gross[:, None], stamps, **rules, cut_z=0.0), prob)[1]
    assert cut_new < cut_old < np.inf


@pytest.fixture(scope="module")
def two_horizons(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("horizons")
    summary, _ = train(
        config(
            tmp,
            *PER_COIN,
            "labels.horizons=[1,4]",
            "data.end=2023-11-01",
            "pipeline.run_id=base",
            "pipeline.test_days=20",
        )
    )
    return tmp, summary


def test_each_export_holds_one_head_for_its_chosen_horizon(two_horizons):
    tmp, summary = two_horizons
    store = LocalStore(tmp / "artifacts")
    roster = {e["symbol"]: e for e in store.read_json("champions/roster.json")["entries"]}
    exported = 0
    for symbol, job in summary["per_coin"]["jobs"].items():
        if job["status"] != "completed":
            continue
        prefix = f"models/{symbol}/baseline_base"
        description = store.read_json(f"{prefix}/checkpoint.json")
        metrics = store.read_json(f"{prefix}/metrics.json")
        horizon = description["config"]["labels"]["horizon"]
        # the horizon it holds; labels.horizons stays what early stopping read
        assert horizon in (1, 4) and description["config"]["labels"]["horizons"] == [1, 4]
        assert "n_outputs" not in description["head"]  # one output: the chosen horizon's
        assert metrics["horizon"] == horizon
        if roster[symbol]["model_path"] == prefix:
            assert roster[symbol]["horizon_bars"] == horizon
        exported += 1
    assert exported >= 4
    fleet = Fleet.load(store, config=ServeConfig(expire_hours=None))
    for model in fleet.models.values():
        meta = json.loads(store.read_bytes(f"{model.model_path}/checkpoint.json"))
        assert model.horizon == meta["config"]["labels"]["horizon"]


@pytest.fixture(scope="module")
def mechanic_at_four(tmp_path_factory):
    """Champions that hold 4 bars, then the Mechanic with the next month of bars."""
    tmp = tmp_path_factory.mktemp("mechanic4")
    base = [*PER_COIN, "labels.horizons=[4]", "pipeline.test_days=20", "pipeline.run_id=b"]
    train(config(tmp, *base, "data.end=2023-11-01"))
    summary, _ = train(
        config(
            tmp,
            "pipeline=mechanic",
            "labels.horizons=[4]",
            "data.end=2023-12-01",
            "mechanic.val_fraction=0.4",
            "mechanic.champion_min_trades=3",
            "drift.max_psi=1.0",
        )
    )
    return tmp, summary


def test_the_mechanic_tunes_and_scores_at_the_champions_horizon(mechanic_at_four):
    tmp, summary = mechanic_at_four
    store = LocalStore(tmp / "artifacts")
    report = json.loads((tmp / "run" / "mechanic.json").read_text())
    challengers = [c for c in report["coins"].values() if c.get("challenger_path")]
    assert challengers, report["coins"]
    for coin in challengers:
        for key in ("champion_path", "challenger_path"):
            description = store.read_json(f"{coin[key]}/checkpoint.json")
            assert description["config"]["labels"]["horizon"] == 4
        # scored on the holdout with trades held 4 bars
        assert store.read_json(f"{coin['challenger_path']}/metrics.json")["horizon"] == 4
    # the holdout begins 4 bars (one horizon) after the fine-tuning rows' last label
    assert report["holdout_window"][0] > "2023-11-23"


HOUR = 3_600_000_000_000


def test_one_horizon_longer_than_a_bar_is_judged_on_every_hth_bar():
    """A head with one output held 4 bars: the cut rests on trades that cannot overlap."""
    rng = np.random.default_rng(1)
    n = 2000
    prob = rng.random(n)
    gross = (rng.normal(0, 0.002, n) + np.where(prob > 0.8, 0.003, 0.0))[:, None]
    job = _job(prob, gross, np.arange(n, dtype=np.int64) * HOUR)
    job = replace(job, rules={**job.rules, "horizons": [4], "horizon": 4})
    index, cut = choose_horizon(job, prob)
    keep = np.arange(n) % 4 == 0
    net = gross[:, 0] - 10 / 1e4
    [expected] = choose_thresholds(prob[keep], net[keep], np.zeros(keep.sum(), int), 1, 5, 1.0)
    assert index == 0 and np.isfinite(cut) and cut == expected
    assert val_trades(prob >= cut, job.at_horizon(0)) == int(((prob >= cut) & keep).sum())


def test_selection_trades_exit_before_the_report_window():
    stamps = np.arange(48, dtype=np.int64) * HOUR + pd.Timestamp("2024-01-01", tz="UTC").value
    report_start = pd.Timestamp(stamps[40], tz="UTC")
    job = CoinJob(
        symbol="X",
        test={"timestamps": stamps},
        meta={"report_window": [str(report_start), str(pd.Timestamp(stamps[-1], tz="UTC"))]},
        rules={"horizon": 4, "bars_per_year": 24 * 365.25},
    )
    selection, report = window_rows(job)
    assert report.sum() == 8 and np.flatnonzero(selection).max() == 35  # 35 + 4 = 39 < 40
    selection, _ = window_rows(job, 1)
    assert np.flatnonzero(selection).max() == 38
    # no trade exits before the report window (a coin listed just before it): all bars
    # are selection bars, as for a coin with no bar before it
    late = {**job.meta, "report_window": [str(pd.Timestamp(stamps[2], tz="UTC")), "x"]}
    selection, report = window_rows(replace(job, meta=late))
    assert selection.all() and not report.any()


def test_a_champion_of_another_horizon_is_priced_from_the_test_closes():
    closes = np.linspace(100.0, 110.0, 30)
    row = np.array([0, 1, 2, 5, 20, 28])
    job = CoinJob(
        symbol="X",
        val={"gross": np.zeros((3, 2))},
        test={"gross": np.zeros((6, 2)), "closes": closes, "grid_row": row},
        rules={"horizon": 1, "horizons": [1, 4]},
    )
    held = job.held(3)
    expected = np.array([closes[r + 3] / closes[r] - 1 if r + 3 < 30 else np.nan for r in row])
    np.testing.assert_array_equal(held.test["gross"], expected)
    assert held.rules["horizon"] == 3
    np.testing.assert_array_equal(job.held(4).test["gross"], job.test["gross"][:, 1])
