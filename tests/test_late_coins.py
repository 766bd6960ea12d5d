"""A coin too new for a fold's training window is scored by the head of the cluster it is
assigned (``gates.late_coins=assign``, ``training.late``): causally, and without
changing anything another coin's fold was fitted or traded on."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import changed_after, run_config
from test_universe import listed_from

from huracan.config import validate
from huracan.data import GateReport, GateThresholds, Panel, SyntheticMarket, apply_fold_gates
from huracan.errors import ConfigError
from huracan.pipelines.hierarchical.run import HierarchicalPipeline, run_hierarchical
from huracan.report import StageTimer
from huracan.training.arrays import build_fleet_arrays
from huracan.training.folds import prepare_fold
from huracan.training.late import admit_late, assign_clusters, late_candidates
from huracan.training.universe import fold_arrays, fold_universe

LIMITS = GateThresholds(min_history_days=10, min_daily_quote_volume=None)
COMMON = (
    "data.n_assets=6",
    "data.years=0.5",
    "validation.n_folds=3",
    "labels.horizons=[1]",
    "gates.until=per_fold",
    "gates.min_history_days=10",
    "cluster.n_clusters=2",
    "encoder.max_epochs=1",
    "head.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "report.compare_without_factor=false",
    "thresholds.gate=search",  # heads trade, so that other coins' trades are compared
    "thresholds.z=0",
    "thresholds.min_trades=5",
    "features=cross_section",
    "features.fracdiff=false",
)


@pytest.fixture(scope="module")
def market() -> Panel:
    return SyntheticMarket(n_assets=6, years=0.5, seed=0).load()


def late_panel(market: Panel, cfg) -> tuple[Panel, int]:
    """SOL listed 11 days before fold 1's first test bar: it passes fold 1's gates but has
    no bar in fold 1's training window (it ends before the validation slice)."""
    start = HierarchicalPipeline().fold_starts(market, cfg)[1]
    cut = market.timestamps.get_loc(start)
    return listed_from(market, "SOL", cut - 11 * 24), cut


def gated(panel: Panel, cfg) -> tuple[Panel, GateReport]:
    starts = HierarchicalPipeline().fold_starts(panel, cfg)
    report = apply_fold_gates(panel, starts, LIMITS, GateReport())
    return panel.select(report.passed), report


def test_a_late_coin_is_assigned_the_cluster_it_moves_with():
    rng = np.random.default_rng(0)
    t = 300
    a, b = rng.normal(0, 0.02, (2, t))
    members = np.column_stack(
        [a + rng.normal(0, 0.005, t), a + rng.normal(0, 0.005, t), b + rng.normal(0, 0.005, t)]
    )
    late_b = b + rng.normal(0, 0.005, t)
    late_b[:200] = np.nan  # 100 bars
    late_short = a.copy()
    late_short[:250] = np.nan  # 50 bars: fewer than min_bars with every member
    returns = np.column_stack([members, late_b, late_short])
    labels = np.array([0, 0, 1, -1, -1])
    assigned, corr = assign_clusters(returns, labels, np.array([3, 4]), min_bars=60)
    assert assigned.tolist() == [1, -1]
    assert corr[0] > 0.9 and np.isnan(corr[1])


def test_assignments_read_no_bar_from_the_test_window_and_fits_ignore_the_late_coin(
    market, tmp_path
):
    """Shift test: bars from fold 1's first test bar on (redrawn, one coin delisted) change
    neither the late coin's assignment nor its scaling; and what fold 1 fitted is the
    same with the late coin admitted or not (it is fitted before the coin is seen)."""
    cfg = run_config(tmp_path, *COMMON)
    panel, cut = late_panel(market, cfg)

    def fold_one(panel: Panel):
        f = fold_one_late(panel, cfg)
        return f.arrays, f.members, f.late, f.data, f.admitted, f.report

    arrays, members, late, data, admitted, report = fold_one(panel)
    sol = arrays.symbols.index("SOL")
    assert late[:, sol].tolist() == [False, True, False] and not members[1, sol]
    assert admitted is not None and admitted.arrays.symbols == ["SOL"]
    entry = report.late["SOL"][1]
    assert entry["admitted"] == "late" and entry["cluster"] == data.clusters.late["SOL"]["cluster"]
    assert entry["bars_before_test"] == 11 * 24 - 1  # returns: the first bar has none
    assert "SOL" not in data.clusters.cluster_map  # the clustered coins' membership as fitted
    universe = report.universe_entry("SOL")
    assert universe["folds"] == [1, 2] and universe["admitted"] == ["late", "training"]
    peers = data.clusters.labels(data.clusters.symbols) == entry["cluster"]
    np.testing.assert_allclose(admitted.data.scaler.mean_[0], data.scaler.mean_[peers].mean(0))

    gone = next(j for j, s in enumerate(panel.symbols) if s not in ("SOL", "BTC", "ETH"))
    _, _, _, moved_data, moved, moved_report = fold_one(changed_after(panel, cut - 1, gone=gone))
    assert moved_report.late["SOL"][1] == entry
    assert moved_data.clusters.late == data.clusters.late
    np.testing.assert_array_equal(moved.data.scaler.mean_, admitted.data.scaler.mean_)
    np.testing.assert_array_equal(moved.data.groups, admitted.data.groups)
    rows = slice(None, cut)
    np.testing.assert_array_equal(
        moved.data.features[rows], admitted.data.features[rows], err_msg="causal inputs"
    )


def _folds(panel: Panel, cfg):
    from huracan.pipelines.hierarchical.run import fleet_walk_forward

    return fleet_walk_forward(cfg).split(panel)


def fold_one_late(panel: Panel, cfg) -> SimpleNamespace:
    """Fold 1 of ``panel`` under ``cfg``: its gates, universe and late candidates, the fold
    fitted on its clustered coins and its late coins admitted (``admit_late``)."""
    kept, report = gated(panel, cfg)
    arrays = build_fleet_arrays(kept, cfg, (1,))
    folds = _folds(kept, cfg)
    members = fold_universe(report, arrays, folds, min_bars=100)
    late = late_candidates(report, arrays, folds, members, min_bars=100)
    part = fold_arrays(arrays, kept, members[1])
    data = prepare_fold(part, folds[1], cfg, None)
    admitted = admit_late(data, part, arrays, kept, late[1], cfg, report)
    return SimpleNamespace(
        arrays=arrays, folds=folds, members=members, late=late, part=part, data=data,
        admitted=admitted, report=report,
    )  # fmt: skip


def test_a_late_coin_is_scored_and_changes_no_other_coins_fold(market, tmp_path):
    """``assign`` against ``exclude`` on the same panel: the late coin is scored in fold 1
    by its assigned head; every other coin's probabilities and trades, every head's cut,
    are bit for bit those of the run without it."""
    runs = {}
    for mode in ("assign", "exclude"):
        cfg = run_config(tmp_path / mode, *COMMON, f"gates.late_coins={mode}")
        panel, _ = late_panel(market, cfg)
        kept, report = gated(panel, cfg)
        runs[mode] = run_hierarchical(kept, cfg, tmp_path / mode, StageTimer(), report), report
    (assign, report), (exclude, _) = runs["assign"], runs["exclude"]
    sol = assign.arrays.symbols.index("SOL")
    others = np.arange(len(assign.arrays.symbols)) != sol
    assert assign.universe[:, sol].tolist() == [False, True, True]
    assert exclude.universe[:, sol].tolist() == [False, False, True]
    test = assign.folds[1].test
    assert np.isfinite(assign.model.probability[test, sol]).any()
    assert np.isnan(exclude.model.probability[test, sol]).all()
    cluster = report.late["SOL"][1]["cluster"]
    assert (assign.cluster_ids[test, sol] == cluster).all()
    assert assign.fold_info[1]["late_coins"]["SOL"]["cluster"] == cluster
    assert assign.model.signals[:, others].any()  # trades there to compare
    np.testing.assert_array_equal(
        assign.model.probability[:, others], exclude.model.probability[:, others]
    )
    np.testing.assert_array_equal(assign.model.signals[:, others], exclude.model.signals[:, others])
    for mine, theirs in zip(assign.fold_info, exclude.fold_info, strict=True):
        assert mine["thresholds"] == theirs["thresholds"]
        assert mine["horizons"] == theirs["horizons"]
        assert mine["train_samples"] == theirs["train_samples"]


def test_a_misspelled_late_coins_value_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="gates.late_coins"):
        validate(run_config(tmp_path, "gates.late_coins=asign"))


def test_a_late_coin_takes_its_clusters_median_fracdiff_order(market, tmp_path):
    """With the FFD input (``features=base``) it has no order of its own: the median of its
    cluster members' orders, fitted on the training rows; scored once its FFD warms up."""
    cfg = run_config(tmp_path, *COMMON, "features=base", "features.fracdiff=true")
    f = fold_one_late(late_panel(market, cfg)[0], cfg)
    folds, part, data, admitted = f.folds, f.part, f.data, f.admitted
    entry = f.report.late["SOL"][1]
    assert admitted is not None, entry
    peers = data.clusters.labels(part.symbols) == entry["cluster"]
    assert admitted.data.fracdiff.d_[0] == np.nanmedian(data.fracdiff.d_[peers])
    ffd = admitted.data.ffd[folds[1].test, 0]
    assert np.isnan(ffd[0]) and np.isfinite(ffd[-1])  # warming up, then there


def test_a_late_coin_takes_its_clusters_mean_lead_fit_loading(market, tmp_path):
    """``factor.lead_fit`` fits each coin's loading on its training bars: a late coin has
    none of its own and reads the mean of its cluster members', in the fit's scale."""
    cfg = run_config(tmp_path, *COMMON, "factor.lead_fit=true")
    f = fold_one_late(late_panel(market, cfg)[0], cfg)
    part, data, admitted = f.part, f.data, f.admitted
    entry = f.report.late["SOL"][1]
    assert admitted is not None, entry
    members = [
        part.symbols.index(s) for s, c in data.clusters.cluster_map.items() if c == entry["cluster"]
    ]
    np.testing.assert_allclose(
        admitted.data.lead_fit.coef_[0], data.lead_fit.coef_[members].mean(0)
    )
    assert not np.allclose(admitted.data.lead_fit.coef_[0], data.lead_fit.coef_.mean(0))
    assert admitted.data.lead_fit.scale_ == data.lead_fit.scale_
    assert admitted.data.channel_names == data.channel_names  # lead_fit last, as its head's
    raw = admitted.data.channels[..., :-1]
    move = raw @ admitted.data.lead_fit.coef_[0, 1:].astype(np.float32) / data.lead_fit.scale_
    np.testing.assert_allclose(admitted.data.channels[..., -1], move, rtol=1e-5, atol=1e-6)


def test_a_late_coin_stays_out_where_a_channel_is_fitted_per_coin(market, tmp_path):
    """``factor.residual`` fits a channel per coin on training bars: a coin without any
    is left out of the fold (a recorded reason), and the run goes on."""
    cfg = run_config(tmp_path, *COMMON, "factor.residual=true")
    panel, _ = late_panel(market, cfg)
    kept, report = gated(panel, cfg)
    run = run_hierarchical(kept, cfg, tmp_path, StageTimer(), report)
    sol = run.arrays.symbols.index("SOL")
    assert run.universe[:, sol].tolist() == [False, False, True]
    assert "factor.residual" in str(report.late["SOL"][1])
