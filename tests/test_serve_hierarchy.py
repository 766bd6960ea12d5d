"""cluster=hierarchy beyond the hierarchical run: per_coin trains with the level channels,
the tree travels in clusters.json and every checkpoint, and serving, the Mechanic and the
replay rebuild every channel from the stored tree, causally.

One per-coin run on the small synthetic market's bars before 2023-05-01 (levels [2, 4]);
its jobs and test probabilities are recorded as in ``test_replay.py``."""

from __future__ import annotations

import copy
import json
import logging
import shutil
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import changed_after, run_config
from omegaconf import OmegaConf
from test_replay import PARITY, SMALL, per_coin_trades, replay_trades, trained_recording

import huracan.pipelines.per_coin.run as per_coin_run
from huracan.config import build
from huracan.errors import ConfigError
from huracan.hierarchy import FactorTree, fit_tree
from huracan.pipelines.mechanic.drift import cluster_drift, level_drift, warn_retrain
from huracan.pipelines.per_coin.history import history_gap
from huracan.run import train
from huracan.serve import Fleet, ServeConfig
from huracan.store import LocalStore
from huracan.training.arrays import build_fleet_arrays
from huracan.training.folds import fit_clusters, label_horizons, prepare_fold, single_split

# SMALL: test_replay's market under the uncorrected search, whose champions trade on it
TREE = ["cluster=hierarchy", "cluster.levels=[2,4]"]
MARKET = [o for o in SMALL if o != "pipeline=per_coin" and not o.startswith("pipeline.")]
END = "data.end=2023-05-01"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The per-coin run with its panel, the split's fitted fold (channels copied as the
    run computed them) and each coin's recorded test job and probabilities."""
    tmp = tmp_path_factory.mktemp("serve_tree")
    cfg = run_config(
        tmp, *SMALL, *TREE, END, "pipeline.champion_min_trades=0", "pipeline.report_days=0"
    )
    seen = {}
    run, prepare = per_coin_run.run_per_coin, per_coin_run.prepare_fold

    def run_seen(panel, *args):
        seen["panel"] = panel
        return run(panel, *args)

    def prepare_seen(arrays, fold, *args):
        data = prepare(arrays, fold, *args)
        seen.update(data=data, channels=data.channels.copy(), arrays=arrays)
        return data

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(per_coin_run, "run_per_coin", run_seen)
        patch.setattr(per_coin_run, "prepare_fold", prepare_seen)
        jobs, probabilities = trained_recording(cfg)
    store = LocalStore(tmp / "artifacts")
    expected = per_coin_trades(store, jobs, probabilities)
    return SimpleNamespace(
        tmp=tmp,
        cfg=cfg,
        store=store,
        jobs=jobs,
        probabilities=probabilities,
        expected=expected,
        **seen,
    )


def served(store) -> Fleet:
    return Fleet.load(store, config=ServeConfig(expire_hours=None))


def test_the_tree_goes_into_clusters_json_and_every_checkpoint(trained):
    tree = trained.data.clusters.tree
    assert [level["n_clusters"] for level in tree["levels"]] == [2, 4]
    clusters = json.loads((trained.tmp / "run" / "clusters.json").read_text())
    assert clusters["tree"] == tree
    assert clusters["train_window"][1] == str(trained.data.fold.train_times[-1])
    for symbol, job in trained.jobs.items():
        checkpoint = trained.store.read_json(f"{job.model_prefix}/checkpoint.json")
        assert checkpoint["tree"] == tree, symbol
        assert checkpoint["factor_channels"][-3:] == [
            "level1_factor",
            "level1_factor_lag1",
            "level1_factor_lag2",
        ]


def test_served_channels_are_those_training_computed(trained):
    """On every bar, the training window's included: the stored tree rebuilds the level
    channels bit for bit, on a panel of the served coins and their paths only."""
    fleet = served(trained.store)
    assert set(fleet.models) == set(trained.jobs)
    inputs, problems = fleet.inputs(trained.panel)
    assert not problems
    symbols = trained.arrays.symbols
    for symbol, (_, channels) in inputs.items():
        expected = trained.channels[:, symbols.index(symbol)]
        assert channels.shape == expected.shape
        assert np.isfinite(channels[trained.data.fold.train]).any()
        np.testing.assert_array_equal(channels, expected, err_msg=symbol)
    # and the models score on them what the per-coin jobs scored on their test bars
    frame, _ = fleet.probabilities(trained.panel)
    for symbol, job in trained.jobs.items():
        stamps = pd.to_datetime(job.test["timestamps"], utc=True)
        probability = frame.loc[stamps, symbol].to_numpy()
        np.testing.assert_allclose(probability, trained.probabilities[symbol], atol=1e-6)


def test_signals_at_a_bar_score_what_the_job_scored(trained):
    """``Fleet.signals`` on the bars up to t alone (its warm-up) scores each coin as its
    per-coin job did at t."""
    fleet, panel = served(trained.store), trained.panel
    test, scored = trained.data.fold.test, 0
    for t in (int(test[len(test) // 3]), int(test[-30])):
        stamp, bar = panel.timestamps[t], pd.Timedelta(panel.timeframe)
        window = panel.between(panel.timestamps[t + 1 - fleet.bars_needed], stamp + bar)
        signals = fleet.signals(window, now=stamp + bar).set_index("symbol")
        assert (signals["bar_time"] == stamp).all()
        for symbol, job in trained.jobs.items():
            at = np.flatnonzero(job.test["timestamps"] == stamp.value)
            if len(at):
                got = signals.loc[symbol, "probability"]
                assert got == pytest.approx(trained.probabilities[symbol][at[0]], abs=1e-6)
                scored += 1
    assert scored >= 6


def test_a_coin_is_served_with_its_path_only(trained):
    """The panel a coin's channels are computed on holds the market factor's symbols and
    its own level-1 cluster's members; a member without bars is a one-line reason."""
    fleet = served(trained.store)
    tree = trained.data.clusters.tree
    symbol = max(tree["levels"][1]["members"].values(), key=len)[0]
    path = FactorTree.input_symbols(tree, [symbol])
    assert symbol in path and set(path) < set(trained.panel.symbols)
    assert len(path) > 1, "the largest level-1 cluster has one member: nothing to leave out"
    other = next(s for s in path if s != symbol)
    without = trained.panel.select([s for s in trained.panel.symbols if s != other])
    _, problems = fleet.inputs(without)
    assert "level tree" in problems[symbol][0] and other in problems[symbol][0]


def test_served_level_channels_at_bar_t_never_read_a_later_bar(trained):
    fleet = served(trained.store)
    t = int(trained.data.fold.test[len(trained.data.fold.test) // 2])
    before, _ = fleet.inputs(trained.panel)
    after, _ = fleet.inputs(changed_after(trained.panel, t))
    for symbol, (_, channels) in before.items():
        np.testing.assert_array_equal(after[symbol][1][: t + 1], channels[: t + 1])
        assert not np.array_equal(after[symbol][1][t + 1 :], channels[t + 1 :], equal_nan=True)


def test_the_per_coin_tree_never_saw_a_bar_after_its_training_window(trained):
    cfg, fold = trained.cfg, trained.data.fold
    changed = changed_after(trained.panel, int(fold.train[-1]))
    arrays = build_fleet_arrays(changed, cfg, label_horizons(cfg))
    [again] = single_split(changed, cfg).split(changed)
    np.testing.assert_array_equal(again.train, fold.train)
    data = prepare_fold(arrays, again, cfg, None)
    assert data.clusters.tree == trained.data.clusters.tree


def test_the_replay_gives_the_per_coin_trades_with_the_tree(trained):
    tmp, expected = trained.tmp, trained.expected
    out = tmp / "parity"
    train(run_config(tmp, "pipeline=replay", *MARKET, *TREE, END, f"++output_dir={out}", *PARITY))
    got = replay_trades(out)
    assert len(expected) >= 10 and expected["symbol"].nunique() >= 2
    pd.testing.assert_series_equal(got["symbol"], expected["symbol"])
    pd.testing.assert_series_equal(got["entry_time"], expected["entry_time"])
    np.testing.assert_array_equal(got["net_bps"].to_numpy(), expected["net_bps"].to_numpy())


def test_a_replay_with_mechanic_cycles_on_the_tree(trained):
    """The replay's Mechanic on the bars after the champions' data: each cycle fine-tunes on
    the stored tree's channels and measures the tree's drift level by level."""
    tmp = trained.tmp
    out = tmp / "cycles"
    cfg = run_config(
        tmp,
        "pipeline=replay",
        *MARKET,
        *TREE,
        f"++output_dir={out}",
        "replay.expire_hours=null",
        "replay.start=2023-05-01",
        "replay.end=2023-05-03",
        "mechanic.every_hours=24",
        "mechanic.holdout_days=1",
        "mechanic.min_new_bars=10",
        "mechanic.max_epochs=1",
        "mechanic.champion_min_trades=0",
        "drift.cluster_window_days=20",
    )
    summary, _ = train(cfg)
    cycles = json.loads((out / "mechanic.json").read_text())["cycles"]
    assert summary["replay"]["mechanic_cycles"] == len(cycles) >= 1
    assert all(c["cluster_drift"]["levels"][0]["ari"] is not None for c in cycles)


def test_a_later_run_challenges_each_tree_champion_as_served(trained, tmp_path):
    """A per-coin run on a later window, on a copy of the store: each champion carrying the
    old tree is scored from its stored tree on the raw bars, as the signal service serves
    it; the challengers carry the tree refitted on their own training window."""
    shutil.copytree(trained.tmp / "artifacts", tmp_path / "artifacts")
    champions = served(LocalStore(tmp_path / "artifacts"))
    cfg = run_config(
        tmp_path, *SMALL, *TREE, "pipeline.champion_min_trades=0", "pipeline.run_id=later"
    )
    jobs = {}
    run = per_coin_run.run_coin_job

    def recording(job):
        jobs[job.symbol] = job
        return run(job)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(per_coin_run, "run_coin_job", recording)
        _, objects = train(cfg)
    expected = champions.predict(objects["panel"])
    for symbol, model in champions.models.items():
        job = jobs[symbol]
        assert job.champion["model_path"] == model.model_path
        stamps = pd.to_datetime(job.test["timestamps"], utc=True)
        assert np.isfinite(job.champion["prob"]).all(), symbol
        np.testing.assert_allclose(job.champion["prob"], expected.loc[stamps, symbol], atol=1e-6)
    later = json.loads((tmp_path / "run" / "clusters.json").read_text())["tree"]
    assert all(job.meta["tree"] == later for job in jobs.values())
    assert later["levels"][1]["assets"] != trained.data.clusters.tree["levels"][1]["assets"]


@pytest.fixture(scope="module")
def mechanic(trained, tmp_path_factory):
    """One Mechanic cycle on the roster, with the bars after 2023-05-01 appended."""
    tmp = tmp_path_factory.mktemp("mechanic_tree")
    shutil.copytree(trained.tmp / "artifacts", tmp / "artifacts")
    cfg = run_config(
        tmp,
        "pipeline=mechanic",
        *MARKET,
        "mechanic.val_fraction=0.4",
        "mechanic.max_epochs=2",
        "mechanic.champion_min_trades=0",
        "drift.cluster_window_days=20",
    )
    summary, objects = train(cfg)
    report = json.loads((tmp / "run" / "mechanic.json").read_text())
    return SimpleNamespace(tmp=tmp, store=LocalStore(tmp / "artifacts"), report=report, **objects)


def test_the_mechanic_runs_a_cycle_on_a_hierarchy_roster(trained, mechanic):
    tree = trained.data.clusters.tree
    coins = mechanic.report["coins"]
    tuned = [s for s, c in coins.items() if c["status"] in ("promoted", "kept")]
    assert tuned, {s: c.get("reason") for s, c in coins.items()}
    for symbol in tuned:  # the challenger serves the champion's tree, as stored
        prefix = coins[symbol]["challenger_path"]
        assert mechanic.store.read_json(f"{prefix}/checkpoint.json")["tree"] == tree
    drift = mechanic.report["cluster_drift"]
    assert drift["clusterer"] == "huracan.hierarchy.HierarchyClusterer"
    [level] = drift["levels"]
    assert level["level"] == 1 and set(level["clusters"]) == set(trained.panel.symbols)
    assert level["ari"] is not None
    assert level["retrain_due"] == (level["ari"] < 0.5)
    assert drift["retrain_due"] == (drift["ari"] < 0.5 or level["retrain_due"])
    history = mechanic.store.read_json("meta/cluster_history.json")["entries"]
    assert history[-1]["levels"] == drift["levels"]
    # the promoted coins are served with every channel from the tree on the new bars
    fleet = served(mechanic.store)
    inputs, problems = fleet.inputs(mechanic.panel)
    assert not problems
    new = np.asarray(mechanic.panel.timestamps >= pd.Timestamp("2023-05-01", tz="UTC"))
    assert all(np.isfinite(channels[new][-10:]).all() for _, channels in inputs.values())


def test_the_mechanic_tree_never_sees_a_bar_after_its_window(trained, mechanic):
    trained_cfg = OmegaConf.create(next(iter(served(mechanic.store).models.values())).config)
    panel = mechanic.panel
    rows = np.arange(panel.n_bars - 24 * 20, panel.n_bars - 24 * 5)
    tree = trained.data.clusters.tree

    def refit(bars):
        arrays = build_fleet_arrays(bars, trained_cfg, (1,))
        market = SimpleNamespace(arrays=arrays, trained=trained_cfg)
        clusters = fit_clusters(arrays, rows, trained_cfg)
        return level_drift(tree, clusters, market, rows, 0.5)

    levels = refit(panel)
    assert all("error" not in level and level["ari"] is not None for level in levels)
    assert levels == refit(changed_after(panel, int(rows[-1])))


def test_the_mechanic_and_the_replay_refuse_another_tree_than_the_champions(trained, tmp_path):
    shutil.copytree(trained.tmp / "artifacts", tmp_path / "artifacts")
    before = sorted(p.name for p in (tmp_path / "artifacts").rglob("*"))
    cfg = run_config(tmp_path, "pipeline=mechanic", *MARKET, *TREE, "cluster.levels=[2,5]")
    with pytest.raises(ConfigError, match=r"cluster.levels=\[2, 5\]: the champions carry a tree"):
        train(cfg)
    assert sorted(p.name for p in (tmp_path / "artifacts").rglob("*")) == before
    out = tmp_path / "replayed"
    cfg = run_config(
        tmp_path, "pipeline=replay", *MARKET, *TREE, "cluster.levels=[2,5]", f"++output_dir={out}"
    )
    with pytest.raises(ConfigError, match=r"cluster.levels=\[2, 5\]: the champions carry a tree"):
        train(cfg)  # before its first bar, not at its first cycle
    assert not (out / "trades.csv").exists() and not (out / "equity.csv").exists()


@pytest.mark.parametrize("pipeline", ["per_coin", "mechanic", "replay"])
def test_the_serving_pipelines_take_the_hierarchy(tmp_path, pipeline):
    cfg = run_config(tmp_path, f"pipeline={pipeline}", *TREE)
    build(cfg.pipeline).check(cfg)


def test_a_coin_outside_the_tree_is_skipped_for_that_reason(trained):
    """A coin the clustering left out has no level channels; its job's skip reason says so,
    not that its history is too short."""
    symbol = trained.panel.symbols[-1]
    clusters = replace(trained.data.clusters, excluded={symbol: "too little overlap"})
    split = SimpleNamespace(
        data=replace(trained.data, clusters=clusters),
        fold=trained.data.fold,
        valid=np.zeros((trained.panel.n_bars, len(trained.panel.symbols)), bool),
    )
    j = trained.panel.symbols.index(symbol)
    assert history_gap(trained.panel, split, j) == (
        "not in the level tree (clustering left it out: too little overlap)"
    )
    flat_data = replace(split.data, clusters=replace(clusters, tree=None))
    flat = SimpleNamespace(data=flat_data, fold=split.fold, valid=split.valid)
    # flat: the generic reason (its inputs are all known there: no label or head, which
    # the reason no longer calls a warm-up)
    assert "no validation bars with every input" in history_gap(trained.panel, flat, j)


def test_the_mechanic_measures_each_tree_its_champions_carry(trained, tmp_path):
    """Champions promoted from two runs carry two trees (cluster.levels [2, 4] and [2, 3]):
    each is refitted on the window under its own champions' config and compared with
    itself, every level; the flags of both count, and ``levels`` stays the commonest's."""
    arrays, train_rows = trained.arrays, trained.data.fold.train
    cfg_a = trained.cfg
    cfg_b = OmegaConf.merge(cfg_a, {"cluster": {"levels": [2, 3]}})
    first_b = fit_clusters(arrays, train_rows, cfg_b)
    factor = build(cfg_b.factor)
    members = first_b.cluster_members[first_b.dominant_cluster_id]
    factor.fit(arrays.returns[train_rows], members, arrays.symbols, arrays.quote_volume[train_rows])
    tree_b, _ = fit_tree(
        cfg_b, arrays.returns, train_rows, arrays.symbols, first_b, factor, arrays.quote_volume
    )
    trees = {"a": (trained.data.clusters.tree, cfg_a), "b": (tree_b.to_dict(arrays.symbols), cfg_b)}
    symbols = list(trained.jobs)
    carrying = {s: "b" if i < 2 else "a" for i, s in enumerate(symbols)}
    models = {
        s: SimpleNamespace(
            description={"tree": trees[k][0], "cluster": trained.data.clusters.cluster_map[s]},
            config=OmegaConf.to_container(trees[k][1], resolve=True),
        )
        for s, k in carrying.items()
    }
    fleet = SimpleNamespace(models=models, roster={"entries": []})
    market = SimpleNamespace(
        panel=trained.panel,
        arrays=arrays,
        trained=OmegaConf.create(models[symbols[0]].config),
        version_id="mixed",
    )
    cfg = run_config(tmp_path, "pipeline=mechanic", *MARKET, "drift.cluster_window_days=20")
    entry = cluster_drift(LocalStore(tmp_path / "store"), fleet, market, cfg)

    measured = {tuple(tree["cluster_levels"]): tree for tree in entry["trees"]}
    assert [tree["cluster_levels"] for tree in entry["trees"]] == [[2, 4], [2, 3]]
    window = trained.panel.timestamps[-1] - pd.Timedelta(days=20)
    rows = np.flatnonzero(trained.panel.timestamps > window)
    for key, (tree, conf) in trees.items():
        result = measured[tuple(lv["n_clusters"] for lv in tree["levels"])]
        assert result["coins"] == [s for s in symbols if carrying[s] == key]
        clusters = fit_clusters(arrays, rows, conf)
        assert result["levels"][1:] == level_drift(tree, clusters, market, rows, 0.5, conf)
        first = result["levels"][0]
        assert first["level"] == 0 and first["clusters"] == {
            s: int(c) for s, c in sorted(clusters.cluster_map.items())
        }
        assert first["ari"] is not None
        assert result["retrain_due"] == any(level["retrain_due"] for level in result["levels"])
    assert entry["levels"] == measured[(2, 4)]["levels"][1:]
    flat_due = entry["ari"] is not None and entry["ari"] < 0.5
    assert entry["retrain_due"] == (flat_due or any(t["retrain_due"] for t in entry["trees"]))


def _window_tree(trained, rows: np.ndarray) -> dict:
    """The tree the drift check refits on ``rows`` (the fixture's config): a carried tree
    equal to it has drifted nowhere."""
    arrays, cfg = trained.arrays, trained.cfg
    first = fit_clusters(arrays, rows, cfg)
    factor = build(cfg.factor)
    members = first.cluster_members[first.dominant_cluster_id]
    factor.fit(arrays.returns[rows], members, arrays.symbols, arrays.quote_volume[rows])
    tree, _ = fit_tree(
        cfg, arrays.returns, rows, arrays.symbols, first, factor, arrays.quote_volume
    )
    return tree.to_dict(arrays.symbols)


def _renumbered(tree: dict, level: int, ids: dict[int, int]) -> dict:
    """``tree`` with ``level``'s clusters numbered by ``ids`` (old -> new)."""
    out = copy.deepcopy(tree)
    members = out["levels"][level]["members"]
    out["levels"][level]["members"] = {str(ids[int(c)]): names for c, names in members.items()}
    return out


def _two_tree_drift(trained, tmp_path, trees: dict, carrying: dict) -> dict:
    """``cluster_drift`` on a roster whose coins carry ``trees[carrying[coin]]``, each
    checkpoint's ``cluster`` its tree's level 0 (numbered as that tree numbers it)."""
    models = {}
    for symbol, key in carrying.items():
        level0 = trees[key]["levels"][0]["members"]
        cluster = next(int(c) for c, names in level0.items() if symbol in names)
        models[symbol] = SimpleNamespace(
            description={"tree": trees[key], "cluster": cluster},
            config=OmegaConf.to_container(trained.cfg, resolve=True),
        )
    fleet = SimpleNamespace(models=models, roster={"entries": []})
    market = SimpleNamespace(
        panel=trained.panel,
        arrays=trained.arrays,
        trained=OmegaConf.create(trained.cfg),
        version_id="pinned",
    )
    cfg = run_config(tmp_path, "pipeline=mechanic", *MARKET, "drift.cluster_window_days=20")
    return cluster_drift(LocalStore(tmp_path / "store"), fleet, market, cfg)


def _drift_rows(trained) -> np.ndarray:
    window = trained.panel.timestamps[-1] - pd.Timedelta(days=20)
    return np.flatnonzero(trained.panel.timestamps > window)


def test_the_same_tree_numbered_two_ways_has_not_drifted(trained, tmp_path):
    """Half the champions carry the tree with level 0 (and level 1) numbered the other way
    round: two trees by their JSON, one partition. Every comparison is 1.0 and nothing is
    due; the roster-wide check reads one tree's numbers only (it mixed both: ARI < 0)."""
    tree = _window_tree(trained, _drift_rows(trained))
    n1 = tree["levels"][1]["n_clusters"]
    other = _renumbered(_renumbered(tree, 0, {0: 1, 1: 0}), 1, {c: n1 - 1 - c for c in range(n1)})
    symbols = list(trained.jobs)
    carrying = {s: "b" if i < len(symbols) // 2 else "a" for i, s in enumerate(symbols)}
    entry = _two_tree_drift(trained, tmp_path, {"a": tree, "b": other}, carrying)

    assert len(entry["trees"]) == 2
    assert entry["ari"] == 1.0 and entry["moved"] == []
    for measured in entry["trees"]:
        assert [level["ari"] for level in measured["levels"]] == [1.0, 1.0]
        assert not measured["retrain_due"]
    assert entry["retrain_due"] is False


def test_a_minority_tree_with_a_scrambled_level_alone_is_due(trained, tmp_path, caplog):
    """Tree B (two champions) stores level 1 with every coin in one cluster; tree A is the
    window's own tree. B's entry is due (level 1 ARI 0), none of A's levels is, and the
    warning names B's level once."""
    tree = _window_tree(trained, _drift_rows(trained))
    scrambled = copy.deepcopy(tree)
    every = sorted(s for names in tree["levels"][1]["members"].values() for s in names)
    scrambled["levels"][1]["members"] = {"0": every}
    symbols = list(trained.jobs)
    carrying = {s: "b" if i < 2 else "a" for i, s in enumerate(symbols)}
    with caplog.at_level(logging.WARNING, logger="huracan"):
        entry = _two_tree_drift(trained, tmp_path, {"a": tree, "b": scrambled}, carrying)

    a, b = entry["trees"]
    assert a["coins"] == symbols[2:] and b["coins"] == symbols[:2]
    assert [(lv["ari"], lv["retrain_due"]) for lv in a["levels"]] == [(1.0, False), (1.0, False)]
    assert not a["retrain_due"]
    assert [(lv["ari"], lv["retrain_due"]) for lv in b["levels"]] == [(1.0, False), (0.0, True)]
    assert b["retrain_due"] is True and entry["retrain_due"] is True
    assert entry["ari"] == 1.0 and entry["levels"] == a["levels"][1:]
    (warning,) = [r.getMessage() for r in caplog.records if "cluster drift below" in r.message]
    assert warning.count("ARI") == 1 and "tree [2, 4] level 1 ARI 0.0" in warning


def test_a_drop_both_checks_see_is_warned_once(trained, tmp_path, caplog):
    """Every champion carries a tree whose level 0 puts each coin in the other cluster
    than the window's: the roster-wide check and the tree's level 0 see the same drop,
    and the warning lists it once."""
    tree = _window_tree(trained, _drift_rows(trained))
    level0 = tree["levels"][0]["members"]
    symbols = sorted(s for names in level0.values() for s in names)
    drifted = copy.deepcopy(tree)  # alternate coins across the two clusters
    drifted["levels"][0]["members"] = {"0": symbols[0::2], "1": symbols[1::2]}
    carrying = dict.fromkeys(trained.jobs, "a")
    with caplog.at_level(logging.WARNING, logger="huracan"):
        entry = _two_tree_drift(trained, tmp_path, {"a": drifted}, carrying)

    (measured,) = entry["trees"]
    assert measured["levels"][0]["retrain_due"] and entry["ari"] < 0.5  # both see it
    assert entry["retrain_due"] is True
    (warning,) = [r.getMessage() for r in caplog.records if "cluster drift below" in r.message]
    assert warning.count("ARI") == 1 and "tree [2, 4] level 0" in warning


def test_flat_champions_of_two_runs_are_compared_run_by_run(trained, tmp_path):
    """A flat roster whose champions come from two runs, the second numbering the same
    partition the other way round: a cluster id of one run means nothing in the other, so
    each run is compared with the window's clustering on its own coins (both 1.0, nothing
    due); read as one numbering the two runs disagreed (ARI < 1)."""
    from huracan.pipelines.mechanic.drift import run_drift

    cfg = run_config(tmp_path, "pipeline=mechanic", *MARKET, "drift.cluster_window_days=20")
    now = fit_clusters(trained.arrays, _drift_rows(trained), cfg).cluster_map
    top = max(now.values())
    symbols = sorted(now)
    run_of = {s: "second" if i % 2 else "first" for i, s in enumerate(symbols)}
    before = {s: top - c if run_of[s] == "second" else c for s, c in now.items()}
    assert len(set(now.values())) >= 2
    models = {
        s: SimpleNamespace(
            description={"cluster": before[s], "config": {"pipeline": {"run_id": run_of[s]}}}
        )
        for s in symbols
    }
    fleet = SimpleNamespace(models=models, roster={"entries": []})
    market = SimpleNamespace(
        panel=trained.panel, arrays=trained.arrays, trained=trained.cfg, version_id="pinned"
    )
    entry = cluster_drift(LocalStore(tmp_path / "store"), fleet, market, cfg)

    assert [r["run_id"] for r in entry["runs"]] == ["first", "second"]  # most coins first
    for compared in entry["runs"]:
        assert compared["coins"] == [s for s in symbols if run_of[s] == compared["run_id"]]
        assert (compared["ari"], compared["moved"], compared["retrain_due"]) == (1.0, [], False)
    assert entry["ari"] == 1.0 and entry["retrain_due"] is False
    mixed = run_drift(before, {}, now)  # no run recorded: one numbering, as before the fix
    assert [r["run_id"] for r in mixed] == [None] and mixed[0]["ari"] < 1.0


def test_the_retrain_warning_names_each_run_below_the_ari(caplog):
    entry = {
        "ari": 1.0,  # the first run's: the second run's drop must still be named
        "moved": [],
        "runs": [
            {"run_id": "first", "ari": 1.0, "moved": [], "retrain_due": False},
            {"run_id": "second", "ari": 0.0, "moved": ["B"], "retrain_due": True},
        ],
    }
    with caplog.at_level(logging.WARNING, logger="huracan"):
        warn_retrain(entry, 0.5)
    assert "run second ARI 0.0 (moved: B)" in caplog.text
    assert "run first" not in caplog.text and ": : " not in caplog.text
