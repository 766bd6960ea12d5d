"""features.per_cluster: the inputs each cluster head reads, given per role or learned."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_config
from sklearn.metrics import adjusted_rand_score

from huracan.config import build, validate
from huracan.errors import ConfigError
from huracan.features.per_cluster import learned_mask, role_mask
from huracan.run import train
from huracan.training.arrays import build_fleet_arrays
from huracan.training.folds import prepare_fold, walk_forward

SMALL = ["data.n_assets=8", "data.years=0.5", "validation.n_folds=2", "labels.horizons=[1,4]"]
NAMES = ["ret_1", "ret_4", "rsi", "macd", "macd_hist", "fracdiff"]


def test_a_role_keeps_its_names_and_their_suffixed_inputs():
    mask = role_mask(NAMES, ["ret", "macd"], "alt")
    assert [n for n, m in zip(NAMES, mask, strict=True) if m] == [
        "ret_1",
        "ret_4",
        "macd",
        "macd_hist",
    ]
    assert role_mask(NAMES, None, "dominant").all()
    with pytest.raises(ConfigError, match=r"features.per_cluster.alt: \['volume'\] match no input"):
        role_mask(NAMES, ["ret", "volume"], "alt")


def test_learned_keeps_the_inputs_that_rank_with_the_returns():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 6))
    net = np.column_stack([0.3 * x[:, 2] + rng.standard_normal(5000), np.full(5000, np.nan)])
    net[:, 1] = -0.3 * x[:, 4] + rng.standard_normal(5000)  # a second horizon, another input
    mask, scores = learned_mask(x, net, keep=2 / 6)
    assert np.flatnonzero(mask).tolist() == [2, 4]
    assert scores[[2, 4]].min() > 3 * np.delete(scores, [2, 4]).max()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["features.per_cluster=best"], "must be null, learned or a map"),
        (["+features.per_cluster.majors=[ret]"], r"unknown role\(s\) \['majors'\]"),
        (["features.per_cluster=learned", "features.per_cluster_keep=0"], r"in \(0, 1\]"),
        (["features.per_cluster=learned", "pipeline=per_coin", "head=coin"], "granularity=cluster"),
        (["features.per_cluster=learned", "head=global"], "granularity=cluster"),
    ],
)
def test_settings_that_cannot_apply_are_config_errors(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(run_config(tmp_path, *overrides))


def test_learned_sets_are_fitted_on_the_training_rows_only(tmp_path):
    """Every input and return after the fold's training window moved: the same masks."""
    cfg = run_config(
        tmp_path, *SMALL, "features.per_cluster=learned", "features.per_cluster_keep=0.4"
    )
    panel = build(cfg.data).load()
    arrays = build_fleet_arrays(panel, cfg, (1, 4))
    fold = walk_forward(cfg).split(panel)[0]
    before = prepare_fold(arrays, fold, cfg, None)
    assert before.masks.shape == (before.n_groups, len(before.feature_names))
    assert (before.masks.sum(1) == np.ceil(0.4 * len(before.feature_names))).all()
    after = fold.train[-1] + 1
    rng = np.random.default_rng(1)
    arrays.features[after:] = rng.standard_normal(arrays.features[after:].shape)
    arrays.net_h[after:] = rng.standard_normal(arrays.net_h[after:].shape)
    arrays.label[after:] = rng.integers(0, 2, arrays.label[after:].shape)
    moved = prepare_fold(arrays, fold, cfg, None)
    np.testing.assert_array_equal(moved.masks, before.masks)


def test_a_masked_input_reads_zero_for_its_cluster_only(tmp_path):
    cfg = run_config(
        tmp_path, *SMALL, "+features.per_cluster.dominant=[ret]", "+features.per_cluster.alt=[rsi]"
    )
    panel = build(cfg.data).load()
    arrays = build_fleet_arrays(panel, cfg, (1, 4))
    data = prepare_fold(arrays, walk_forward(cfg).split(panel)[0], cfg, None)
    t_idx, a_idx = np.nonzero(data.valid(arrays)[data.fold.test])
    t_idx = data.fold.test[t_idx]
    x = data.inputs(t_idx, a_idx)
    names = np.array(data.feature_names)
    rets = np.char.startswith(names, "ret")
    dominant = data.groups[a_idx] == data.clusters.dominant_cluster_id
    assert dominant.any() and (~dominant).any()
    assert (x[dominant][:, ~rets] == 0).all() and (x[dominant][:, rets] != 0).any()
    assert (x[~dominant][:, names != "rsi"] == 0).all()


def test_the_sets_go_into_the_summary_and_each_checkpoint(tmp_path):
    cfg = run_config(tmp_path, "debug=fast", "features.per_cluster=learned")
    train(cfg)
    out = tmp_path / "run"
    summary = json.loads((out / "summary.json").read_text())
    for fold in summary["folds"]:
        sets = fold["feature_sets"]
        meta = json.loads((out / "models" / f"fold{fold['fold']}" / "checkpoint.json").read_text())
        assert meta["feature_sets"] == sets and len(sets) >= 2
        assert all(0 < len(v) < len(meta["features"]) for v in sets.values())


# --- cluster.refit_every: clusters refitted inside the test windows ----------------------
REFIT = ["cluster.refit_every=30d"]


def test_refits_move_coins_between_heads_from_their_start_on(tmp_path):
    cfg = run_config(tmp_path, *SMALL, *REFIT)
    panel = build(cfg.data).load()
    arrays = build_fleet_arrays(panel, cfg, (1, 4))
    fold = walk_forward(cfg).split(panel)[0]
    data = prepare_fold(arrays, fold, cfg, None)
    bars = int(30 * 86400 // panel.bar_seconds)
    refits = data.clusters.refits
    assert len(refits) == (len(fold.test) - 1) // bars
    starts = fold.test[bars::bars]
    assert [r["start"] for r in refits] == [str(panel.timestamps[s]) for s in starts]
    # before the first refit (training rows and the first segment): the fold's heads
    np.testing.assert_array_equal(
        data.group_rows[: starts[0]], np.broadcast_to(data.groups, (starts[0], len(data.groups)))
    )
    previous = data.clusters.cluster_map
    for start, refit in zip(starts, refits, strict=True):
        heads = [refit["cluster_map"].get(s, -1) for s in arrays.symbols]
        np.testing.assert_array_equal(data.group_rows[start], heads)
        moved = [s for s in arrays.symbols if previous.get(s) != refit["cluster_map"].get(s)]
        assert refit["moved"] == sorted(moved)
        ari = adjusted_rand_score(
            [previous[s] for s in arrays.symbols], [refit["cluster_map"][s] for s in arrays.symbols]
        )
        assert refit["ari_vs_previous"] == round(ari, 4)
        previous = refit["cluster_map"]
        assert refit["regime_shift"] == (refit["ari_vs_previous"] < cfg.cluster.refit_min_ari)
    t_idx, a_idx = np.nonzero(data.valid(arrays)[fold.test])
    tensors, t, a = data.samples(arrays, fold.test[t_idx], data.valid(arrays))
    np.testing.assert_array_equal(tensors["group"].numpy(), data.group_rows[t, a])


def test_a_refit_reads_only_the_bars_before_it(tmp_path):
    cfg = run_config(tmp_path, *SMALL, *REFIT)
    panel = build(cfg.data).load()
    arrays = build_fleet_arrays(panel, cfg, (1, 4))
    fold = walk_forward(cfg).split(panel)[0]
    before = prepare_fold(arrays, fold, cfg, None)
    second = fold.test[int(2 * 30 * 86400 // panel.bar_seconds)]  # the second refit's first bar
    arrays.returns[second:] = np.random.default_rng(3).normal(
        0, 0.05, arrays.returns[second:].shape
    )
    moved = prepare_fold(arrays, fold, cfg, None)
    assert moved.clusters.refits[0] == before.clusters.refits[0]
    np.testing.assert_array_equal(moved.group_rows[:second], before.group_rows[:second])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["cluster=hierarchy", *REFIT], "need a flat clustering"),
        (["head=global", *REFIT], "needs head.granularity=cluster"),
        (["cluster.refit_every=soon"], "not a duration"),
        (["pipeline=per_coin", "head=coin", *REFIT], "pipeline=hierarchical only"),
    ],
)
def test_refits_that_cannot_apply_are_config_errors(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(run_config(tmp_path, *overrides))


def test_the_refits_go_into_clusters_json_and_the_summary(tmp_path):
    train(run_config(tmp_path, "debug=fast", "cluster.refit_every=7d"))
    out = tmp_path / "run"
    summary = json.loads((out / "summary.json").read_text())
    clusters = json.loads((out / "clusters.json").read_text())
    assert all(fold["cluster_refits"] for fold in summary["folds"])
    for fold, saved in zip(summary["folds"], clusters["folds"], strict=True):
        assert [r["start"] for r in saved["refits"]] == [r["start"] for r in fold["cluster_refits"]]
