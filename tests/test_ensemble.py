"""ensemble=stack: the meta-model across the cluster heads (issue 31, item 4)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import recorded_hashes
from conftest import ROOT
from hydra import compose, initialize_config_dir
from test_hierarchical import shifted_from, small_config

from huracan.config import validate
from huracan.ensemble import (
    EnsembleConfig,
    GatingMLPMeta,
    cross_fit_halves,
    ensemble_config,
    stack_fold,
)
from huracan.ensemble_convex import ConvexMeta, convex_weights, rank_ic_by_bar
from huracan.errors import ConfigError
from huracan.run import train

HOUR_NS = 3_600 * 10**9
STACK = (
    "ensemble=stack",
    "labels.horizons=[1,4]",
    "baselines.extra=[lightgbm]",
    "baselines.lightgbm.num_boost_round=20",
    "report.compare_without_factor=false",
)


def generated_fold(seed: int = 0, n_val: int = 600, n_test: int = 300, k: int = 4, assets: int = 1):
    """Validation and test samples of 4 components, one of them informative: hourly rows
    (``assets`` samples each) over 25 days / ``assets``, 2 clusters, 2 horizons."""
    rng = np.random.default_rng(seed)
    n = n_val + n_test
    signal = rng.normal(size=n)
    prob = 1 / (1 + np.exp(-(rng.normal(size=(n, k, 2)))))
    prob[:, 1] = 1 / (1 + np.exp(-signal))[:, None]
    net = 0.01 * signal[:, None] + rng.normal(0, 0.01, (n, 2))
    label = (net > 0).astype(float)
    row = np.arange(n) // assets
    cluster = rng.integers(0, 2, n)
    val = slice(0, n_val)
    test = slice(n_val, n)
    day = row * HOUR_NS // (86_400 * 10**9)
    return {
        "val": (prob[val].astype(np.float32), cluster[val], row[val], day[val]),
        "test": (prob[test].astype(np.float32), cluster[test]),
        "label": label[val],
        "net": net[val],
        "test_label": label[test],
    }


def stacked(data: dict, config: EnsembleConfig | None = None):
    config = config or EnsembleConfig(kind="stack", meta="logistic")
    return stack_fold(config, data["val"], data["test"], data["label"], data["net"], (1, 4), 2, 0)


def test_cross_fit_halves_are_disjoint_in_days():
    day = np.repeat(np.arange(11), 24)[::-1]  # any order of samples
    first, second = cross_fit_halves(day)
    assert not set(day[first]) & set(day[second])
    assert set(day[first]) | set(day[second]) == set(range(11))
    assert day[first].max() < day[second].min() and first.sum() == 5 * 24


def test_out_of_fold_predictions_never_read_their_own_labels():
    """A half's out-of-fold predictions come from the meta-model fitted on the other half:
    changing the second half's labels leaves them as they were (and changes the first's)."""
    data = generated_fold()
    before = stacked(data)
    _, _, row, day = data["val"]
    second = cross_fit_halves(day)[1]
    changed = dict(data, label=np.where(second[:, None], 1 - data["label"], data["label"]))
    after = stacked(changed)
    np.testing.assert_array_equal(after.validation[second], before.validation[second])
    assert not np.array_equal(after.validation[~second], before.validation[~second])


def test_the_meta_model_never_reads_the_test_window():
    """The test inputs only feed predictions: the meta-models and the validation
    predictions are the same whatever the test window holds."""
    data = generated_fold()
    before = stacked(data)
    prob, cluster = data["test"]
    moved = dict(data, test=(np.random.default_rng(9).random(prob.shape, np.float32), cluster))
    after = stacked(moved)
    assert after.meta == before.meta
    np.testing.assert_array_equal(after.validation, before.validation)
    assert not np.array_equal(after.test, before.test)
    assert np.isfinite(before.validation).all() and np.isfinite(before.test).all()


def test_the_stack_finds_the_informative_component():
    """On the out-of-fold predictions the stack ranks returns about as well as the one
    informative component, far above the noise ones (Spearman, pooled)."""
    from scipy.stats import spearmanr

    data = generated_fold(n_val=1200, assets=6)
    for meta in ("convex", "best", "logistic", "gating_mlp"):
        out = stacked(data, EnsembleConfig(kind="stack", meta=meta, epochs=100))
        ic = spearmanr(out.validation[:, 0], data["net"][:, 0]).statistic
        noise = spearmanr(data["val"][0][:, 0, 0], data["net"][:, 0]).statistic
        assert ic > 0.3 > abs(noise), meta


def test_the_convex_weights_are_the_documented_rule():
    """docs/ensemble.md: positive-IC weights over their sum, shrunk by lambda toward equal
    weights on the positive-IC components; IC <= 0 or a constant score gets 0; the corner
    takes the best; with no positive IC, the own head (component 0) alone."""
    ic = np.array([0.01, 0.03, -0.02, 0.0, 0.04])
    spread = np.array([1.0, 2.0, 1.0, 1.0, 0.0])  # the last one is constant
    np.testing.assert_allclose(convex_weights(ic, spread, 0.0, False), [0.25, 0.75, 0, 0, 0])
    np.testing.assert_allclose(convex_weights(ic, spread, 1.0, False), [0.5, 0.5, 0, 0, 0])
    half = convex_weights(ic, spread, 0.5, False)
    np.testing.assert_allclose(half, [0.375, 0.625, 0, 0, 0])
    assert (half >= 0).all() and half.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(convex_weights(ic, spread, 0.5, True), [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(convex_weights(-np.abs(ic), spread, 0.5, False), [1, 0, 0, 0, 0])


def test_the_convex_meta_combines_logits_in_units_of_their_spread():
    """The ensemble's logit is sum_k c_k logit_k with c_k = w_k / s_k * sum_j w_j s_j: two
    components of equal IC whose logits differ only in scale give each one's own logit, and
    the corner gives the best component's probability back."""
    rng = np.random.default_rng(0)
    bar = np.repeat(np.arange(60), 10)
    signal = rng.normal(size=len(bar))
    net = signal + rng.normal(0, 1, len(bar))
    z = np.stack([signal, 3 * signal, rng.normal(size=len(bar))], axis=1) * 0.5
    prob = 1 / (1 + np.exp(-z))
    meta = ConvexMeta(shrink=0.5).fit(prob, None, None, net, bar)
    assert meta.ic_[0] == pytest.approx(meta.ic_[1]) and meta.weights_[0] == meta.weights_[1]
    spread = z.std(0)
    weights = meta.weights_
    expected = weights / np.where(spread > 0, spread, 1) * (weights * spread).sum()
    np.testing.assert_allclose(meta.coef_, np.where(weights > 0, expected, 0))
    np.testing.assert_allclose(meta.predict_proba(prob, None), 1 / (1 + np.exp(-2 * z[:, 0])))
    corner = ConvexMeta(corner=True).fit(prob, None, None, net, bar)
    assert corner.weights_.max() == 1 and corner.weights_[2] == 0
    k = int(np.argmax(corner.weights_))
    np.testing.assert_allclose(corner.predict_proba(prob, None), prob[:, k])


def test_each_asset_reads_its_own_head_once_at_its_renormalised_weight():
    """docs/ensemble.md: an asset's components are its own head, the *other* cluster heads,
    the global head: ``with_own`` leaves its own cluster's column out (NaN), and the convex
    weights are renormalised over the components present, so the own head's weight in a
    coin of cluster g is exactly w_own / (1 - w_g), not w_own + w_g, and shrink=1 is the
    plain average of the standardised logits present."""
    from huracan.pipelines.hierarchical.ensemble import with_own

    rng = np.random.default_rng(3)
    n_groups, bar = 3, np.repeat(np.arange(80), 12)
    signal = rng.normal(size=len(bar))
    net = signal + rng.normal(0, 1, len(bar))
    group = rng.integers(0, n_groups, len(bar))
    # three cluster heads and a global head, each informative at its own strength and scale
    z = np.stack([s * signal + rng.normal(size=len(bar)) for s in (1.0, 0.5, 2.0, 0.8)], 1)
    prob = (1 / (1 + np.exp(-z)))[..., None]  # (B, 4, 1)
    stacked = with_own(prob, group)[..., 0]  # (B, 5): own, heads 0..2, global
    assert np.isnan(stacked[np.arange(len(bar)), 1 + group]).all()
    assert np.isfinite(stacked).sum() == 4 * len(bar)
    np.testing.assert_array_equal(stacked[:, 0], prob[np.arange(len(bar)), group, 0])
    for shrink in (0.0, 1.0):
        meta = ConvexMeta(shrink=shrink).fit(stacked, group, None, net, bar)
        w = meta.weights_
        assert (meta.ic_ > 0).all() and w.sum() == pytest.approx(1.0)
        logits = np.log(stacked / (1 - stacked))
        for g in range(n_groups):
            present = np.ones(5, dtype=bool)
            present[1 + g] = False
            expected_w = np.where(present, w, 0) / w[present].sum()
            got = meta.cluster_weights_[g]
            np.testing.assert_allclose(got, expected_w, rtol=1e-12)
            assert got[0] == pytest.approx(w[0] / (1 - w[1 + g]), rel=1e-12)
            rows = group == g
            coef = (
                expected_w / np.where(present, meta.spread_, 1) * (expected_w * meta.spread_).sum()
            )
            want = np.nansum(logits[rows] * coef, 1)
            got_p = meta.predict_proba(stacked[rows], group[rows])
            np.testing.assert_allclose(np.log(got_p / (1 - got_p)), want, rtol=1e-9)
            if shrink == 1.0:  # a plain average of the present standardised logits
                unit = logits[rows][:, present] / meta.spread_[present]
                scale = meta.spread_[present].mean()
                np.testing.assert_allclose(want, unit.mean(1) * scale, rtol=1e-9)
        # a cluster head's IC is measured on the assets of the other clusters only
        k = 1 + 1
        outside = group != 1
        assert meta.ic_[k] == pytest.approx(
            rank_ic_by_bar(logits[outside, k : k + 1], net[outside], bar[outside])[0]
        )
    logistic = stack_fold(
        EnsembleConfig(kind="stack", meta="logistic"),
        (stacked[..., None].astype(np.float32), group, bar, bar // 24),
        (stacked[..., None].astype(np.float32), group),
        (net > 0).astype(float)[:, None],
        net[:, None],
        (1,),
        n_groups,
        0,
    )
    assert np.isfinite(logistic.test).all()


def test_rank_ic_by_bar_is_the_reports_rank_ic():
    """The weights read the IC the report reads (huracan.evaluation.rank_ic on a grid)."""
    from huracan.evaluation import rank_ic

    rng = np.random.default_rng(1)
    score, net = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
    score[:, 0] = net[:, 0]
    net[5, :6] = np.nan  # a bar with 2 assets left: out
    bar, _ = np.nonzero(np.isfinite(net))
    keep = np.isfinite(net)
    got = rank_ic_by_bar(score[keep][:, None], net[keep], bar)[0]
    assert got == pytest.approx(np.nanmean(rank_ic(score, net)))


def _rank_ic_on_rows(score: np.ndarray, net: np.ndarray, bar: np.ndarray) -> np.ndarray:
    """The computation ``rank_ic_by_bar`` replaced (one call per column with absent rows,
    the net return a column of the scores' frame)."""
    from huracan.evaluation import MIN_ASSETS

    frame = pd.DataFrame(score).assign(net=net)
    ranks = frame.groupby(bar).rank()
    ranks = ranks - ranks.groupby(bar).transform("mean")
    target = ranks.pop("net")
    cov = ranks.mul(target, axis=0).groupby(bar).sum()
    norm = np.sqrt(ranks.pow(2).groupby(bar).sum().mul(target.pow(2).groupby(bar).sum(), axis=0))
    count = frame.groupby(bar).size()
    with np.errstate(invalid="ignore", divide="ignore"):
        ic = (cov / norm).where((norm > 0) & (count >= MIN_ASSETS).to_numpy()[:, None])
    return ic.mean().fillna(0.0).to_numpy()


def test_rank_ic_by_bar_of_present_columns_is_each_column_on_its_own_rows():
    """Every column in one pass (``present``) gives, bit for bit, what the previous
    computation gave on that column's rows alone (the net return ranked among them): ties,
    a column missing from whole bars, one with too few assets in some."""
    rng = np.random.default_rng(3)
    n_bars, assets = 40, 9
    bar = np.repeat(np.arange(n_bars), assets)
    cluster = np.tile(np.arange(assets) % 3, n_bars)
    score = np.round(rng.normal(size=(len(bar), 5)), 1)  # ties within bars
    net = np.round(rng.normal(size=len(bar)), 2)
    present = np.ones(score.shape, dtype=bool)
    present[:, 2] = cluster != 1  # a cluster head left out on its own cluster
    present[:, 3] = (cluster != 2) & (bar % 5 != 0)  # and out of whole bars
    present[:, 4] = (cluster == 0) | (bar < 10)  # 3 assets a bar, some bars more
    got = rank_ic_by_bar(score, net, bar, present)
    np.testing.assert_array_equal(got[:2], _rank_ic_on_rows(score[:, :2], net, bar))
    for k in range(2, 5):
        rows = present[:, k]
        assert got[k] == _rank_ic_on_rows(score[rows, k : k + 1], net[rows], bar[rows])[0]
    # unrounded values and uneven bars: the same to rounding (pandas sums with compensation)
    score, net = rng.normal(size=(len(bar), 5)), rng.normal(size=len(bar))
    keep = rng.random(len(bar)) > 0.2
    got = rank_ic_by_bar(score[keep], net[keep], bar[keep])
    want = _rank_ic_on_rows(score[keep], net[keep], bar[keep])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert np.count_nonzero(want) == 5


@pytest.mark.parametrize("meta", ["convex", "best", "logistic"])
def test_a_meta_model_reads_no_bar_after_its_validation_slice(meta):
    """Every bar after the fold's validation slice (the test window: its inputs; nothing
    else reaches stack_fold) redrawn: the fold's meta-models, their choice under the
    fallback and the out-of-fold validation predictions stay the same; the test
    predictions move."""
    data = generated_fold(assets=6)
    config = EnsembleConfig(kind="stack", meta=meta, fallback=meta != "best")
    before = stacked(data, config)
    prob, cluster = data["test"]
    moved = dict(data, test=(np.random.default_rng(9).random(prob.shape, np.float32), cluster))
    after = stacked(moved, config)
    assert after.meta == before.meta
    np.testing.assert_array_equal(after.validation, before.validation)
    assert not np.array_equal(after.test, before.test)


@pytest.mark.parametrize("meta", ["convex", "best"])
def test_convex_out_of_fold_predictions_never_read_their_own_returns(meta):
    """A half's out-of-fold predictions come from weights fitted on the other half's net
    returns: redrawing the second half's returns leaves its predictions as they were."""
    data = generated_fold(assets=6)
    config = EnsembleConfig(kind="stack", meta=meta)
    before = stacked(data, config)
    second = cross_fit_halves(data["val"][3])[1]
    noise = np.random.default_rng(5).normal(0, 0.01, data["net"].shape)
    net = np.where(second[:, None], noise, data["net"])
    after = stacked(dict(data, net=net, label=(net > 0).astype(float)), config)
    np.testing.assert_array_equal(after.validation[second], before.validation[second])
    assert not np.array_equal(after.validation[~second], before.validation[~second])


def test_gating_mlp_is_seeded_and_gives_probabilities():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    y = (x[:, 0] > 0).astype(float)
    a = GatingMLPMeta(epochs=50).fit(x, y, seed=3).predict_proba(x)
    b = GatingMLPMeta(epochs=50).fit(x, y, seed=3).predict_proba(x)
    np.testing.assert_array_equal(a, b)
    assert ((a > 0) & (a < 1)).all()


def compose_config(*overrides: str):
    with initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_config_composes_and_errors_are_clear():
    assert ensemble_config(compose_config()).enabled is False
    config = ensemble_config(compose_config("ensemble=stack", "ensemble.meta=gating_mlp"))
    assert config.enabled and config.meta == "gating_mlp"
    with pytest.raises(ConfigError, match="ensemble.meta"):
        validate(compose_config("ensemble=stack", "ensemble.meta=forest"))
    with pytest.raises(ConfigError, match="ensemble.l2 must be > 0"):
        validate(compose_config("ensemble=stack", "ensemble.l2=0"))
    with pytest.raises(ConfigError, match=r"ensemble.shrink must be in \[0, 1\], got 1.5"):
        validate(compose_config("ensemble=stack", "ensemble.shrink=1.5"))
    with pytest.raises(ConfigError, match="needs pipeline=hierarchical"):
        validate(compose_config("ensemble=stack", "pipeline=per_coin"))
    with pytest.raises(ConfigError, match="head=coin"):
        validate(compose_config("ensemble=stack", "head=coin"))


def test_the_global_heads_patience_is_counted_in_samples_per_parameter_set():
    """An epoch gives the global head's one parameter set n_groups times the samples it
    gives a cluster head's: it waits head.patience // n_groups epochs, at least 1."""
    config = EnsembleConfig(kind="stack")
    assert [config.global_patience_for(4, g) for g in (1, 2, 3, 4, 5, 400)] == [4, 2, 1, 1, 1, 1]
    assert EnsembleConfig(kind="stack", global_patience=3).global_patience_for(4, 3) == 3
    composed = ensemble_config(compose_config("ensemble=stack", "ensemble.global_patience=2"))
    assert composed.global_patience == 2
    with pytest.raises(ConfigError, match="ensemble.global_patience must be >= 1 or null, got 0"):
        validate(compose_config("ensemble=stack", "ensemble.global_patience=0"))


@pytest.fixture(scope="module")
def stack_run(tmp_path_factory):
    import huracan.pipelines.hierarchical.ensemble as stacking

    out = tmp_path_factory.mktemp("ensemble")
    seen = []  # the head config every global head is trained with

    def spy(cfg, *args, **kwargs):
        seen.append(cfg)
        return fit_heads(cfg, *args, **kwargs)

    fit_heads = stacking.fit_heads
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stacking, "fit_heads", spy)
        summary, objects = train(small_config(out, *STACK))
    objects["global_heads"] = seen
    return out, summary, objects


@pytest.mark.slow  # the end-to-end run of the fixture: ~50 s on 2 loaded cores
def test_the_ensemble_row_appears_with_stack_and_not_without(stack_run, tmp_path):
    from huracan.pipelines.hierarchical.report import write_report

    out, summary, objects = stack_run
    results = pd.read_csv(out / "results.csv")
    assert results.columns[0] == "strategy"
    assert set(results["strategy"]) == {"model", "ensemble"}
    assert (results["strategy"] == "ensemble").sum() == 6
    section = json.loads((out / "summary.json").read_text())["ensemble"]
    names = {"model", "component_head_cluster_0", "component_head_cluster_1"}
    names |= {"component_head_global", "baseline_lightgbm", "ensemble"}
    assert set(section["side_by_side"]) == names
    for figures in section["side_by_side"].values():
        assert {"net_bps", "n_trades", "t_stat", "ic_1", "ic_4", "ic_t_4"} <= set(figures)
    assert {c["result"] for c in section["checks"]} <= {"PASS", "FAIL"}
    # the LightGBM component is the baseline's own book: the check names its rule
    assert "baseline_lightgbm's cut by baselines.rule=heads (gate=" in section["checks"][1]["name"]
    assert section["folds"][0]["components"][0] == "own_head"
    assert "lightgbm" in section["folds"][0]["components"]
    assert "ensemble" in summary["ic"] and "ensemble" in summary["books"]["long_short"]
    # one global head a fold, head.patience=2 over 2 clusters: 1 epoch of patience
    heads = objects["global_heads"]
    assert len(heads) == len(objects["run"].ensemble_parts) > 0
    assert {(h.granularity, h.patience) for h in heads} == {("global", 1)}
    run, ensemble = objects["run"], objects["run"].ensemble
    run.ensemble = None  # the same run reported without the ensemble
    try:
        report = write_report(run, objects["panel"], small_config(tmp_path), tmp_path)
    finally:
        run.ensemble = ensemble
    assert "ensemble" not in report
    assert "strategy" not in pd.read_csv(tmp_path / "results.csv").columns


@pytest.mark.slow  # the end-to-end run of the fixture: ~50 s on 2 loaded cores
def test_ensemble_trades_only_in_test_windows(stack_run):
    run = stack_run[2]["run"]
    off_test = np.setdiff1d(np.arange(len(run.arrays.timestamps_ns)), run.test_rows)
    for book in (run.ensemble, *run.components.values()):
        assert not book.signals[off_test].any()
        assert np.isnan(book.scores[:, off_test]).all()
    assert np.isfinite(run.ensemble.scores[:, run.test_rows]).mean() > 0.5


@pytest.mark.slow
def test_future_bars_do_not_change_an_earlier_folds_meta_model(stack_run, tmp_path):
    """Prices changed from fold 0's test window on (after its validation slice and the
    purge that holds its labels): fold 0's meta-models, components and ensemble choice
    stay the same; fold 1's, whose validation slice holds changed bars, move."""
    from huracan.pipelines.hierarchical.run import run_hierarchical
    from huracan.report import StageTimer

    _, summary, objects = stack_run
    run = objects["run"]
    cut = run.folds[0].test[0]
    assert cut > run.folds[0].val[-1] + max(run.arrays.horizons)
    other = run_hierarchical(
        shifted_from(objects["panel"], cut, 3.0),
        small_config(tmp_path, *STACK),
        tmp_path,
        StageTimer(),
    )
    before, after = run.ensemble_parts, other.ensemble_parts
    assert after[0].meta == before[0].meta and after[0].choice == before[0].choice
    np.testing.assert_array_equal(after[0].val_prob, before[0].val_prob)
    assert after[1].meta != before[1].meta


@pytest.mark.slow  # the default run itself: 2 to 3 minutes on 2 loaded cores
def test_the_default_run_writes_the_same_results_csv(tmp_path):
    """ensemble=none (the default) leaves the default run's results.csv byte for byte."""
    import hashlib

    with initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                f"+output_dir={tmp_path}",
                f"logger.save_dir={tmp_path / 'tb'}",
                f"store.root={tmp_path / 'artifacts'}",  # where artifacts go, not what they are
            ],
        )
    train(cfg)
    digest = hashlib.md5((tmp_path / "results.csv").read_bytes()).hexdigest()
    assert digest in recorded_hashes.DEFAULT_RESULTS_MD5, digest
