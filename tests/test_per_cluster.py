"""features.per_cluster: the inputs each cluster head reads, given per role or learned."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import run_config
from omegaconf import OmegaConf
from sklearn.metrics import adjusted_rand_score

from huracan.clustering import ClusterResult
from huracan.config import build, validate
from huracan.errors import ConfigError
from huracan.features.per_cluster import learned_mask, role_mask
from huracan.run import train
from huracan.training.arrays import build_fleet_arrays
from huracan.training.folds import prepare_fold, walk_forward
from huracan.training.refit import refit_groups

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
        (["features.per_cluster=learned", "pipeline=per_coin", "head=coin"], "hierarchical only"),
        (["features.per_cluster=learned", "pipeline=mechanic"], "hierarchical only"),
        (["features.per_cluster={alt: ret}"], "non-empty list of feature names"),
        (["features.per_cluster={alt: []}"], "non-empty list of feature names"),
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
REFIT = ["cluster.refit_every=20d"]


def test_refits_move_coins_between_heads_from_their_start_on(tmp_path):
    cfg = run_config(tmp_path, *SMALL, *REFIT)
    panel = build(cfg.data).load()
    arrays = build_fleet_arrays(panel, cfg, (1, 4))
    fold = walk_forward(cfg).split(panel)[0]
    data = prepare_fold(arrays, fold, cfg, None)
    bars = int(20 * 86400 // panel.bar_seconds)
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
    # the test samples' heads, from the history alone: the last refit started by the bar
    tensors, t, a = data.samples(arrays, fold.test, data.valid(arrays))
    maps = [data.clusters.cluster_map] + [r["cluster_map"] for r in refits]
    segment = np.searchsorted(starts, t, side="right")
    expected = [maps[k].get(arrays.symbols[j], -1) for k, j in zip(segment, a, strict=True)]
    assert len(set(segment.tolist())) == len(refits) + 1
    np.testing.assert_array_equal(tensors["group"].numpy(), expected)


def test_a_refit_reads_only_the_bars_before_it(tmp_path):
    cfg = run_config(tmp_path, *SMALL, *REFIT)
    panel = build(cfg.data).load()
    arrays = build_fleet_arrays(panel, cfg, (1, 4))
    fold = walk_forward(cfg).split(panel)[0]
    before = prepare_fold(arrays, fold, cfg, None)
    starts = fold.test[int(20 * 86400 // panel.bar_seconds) :: int(20 * 86400 // panel.bar_seconds)]
    assert len(starts) >= 3
    second, third = starts[1], starts[2]
    # from the second refit's first bar on, the returns reversed for half the coins: the
    # third refit sees it, the first two (fitted on the bars before them) may not
    arrays.returns[second:, ::2] = -10 * arrays.returns[second:, ::2]
    moved = prepare_fold(arrays, fold, cfg, None)
    assert moved.clusters.refits[:2] == before.clusters.refits[:2]
    np.testing.assert_array_equal(moved.group_rows[:third], before.group_rows[:third])
    assert moved.clusters.refits[2]["cluster_map"] != before.clusters.refits[2]["cluster_map"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["cluster=hierarchy", *REFIT], "need a flat clustering"),
        (["head=global", *REFIT], "needs head.granularity=cluster"),
        (["cluster.refit_every=soon"], "not a duration"),
        (["pipeline=per_coin", "head=coin", *REFIT], "pipeline=hierarchical only"),
        ([*REFIT, "cluster.refit_min_ari=2"], r"in \[-1, 1\]"),
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


def test_a_coin_in_a_cluster_no_head_learned_has_no_head_after_the_refit():
    """The fold trained heads 0, 1 and 3 (ids need not be contiguous). A refit splits
    cluster 3 in two: one half keeps head 3, the other is a new cluster (id 2, no head
    learned it); a coin the refit could not cluster has none either (-1)."""
    symbols = ["A", "B", "C", "D", "E", "F"]

    def result(cluster_map, excluded=None):
        members = {}
        for symbol, c in cluster_map.items():
            members.setdefault(c, []).append(symbol)
        return ClusterResult(
            cluster_map,
            0,
            members,
            None,
            np.eye(len(cluster_map)),
            list(cluster_map),
            "ward",
            excluded=excluded or {},
        )

    fold_clusters = result({"A": 0, "B": 0, "C": 1, "D": 3, "E": 3, "F": 1})
    groups = np.array([0, 0, 1, 3, 3, 1])
    refit = result({"A": 0, "B": 0, "C": 1, "D": 2, "E": 4}, {"F": "too little overlap"})
    stamps = pd.date_range("2024-01-01", periods=60, freq="h", tz="UTC")
    arrays = SimpleNamespace(symbols=symbols, timestamps_ns=stamps.asi8, returns=np.zeros((60, 6)))
    fold = SimpleNamespace(train=np.arange(0, 30), test=np.arange(40, 60))
    cfg = OmegaConf.create(
        {
            "cluster": {"refit_every": 10, "min_overlap": 5},
            "head": {"granularity": "cluster"},
            "pipeline": {"_target_": "huracan.pipelines.hierarchical.HierarchicalPipeline"},
        }
    )
    grid, history = refit_groups(lambda rows: refit, fold, fold_clusters, groups, cfg, arrays)
    np.testing.assert_array_equal(grid[:50], np.broadcast_to(groups, (50, 6)))
    np.testing.assert_array_equal(grid[50, [0, 1, 2, 5]], [0, 0, 1, -1])
    assert sorted(grid[50, [3, 4]].tolist()) == [-1, 3]
    [headless] = history[0]["without_head"]
    assert grid[50, symbols.index(headless)] == -1
    assert history[0]["excluded"] == {"F": "too little overlap"}
