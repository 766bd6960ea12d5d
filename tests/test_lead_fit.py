"""factor.lead_fit: each coin's next-bar move fitted on its factor channels, as a channel."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import recorded_hashes
from conftest import run_config

from huracan.config import build
from huracan.errors import ConfigError
from huracan.factor import FactorChannels
from huracan.lead_fit import LeadFit
from huracan.run import train
from huracan.training.arrays import build_fleet_arrays
from huracan.training.folds import prepare_fold, walk_forward

SMALL = [
    "data.n_assets=8",
    "data.years=0.5",
    "validation.n_folds=2",
    "labels.horizons=[1]",
    "gates.min_history_days=10",
]


def lead_market(loadings=(0.0, 0.2, 0.5, 0.9), n_bars: int = 4000, seed: int = 0):
    """(T, 1, 2) channels (the leader's move and noise) and (T, N) returns: coin i moves
    ``loadings[i]`` times the leader's move one bar later, plus noise."""
    rng = np.random.default_rng(seed)
    leader = rng.standard_normal(n_bars)
    channels = np.stack([leader, rng.standard_normal(n_bars)], axis=1)
    late = np.concatenate([[0.0], leader[:-1]])
    returns = np.outer(late, loadings) + rng.standard_normal((n_bars, len(loadings)))
    grid = np.repeat(channels[:, None, :], len(loadings), axis=1)
    return grid, returns * 0.01


def test_each_coin_gets_its_own_loading():
    channels, returns = lead_market()
    fit = LeadFit().fit(channels, returns, np.arange(3000))
    np.testing.assert_allclose(fit.coef_[:, 1] * 100, [0.0, 0.2, 0.5, 0.9], atol=0.06)
    np.testing.assert_allclose(fit.coef_[:, 2] * 100, 0.0, atol=0.06)
    lead = fit.channels(FactorChannels(channels, ["leader", "noise"], 0, 0)).values[..., -1]
    rows = np.arange(3000, 3999)  # bars the fit never saw: the channel predicts the next bar
    corr = [np.corrcoef(lead[rows, j], returns[rows + 1, j])[0, 1] for j in range(4)]
    assert corr[0] < 0.1 < corr[1] < corr[2] < corr[3]
    # one unit for every coin: the larger loading, the larger move
    assert np.all(np.diff(np.abs(lead[rows]).mean(0)[1:]) > 0)


def test_the_fit_reads_the_training_rows_only():
    """Bars after the training window redrawn: the coefficients, the scale and every
    channel up to the window's end stay; the last training bar pairs with no later one."""
    channels, returns = lead_market()
    rows = np.arange(2500)
    before = LeadFit().fit(channels, returns, rows)
    moved_channels, moved_returns = channels.copy(), returns.copy()
    rng = np.random.default_rng(1)
    moved_channels[2500:] = rng.standard_normal(moved_channels[2500:].shape)
    moved_returns[2500:] = rng.standard_normal(moved_returns[2500:].shape)
    after = LeadFit().fit(moved_channels, moved_returns, rows)
    np.testing.assert_array_equal(after.coef_, before.coef_)
    assert after.scale_ == before.scale_
    names = ["leader", "noise"]
    one = before.channels(FactorChannels(channels, names, 0, 0)).values
    two = after.channels(FactorChannels(moved_channels, names, 0, 0)).values
    np.testing.assert_array_equal(one[:2500], two[:2500])


def test_a_coin_with_too_few_bars_gets_no_move():
    channels, returns = lead_market()
    returns[:, 3] = np.nan
    fit = LeadFit().fit(channels, returns, np.arange(3000))
    assert np.all(fit.coef_[3] == 0.0)
    lead = fit.channels(FactorChannels(channels, ["a", "b"], 0, 0)).values[..., -1]
    assert np.all(lead[:, 3] == 0.0)


def test_the_fold_adds_lead_fit_last_and_only_from_training_rows(tmp_path):
    cfg = run_config(tmp_path, *SMALL, "factor.lead_fit=true")
    panel = build(cfg.data).load()
    arrays = build_fleet_arrays(panel, cfg)
    fold = walk_forward(cfg).split(panel)[0]
    before = prepare_fold(arrays, fold, cfg, None)
    assert before.channel_names[-1] == "lead_fit"
    assert before.lead_fit.coef_.shape == (len(arrays.symbols), 7)  # kept for the checkpoint
    assert before.channels.shape[2] == 7  # factor, leader channel (each + 2 lags), lead_fit
    after = fold.train[-1] + 1
    arrays.returns[after:] = np.random.default_rng(0).normal(0, 0.05, arrays.returns[after:].shape)
    moved = prepare_fold(arrays, fold, cfg, None)
    np.testing.assert_array_equal(moved.channels[:after], before.channels[:after])


@pytest.mark.parametrize("pipeline", ["per_coin", "mechanic", "replay"])
def test_pipelines_that_serve_refuse_it(tmp_path, pipeline):
    cfg = run_config(tmp_path, f"pipeline={pipeline}", "factor.lead_fit=true")
    with pytest.raises(ConfigError, match=f"pipeline={pipeline} factor.lead_fit"):
        build(cfg.pipeline).check(cfg)


@pytest.mark.slow
def test_the_default_run_is_unchanged(tmp_path):
    """Every new option is off by default: ``python train.py``'s results.csv is byte for
    byte what it was (the md5 main recorded, one per kind of machine: tests/recorded_hashes.py).
    A default changed on purpose, with design figures, updates those hashes in the same
    commit."""
    train(run_config(tmp_path, "trainer.enable_progress_bar=false"))
    digest = hashlib.md5((tmp_path / "run" / "results.csv").read_bytes()).hexdigest()
    assert digest in recorded_hashes.DEFAULT_RESULTS_MD5, digest
