import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform
from sklearn.metrics import adjusted_rand_score

from huracan.clustering import (
    AssetClusterer,
    GlobalClusterer,
    IsolatedClusterer,
    align_cluster_ids,
    cluster_agreement,
    correlation_matrix,
)
from huracan.data.synthetic import SyntheticMarket
from huracan.errors import ConfigError
from huracan.plots import plot_correlation_heatmap, plot_dendrogram


def market(seed: int = 0, **kwargs):
    panel = SyntheticMarket(seed=seed, **kwargs).load()
    returns = np.diff(np.log(panel.close), axis=0)
    return panel, returns


@pytest.fixture(scope="module")
def default_market():
    return market()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", ["ward", "average", "complete"])
def test_recovers_planted_clusters(method, seed):
    panel, returns = market(seed)
    clusterer = AssetClusterer(method=method).fit(returns, panel.symbols)
    assert adjusted_rand_score(panel.truth.cluster_labels, clusterer.labels_) == 1.0


def test_dominant_cluster_holds_btc_and_eth(default_market):
    panel, returns = default_market
    result = AssetClusterer().fit(returns, panel.symbols).result_
    assert result.dominant_cluster_id == 0
    assert result.cluster_map["BTC"] == result.cluster_map["ETH"] == 0
    planted = np.asarray(panel.symbols)[panel.truth.cluster_labels == 0]
    assert result.cluster_members[0] == list(planted)


def test_dominant_falls_back_to_quote_volume(default_market):
    panel, returns = default_market
    clusterer = AssetClusterer(dominant_symbols=("NOPE",))
    result = clusterer.fit(returns, panel.symbols, panel.quote_volume[1:]).result_
    # the planted dominant cluster is the only one made of tier-1 (most liquid) coins
    assert result.cluster_map["BTC"] == 0
    with pytest.raises(ConfigError, match="NOPE"):
        clusterer.fit(returns, panel.symbols)


def test_global_and_isolated(default_market):
    panel, returns = default_market
    one = GlobalClusterer().fit(returns, panel.symbols).result_
    assert one.n_clusters == 1 and set(one.cluster_map.values()) == {0}
    assert one.linkage_matrix is None
    each = IsolatedClusterer().fit(returns, panel.symbols).result_
    assert each.n_clusters == panel.n_assets
    assert each.cluster_map["BTC"] == 0
    assert sorted(each.cluster_map.values()) == list(range(panel.n_assets))


def test_linkage_gets_condensed_distance(default_market):
    panel, returns = default_market
    for method in ("ward", "average", "complete"):
        result = AssetClusterer(method=method).fit(returns, panel.symbols).result_
        expected_corr = np.corrcoef(returns, rowvar=False)
        np.testing.assert_allclose(result.correlation_matrix, expected_corr, atol=1e-12)
        distance = 1 - np.abs(expected_corr)
        np.fill_diagonal(distance, 0)
        expected = linkage(squareform(distance, checks=False), method=method)
        np.testing.assert_allclose(result.linkage_matrix, expected, atol=1e-10)


def test_distance_threshold_cuts_the_tree(default_market):
    panel, returns = default_market
    fit = AssetClusterer(n_clusters=None, distance_threshold=0.6).fit
    assert fit(returns, panel.symbols).result_.n_clusters == 3
    fit = AssetClusterer(n_clusters=None, distance_threshold=10.0).fit
    assert fit(returns, panel.symbols).result_.n_clusters == 1


def test_pairwise_correlation_with_gaps_matches_pandas():
    rng = np.random.default_rng(0)
    values = rng.standard_normal((500, 6)) @ rng.standard_normal((6, 6))
    values[rng.random(values.shape) < 0.2] = np.nan
    values[:300, 2] = np.nan  # a late listing
    corr, overlap = correlation_matrix(values)
    frame = pd.DataFrame(values)
    np.testing.assert_allclose(corr, frame.corr().to_numpy(), atol=1e-12)
    present = frame.notna().to_numpy().astype(int)
    np.testing.assert_array_equal(overlap, present.T @ present)
    complete = values[~np.isnan(values).any(axis=1)]
    spearman, _ = correlation_matrix(complete, "spearman")
    expected = pd.DataFrame(complete).corr("spearman").to_numpy()
    np.testing.assert_allclose(spearman, expected, atol=1e-12)


def test_spearman_recovers_planted_clusters(default_market):
    panel, returns = default_market
    labels = AssetClusterer(correlation="spearman").fit(returns, panel.symbols).labels_
    assert adjusted_rand_score(panel.truth.cluster_labels, labels) == 1.0


def test_thin_and_flat_assets_are_excluded_with_a_reason(default_market):
    panel, returns = default_market
    returns = returns.copy()
    returns[50:, panel.index_of("SOL")] = np.nan  # 50 bars only
    returns[: len(returns) // 2, panel.index_of("DOGE")] = np.nan  # no overlap with XRP
    returns[len(returns) // 2 :, panel.index_of("XRP")] = np.nan
    returns[:, panel.index_of("ADA")] = 0.0
    clusterer = AssetClusterer(min_overlap=100).fit(returns, panel.symbols)
    excluded = clusterer.result_.excluded
    assert set(excluded) == {"SOL", "ADA", "DOGE"} or set(excluded) == {"SOL", "ADA", "XRP"}
    assert "min_overlap=100" in excluded["SOL"] and "variance" in excluded["ADA"]
    assert (clusterer.labels_[[panel.index_of(s) for s in excluded]] == -1).all()
    assert len(clusterer.result_.cluster_map) == panel.n_assets - 3


def test_fewer_assets_than_clusters_names_both_numbers(default_market):
    panel, returns = default_market
    with pytest.raises(ConfigError, match=r"n_clusters=5 .* 4 assets"):
        AssetClusterer(n_clusters=5).fit(returns[:, :4], panel.symbols[:4])


@pytest.mark.parametrize(
    "params",
    [
        {"method": "kmeans"},
        {"method": "global"},  # the ablations are classes of their own
        {"correlation": "kendall"},
        {"n_clusters": 3, "distance_threshold": 0.5},
        {"n_clusters": None},
    ],
)
def test_bad_parameters_raise_config_errors(default_market, params):
    panel, returns = default_market
    with pytest.raises(ConfigError):
        AssetClusterer(**params).fit(returns, panel.symbols)


def test_fit_ignores_data_after_the_training_window(default_market):
    panel, returns = default_market
    end = len(returns) // 2
    changed = returns.copy()
    changed[end:] = np.random.default_rng(1).standard_normal(changed[end:].shape)
    a = AssetClusterer().fit(returns[:end], panel.symbols).result_
    b = AssetClusterer().fit(changed[:end], panel.symbols).result_
    assert a.to_dict() == b.to_dict()
    np.testing.assert_array_equal(a.linkage_matrix, b.linkage_matrix)
    np.testing.assert_array_equal(a.correlation_matrix, b.correlation_matrix)


def test_ids_stay_stable_across_folds(default_market):
    panel, returns = default_market
    half = len(returns) // 2
    first = AssetClusterer().fit(returns[:half], panel.symbols).result_
    second = AssetClusterer().fit(returns[half:], panel.symbols).result_
    aligned = align_cluster_ids(second, first)
    assert aligned.cluster_map == first.cluster_map
    assert cluster_agreement(first, aligned) == 1.0


def test_alignment_undoes_a_relabelling(default_market):
    panel, returns = default_market
    result = IsolatedClusterer().fit(returns, panel.symbols).result_
    new_ids = np.concatenate([[0], 1 + np.random.default_rng(0).permutation(panel.n_assets - 1)])
    shuffled = {s: int(new_ids[c]) for s, c in result.cluster_map.items()}
    members = {int(new_ids[c]): m for c, m in result.cluster_members.items()}
    relabelled = replace(result, cluster_map=shuffled, cluster_members=members)
    assert relabelled.cluster_map != result.cluster_map
    aligned = align_cluster_ids(relabelled, result)
    assert aligned.cluster_map == result.cluster_map
    assert aligned.dominant_cluster_id == 0


def test_alignment_gives_new_clusters_fresh_ids(default_market):
    panel, returns = default_market
    three = AssetClusterer(n_clusters=3).fit(returns, panel.symbols).result_
    six = AssetClusterer(n_clusters=6).fit(returns, panel.symbols).result_
    aligned = align_cluster_ids(six, three)
    assert sorted(aligned.cluster_members) == list(range(6))
    assert aligned.cluster_map["BTC"] == 0
    # cutting the same tree lower splits clusters: each old id goes to one of its pieces
    for k in (0, 1, 2):
        assert set(aligned.cluster_members[k]) <= set(three.cluster_members[k])
    assert 0 < cluster_agreement(three, aligned) < 1


def test_to_dict_is_json(default_market, tmp_path):
    panel, returns = default_market
    result = AssetClusterer().fit(returns, panel.symbols).result_
    loaded = json.loads(json.dumps(result.to_dict()))
    assert loaded["dominant_cluster_id"] == 0
    assert loaded["cluster_map"] == result.cluster_map
    assert loaded["cluster_members"]["0"] == result.cluster_members[0]


@pytest.mark.parametrize("method", ["ward", "isolated"])
def test_plots_are_saved_as_png(default_market, tmp_path, method):
    panel, returns = default_market
    clusterer = IsolatedClusterer() if method == "isolated" else AssetClusterer(method=method)
    result = clusterer.fit(returns, panel.symbols).result_
    heatmap = plot_correlation_heatmap(result, tmp_path / "heatmap.png")
    assert isinstance(heatmap, Figure)
    assert (tmp_path / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if method == "isolated":
        with pytest.raises(ConfigError, match="isolated"):
            plot_dendrogram(result)
        return
    assert isinstance(plot_dendrogram(result, tmp_path / "dendrogram.png"), Figure)
    assert (tmp_path / "dendrogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
