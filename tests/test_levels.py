"""data.levels: the planted two-level market, its truth, and the recovered tree's ARI."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest
import recorded_hashes
from conftest import run_config

from huracan.clustering import ClusterResult
from huracan.config import build
from huracan.data import SyntheticMarket
from huracan.errors import ConfigError
from huracan.pipelines.hierarchical.report import clusters_summary
from huracan.planted import level_agreement, recovered_levels, tree_recovery
from huracan.training.arrays import build_fleet_arrays
from huracan.training.folds import prepare_fold, walk_forward

LEVELS = {"sectors": 2}


@pytest.fixture(scope="module")
def market():
    return SyntheticMarket(seed=3, n_assets=16, levels=LEVELS).load()


def log_returns(panel):
    return np.diff(np.log(panel.close), axis=0)  # row t: the move of bar t + 1


def lead_corr(r: np.ndarray, leader: int, follower: int, lag: int) -> float:
    return float(np.corrcoef(r[:-lag, leader], r[lag:, follower])[0, 1])


def followers(truth) -> np.ndarray:
    return np.flatnonzero((truth.cluster_labels > 0) & ~truth.sector_leader)


def test_a_follower_moves_one_bar_after_its_leader_two_after_btc(market):
    r, truth = log_returns(market), market.truth
    alt_leaders = np.flatnonzero(truth.sector_leader & (truth.cluster_labels > 0))
    for j in followers(truth):
        leader = truth.parent[j]
        assert truth.sector_leader[leader] and truth.sector_labels[leader] == truth.sector_labels[j]
        assert lead_corr(r, leader, j, 1) > 0.25  # its leader's previous bar
        assert lead_corr(r, leader, j, 1) > lead_corr(r, 0, j, 1) + 0.05  # more than BTC's
        assert lead_corr(r, 0, j, 2) > 0.05  # BTC reaches it two bars late, via the leader
    for j in alt_leaders:  # a leader follows BTC one bar late, as an alt of one level does
        assert lead_corr(r, 0, j, 1) > 0.1 and abs(lead_corr(r, 0, j, 2)) < 0.05


def test_levels_lag_moves_the_followers_lead(market):
    later = SyntheticMarket(seed=3, n_assets=16, levels={**LEVELS, "lag": 2}).load()
    r = log_returns(later)
    for j in followers(later.truth):
        leader = later.truth.parent[j]
        assert lead_corr(r, leader, j, 2) > 0.25 and abs(lead_corr(r, leader, j, 1)) < 0.2
    assert later.truth.level_lags == (1, 2)
    assert np.nan_to_num(later.truth.expected_return[:, followers(later.truth)]).max() == 0


def test_truth_holds_the_tree(market):
    truth = market.truth
    assert truth.level_lags == (1, 1)
    # sectors nest in the clusters: BTC alone, the other majors, two per alt cluster
    assert truth.sector_labels.tolist() == [0, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 5, 5]
    assert truth.cluster_labels.tolist() == [0] * 6 + [1] * 5 + [2] * 5
    assert np.flatnonzero(truth.sector_leader).tolist() == [0, 6, 9, 11, 14]
    assert truth.parent.tolist() == [-1, 0, 0, 0, 0, 0, 0, 6, 6, 0, 9, 0, 11, 11, 0, 14]
    tree = truth.tree(market.symbols)
    assert tree["levels"][1]["leaders"] == {
        "0": "BTC",
        "2": "ADA",
        "3": "SHIB",
        "4": "LINK",
        "5": "ATOM",
    }
    assert tree["levels"][1]["members"]["3"] == ["SHIB", "XRP"]
    assert tree["parents"]["TRX"] == "LINK" and tree["parents"]["LINK"] == "BTC"
    assert tree["lags"] == {"btc_to_sector_leaders": 1, "leader_to_followers": 1}
    np.testing.assert_array_equal(truth.level_labels()[1], truth.sector_labels)
    kept = truth.select([0, 3, 8, 9, 10])  # a gated panel: parents follow their columns
    assert kept.parent.tolist() == [-1, 0, -1, 0, 3]


def test_the_oracle_trades_each_coin_on_its_parents_move(market):
    """Expected next-bar return = sigma[t + 1] * beta * late share * the parent's move at t:
    proportional, bar by bar, to the parent's return over its volatility."""
    r, truth = log_returns(market), market.truth
    sigma = truth.regime_vol
    for j in [*followers(truth), 6, 2]:  # followers, a sector leader, a major
        parent = truth.parent[j]
        move = r[:, parent] / sigma[1:]  # the parent's shock on bar t + 1
        expected = truth.expected_return[1:-1, j] / sigma[2:]  # known at bar t + 1
        assert np.corrcoef(move[:-1], expected)[0, 1] > 0.999  # x_parent: a scaled shock
    oracle = truth.expected_return[:-1]
    for j in followers(truth):  # and it knows more than BTC's previous bar
        assert np.corrcoef(oracle[:, j], r[:, j])[0, 1] > lead_corr(r, 0, j, 1) + 0.1


def test_btc_and_the_one_level_draws_are_those_of_the_seed(market):
    plain = SyntheticMarket(seed=3, n_assets=16).load()
    np.testing.assert_array_equal(plain.close[:, 0], market.close[:, 0])
    assert plain.truth.sector_labels is None and plain.truth.tree(plain.symbols) is None


def test_the_default_market_is_unchanged():
    """A seed's default panel as before data.levels existed (hash recorded on main, one per
    kind of machine: tests/recorded_hashes.py)."""
    panel = SyntheticMarket(seed=3, years=0.05).load()
    digest = hashlib.md5()
    for values in (panel.close, panel.volume, panel.spread_bps, panel.truth.expected_return):
        digest.update(np.round(values, 6).tobytes())
    assert digest.hexdigest() in recorded_hashes.DEFAULT_MARKET_MD5, digest.hexdigest()


@pytest.mark.parametrize(
    "levels, message",
    [
        ({"sector": 2}, "unknown keys"),
        ({"sectors": 0}, "sectors must be"),
        ({"follow_share": [0.8, 0.2]}, "follow_share must be"),
        ({"sectors": 3}, "fewer than 2 per sector"),
    ],
)
def test_bad_levels_are_one_line_config_errors(levels, message):
    with pytest.raises(ConfigError, match=message):
        SyntheticMarket(n_assets=12, levels=levels).load()


def test_ari_per_level_is_sklearns_with_the_outside_counted_as_misses():
    planted = np.array([[0, 0, 1, 1], [0, 1, 2, 2]])
    assert level_agreement(planted, np.array([[5, 5, 7, 7], [2, 1, 0, 0]])) == [1.0, 1.0]
    # by hand: one pair agrees of the planted two, 1/3 expected by chance: (1 - 1/3) / (3/2 - 1/3)
    got = level_agreement(planted[:1], np.array([[0, 0, 1, 2]]))
    assert got == pytest.approx([4 / 7])
    assert level_agreement(planted[:1], np.array([[0, 0, 1, -1]])) == pytest.approx([4 / 7])
    assert len(level_agreement(planted, np.array([[0, 0, 1, 1]]))) == 1  # a flat run: level 0


def cluster_result(symbols: list[str], level0: list[int], level1: list[int] | None = None):
    """A fold's clusters as the clusterer leaves them; with ``level1``, the tree's too."""

    def members(labels):
        return {
            c: [s for s, k in zip(symbols, labels, strict=False) if k == c] for c in set(labels)
        }

    tree = None
    if level1 is not None:
        levels = (level0, level1)
        tree = {"levels": [{"members": {str(c): m for c, m in members(x).items()}} for x in levels]}
    return ClusterResult(
        cluster_map=dict(zip(symbols, level0, strict=False)),
        dominant_cluster_id=0,
        cluster_members=members(level0),
        linkage_matrix=None,
        correlation_matrix=np.eye(len(level0)),
        symbols=symbols[: len(level0)],
        method="ward",
        tree=tree,
    )


def test_tree_recovery_reads_every_level_of_every_fold():
    symbols = list("ABCD")
    planted = np.array([[0, 0, 1, 1], [0, 1, 2, 2]])
    exact = cluster_result(symbols, [0, 0, 1, 1], [0, 1, 2, 2])
    merged = cluster_result(symbols, [0, 0, 1, 1], [0, 0, 2, 2])
    np.testing.assert_array_equal(recovered_levels(merged, symbols), [[0, 0, 1, 1], [0, 0, 2, 2]])
    got = tree_recovery(planted, [exact, merged], symbols)
    assert got["level0"] == [1.0, 1.0] and got["level1"][0] == 1.0 and got["level1"][1] < 1
    flat = cluster_result(symbols, [0, 0, 1])  # D not clustered
    assert list(tree_recovery(planted, [flat], symbols)) == ["level0"]  # D outside: a miss


@pytest.fixture(scope="module")
def planted_fold(tmp_path_factory):
    """The first fold of cluster=hierarchy levels [3, 6] on the planted market, prepared."""
    cfg = run_config(
        tmp_path_factory.mktemp("levels"),
        "data.n_assets=16",
        "data.years=0.5",
        "data.levels={sectors:2}",
        "factor=leader",
        "cluster=hierarchy",
        "cluster.levels=[3,6]",
        "validation.n_folds=2",
        "labels.horizons=[1]",
    )
    panel = build(cfg.data).load()
    arrays = build_fleet_arrays(panel, cfg)
    fold = walk_forward(cfg).split(panel)[0]
    return panel, arrays, fold, prepare_fold(arrays, fold, cfg, None)


def test_the_fold_recovers_the_planted_tree(planted_fold):
    panel, arrays, _, data = planted_fold
    got = tree_recovery(panel.truth.level_labels(), [data.clusters], arrays.symbols)
    assert got == {"level0": [1.0], "level1": [1.0]}
    run = SimpleNamespace(arrays=arrays, fold_clusters=[data.clusters])
    written = clusters_summary(run, panel, data.clusters.labels(arrays.symbols))
    assert written["adjusted_rand_index_vs_planted_levels"] == got
    assert written["planted_tree"] == panel.truth.tree(arrays.symbols)


def test_a_followers_level_channel_carries_its_leaders_move(planted_fold):
    """The level-1 factor a follower gets at bar t moves with its sector leader's return at
    t (what the follower takes one bar later), and so predicts the follower's next bar;
    the test window's bars, which the tree never saw."""
    panel, arrays, fold, data = planted_fold
    channel = data.channel_names.index("level1_factor")
    truth, r = panel.truth, arrays.returns  # r[t]: the return of bar t (close t-1 -> t)
    rows = fold.test[1:-1]
    for j in followers(truth):
        level = data.channels[rows, j, channel]
        leader = r[rows, truth.parent[j]]
        assert np.corrcoef(level, leader)[0, 1] > 0.6
        assert np.corrcoef(level, r[rows + 1, j])[0, 1] > 0.2
