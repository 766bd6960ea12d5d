"""cluster.level_factor=leader: a level's factor from the member that leads the others."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_config
from test_hierarchy import planted_two_level_market

from huracan.config import build
from huracan.errors import ConfigError
from huracan.factor import PCAFactor
from huracan.hierarchy import FactorTree, HierarchyClusterer
from huracan.training.arrays import build_fleet_arrays
from huracan.training.folds import prepare_fold, walk_forward

PLANTED = [
    "data.n_assets=16",
    "data.years=0.5",
    "data.levels={sectors:2}",
    "factor=leader",
    "cluster=hierarchy",
    "cluster.levels=[3,6]",
    "cluster.level_factor=leader",
    "validation.n_folds=2",
    "labels.horizons=[1]",
]


def leader_tree(returns, symbols, levels=(2, 3)):
    top = HierarchyClusterer(levels=list(levels), n_clusters=levels[0]).fit(returns, symbols)
    market = PCAFactor(leader=symbols[0]).fit(returns, top.result_.cluster_members[0], symbols)
    factor = market.transform(returns)
    tree = FactorTree(list(levels), level_factor="leader").fit(returns, factor, top.labels_)
    return tree, factor


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_sector_is_led_by_its_planted_sub_leader(seed):
    returns, _, symbols, _, _ = planted_two_level_market(seed=seed)
    tree, factor = leader_tree(returns, symbols)
    loadings = tree.loadings_[0]
    for leader in (3, 8):  # each sector's sub-leader's column
        members = np.flatnonzero(tree.labels_[1] == tree.labels_[1][leader])
        assert loadings[leader] == 1.0
        assert loadings[members].sum() == 1.0  # one leader per cluster
    # the sector's factor is the sub-leader's own residual: it predicts the followers
    level = tree.factors(returns, factor)[0]
    follower = 4
    own = level[:-1, tree.labels_[1][follower]]
    assert np.corrcoef(own, returns[1:, follower])[0, 1] > 0.3


def test_the_synthetic_markets_sector_leaders_are_found(tmp_path):
    cfg = run_config(tmp_path, *PLANTED)
    panel = build(cfg.data).load()
    arrays = build_fleet_arrays(panel, cfg)
    fold = walk_forward(cfg).split(panel)[0]
    data = prepare_fold(arrays, fold, cfg, None)
    level = data.clusters.tree["levels"][1]
    assert data.clusters.tree["level_factor"] == "leader"
    truth = panel.truth
    chosen = {s for s, state in level["assets"].items() if state["loading"] == 1.0}
    planted = {
        arrays.symbols[j] for j in np.flatnonzero(truth.sector_leader & (truth.cluster_labels > 0))
    }
    assert planted <= chosen  # every alt sector's planted leader leads its recovered cluster
    assert len(chosen) == len(level["members"])


def test_the_leader_is_chosen_on_the_training_rows_only(tmp_path):
    """Bars after the training window redrawn: the leaders, the loadings and every tree
    state stay, and so do the channels up to the window's end."""
    cfg = run_config(tmp_path, *PLANTED)
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


def test_an_unknown_level_factor_is_a_config_error():
    returns, _, symbols, _, _ = planted_two_level_market(n_bars=300)
    top = HierarchyClusterer(levels=[2, 3], n_clusters=2).fit(returns, symbols)
    with pytest.raises(ConfigError, match="cluster.level_factor must be one of"):
        FactorTree([2, 3], level_factor="mean").fit(returns, returns[:, :1], top.labels_)


def market_led_until(cut: int, n_bars: int = 3000, seed: int = 0):
    """``planted_two_level_market``'s layout (3 majors; two sectors of a sub-leader and 4
    followers): sector 1's followers follow their sub-leader only on the bars before
    ``cut``, sector 2's on every bar."""
    rng = np.random.default_rng(seed)
    market = rng.standard_normal(n_bars)
    columns = [market + 0.3 * rng.standard_normal(n_bars) for _ in range(3)]
    for led in (np.arange(n_bars) < cut, np.ones(n_bars, bool)):
        own = rng.standard_normal(n_bars)
        lagged = np.where(led, np.concatenate([[0.0], own[:-1]]), 0.0)
        columns.append(0.6 * market + own + 0.5 * rng.standard_normal(n_bars))
        for _ in range(4):
            noise = 0.6 * rng.standard_normal(n_bars)
            columns.append(0.6 * market + 0.5 * own + 0.7 * lagged + noise)
    return np.column_stack(columns) * 0.01, [f"C{j}" for j in range(len(columns))]


def test_leaders_moved_names_the_coins_whose_leader_only_some_bars_chose():
    """``validation.cross_fit``'s check. On the fitting rows (packed across an embargo
    hole, as ``fit`` packs them) no leader moves; without the bars where sector 1's lead
    lives its coins are named, and sector 2 (led on every bar) never is, nor where a block
    in the middle is removed; a pca tree chooses no leader."""
    returns, symbols = market_led_until(1200)
    rows = np.r_[0:1400, 1430:3000]  # a hole, as a later fold's training rows have
    top = HierarchyClusterer(levels=[2, 3], n_clusters=2).fit(returns[rows], symbols)
    members = top.result_.cluster_members[0]
    market = PCAFactor(leader=symbols[0]).fit(returns[rows], members, symbols)
    factor = market.transform(returns)
    tree = FactorTree([2, 3], level_factor="leader").fit(returns[rows], factor[rows], top.labels_)
    sector = [np.isin(tree.labels_[1], tree.labels_[1][[j]]) for j in (3, 8)]
    assert tree.loadings_[0][[3, 8]].tolist() == [1.0, 1.0]  # the planted sub-leaders
    assert not tree.leaders_moved(returns, factor, rows).any()
    later = rows[rows >= 1224]  # the first sector's lead and a gap left out
    assert tree.leaders_moved(returns, factor, later)[sector[0]].all()
    assert not tree.leaders_moved(returns, factor, later)[sector[1]].any()
    middle = rows[(rows < 600) | (rows >= 2000)]  # a block in the middle: no pair spans it
    assert not tree.leaders_moved(returns, factor, middle, gap_after=599)[sector[1]].any()
    pca = FactorTree([2, 3]).fit(returns[rows], factor[rows], tree.labels_[0])
    assert not pca.leaders_moved(returns, factor, later).any()
    assert tree.leaders_moved(returns, factor, np.arange(0))[tree.labels_[1] >= 0].all()
