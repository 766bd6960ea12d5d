"""cluster=hierarchy: nested levels of residual clusters and their cascading factors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT, run_config
from hydra import compose, initialize_config_dir
from sklearn.metrics import adjusted_rand_score

from huracan.config import build
from huracan.errors import ConfigError
from huracan.factor import PCAFactor
from huracan.hierarchy import FactorTree, HierarchyClusterer
from huracan.run import train
from huracan.training.arrays import build_fleet_arrays
from huracan.training.folds import prepare_fold, walk_forward

LEVELS = ["cluster=hierarchy", "cluster.levels=[2,4]"]
SMALL = [
    "data.n_assets=8",
    "data.years=0.5",
    "validation.n_folds=2",
    "labels.horizons=[1]",
    "gates.min_history_days=10",
]


def planted_two_level_market(n_bars: int = 3000, seed: int = 0):
    """Returns (T, 13) of 3 majors that follow the market, and two sectors of a sub-leader
    and 4 followers each; a follower moves with its sub-leader's own shock now and one bar
    later. The planted level-1 clusters: majors, sector 1, sector 2. Also returns each
    sector's own shock (T, 2) and the market (T,)."""
    rng = np.random.default_rng(seed)
    market = rng.standard_normal(n_bars)
    columns, truth, shocks = [], [], []
    for _ in range(3):
        columns.append(market + 0.3 * rng.standard_normal(n_bars))
        truth.append(0)
    for sector in (1, 2):
        own = rng.standard_normal(n_bars)
        shocks.append(own)
        lagged = np.concatenate([[0.0], own[:-1]])
        columns.append(0.6 * market + own + 0.5 * rng.standard_normal(n_bars))
        truth.append(sector)
        for _ in range(4):
            noise = 0.6 * rng.standard_normal(n_bars)
            columns.append(0.6 * market + 0.5 * own + 0.7 * lagged + noise)
            truth.append(sector)
    symbols = [f"C{j}" for j in range(len(columns))]
    return (
        np.column_stack(columns) * 0.01,
        np.array(truth),
        symbols,
        np.column_stack(shocks),
        market,
    )


def fit_tree(returns, symbols, levels=(2, 3)):
    top = HierarchyClusterer(levels=list(levels), n_clusters=levels[0]).fit(returns, symbols)
    market = PCAFactor(leader=symbols[0]).fit(returns, top.result_.cluster_members[0], symbols)
    factor = market.transform(returns)
    return FactorTree(list(levels)).fit(returns, factor, top.labels_), factor


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_planted_two_level_market_is_recovered(seed):
    returns, truth, symbols, _, _ = planted_two_level_market(seed=seed)
    tree, _ = fit_tree(returns, symbols)
    assert adjusted_rand_score(truth, tree.labels_[1]) == 1.0
    for child in np.unique(tree.labels_[1]):  # clusters of clusters: nested in the level above
        assert len(np.unique(tree.labels_[0][tree.labels_[1] == child])) == 1


def test_a_sector_factor_follows_its_own_sub_leader():
    """Level 1's factor of a sector is what its members share beyond the market factor:
    the sub-leader's own shock, now and one bar late; and nothing of the market factor
    (the residuals are orthogonal to it on the fit rows, so their PC is too)."""
    returns, _, symbols, shocks, _ = planted_two_level_market()
    tree, factor = fit_tree(returns, symbols)
    factors = tree.factors(returns, factor)[0]  # (T, 3)
    for sector, leader in enumerate((3, 8)):  # each sector's sub-leader's column
        level = factors[:, tree.labels_[1][leader]]
        own = shocks[:, sector]
        shared = 0.5 * own + 0.7 * np.concatenate([[0.0], own[:-1]])  # the followers'
        assert np.corrcoef(level, shared)[0, 1] > 0.6
        assert abs(np.corrcoef(level, factor[:, 0])[0, 1]) < 1e-9


@pytest.mark.parametrize("level_factor", ["pca", "leader"])
def test_a_stored_tree_rebuilds_the_channels_bit_for_bit_on_a_coins_path(level_factor):
    """``to_dict`` through JSON, then ``from_dict`` on a panel of one coin's path (its
    level-1 cluster and the market's members, columns reversed): the coin's channels on
    every bar are the fitted tree's, to the bit, gaps included."""
    returns, _, symbols, _, _ = planted_two_level_market(2000)
    returns[100:110, 4] = np.nan
    market = PCAFactor().fit(returns[:1500], symbols[:3], symbols)
    factor = market.transform(returns)
    tree = FactorTree([1, 3, 5], level_factor=level_factor)
    tree.fit(returns[:1500], factor[:1500], np.zeros(13, int))
    fitted = tree.channels(returns, factor, np.isfinite(returns))
    state = json.loads(json.dumps(tree.to_dict(symbols)))
    path = FactorTree.input_symbols(state, ["C5"])
    assert "C5" in path and "C0" not in path
    sub = list(reversed(dict.fromkeys([*symbols[:3], *path])))
    cols = [symbols.index(s) for s in sub]
    rebuilt = FactorTree.from_dict(state, sub)
    assert rebuilt.level_factor == level_factor
    channels = rebuilt.channels(
        returns[:, cols],
        PCAFactor.from_dict(market.to_dict(), sub).transform(returns[:, cols]),
        np.isfinite(returns[:, cols]),
    )
    assert channels.names == fitted.names
    np.testing.assert_array_equal(channels.values[:, sub.index("C5")], fitted.values[:, 5])
    assert FactorTree.path_of(state, "C5") == FactorTree.path_of(state, "C6")


def test_channels_names_and_count_per_asset(tmp_path):
    cfg = run_config(tmp_path, *SMALL, *LEVELS)
    panel = build(cfg.data).load()
    arrays = build_fleet_arrays(panel, cfg)
    fold = walk_forward(cfg).split(panel)[0]
    data = prepare_fold(arrays, fold, cfg, None)
    market = ["market_factor", "market_factor_lag1", "market_factor_lag2"]
    leader = ["leader_return", "leader_return_lag1", "leader_return_lag2"]
    level = ["level1_factor", "level1_factor_lag1", "level1_factor_lag2"]
    assert data.channel_names == market + leader + level
    assert data.channels.shape == (len(arrays.returns), len(arrays.symbols), 9)
    tree = data.clusters.tree["levels"]
    assert [lv["n_clusters"] for lv in tree] == [2, 4]
    assert sum(len(m) for m in tree[1]["members"].values()) == len(arrays.symbols)
    # each asset's level channel is its own cluster's factor: equal within a cluster
    rows = np.flatnonzero(arrays.listed.all(1))
    by_cluster = {}
    for c, members in tree[1]["members"].items():
        columns = [arrays.symbols.index(s) for s in members]
        values = data.channels[rows][:, columns, 6]
        np.testing.assert_array_equal(values, np.repeat(values[:, :1], len(columns), 1))
        by_cluster[c] = values[:, 0]
    assert len({v.tobytes() for v in by_cluster.values()}) == len(by_cluster)


def test_levels_are_fitted_on_the_training_rows_only(tmp_path):
    """Bars after the training window moved: no level's membership, coefficient, loading
    or factor state changes, and neither do the channels up to the window's end."""
    cfg = run_config(tmp_path, *SMALL, *LEVELS)
    panel = build(cfg.data).load()
    arrays = build_fleet_arrays(panel, cfg)
    fold = walk_forward(cfg).split(panel)[0]
    before = prepare_fold(arrays, fold, cfg, None)
    after = fold.train[-1] + 1
    rng = np.random.default_rng(0)
    arrays.returns[after:] = rng.normal(0, 0.05, arrays.returns[after:].shape)
    arrays.log_close[after:] = 0.0
    arrays.quote_volume[after:] = 1.0
    moved = prepare_fold(arrays, fold, cfg, None)
    assert moved.clusters.tree == before.clusters.tree
    np.testing.assert_array_equal(moved.channels[:after], before.channels[:after])
    assert not np.array_equal(moved.channels[after:], before.channels[after:], equal_nan=True)


@pytest.mark.parametrize("levels", ["[3]", "[4,2]", "[2,2]", "[0,3]"])
def test_levels_that_cannot_nest_are_a_config_error(levels):
    with pytest.raises(ConfigError, match="cluster.levels must be"):
        HierarchyClusterer(levels=json.loads(levels), n_clusters=json.loads(levels)[0]).fit(
            np.random.default_rng(0).standard_normal((200, 6)), list("ABCDEF")
        )


def test_more_clusters_than_assets_is_a_config_error():
    returns, _, symbols, _, _ = planted_two_level_market(n_bars=300)
    with pytest.raises(ConfigError, match="asks 20 clusters of 13 assets"):
        fit_tree(returns, symbols, levels=(2, 20))


def test_a_run_writes_the_tree_into_clusters_json_and_the_checkpoints(tmp_path):
    cfg = run_config(
        tmp_path,
        *SMALL,
        *LEVELS,
        "encoder=pca",
        "head.max_epochs=2",
        "report.compare_without_factor=false",
        "trainer.enable_progress_bar=false",
    )
    train(cfg)
    out = tmp_path / "run"
    folds = json.loads((out / "clusters.json").read_text())["folds"]
    for k, entry in enumerate(folds):
        description = json.loads((out / "models" / f"fold{k}" / "checkpoint.json").read_text())
        assert description["cluster_tree"] == entry["tree"]
        assert description["factor_channels"][-3:] == [
            "level1_factor",
            "level1_factor_lag1",
            "level1_factor_lag2",
        ]
        assets = entry["tree"]["levels"][1]["assets"]
        assert {"coef", "mean", "std", "loading"} <= set(next(iter(assets.values())))


def test_the_flat_default_has_no_tree():
    with initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"):
        cfg = compose("config")
    assert "levels" not in cfg.cluster


def test_the_first_level_is_cut_at_levels_0(tmp_path):
    cfg = run_config(tmp_path, "cluster=hierarchy", "cluster.levels=[3,8]")
    assert cfg.cluster.n_clusters == 3
    with pytest.raises(ConfigError, match="must equal cluster.levels"):
        HierarchyClusterer(levels=[3, 8], n_clusters=2).fit(
            np.random.default_rng(0).standard_normal((200, 6)), list("ABCDEF")
        )
