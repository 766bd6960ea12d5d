"""``validation.cross_fit``: out-of-fold evidence for the gate from a fold's training
window; a block's heads never see its labels (nor its lead fit its returns), nothing sees
the test window, and the option is off by default."""

from __future__ import annotations

import functools

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_config
from hydra.utils import instantiate
from omegaconf import OmegaConf
from test_min_val_days import SMALL, assert_fold_0_gate_reads_from, recorded_run

import huracan.pipelines.hierarchical.run as hierarchical
from huracan.errors import ConfigError
from huracan.factor import FactorChannels
from huracan.lead_fit import LeadFit
from huracan.models import IdentityEncoder
from huracan.run import train
from huracan.training.arrays import build_fleet_arrays
from huracan.training.crossfit import (
    CrossFit,
    block_lead_fits,
    check_cross_fit,
    moved_leaders,
    out_of_fold,
    with_lead,
)
from huracan.training.fit import MoEHeads
from huracan.training.folds import prepare_fold
from huracan.validation import WalkForward


def test_blocks_cover_the_training_rows_and_their_heads_leave_out_the_gaps():
    rows = np.r_[np.arange(0, 400), np.arange(430, 700)]  # an embargoed hole, as folds have
    blocks = CrossFit(3).split(rows, purge=4, embargo=6)
    held = np.array([b.holds(rows) for b in blocks])
    assert (held.sum(0) == 1).all()  # every training row in exactly one block
    assert [b.first for b in blocks] == [0, rows[224], rows[447]]
    for b in blocks:
        learn = rows[b.clear_of(rows)]
        assert not ((learn >= b.first - 4) & (learn <= b.last + 6)).any()
        # everything else is kept: the purge before, the embargo after, nothing more
        assert len(learn) == len(rows) - np.count_nonzero(
            (rows >= b.first - 4) & (rows <= b.last + 6)
        )


def test_only_folds_with_a_short_validation_slice_are_cross_fitted():
    grid = pd.date_range("2023-01-01", periods=8760, freq="1h", tz="UTC")
    folds = WalkForward(n_folds=5, horizon=24).split(grid)  # slices of 12-60 days
    assert [CrossFit(3, 30).applies(f) for f in folds] == [True, True, False, False, False]
    assert all(CrossFit(3).applies(f) for f in folds)


@pytest.mark.parametrize(
    ("blocks", "days", "message"),
    [
        (1, None, "cross_fit must be a whole number of blocks >= 2, auto or null, got 1"),
        (True, None, "validation.cross_fit must be .* got True"),
        ("abc", None, "validation.cross_fit must be .* got 'abc'"),
        (3, 0, "validation.cross_fit_days must be a number of days > 0 or null, got 0"),
        (3, "x", "validation.cross_fit_days must be .* got 'x'"),
    ],
)
def test_bad_values_are_clear_config_errors(blocks, days, message):
    cfg = OmegaConf.create({"validation": {"cross_fit": blocks, "cross_fit_days": days}})
    with pytest.raises(ConfigError, match=message):
        check_cross_fit(cfg)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"validation": {"cross_fit": None, "cross_fit_days": 30}}, "without validation.cross"),
        (
            {"validation": {"cross_fit": 4}, "pipeline": {"_target_": "x.per_coin.Pipeline"}},
            "pipeline=hierarchical only",
        ),
    ],
)
def test_settings_it_would_ignore_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        check_cross_fit(OmegaConf.create(settings))
    check_cross_fit(OmegaConf.create({"validation": {"cross_fit": 4}}))  # plain: accepted


def test_the_gap_after_a_block_is_never_shorter_than_the_purge():
    # embargo 0 (a valid walk-forward setting): a label of h bars after the block would
    # share returns with the block's own labels
    rows = np.arange(600)
    for b in CrossFit(3).split(rows, purge=24, embargo=0):
        learn = rows[b.clear_of(rows)]
        assert not ((learn > b.last) & (learn <= b.last + 24)).any()


def test_a_bad_value_stops_the_run_before_any_data_is_read(tmp_path):
    cfg = run_config(tmp_path, "validation.cross_fit=1")
    with pytest.raises(ConfigError, match="validation.cross_fit must be"):
        train(cfg)
    assert not (tmp_path / "run" / "gates.json").exists()


def small_samples(rows: np.ndarray, seed: int = 0) -> dict[str, torch.Tensor]:
    """Two coins' samples at each grid row of ``rows``: 5 inputs, 2 factor channels (the
    last one the lead fit's), 2 horizons."""
    rng = np.random.default_rng(seed)
    n = 2 * len(rows)
    return {
        "x": torch.as_tensor(rng.normal(size=(n, 5)), dtype=torch.float32),
        "factor": torch.as_tensor(rng.normal(size=(n, 2)), dtype=torch.float32),
        "group": torch.as_tensor(np.tile([0, 1], len(rows))),
        "y": torch.as_tensor(rng.integers(0, 2, (n, 2)), dtype=torch.float32),
        "w": torch.ones(n, 2),
    }


def tiny_fit(train, val, codes, b):
    trainer = functools.partial(
        pl.Trainer,
        accelerator="cpu",
        deterministic=True,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
    )
    heads = MoEHeads(n_experts=2, hidden=8, max_epochs=3, patience=2, batch_size=64)
    return heads.fit(IdentityEncoder(5), 2, train, val, trainer, False, seed=b, codes=codes)


def test_a_blocks_out_of_fold_predictions_never_see_its_labels():
    """Poisoned labels (and weights) in block 2 and its purge and embargo rows: block 2's
    out-of-fold probabilities stay the same to the bit, the other blocks' change (their
    heads train on block 2: the test can fail)."""
    rows = np.arange(300)
    train, val = small_samples(rows), small_samples(np.arange(310, 360), seed=1)
    blocks = CrossFit(3).split(rows, purge=3, embargo=5)
    sample_rows = np.repeat(rows, 2)
    assets = (np.tile([0, 1], len(rows)), np.tile([0, 1], 50))
    base, done = out_of_fold(tiny_fit, blocks, sample_rows, (train, train, val), None, assets)
    poisoned = dict(train)
    near = (sample_rows >= blocks[1].first - 3) & (sample_rows <= blocks[1].last + 5)
    poisoned["y"], poisoned["w"] = train["y"].clone(), train["w"].clone()
    poisoned["y"][near] = 1 - poisoned["y"][near]
    poisoned["w"][near] *= 3
    other, _ = out_of_fold(tiny_fit, blocks, sample_rows, (poisoned, poisoned, val), None, assets)
    held = blocks[1].holds(sample_rows)
    assert base.shape == (len(sample_rows), 2) and np.isfinite(base).all() and done.all()
    np.testing.assert_array_equal(other[held], base[held])
    assert not np.allclose(other[~held], base[~held])


def test_a_coin_left_out_of_a_block_never_reaches_its_heads(monkeypatch):
    """``left_out`` (level leaders chosen with the block's returns): block 2's heads get no
    training, early-stopping or encoded sample of coin 1, and its coin-1 samples are not
    predicted; every other block and coin is, with or without the lead fit."""
    rows = np.arange(300)
    train, val = small_samples(rows), small_samples(np.arange(310, 360), seed=1)
    blocks = CrossFit(3).split(rows, purge=3, embargo=5)
    sample_rows = np.repeat(rows, 2)
    assets = (np.tile([0, 1], len(rows)), np.tile([0, 1], 50))  # coin j reads head j
    left_out = [np.zeros(2, bool), np.array([False, True]), np.zeros(2, bool)]
    channels = np.random.default_rng(0).normal(size=(400, 2, 1))
    returns = 0.3 * np.roll(channels[..., 0], 1, axis=0)
    for leads in (None, block_lead_fits(channels, returns, rows, blocks)):
        seen = {}

        def spy(part_train, part_val, codes, b, seen=seen):
            parts = [part_train, part_val, *codes]  # the encoded samples too
            seen[b] = set(torch.cat([part["group"] for part in parts]).tolist())
            return tiny_fit(part_train, part_val, codes, b)

        codes = (train, val)
        prob, done = out_of_fold(
            spy, blocks, sample_rows, (train, train, val), codes, assets, leads, left_out
        )
        assert seen == {0: {0, 1}, 1: {0}, 2: {0, 1}}
        skipped = blocks[1].holds(sample_rows) & (assets[0] == 1)
        np.testing.assert_array_equal(done, ~skipped)
        assert np.isnan(prob[skipped]).all() and np.isfinite(prob[~skipped]).all()


def test_the_leader_check_never_pairs_bars_across_a_removed_block():
    """``moved_leaders`` hands the tree each block's clear rows and, for a block in the
    middle, the position after which the block is missing: the bars at that position and
    the next lie before and after the block and its gaps; a first or last block has none."""
    rows = np.r_[0:400, 430:900]  # an embargo hole, as later folds have
    blocks = CrossFit(3).split(rows, purge=4, embargo=6)
    calls = []

    class Tree:
        def leaders_moved(self, returns, market, clear, gap_after):
            calls.append((clear, gap_after))
            return np.zeros(returns.shape[1], bool)

    moved_leaders(Tree(), np.zeros((900, 2)), np.zeros((900, 1)), rows, blocks)
    assert [gap is None for _, gap in calls] == [True, False, True]
    clear, gap = calls[1]
    np.testing.assert_array_equal(clear, rows[blocks[1].clear_of(rows)])
    assert clear[gap] < blocks[1].first - 4 and clear[gap + 1] > blocks[1].last + 6
    assert clear[gap + 1] - clear[gap] > blocks[1].last - blocks[1].first


def test_a_blocks_lead_fit_never_sees_its_returns_and_matches_the_folds_channel():
    rng = np.random.default_rng(0)
    channels = rng.normal(size=(400, 3, 2))
    returns = 0.3 * np.roll(channels[..., 0], 1, axis=0) + rng.normal(0, 1, (400, 3))
    rows = np.arange(350)
    blocks = CrossFit(4).split(rows, purge=2, embargo=2)
    base = block_lead_fits(channels, returns, rows, blocks)
    changed = returns.copy()
    changed[blocks[2].first - 2 : blocks[2].last + 3] = rng.normal(0, 5, (1, 3))
    other = block_lead_fits(channels, changed, rows, blocks)
    np.testing.assert_array_equal(other[2].coef_, base[2].coef_)
    assert other[2].scale_ == base[2].scale_
    assert not np.allclose(other[0].coef_, base[0].coef_)
    # a block's lead channel, per sample, is LeadFit.channels' on the same cells
    whole = LeadFit().fit(channels, returns, rows)
    grid = whole.channels(FactorChannels(channels.astype(np.float32), ["a", "b"], 0, 0))
    t, a = np.repeat(np.arange(10), 3), np.tile(np.arange(3), 10)
    factor = torch.as_tensor(np.c_[channels[t, a], np.zeros(30)], dtype=torch.float32)
    samples = with_lead({"factor": factor}, a, whole)
    np.testing.assert_allclose(samples["factor"][:, -1], grid.values[t, a, -1], atol=1e-5)


CROSS = [*SMALL, "validation.cross_fit=2", "factor.lead_fit=true"]


def test_the_gate_reads_the_training_window_out_of_fold_and_nothing_of_the_test_window(
    tmp_path, monkeypatch
):
    """Fold 0's gate and cut are chosen on every training and validation sample; with
    every bar from fold 0's first test bar on redrawn they stay the same, with bars from
    inside its training window redrawn they change (the test can fail)."""
    cfg = run_config(tmp_path, *CROSS)
    panel = instantiate(cfg.data).load()
    base, base_calls = recorded_run(panel, cfg, tmp_path / "a", monkeypatch)
    fold, info = base.folds[0], base.fold_info[0]
    assert info["cross_fit_blocks"] == 2
    prob, net = base_calls[0]
    assert len(prob) > info["train_samples"] > 0  # the training samples, then the slice's
    assert np.isfinite(prob).all()
    cuts = ((fold.test[0], True), (fold.train[len(fold.train) // 2], False))
    assert_fold_0_gate_reads_from(panel, cfg, tmp_path, monkeypatch, (base, base_calls), cuts)


def test_the_ablation_without_the_factor_is_gated_on_its_own_out_of_fold_evidence(
    tmp_path, monkeypatch
):
    """``report.compare_without_factor``: the ablation's heads are cross-fitted too, so
    both arms choose on the same samples; its evidence is its own heads' predictions."""
    overrides = [o for o in CROSS if not o.startswith("report.")]
    cfg = run_config(tmp_path, *overrides, "validation.n_folds=1")
    panel = instantiate(cfg.data).load()
    run, calls = recorded_run(panel, cfg, tmp_path / "a", monkeypatch)
    (heads, heads_net), (ablation, ablation_net) = calls  # one fold: the heads, then it
    assert len(heads) == len(ablation) > run.fold_info[0]["train_samples"]
    np.testing.assert_array_equal(heads_net, ablation_net)  # the same samples
    assert not np.array_equal(heads, ablation)
    assert np.isfinite(run.without_factor.probability[run.folds[0].test]).any()


LEADERS = [
    *SMALL,
    "data.n_assets=16",
    "data.levels={sectors:2}",
    "factor=leader",
    "cluster=hierarchy",
    "cluster.levels=[2,3]",  # SMALL's 2 clusters; the alt one planted in 2 sectors
    "cluster.level_factor=leader",
    "validation.cross_fit=2",
    "report.compare_without_factor=false",
]


def test_level_leaders_a_block_chose_leave_its_coins_out_of_the_evidence(tmp_path, monkeypatch):
    """``cluster.level_factor=leader`` chooses leaders on next-bar returns: where the rows
    clear of a block would choose another leader, that block's samples of the cluster's
    coins are kept out of its heads and of the gate's evidence. The coins the run records
    are the tree's check on the fold's blocks; forced for every coin of block 2
    against none, the evidence loses block 2's training samples and keeps the rest to the
    bit, and the ablation's evidence holds the same samples."""
    cfg = run_config(tmp_path, *LEADERS, "validation.n_folds=1")
    panel = instantiate(cfg.data).load()
    real, _ = recorded_run(panel, cfg, tmp_path / "real", monkeypatch)
    info = real.fold_info[0]
    assert info["cross_fit_blocks"] == 2
    arrays = build_fleet_arrays(panel, cfg, real.arrays.horizons)
    data = prepare_fold(arrays, real.folds[0], cfg, None)
    market = data.factor.transform(arrays.returns, arrays.quote_volume)
    train_rows = real.folds[0].train
    blocks = CrossFit(2).split(train_rows, *hierarchical.fleet_walk_forward(cfg).gaps())
    moved = moved_leaders(data.tree, arrays.returns, market, train_rows, blocks)
    assert info["cross_fit_left_out"] == [np.asarray(arrays.symbols)[m].tolist() for m in moved]
    assert info["cross_fit_samples"] <= info["train_samples"]
    runs = {}
    for name, blocks in (("none", ()), ("block 2", (1,))):

        def forced(tree, returns, *args, blocks=blocks):  # every coin, in ``blocks``
            return [np.full(returns.shape[1], b in blocks) for b in range(2)]

        monkeypatch.setattr(hierarchical, "moved_leaders", forced)
        ablation = "report.compare_without_factor=true"
        both = run_config(
            tmp_path / name.replace(" ", ""), *LEADERS, "validation.n_folds=1", ablation
        )
        runs[name] = recorded_run(panel, both, tmp_path / name.replace(" ", ""), monkeypatch)
    (none, none_calls), (block, block_calls) = runs["none"], runs["block 2"]
    n_train = none.fold_info[0]["train_samples"]
    assert none.fold_info[0]["cross_fit_left_out"] == [[], []]
    assert block.fold_info[0]["cross_fit_left_out"] == [[], list(block.arrays.symbols)]
    full, part = none_calls[0][0], block_calls[0][0]
    n_val = len(full) - n_train  # the evidence: every training sample, then the slice's
    dropped = len(full) - len(part)
    assert 0 < dropped < n_train and np.isfinite(part).all()
    assert block.fold_info[0]["cross_fit_samples"] == n_train - dropped
    np.testing.assert_array_equal(part[-n_val:], full[-n_val:])  # the fold's own heads
    np.testing.assert_array_equal(part[: n_train - dropped], full[: n_train - dropped])
    heads_net, ablation_net = block_calls[0][1], block_calls[1][1]
    np.testing.assert_array_equal(heads_net, ablation_net)  # both arms: the same samples


def test_auto_gates_on_the_slice_where_inputs_are_fitted_on_labels(tmp_path):
    """``validation.cross_fit=auto`` cross-fits the short early folds with 4 blocks, but
    where the inputs are fitted on the training labels (the trend aggregate of
    ``features=cross_section``) the slice alone gates; a number of blocks refuses them."""
    from huracan.training.crossfit import CrossFit, fitted_on_labels

    auto = ["validation.cross_fit=auto"]
    assert CrossFit.of(run_config(tmp_path, *auto)) == CrossFit(4, 30.0, auto=True)
    days = run_config(tmp_path, *auto, "validation.cross_fit_days=10")
    assert CrossFit.of(days) == CrossFit(4, 10, auto=True)  # its own 30 days give way
    assert CrossFit.of(run_config(tmp_path, "validation.cross_fit=4")) == CrossFit(4, None)
    learned = run_config(tmp_path, "features.per_cluster=learned")
    assert fitted_on_labels(learned, fitted_trend=False)
    assert not fitted_on_labels(run_config(tmp_path), fitted_trend=False)
    _, objects = train(run_config(tmp_path / "xs", *SMALL, *auto, "features=cross_section"))
    assert [info["cross_fit_blocks"] for info in objects["run"].fold_info] == [0, 0]
    _, objects = train(run_config(tmp_path / "plain", *SMALL, *auto))  # the same folds
    assert [info["cross_fit_blocks"] for info in objects["run"].fold_info] == [4, 4]
    with pytest.raises(ConfigError, match="features fitted on the training labels"):
        four = ["features=cross_section", "validation.cross_fit=4"]
        train(run_config(tmp_path / "four", *SMALL, *four))
