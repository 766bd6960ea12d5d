"""``labels.target``: labels against the bar's other coins, causal at every bar and in
each fold; ``book.score=mean_rank``; the options compose and a small run trains."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import changed_after, run_config

from huracan.config import validate
from huracan.data import Panel, SyntheticMarket
from huracan.errors import ConfigError
from huracan.evaluation import mean_rank, percentile_rank
from huracan.features.labels import after_cost_labels, cross_section_labels
from huracan.run import train
from huracan.training.arrays import build_fleet_arrays
from huracan.training.folds import horizon_samples, horizon_weights, prepare_fold, walk_forward

SMALL = [
    "data.n_assets=6",
    "data.n_clusters=2",
    "data.years=0.5",
    "cluster.n_clusters=2",
    "validation.n_folds=2",
    "encoder.max_epochs=2",
    "head.max_epochs=3",
    "head.patience=2",
    "trainer.enable_progress_bar=false",
    "gates.min_history_days=10",
    "labels.horizons=[1,4]",
]


@pytest.fixture(scope="module")
def panel() -> Panel:
    market = SyntheticMarket(n_assets=7, years=0.02, late_listing_share=0.3, n_outages=2, seed=5)
    return market.load()


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a, b, equal_nan=True)


def test_the_median_and_rank_labels_by_hand():
    net = np.array(
        [
            [0.03, -0.01, 0.01, np.nan],  # median 0.01: above, below, at it, no trade
            [0.02, np.nan, -0.02, np.nan],  # two coins: no cross-section
            [0.04, 0.01, 0.01, -0.05],  # ties share their rank
        ]
    )
    label, relative = cross_section_labels(net, "cross_section")
    assert same(label, np.array([[1, 0, 0.5, np.nan], [np.nan] * 4, [1, 0.5, 0.5, 0]]))
    np.testing.assert_allclose(relative[0, :3], [0.02, -0.02, 0.0])
    assert np.isnan(relative[1]).all()
    rank, _ = cross_section_labels(net, "cross_section_rank")
    assert same(rank, np.array([[1, 0, 0.5, np.nan], [np.nan] * 4, [1, 0.5, 0.5, 0]]))
    with pytest.raises(ConfigError, match="labels.target='absolute' is no cross-sectional target"):
        cross_section_labels(net, "absolute")


@pytest.mark.parametrize("target", ["cross_section", "cross_section_rank"])
@pytest.mark.parametrize("horizon", [1, 3])
def test_the_label_at_t_reads_no_bar_after_t_plus_h(panel, target, horizon):
    """Redrawing every bar after t + h (prices, volumes, a coin leaving) changes no
    label of any bar up to t; the bars up to t + h do change the label at t."""

    def labels(p: Panel) -> np.ndarray:
        return cross_section_labels(after_cost_labels(p, horizon)[1], target)[0]

    base = labels(panel)
    for t in (20, 41, 70):
        changed = labels(changed_after(panel, t + horizon, gone=2))
        assert same(changed[: t + 1], base[: t + 1]), t
    moved = labels(changed_after(panel, 41, gone=2))  # the bars at 42 .. 41 + h are in the label
    assert not same(moved[42 - horizon : 42], base[42 - horizon : 42])


def test_the_folds_training_inputs_ignore_every_bar_after_its_training_window(tmp_path):
    """With labels.target=cross_section, the fold's training and validation samples (model
    inputs, labels, weights) are the same whatever the bars after its training window."""
    cfg = run_config(tmp_path, *SMALL, "labels.target=cross_section", "features.fracdiff=false")
    panel = SyntheticMarket(n_assets=6, n_clusters=2, years=0.2, seed=1).load()
    fold = walk_forward(cfg, horizon=4).split(panel)[0]

    def samples(p: Panel) -> list[dict]:
        arrays = build_fleet_arrays(p, cfg, (1, 4))
        data = prepare_fold(arrays, fold, cfg, None)
        weights = horizon_weights(arrays, fold)
        learn = data.valid(arrays)
        return [
            horizon_samples(data, arrays, weights, rows, learn)[0]
            for rows in (fold.train, fold.val)
        ]

    # the purge leaves the longest horizon between training (and validation) and test rows
    last_label_bar = fold.val[-1] + 4
    assert last_label_bar < fold.test[0]
    base, other = samples(panel), samples(changed_after(panel, last_label_bar, gone=2))
    for a, b in zip(base, other, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert same(a[key].numpy(), b[key].numpy()), key
    y = base[0]["y"].numpy()
    assert set(np.unique(y)) <= {0.0, 0.5, 1.0} and 0.3 < y[base[0]["w"].numpy() > 0].mean() < 0.7


def test_percentile_and_mean_rank():
    score = np.array([[0.2, 0.9, np.nan, 0.5], [np.nan, 0.3, np.nan, np.nan]])
    assert same(
        percentile_rank(score), np.array([[0, 1, np.nan, 0.5], [np.nan, 0.5, np.nan, np.nan]])
    )
    scores = np.stack([score, -score])  # two horizons that disagree entirely
    assert same(
        mean_rank(scores), np.array([[0.5, 0.5, np.nan, 0.5], [np.nan, 0.5, np.nan, np.nan]])
    )


@pytest.mark.parametrize("target", ["absolute", "cross_section", "cross_section_rank"])
def test_labels_target_composes_and_is_checked(tmp_path, target):
    cfg = run_config(tmp_path, f"labels.target={target}", "book.score=mean_rank")
    validate(cfg)
    assert cfg.labels.target == target and cfg.book.score == "mean_rank"


def test_a_bad_target_or_pipeline_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="labels.target"):
        validate(run_config(tmp_path, "labels.target=relative"))
    with pytest.raises(ConfigError, match="book.score"):
        validate(run_config(tmp_path, "book.score=average"))
    cfg = run_config(tmp_path, "pipeline=per_coin", "labels.target=cross_section")
    with pytest.raises(
        ConfigError, match="labels.target=cross_section needs pipeline=hierarchical"
    ):
        validate(cfg)


def test_a_small_run_trains_on_the_cross_sectional_target(tmp_path):
    """The heads learn the soft rank label; the book and the IC rank by the mean rank, and
    the long-only trades still report their absolute precision."""
    cfg = run_config(tmp_path, *SMALL, "labels.target=cross_section_rank", "book.score=mean_rank")
    summary, objects = train(cfg)
    run = objects["run"]
    assert run.arrays.target_h is not None and run.arrays.target_h.shape == run.arrays.label_h.shape
    assert np.isfinite(run.model.scores[:, run.test_rows]).mean() > 0.5
    assert (
        summary["ic"]["score"] == "mean_rank"
        and summary["books"]["long_short"]["score"] == "mean_rank"
    )
    ic = summary["ic"]["model"]
    assert np.isfinite(ic["1"]["ic_mean"]) and ic["1"]["n_bars"] > 0
    combined = mean_rank(run.model.scores)
    assert np.isfinite(combined[run.test_rows]).any()
    book = summary["books"]["long_short"]["model"]
    assert book["n_entries"] > 0 and np.isfinite(book["net_bps"])


@pytest.mark.parametrize("target", ["absolute", "cross_section", "cross_section_rank"])
def test_the_daily_preset_composes_with_each_target(tmp_path, target):
    cfg = run_config(tmp_path, "experiment=daily_binance", f"labels.target={target}")
    validate(cfg)
    assert cfg.labels.target == target and cfg.book.score == "horizon"
    assert list(cfg.labels.horizons) == [1, 3, 7, 14]


@pytest.mark.parametrize("target", ["cross_section", "cross_section_rank"])
def test_a_folds_coins_alone_make_its_cross_section(tmp_path, target):
    """A fold's arrays (``FleetArrays.columns``, the per-fold universe) take the target
    again across its coins: the same as arrays built from a panel of those coins only,
    and the fold's samples and weights build on them."""
    cfg = run_config(tmp_path, *SMALL, f"labels.target={target}", "features.fracdiff=false")
    panel = SyntheticMarket(n_assets=6, n_clusters=2, years=0.2, seed=1).load()
    arrays = build_fleet_arrays(panel, cfg, (1, 4))
    cols = np.array([0, 1, 3, 4])
    part = arrays.columns(cols)
    alone = build_fleet_arrays(panel.select([panel.symbols[j] for j in cols]), cfg, (1, 4))
    assert part.target_h.shape == part.net_h.shape == alone.target_h.shape
    assert same(part.target_h, alone.target_h) and same(part.move_h, alone.move_h)
    assert not same(part.target_h, arrays.target_h[:, cols])  # two coins fewer per bar
    fold = walk_forward(cfg, horizon=4).split(panel)[0]
    data = prepare_fold(part, fold, cfg, None)
    weights = horizon_weights(part, fold)
    tensors, t_idx, a_idx = horizon_samples(data, part, weights, fold.train, data.valid(part))
    np.testing.assert_array_equal(
        tensors["y"].numpy()[:, 0], np.nan_to_num(part.target_h[t_idx, a_idx, 0])
    )


def test_the_ensemble_refuses_per_cluster_masks(tmp_path):
    cfg = run_config(tmp_path, "ensemble=stack", "features.per_cluster=learned")
    with pytest.raises(ConfigError, match="ensemble=stack with features.per_cluster"):
        validate(cfg)
