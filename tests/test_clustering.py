import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir
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
    cluster_dominance,
    correlation_matrix,
    market_residuals,
)
from huracan.config import build
from huracan.data.synthetic import SyntheticMarket
from huracan.errors import ConfigError
from huracan.plots import plot_correlation_heatmap, plot_dendrogram
from huracan.training.arrays import build_fleet_arrays
from huracan.training.folds import fit_clusters


def market(seed: int = 0, **kwargs):
    panel = SyntheticMarket(seed=seed, **kwargs).load()
    returns = np.diff(np.log(panel.close), axis=0)
    return panel, returns


@pytest.fixture(scope="module")
def default_market():
    return market()


def factor_returns(
    groups: np.ndarray,
    beta: np.ndarray,
    group_loading: float = 0.35,
    noise: float | np.ndarray = 0.25,
    n_bars: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """(T, N) returns: ``beta * market + group_loading * group factor + noise``; a group id
    of -1 has no group factor."""
    rng = np.random.default_rng(seed)
    market_factor = rng.standard_normal((n_bars, 1))
    group_factors = rng.standard_normal((n_bars, groups.max() + 1))
    own = np.where(groups >= 0, group_loading, 0.0) * group_factors[:, groups]
    return beta * market_factor + own + noise * rng.standard_normal((n_bars, len(groups)))


def names(n: int) -> list[str]:
    return [f"C{j}" for j in range(n)]


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


def test_dominance_tie_goes_to_quote_volume():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 1000))
    returns = np.stack([a, a, b, b], axis=1)  # two identical pairs: the same dominance
    volume = np.ones_like(returns)
    volume[:, 2:] = 10.0
    result = AssetClusterer(n_clusters=2).fit(returns, ["A", "A2", "B", "B2"], volume).result_
    assert result.dominance[0] == pytest.approx(result.dominance[1], rel=1e-9)
    assert result.cluster_members[0] == ["B", "B2"]
    no_volume = AssetClusterer(n_clusters=2).fit(returns, ["A", "A2", "B", "B2"]).result_
    assert no_volume.cluster_members[0] == ["A", "A2"]  # then the first cluster


def test_dominance_is_the_universe_variance_share_of_the_cluster_pc():
    groups = np.repeat([0, 1, 2], 4)
    returns = factor_returns(groups, np.linspace(0.5, 1.5, 12))
    labels = np.repeat([0, 1, 2], 4)
    z = (returns - returns.mean(0)) / returns.std(0)
    corr = np.corrcoef(returns, rowvar=False)
    for c in range(3):
        members = z[:, labels == c]
        _, _, vt = np.linalg.svd(members, full_matrices=False)
        pc = members @ vt[0]
        r2 = np.array([np.corrcoef(z[:, j], pc)[0, 1] ** 2 for j in range(12)])
        assert cluster_dominance(corr, labels)[c] == pytest.approx(r2.mean(), rel=1e-9)


def test_dominant_cluster_need_not_hold_btc():
    # BTC is pure noise; ETH, BNB and SOL move together; two groups of alts follow them
    groups = np.array([-1, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    beta = np.array([0.0, 1.0, 1.0, 1.0, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6])
    returns = factor_returns(groups, beta, group_loading=0.5, noise=0.2)
    returns[:, 0] = np.random.default_rng(5).standard_normal(len(returns))
    symbols = ["BTC", "ETH", "BNB", "SOL", *names(6)]
    result = AssetClusterer(n_clusters=4).fit(returns, symbols).result_
    assert result.cluster_members[0] == ["ETH", "BNB", "SOL"]
    assert result.cluster_map["BTC"] != result.dominant_cluster_id
    assert result.cluster_members[result.cluster_map["BTC"]] == ["BTC"]
    assert max(result.dominance, key=result.dominance.get) == 0
    assert result.dominance[result.cluster_map["BTC"]] < 0.2


def test_residual_series_separates_groups_that_raw_correlation_merges():
    groups = np.repeat([0, 1, 2], 4)
    # a strong market mode with very different betas: raw correlation sorts by beta
    returns = factor_returns(groups, np.tile(np.geomspace(0.4, 2.5, 4), 3))
    raw = AssetClusterer(n_clusters=3).fit(returns, names(12)).labels_
    residual = AssetClusterer(n_clusters=3, series="residual").fit(returns, names(12))
    assert adjusted_rand_score(groups, raw) < 0.5
    assert adjusted_rand_score(groups, residual.labels_) == 1.0
    assert residual.result_.series == "residual"
    # the dominance is measured on the returns given, not on the residuals
    np.testing.assert_allclose(
        list(residual.result_.dominance.values()),
        cluster_dominance(np.corrcoef(returns, rowvar=False), residual.labels_)[
            list(residual.result_.dominance)
        ],
    )


def test_market_residuals_remove_the_market_mode():
    groups = np.repeat([0, 1, 2, 3], 5)
    returns = factor_returns(groups, np.linspace(0.5, 2.0, 20), n_bars=4000)
    returns[:1000, 3] = np.nan  # a late listing
    residual = market_residuals(returns)
    np.testing.assert_array_equal(np.isnan(residual), np.isnan(returns))
    market = np.nanmean((returns - np.nanmean(returns, 0)) / np.nanstd(returns, 0), axis=1)
    for j in (0, 3):  # OLS residuals are uncorrelated with the market mode over their rows
        rows = ~np.isnan(returns[:, j])
        assert abs(np.corrcoef(residual[rows, j], market[rows])[0, 1]) < 1e-9
    raw_corr, _ = correlation_matrix(returns)
    residual_corr, _ = correlation_matrix(residual)
    across = groups[:, None] != groups[None, :]
    within = ~across & ~np.eye(len(groups), dtype=bool)
    assert raw_corr[across].min() > 0.5  # every pair moves with the market
    # what is left: each group's own factor (removing the market leaves the groups mildly
    # anti-correlated, so the residual distance is 1 - max(corr, 0), not 1 - |corr|)
    assert residual_corr[across].max() < 0.2 < 0.4 < residual_corr[within].min()


def test_min_size_merges_a_singleton_into_its_nearest_cluster():
    groups = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, -1])
    returns = factor_returns(groups, np.zeros(10), group_loading=1.0, noise=0.3)
    # the last asset: mostly its own noise, a little of group 1
    returns[:, 9] = 0.3 * returns[:, 3] + np.random.default_rng(2).standard_normal(len(returns))
    symbols = names(10)
    single = AssetClusterer(n_clusters=4).fit(returns, symbols).result_
    assert sorted(len(m) for m in single.cluster_members.values()) == [1, 3, 3, 3]
    merged = AssetClusterer(n_clusters=4, min_size=2).fit(returns, symbols).result_
    assert merged.n_clusters == 3 and merged.chosen_k == 4
    assert merged.cluster_map["C9"] == merged.cluster_map["C3"]
    assert sorted(merged.cluster_members) == [0, 1, 2]
    assert max(merged.dominance, key=merged.dominance.get) == 0


@pytest.mark.parametrize("planted", [2, 3, 5])
def test_auto_k_picks_the_planted_number_of_clusters(planted):
    groups = np.repeat(np.arange(planted), 4)
    returns = factor_returns(groups, np.full(len(groups), 0.5), group_loading=1.0, noise=0.3)
    result = AssetClusterer(n_clusters="auto").fit(returns, names(len(groups))).result_
    assert result.chosen_k == planted == result.n_clusters
    assert adjusted_rand_score(groups, result.labels(names(len(groups)))) == 1.0
    assert list(result.k_scores) == list(range(2, min(8, len(groups) - 1) + 1))
    assert max(result.k_scores, key=result.k_scores.get) == planted
    assert result.to_dict()["k_criterion"] == "silhouette"


def test_auto_k_stays_below_the_number_of_assets():
    returns = factor_returns(np.repeat([0, 1], 2), np.zeros(4), group_loading=1.0)
    result = AssetClusterer(n_clusters="auto").fit(returns, names(4)).result_
    assert list(result.k_scores) == [2, 3] and result.chosen_k == 2
    with pytest.raises(ConfigError, match="at least 3 assets"):
        AssetClusterer(n_clusters="auto").fit(returns[:, :2], names(2))
    with pytest.raises(ConfigError, match="min_size=4"):
        AssetClusterer(n_clusters="auto", min_size=4).fit(returns, names(4))


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
        {"n_clusters": "abc"},
        {"n_clusters": 0},
        {"n_clusters": "auto", "max_clusters": 1},
        {"min_size": 0},
        {"series": "prices"},
    ],
)
def test_bad_parameters_raise_config_errors(default_market, params):
    panel, returns = default_market
    with pytest.raises(ConfigError):
        AssetClusterer(**params).fit(returns, panel.symbols)


@pytest.mark.parametrize(
    "params",
    [{}, {"series": "residual", "n_clusters": "auto", "min_size": 2}],
)
def test_fit_ignores_data_after_the_training_window(default_market, params):
    panel, returns = default_market
    end = len(returns) // 2
    changed = returns.copy()
    changed[end:] = np.random.default_rng(1).standard_normal(changed[end:].shape)
    a = AssetClusterer(**params).fit(returns[:end], panel.symbols).result_
    b = AssetClusterer(**params).fit(changed[:end], panel.symbols).result_
    assert a.to_dict() == b.to_dict()
    np.testing.assert_array_equal(a.linkage_matrix, b.linkage_matrix)
    np.testing.assert_array_equal(a.correlation_matrix, b.correlation_matrix)


@pytest.mark.parametrize("series", ["returns", "residual", "fracdiff"])
def test_fit_clusters_reads_only_the_training_rows(series):
    with initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[f"cluster.series={series}", "cluster.n_clusters=auto", "data.years=1"],
        )
    panel = build(cfg.data).load()
    arrays = build_fleet_arrays(panel, cfg)
    train = np.arange(len(arrays.returns) // 2)
    before = fit_clusters(arrays, train, cfg)
    after = train[-1] + 1
    arrays.returns[after:] = np.random.default_rng(0).standard_normal(arrays.returns[after:].shape)
    arrays.log_close[after:] = 0.0
    arrays.quote_volume[after:] = 1.0
    assert fit_clusters(arrays, train, cfg).to_dict() == before.to_dict()
    assert before.series == series and before.cluster_map["BTC"] == 0
    if series == "fracdiff":  # the FFD level carries little of the planted structure
        return
    assert adjusted_rand_score(panel.truth.cluster_labels, before.labels(panel.symbols)) == 1.0


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
    relabelled = replace(
        relabelled, dominance={int(new_ids[c]): d for c, d in result.dominance.items()}
    )
    aligned = align_cluster_ids(relabelled, result)
    assert aligned.cluster_map == result.cluster_map
    assert aligned.dominant_cluster_id == 0
    assert aligned.dominance == result.dominance


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
    assert loaded["dominance"] == {str(c): d for c, d in result.dominance.items()}
    assert loaded["chosen_k"] == 3 and loaded["k_scores"] == {} and loaded["series"] == "returns"
    auto = AssetClusterer(n_clusters="auto", min_size=2).fit(returns, panel.symbols).result_
    loaded = json.loads(json.dumps(auto.to_dict(), allow_nan=False))
    assert loaded["chosen_k"] == auto.chosen_k
    assert set(loaded["k_scores"]) == {str(k) for k in range(2, 9)}


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


def test_the_dominant_rule_by_symbols_puts_the_leaders_cluster_first():
    """Majors with little common move, 8 alts with a strong one: the variance rule makes the
    alts dominant; ``dominant=symbols`` makes BTC's cluster id 0, and both record that the
    rules disagree."""
    rng = np.random.default_rng(0)
    market = rng.normal(0, 0.004, 3000)
    sector = rng.normal(0, 0.012, 3000)
    majors = [market + rng.normal(0, 0.002, 3000) for _ in range(3)]
    alts = [0.5 * market + sector + rng.normal(0, 0.003, 3000) for _ in range(8)]
    returns = np.column_stack(majors + alts)
    symbols = ["BTC", "ETH", "BNB", *[f"A{i}" for i in range(8)]]
    by_variance = AssetClusterer(n_clusters=2).fit(returns, symbols).result_
    by_symbols = AssetClusterer(n_clusters=2, dominant="symbols").fit(returns, symbols).result_
    assert by_variance.cluster_map["A0"] == 0 and by_variance.cluster_map["BTC"] == 1
    assert by_symbols.cluster_map["BTC"] == 0 and by_symbols.cluster_map["A0"] == 1
    assert by_symbols.dominance[0] == by_variance.dominance[1]
    assert by_variance.rules_agree is False and by_symbols.rules_agree is False
    assert by_symbols.to_dict()["dominant_rule"] == "symbols"
    agreeing = AssetClusterer(n_clusters=2, dominant_symbols=["A3"]).fit(returns, symbols)
    assert agreeing.result_.rules_agree is True
    with pytest.raises(ConfigError, match="cluster.dominant must be variance or symbols"):
        AssetClusterer(dominant="volume").fit(returns, symbols)
