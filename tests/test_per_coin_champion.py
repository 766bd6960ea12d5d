"""A per-coin run challenges each champion as the signal service serves it: from the
champion's own stored state on the raw bars, on the challenger's bars, at the same costs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from test_per_coin import per_coin_config

import huracan.pipelines.per_coin.job as coin_job
import huracan.pipelines.per_coin.run as per_coin
from huracan.pipelines.per_coin.costs import price_test
from huracan.run import train
from huracan.serve import Fleet, ServeConfig


def train_recording_jobs(cfg) -> tuple[dict, dict, dict]:
    """Runs the per-coin pipeline; returns its objects, each coin's job and its result."""
    jobs, results = {}, {}
    run = per_coin.run_coin_job

    def recording(job):
        jobs[job.symbol] = job
        results[job.symbol] = run(job)
        return results[job.symbol]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(per_coin, "run_coin_job", recording)
        _, objects = train(cfg)
    return objects, jobs, results


@pytest.fixture(scope="module")
def challenged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("champion")
    every = "pipeline.champion_min_trades=0"  # every coin's model becomes its champion
    train(per_coin_config(tmp, every))
    champions = Fleet.load(tmp / "artifacts", config=ServeConfig(expire_hours=None))
    # a later window: a longer training window, so the factor and FFD orders are refitted
    later = per_coin_config(tmp, every, "pipeline.run_id=20240103", "pipeline.test_days=10")
    objects, jobs, results = train_recording_jobs(later)
    return champions, objects["panel"], jobs, results


def rescaled_path(model, job) -> np.ndarray:
    """What the challenge scored before issue 29: this run's scaled inputs mapped back,
    clipped by this run's scaler, rescaled by the champion's, with this run's factor
    channels and FFD order."""
    clip = job.meta["config"]["features"]["clip"]
    mean, std = (np.ravel(job.meta["scaler"][k]) for k in ("mean", "std"))
    own_mean, own_std = (np.ravel(model.description["scaler"][k]) for k in ("mean", "std"))
    x = np.clip((job.test["x"] * std + mean - own_mean) / own_std, -clip, clip)
    return coin_job.predict(model.module, {**job.test, "x": x.astype(np.float32)})


def test_the_champion_is_scored_with_the_serving_paths_probabilities(challenged):
    champions, panel, jobs, _ = challenged
    served = champions.predict(panel)  # the signal service on the whole history
    for symbol, model in champions.models.items():
        job = jobs[symbol]
        assert job.champion["model_path"] == model.model_path
        stamps = pd.to_datetime(job.test["timestamps"], utc=True)
        expected = served.loc[stamps, symbol].to_numpy()
        assert np.isfinite(job.champion["prob"]).all(), symbol
        assert np.abs(job.champion["prob"] - expected).max() <= 1e-6, symbol
        assert job.champion["threshold"] == model.threshold
        assert job.champion["horizon"] == model.horizon
    assert len(champions.models) == 6


def test_the_rescaled_path_was_biased_where_the_factor_or_ffd_order_changed(challenged):
    champions, _, jobs, _ = challenged
    changed, gaps = 0, []
    for symbol, model in champions.models.items():
        job = jobs[symbol]
        refitted = job.meta["factor"] != model.description["factor"]
        refitted |= job.meta["fracdiff_d"] != model.description["fracdiff_d"]
        changed += refitted
        gaps.append(np.abs(rescaled_path(model, job) - job.champion["prob"]).max())
    assert changed >= 1  # this run refitted the state the old path borrowed
    assert max(gaps) > 1e-3, gaps  # the old path's probabilities were not the served ones


def test_the_contest_reads_the_served_probabilities_at_the_jobs_costs(challenged):
    _, _, jobs, results = challenged
    contested = 0
    for symbol, job in jobs.items():
        on_window = results[symbol]["champion"]["champion_on_window"]
        if "prob" not in job.champion or on_window is None:
            continue
        priced = price_test(job)  # the costs the job charged both models
        chosen = priced.held(results[symbol]["metrics"]["horizon"])
        no_entries = np.zeros(len(chosen.test["timestamps"]), bool)
        pointer = {"model_path": job.champion["model_path"]}
        scored = coin_job.rescore(pointer, priced, chosen, no_entries)
        for key in ("n_trades", "net_pnl_bps", "sharpe", "window"):
            assert scored.champion[key] == on_window[key], (symbol, key)
        silent = {**job.champion, "prob": np.zeros_like(job.champion["prob"])}
        quiet = coin_job.rescore(pointer, replace(priced, champion=silent), chosen, no_entries)
        assert quiet.champion["n_trades"] == 0
        contested += 1
    assert contested >= 1


def test_an_unreadable_champion_is_replaced_and_one_without_a_score_is_kept(challenged):
    _, _, jobs, _ = challenged
    job = price_test(next(j for j in jobs.values() if "prob" in j.champion))
    chosen, entries = job.at_horizon(0), np.zeros(len(job.test["timestamps"]), bool)
    pointer = {"model_path": job.champion["model_path"]}
    broken = replace(job, champion={**pointer, "unreadable": "ModelUnusable: no manifest"})
    scored = coin_job.rescore(pointer, broken, chosen, entries)
    assert scored.unreadable and scored.champion is None
    state = {k: v for k, v in job.champion.items() if k != "prob"}
    unserved = replace(job, champion={**state, "unscored": "factor member(s) ['BTC']"})
    scored = coin_job.rescore(pointer, unserved, chosen, entries)
    assert not scored.unreadable and scored.champion is None
    assert "cannot be served" in scored.note
    other = {"model_path": "models/X/baseline_1"}  # not the champion the run scored
    assert "not scored before" in coin_job.rescore(other, job, chosen, entries).note
