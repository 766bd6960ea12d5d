"""Coins that list during a run join it: each fold's universe (``gates.until=per_fold``,
``training.universe``), gated on the bars before its first test bar only."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import run_config

from huracan.data import GateReport, GateThresholds, Panel, SyntheticMarket, apply_fold_gates
from huracan.pipelines.hierarchical.run import HierarchicalPipeline
from huracan.run import train
from huracan.training.arrays import build_fleet_arrays
from huracan.training.universe import absent_cells, fold_arrays, fold_universe

LIMITS = GateThresholds(min_history_days=10, min_daily_quote_volume=None)


def config(tmp_path, *overrides):
    return run_config(
        tmp_path,
        "data.n_assets=6",
        "data.years=0.5",
        "validation.n_folds=3",
        "labels.horizons=[1]",
        "gates.until=per_fold",
        "gates.min_history_days=10",
        *overrides,
    )


@pytest.fixture(scope="module")
def market() -> Panel:
    return SyntheticMarket(n_assets=6, years=0.5, seed=0).load()


def without_bars(panel: Panel, symbol: str, rows: slice) -> Panel:
    """The panel with ``symbol``'s bars in ``rows`` removed."""
    j = panel.index_of(symbol)
    bars = {k: v.copy() for k, v in panel.bars.items()}
    for values in bars.values():
        values[rows, j] = np.nan
    return replace(panel, bars=bars)


def listed_from(panel: Panel, symbol: str, row: int) -> Panel:
    """The panel with ``symbol``'s bars before ``row`` removed (listed there)."""
    return without_bars(panel, symbol, slice(None, row))


def delisted_from(panel: Panel, symbol: str, row: int) -> Panel:
    """The panel with ``symbol``'s bars from ``row`` on removed (delisted there)."""
    return without_bars(panel, symbol, slice(row, None))


def with_new_coin(panel: Panel, symbol: str, row: int) -> Panel:
    """The panel with one more coin, listed at ``row`` (SOL's bars, doubled)."""
    j = panel.index_of("SOL")
    bars = {}
    for key, values in panel.bars.items():
        column = values[:, j] * (1.0 if key == "volume" else 2.0)
        column[:row] = np.nan
        bars[key] = np.column_stack([values, column])
    filled = np.column_stack([panel.filled, np.zeros(panel.n_bars, dtype=bool)])
    return replace(panel, symbols=[*panel.symbols, symbol], bars=bars, filled=filled, truth=None)


def changed_from(panel: Panel, row: int) -> Panel:
    """Every bar from ``row`` on changed: prices moved, volume cut, a gap in ETH."""
    bars = {k: v.copy() for k, v in panel.bars.items()}
    rng = np.random.default_rng(3)
    shock = np.exp(np.cumsum(rng.normal(0, 0.03, (panel.n_bars - row, panel.n_assets)), 0))
    for key in ("open", "high", "low", "close"):
        bars[key][row:] *= shock
    bars["volume"][row:] *= 1e-3
    for values in bars.values():
        values[row + 5 : row + 200, panel.index_of("ETH")] = np.nan
    return replace(panel, bars=bars)


def codes(report: GateReport, symbol: str) -> list[list[str]]:
    return [[r["code"] for r in fold] for fold in report.fold_reasons[symbol]]


def test_a_coin_listed_mid_run_joins_the_first_fold_whose_gates_it_passes(market, tmp_path):
    cfg = config(tmp_path)
    starts = HierarchicalPipeline().fold_starts(market, cfg)
    assert len(starts) == 3
    row = market.timestamps.get_loc(starts[1]) - 5 * 24  # 5 days before fold 1's test
    panel = listed_from(market, "SOL", row)
    report = apply_fold_gates(panel, starts, LIMITS, GateReport())
    no_bars = ["no_bars", "min_history"]  # no bar: no history either
    assert codes(report, "SOL") == [no_bars, ["min_history"], []]
    assert all(codes(report, s) == [[], [], []] for s in panel.symbols if s != "SOL")
    assert report.passed == panel.symbols  # in the panel: it passes for some fold
    assert report.metrics["SOL"]["history_days"] >= 10  # measured for the fold it joined
    report.write(tmp_path / "gates.json")
    written = json.loads((tmp_path / "gates.json").read_text())["SOL"]
    assert written["passed"] is True
    assert written["universe"]["folds"] == [2] and written["universe"]["first_fold"] == 2
    out = written["universe"]["out"]
    assert [entry["fold"] for entry in out] == [0, 1]
    assert out[1]["reasons"][0]["code"] == "min_history"
    assert out[1]["reasons"][0]["threshold"] == 10
    assert out[1]["gates_measured_before"] == str(starts[1])
    members = report.fold_members(panel.symbols, 3)
    assert members[:, panel.index_of("SOL")].tolist() == [False, False, True]
    assert "pass from fold 3/3" in report.table()  # counted from 1, as the console does


def test_a_coin_that_never_passes_is_skipped_with_its_last_folds_reasons(market, tmp_path):
    cfg = config(tmp_path)
    starts = HierarchicalPipeline().fold_starts(market, cfg)
    panel = listed_from(market, "SOL", market.n_bars - 24)  # listed on the last day
    report = apply_fold_gates(panel, starts, LIMITS, GateReport())
    assert "SOL" in report.skipped
    assert [r["code"] for r in report.skip_reasons["SOL"]] == ["no_bars", "min_history"]
    assert report.to_dict()["SOL"]["universe"]["first_fold"] is None


def test_no_look_ahead_in_the_fold_gates(market, tmp_path):
    """Bars changed from fold 1's first test bar on, and a coin listed after it, change no
    verdict of folds 0 and 1: each fold's gates read only the bars before it."""
    cfg = config(tmp_path)
    starts = HierarchicalPipeline().fold_starts(market, cfg)
    cut = market.timestamps.get_loc(starts[1])
    before = apply_fold_gates(market, starts, LIMITS, GateReport())
    changed = with_new_coin(changed_from(market, cut), "NEW", cut + 24)
    after = apply_fold_gates(changed, starts, LIMITS, GateReport())
    for symbol in market.symbols:
        assert after.fold_reasons[symbol][:2] == before.fold_reasons[symbol][:2], symbol
    assert [fold[0] for fold in codes(after, "NEW")[:2]] == ["no_bars", "no_bars"]
    assert "longest_gap" in codes(after, "ETH")[2]  # the change is seen, from fold 2 on


def test_fold_universe_needs_min_overlap_training_bars_and_reads_no_later_bar(market, tmp_path):
    cfg = config(tmp_path)
    pipeline = HierarchicalPipeline()
    starts = pipeline.fold_starts(market, cfg)
    folds = pipeline_folds(market, cfg)
    # listed 11 days before fold 1's test: gates pass, but fold 1's training window ends
    # (purge, validation slice) before it has 100 bars
    row = market.timestamps.get_loc(starts[1]) - 11 * 24
    panel = listed_from(market, "SOL", row)

    def universe(panel: Panel) -> tuple[np.ndarray, GateReport, list[str]]:
        report = apply_fold_gates(panel, starts, LIMITS, GateReport())
        kept = panel.select(report.passed)
        arrays = build_fleet_arrays(kept, cfg, (1,))
        return fold_universe(report, arrays, folds, min_bars=100), report, kept.symbols

    members, report, symbols = universe(panel)
    sol = symbols.index("SOL")
    assert members[:, sol].tolist() == [False, False, True]
    assert codes(report, "SOL")[:2] == [["no_bars", "min_history"], ["min_train_bars"]]
    reason = report.fold_reasons["SOL"][1][0]
    assert reason["threshold"] == 100 and reason["value"] < 100
    assert members[:, np.arange(len(symbols)) != sol].all()

    cut = panel.timestamps.get_loc(starts[1])
    moved, _, moved_symbols = universe(with_new_coin(changed_from(panel, cut), "NEW", cut + 24))
    assert moved_symbols[: len(symbols)] == symbols
    np.testing.assert_array_equal(moved[:2, : len(symbols)], members[:2])
    assert not moved[:2, moved_symbols.index("NEW")].any()


def pipeline_folds(panel: Panel, cfg):
    from huracan.pipelines.hierarchical.run import fleet_walk_forward

    return fleet_walk_forward(cfg).split(panel)


def test_a_fold_without_enough_coins_is_a_clear_error(market, tmp_path):
    from huracan.errors import DataError

    cfg = config(tmp_path)
    folds = pipeline_folds(market, cfg)
    arrays = build_fleet_arrays(market, cfg, (1,))
    with pytest.raises(DataError, match="fold 0 .* has 6 assets in its universe, at least 7"):
        fold_universe(None, arrays, folds, min_bars=100, min_assets=7)
    # every coin out: the error says why (it said only "see gates.json", which the run had
    # not yet rewritten), the first five by name
    report = GateReport()
    with pytest.raises(DataError, match="has 0 assets") as error:
        fold_universe(report, arrays, folds, min_bars=10**6)
    # the folds after it were not measured, and gates.json (written on the way out) says so
    assert codes(report, "BTC") == [["min_train_bars"], ["not_measured"], ["not_measured"]]
    assert "BTC: " in str(error.value) and "fewer than cluster.min_overlap=1000000" in str(
        error.value
    )
    assert str(error.value).count("cluster.min_overlap") == 5 and "and 1 more" in str(error.value)


def test_fold_arrays_are_the_arrays_of_a_panel_holding_only_the_fold_universe(market, tmp_path):
    """Out of the fold, a coin is in no cross-section: the fold's ranks are those of a
    panel without it, every other array too."""
    cfg = config(tmp_path, "features=cross_section")
    panel = listed_from(market, "SOL", market.n_bars // 2)
    arrays = build_fleet_arrays(panel, cfg, (1,))
    member = np.array([s != "SOL" for s in panel.symbols])
    part = fold_arrays(arrays, panel, member)
    alone = build_fleet_arrays(panel.select([s for s in panel.symbols if s != "SOL"]), cfg, (1,))
    assert part.symbols == alone.symbols
    ranks = [i for i, name in enumerate(arrays.feature_names) if "rank" in name]
    assert ranks, arrays.feature_names
    late = slice(market.n_bars // 2 + 200, None)  # SOL listed: the ranks differ there
    assert not np.array_equal(
        arrays.features[late][:, member][..., ranks], part.features[late][..., ranks], True
    )
    for name in ("features", "returns", "net_h", "label_h", "listed", "cost_bps", "log_close"):
        np.testing.assert_array_equal(getattr(part, name), getattr(alone, name), err_msg=name)
    assert fold_arrays(arrays, None, np.ones(len(member), dtype=bool)) is arrays


def test_absent_cells_are_each_folds_test_rows_of_the_coins_out_of_it(market, tmp_path):
    folds = pipeline_folds(market, config(tmp_path))
    universe = np.ones((3, market.n_assets), dtype=bool)
    universe[:2, 5] = False
    absent = absent_cells(universe, folds, (market.n_bars, market.n_assets))
    assert absent[:, :5].sum() == 0
    assert absent[folds[0].test, 5].all() and absent[folds[1].test, 5].all()
    assert absent[:, 5].sum() == len(folds[0].test) + len(folds[1].test)


@pytest.mark.slow
def test_a_late_coin_takes_no_part_before_it_joins_and_fold_0_is_the_run_without_it(tmp_path):
    """End to end through ``train``: a coin listed after the first test bar is in no fold
    before it joins (no head, score, trade, baseline or cluster there) and traded after;
    fold 0 is bit for bit the run that never saw it (``gates.until=auto``)."""
    common = (
        "data.n_assets=6",
        "data.years=0.5",
        "labels.horizons=[1]",
        "gates.min_history_days=10",
        "seed=1",
        "data.late_listing_share=0.34",  # one alt: SOL, listed at 39 % of the bars
        "validation.n_folds=2",  # test windows from 33 % and 67 % of the bars
        "cluster.n_clusters=2",
        "data.n_clusters=2",
        "encoder.max_epochs=1",
        "head.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "report.compare_without_factor=false",
        "thresholds.gate=search",  # heads trade, so that trades are there to be absent
        "thresholds.z=0",
        "thresholds.min_trades=5",
        "baselines.extra=[momentum,reversal]",
        "baselines.top_k=2",
    )
    summary, objects = train(run_config(tmp_path / "per_fold", *common, "gates.until=per_fold"))
    run, panel, gates = objects["run"], objects["panel"], objects["gates"]
    late = [j for j in range(panel.n_assets) if not run.universe[0, j]]
    assert len(late) == 1 and run.universe[1, late[0]], run.universe
    symbol = panel.symbols[late[0]]
    assert summary["universe"]["joined"][symbol] == 1
    assert summary["universe"]["assets_per_fold"] == [panel.n_assets - 1, panel.n_assets]
    written = json.loads((tmp_path / "per_fold" / "run" / "gates.json").read_text())
    assert written[symbol]["universe"]["first_fold"] == 1
    assert written[symbol]["universe"]["out"][0]["reasons"][0]["code"] == "no_bars"

    before, after = run.folds[0].test, run.folds[1].test
    books = {"model": run.model, "oracle": run.oracle, **run.baselines}
    for name, book in books.items():
        assert not book.signals[before, late[0]].any(), name
        assert (book.index[before, late[0]] == -1).all(), name
    assert np.isnan(run.model.scores[:, before, late[0]]).all()
    for name, score in run.baseline_scores.items():
        assert np.isnan(score[:, before, late[0]]).all(), name
        assert np.isfinite(score[:, after, late[0]]).any(), name
    assert (run.cluster_ids[before, late[0]] == -1).all()
    assert (run.cluster_ids[after, late[0]] >= 0).all()
    assert np.isfinite(run.model.probability[after, late[0]]).any()
    assert run.baselines["always_long"].signals[after, late[0]].any()

    _, alone = train(run_config(tmp_path / "auto", *common, "gates.until=auto"))
    assert symbol not in alone["panel"].symbols and symbol in gates.passed
    kept = [panel.symbols.index(s) for s in alone["panel"].symbols]
    without = alone["run"]
    np.testing.assert_array_equal(
        run.model.probability[before][:, kept], without.model.probability[before]
    )
    for name, book in without.baselines.items():
        np.testing.assert_array_equal(
            run.baselines[name].signals[before][:, kept], book.signals[before], err_msg=name
        )


def test_one_out_of_sample_window_gates_per_fold_as_auto(market, tmp_path):
    """A pipeline with one test window (per coin, the Mechanic) gets auto's verdicts."""
    from huracan.data import apply_gates
    from huracan.pipelines.base import Pipeline

    start = market.timestamps[market.n_bars // 2]

    class OneWindow(Pipeline):
        def test_start(self, panel, cfg):
            return start

    panel = listed_from(market, "SOL", market.n_bars // 2 - 5 * 24)
    panel = delisted_from(panel, "ETH", market.n_bars // 2 - 10 * 24)  # stops before it
    starts = OneWindow().fold_starts(panel, None)
    assert starts == [start]
    per_fold = apply_fold_gates(panel, starts, LIMITS, GateReport())
    auto = apply_gates(panel.between(None, start), LIMITS, stale=True)  # as run.py measures
    assert per_fold.skip_reasons == auto.skip_reasons and per_fold.metrics == auto.metrics
    assert [r["code"] for r in auto.skip_reasons["ETH"]] == ["delisted"]
    # the whole history (gates.until=null) has no test bar to be delisted before
    assert apply_gates(panel, LIMITS).skip_reasons["ETH"] == []


def test_a_misspelled_gates_until_is_a_config_error(market, tmp_path):
    from huracan.errors import ConfigError
    from huracan.run import gates_until

    with pytest.raises(ConfigError, match="gates.until='perfold': use auto, per_fold, null"):
        gates_until(market, config(tmp_path), HierarchicalPipeline(), "perfold")


def test_a_fold_with_fewer_coins_than_clusters_cuts_into_one_per_coin(tmp_path):
    """A fold before a coin listed mid-run joins holds fewer coins than cluster.n_clusters:
    its tree is cut into one cluster per coin (the run failed there with 'n_clusters=4 is
    more than the 3 assets'), and the folds after it into n_clusters again. A run with
    fewer coins than n_clusters in all is still refused."""
    from huracan.errors import ConfigError

    common = (
        "data.n_assets=4",
        "data.n_clusters=2",
        "data.years=0.5",
        "labels.horizons=[1]",
        "gates.min_history_days=10",
        "gates.late_coins=exclude",
        "data.late_listing_share=0.5",  # one of the two alts listed part-way
        "validation.n_folds=2",
        "cluster.n_clusters=4",
        "encoder.max_epochs=1",
        "head.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "report.compare_without_factor=false",
    )
    summary, objects = train(run_config(tmp_path / "late", *common))
    assert summary["universe"]["assets_per_fold"] == [3, 4]
    folds = json.loads((tmp_path / "late" / "run" / "clusters.json").read_text())["folds"]
    assert [len(fold["cluster_members"]) for fold in folds] == [3, 4]
    with pytest.raises(ConfigError, match="n_clusters=5 is more than the 3 assets"):
        train(run_config(tmp_path / "few", *common, "cluster.n_clusters=5"))


def test_a_coin_delisted_before_a_folds_test_window_leaves_that_fold(market, tmp_path):
    """ETH's bars stop 10 days before fold 2's first test bar: its span has no gap, so it
    passed every fold's gates and stayed in fold 2, which held no bar of it; the bars
    after its last one now fail fold 2 (``delisted``, at ``max_gap_bars``), not folds 0-1."""
    cfg = config(tmp_path)
    starts = HierarchicalPipeline().fold_starts(market, cfg)
    row = market.timestamps.get_loc(starts[2]) - 10 * 24
    panel = delisted_from(market, "ETH", row)
    report = apply_fold_gates(panel, starts, LIMITS, GateReport())
    assert codes(report, "ETH") == [[], [], ["delisted"]]
    reason = report.fold_reasons["ETH"][2][0]
    assert reason["value"] == 10 * 24 and reason["threshold"] == LIMITS.max_gap_bars
    assert all(codes(report, s) == [[], [], []] for s in panel.symbols if s != "ETH")
    assert report.fold_members(panel.symbols, 3)[:, panel.index_of("ETH")].tolist() == [
        True,
        True,
        False,
    ]
    # a file that stops a day early is within max_gap_bars: still in the fold
    early = apply_fold_gates(
        delisted_from(market, "ETH", row + 9 * 24), starts, LIMITS, GateReport()
    )
    assert codes(early, "ETH") == [[], [], []]


def test_a_run_stopped_by_a_folds_universe_writes_why_in_gates_json(tmp_path):
    """The error says 'gates.json's universe has every reason': the run writes it on the
    way out (it kept the version from before the folds, where every coin was in)."""
    from huracan.errors import DataError

    cfg = config(tmp_path, "cluster.min_overlap=100000")
    with pytest.raises(DataError, match="fewer than cluster.min_overlap=100000"):
        train(cfg)
    written = json.loads((tmp_path / "run" / "gates.json").read_text())
    out = written["BTC"]["universe"]["out"]
    assert [entry["reasons"][0]["code"] for entry in out] == [
        "min_train_bars",
        "not_measured",
        "not_measured",
    ]


def test_the_fold_cap_leaves_other_cluster_settings_alone():
    """Only an int n_clusters of flat clusters is capped, and only where the run has enough
    coins: hierarchy (its levels), auto, distance_threshold and a run with too few are
    the config as given."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from huracan.pipelines.hierarchical.run import fold_cluster_config

    fold = SimpleNamespace(index=0)
    part, run = (SimpleNamespace(symbols=list("ABCDEF"[:n])) for n in (2, 5))
    for cluster in (
        {"n_clusters": 3, "levels": [3, 6]},
        {"n_clusters": "auto"},
        {"n_clusters": None, "distance_threshold": 0.5},
        {"n_clusters": 6},  # more than the run's 5 coins: the clusterer's error stands
    ):
        cfg = OmegaConf.create({"cluster": cluster})
        assert fold_cluster_config(cfg, part, fold, run) is cfg, cluster
    cfg = OmegaConf.create({"cluster": {"n_clusters": 3}})
    capped = fold_cluster_config(cfg, part, fold, run)
    assert capped.cluster.n_clusters == 2 and cfg.cluster.n_clusters == 3
