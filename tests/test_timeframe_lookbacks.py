"""Look-backs in time on bars of any length: the FFD window's cap (``features.
fracdiff_max_window``) in bars of the panel's timeframe, hourly choices unchanged by it,
and the per-coin pipeline on daily bars keeping the coins that have the history."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import run_config
from omegaconf import OmegaConf

from huracan.config import validate
from huracan.errors import ConfigError
from huracan.features.fracdiff import StationaryFracDiff, ffd_weights, for_features
from huracan.run import train
from huracan.serve.model import coin_warmup, trained_timeframe

HOUR, FOUR_HOURS, DAY = 3600.0, 4 * 3600.0, 86400.0
GRID = np.round(np.arange(0.0, 0.66, 0.05), 2)


def random_walks(n_bars: int, n_assets: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(0, 0.01, (n_bars, n_assets)), axis=0) + 3.0


def test_the_ffd_window_cap_is_a_duration_in_bars_of_the_timeframe():
    features = {"max_d": 0.65, "fracdiff_max_window": "90d"}
    assert for_features(features, DAY).max_window == 90
    assert for_features(features, FOUR_HOURS).max_window == 540
    assert for_features(features, HOUR).max_window == 2160
    # the weight tolerance's own windows: 117 (d=0.65) to 527 (d=0.15) bars, 1 at d=0,
    # below the cap of 1h and 4h bars; from 5h bars on the cap binds
    natural = {d: len(ffd_weights(d)) for d in GRID}
    assert (natural[0.0], natural[0.65], max(natural.values()), natural[0.15]) == (1, 117, 527, 527)
    assert min(v for d, v in natural.items() if d > 0) == 117
    caps = {h: for_features(features, h * HOUR).max_window for h in (4, 5, 6, 12)}
    assert caps == {4: 540, 5: 432, 6: 360, 12: 180}
    assert caps[4] > 527 > caps[5]
    for bar in (HOUR, FOUR_HOURS):
        cap = for_features(features, bar).max_window
        for d in GRID:
            np.testing.assert_array_equal(ffd_weights(d, max_window=cap), ffd_weights(d))
    capped = [len(ffd_weights(d, max_window=90)) for d in GRID]
    assert max(capped) == 90 and max(natural.values()) > 500
    assert for_features({"max_d": 0.65}, DAY).max_window is None  # a model from before it


def test_hourly_fracdiff_choices_are_unchanged_by_the_cap():
    """The same orders, windows and FFD series with and without the cap on hourly bars."""
    x = random_walks(3000, 5, seed=3)
    capped = for_features({"max_d": 0.65, "fracdiff_max_window": "90d"}, HOUR).fit(x)
    plain = StationaryFracDiff(max_d=0.65).fit(x)
    np.testing.assert_array_equal(capped.d_, plain.d_)
    np.testing.assert_array_equal(capped.window_, plain.window_)
    np.testing.assert_array_equal(capped.transform(x), plain.transform(x))
    assert (plain.d_ > 0).all()  # the walks need a window of hundreds of bars


def test_daily_fracdiff_fits_an_order_where_the_tolerance_window_left_no_test():
    """Two years of daily walks: the tolerance's windows (362 to 527 bars at the orders
    such walks need, d 0.05 to 0.15) leave the ADF test too few of 550 training bars; the
    90-day cap leaves it hundreds."""
    x = random_walks(550, 5, seed=3)
    plain = StationaryFracDiff(max_d=0.65).fit(x)
    capped = for_features({"max_d": 0.65, "fracdiff_max_window": "90d"}, DAY).fit(x)
    assert np.isnan(plain.d_).any() and plain.skip_reasons_
    assert np.isfinite(capped.d_).all() and not capped.skip_reasons_
    assert (capped.window_ <= 90).all()


def test_a_daily_ffd_order_needs_191_training_bars_and_says_so():
    """The capped daily window (90 bars), the ADF test's lag and its 100 observations: 191
    training bars fit an order, 190 do not, and the skip counts both."""
    x = random_walks(191, 1, seed=3)
    ffd = for_features({"max_d": 0.65, "fracdiff_max_window": "90d"}, DAY)
    assert np.isfinite(ffd.fit(x).d_).all() and not ffd.skip_bars_
    ffd.fit(x[1:])
    assert np.isnan(ffd.d_).all()
    assert ffd.skip_bars_ == {0: (190, 191)}
    assert "99 observations after the 90-bar window, 100 needed" in ffd.skip_reasons_[0]


def test_the_served_warmup_scales_with_the_timeframe(tmp_path):
    cfg = OmegaConf.to_container(run_config(tmp_path, "pipeline=per_coin"), resolve=True)
    description = {"config": cfg, "fracdiff_d": 0.1, "factor": {"method": "pca"}}
    hourly = coin_warmup({**description, "timeframe": "1h"}, 1e-9)
    daily = coin_warmup({**description, "timeframe": "1d"}, 1e-9)
    assert hourly == max(len(ffd_weights(0.1)), daily)  # 503 FFD bars: 21 days
    assert daily < hourly  # the FFD's 90 days no longer lead: the EMAs' warm-up does


def test_a_model_s_timeframe_is_read_by_one_rule(tmp_path):
    """The description's timeframe, else the training config's data.timeframe, else 1h:
    the served warm-up and the fleet's bar check read the same one."""
    config = {"data": {"timeframe": "1d"}}
    assert trained_timeframe({"timeframe": "4h", "config": config}) == "4h"
    assert trained_timeframe({"config": config}) == "1d"
    assert trained_timeframe({"config": {"data": {}}}) == "1h"
    overrides = ("pipeline=per_coin", "data.timeframe=1d")
    cfg = OmegaConf.to_container(run_config(tmp_path, *overrides), resolve=True)
    description = {"config": cfg, "fracdiff_d": 0.1, "factor": {"method": "pca"}}
    # no timeframe in the description: the config's daily bars cap the FFD at 90, as the
    # fleet reads them (a fallback to 1h counted 503 hourly bars)
    daily = coin_warmup({**description, "timeframe": "1d"}, 1e-9)
    assert coin_warmup(description, 1e-9) == daily < len(ffd_weights(0.1))


def test_a_bad_cap_is_a_config_error_naming_the_key(tmp_path):
    cfg = run_config(tmp_path, "features.fracdiff_max_window=soon")
    with pytest.raises(ConfigError, match="features.fracdiff_max_window: 'soon'"):
        validate(cfg)


DAILY = [
    "pipeline=per_coin",
    "data.timeframe=1d",
    "data.years=2.0",
    "data.n_assets=6",
    "data.n_clusters=2",
    "data.late_listing_share=0.5",
    "cluster.n_clusters=2",
    "cluster.min_overlap=60",
    "pipeline.run_id=daily",
    "encoder.max_epochs=1",
    "head.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "thresholds.min_trades=5",
]


def test_per_coin_on_daily_bars_keeps_the_coins_with_the_history(tmp_path):
    """A synthetic daily market, the hourly defaults otherwise: every coin listed long
    before the validation window gets a job; without the cap the FFD order could not be
    fitted and they were skipped; a coin still skipped says what it has and needs in
    daily bars."""
    summary, objects = train(run_config(tmp_path / "capped", *DAILY))
    panel = objects["panel"]
    jobs = summary["per_coin"]["jobs"]
    # the coins with bars from the market's first day on: two years of daily history
    long_listed = [s for j, s in enumerate(panel.symbols) if np.isfinite(panel.close[0, j])]
    assert 3 <= len(long_listed) < len(panel.symbols)
    assert all(jobs[s]["status"] == "completed" for s in long_listed), jobs
    uncapped, _ = train(
        run_config(tmp_path / "uncapped", *DAILY, "features.fracdiff_max_window=null")
    )
    skipped = {
        s: job["reason"]
        for s, job in uncapped["per_coin"]["jobs"].items()
        if job["status"] == "skipped"
    }
    assert set(long_listed) & set(skipped), uncapped["per_coin"]["jobs"]
    for reason in skipped.values():
        assert "daily bars from" in reason and "fracdiff never known" in reason, reason
        assert reason.startswith("fracdiff never known: its FFD order's ADF test needs "), reason


@pytest.mark.parametrize(
    ("preset", "hierarchical"), [("daily_per_coin", "daily_binance"), ("h4_per_coin", "h4_binance")]
)
def test_the_per_coin_presets_count_in_their_timeframes_bars(tmp_path, preset, hierarchical):
    """The per-coin presets read the same bars with the same look-backs as the hierarchical
    presets of their timeframe, and keep the FFD log price (capped in time)."""
    cfg, reference = (run_config(tmp_path, f"experiment={p}") for p in (preset, hierarchical))
    validate(cfg)
    assert cfg.pipeline._target_.endswith("PerCoinPipeline") and cfg.head.granularity == "coin"
    for key in (
        "data",
        "features.windows",
        "labels.horizons",
        "labels.vol_window",
        "costs.slippage_bps_per_sigma",
        "gates.max_gap_bars",
        "cluster.n_clusters",
    ):
        assert OmegaConf.select(cfg, key) == OmegaConf.select(reference, key), key
    assert cfg.features.fracdiff and cfg.features.fracdiff_max_window == "90d"


def test_an_hourly_per_coin_run_chooses_the_same_with_and_without_the_cap(tmp_path):
    """Hourly bars: the cap never binds, so every coin's job, its FFD order, horizon,
    threshold and out-of-sample figures are those of a run without it."""
    from test_per_coin import SMALL

    runs = {}
    for name, cap in (("capped", "90d"), ("uncapped", "null")):
        cfg = run_config(tmp_path / name, *SMALL, f"features.fracdiff_max_window={cap}")
        summary, _ = train(cfg)
        store = tmp_path / name / "artifacts"
        runs[name] = (
            {
                s: {k: v for k, v in job.items() if k != "seconds"}
                for s, job in summary["per_coin"]["jobs"].items()
            },
            {
                path.parent.parent.name: {
                    key: value
                    for key, value in json.loads(path.read_text()).items()
                    if key in ("fracdiff_d", "inputs", "test_window")
                }
                for path in store.glob("models/*/*/features.json")
            },
            sorted(p.relative_to(store).as_posix() for p in store.glob("models/*/*/metrics.json")),
            {
                p.parent.parent.name: json.loads(p.read_text())
                for p in store.glob("models/*/*/metrics.json")
            },
        )
    assert runs["capped"] == runs["uncapped"]
    jobs, orders, _, _ = runs["capped"]
    assert sum(job["status"] == "completed" for job in jobs.values()) >= 4
    # FFD windows of hundreds of bars (d > 0), which the cap would cut were it in bars
    assert sum((o["fracdiff_d"] or 0) > 0 for o in orders.values()) >= 2, orders


@pytest.fixture(scope="module")
def daily_roster(tmp_path_factory):
    """Per-coin champions on the first 20 months of the daily market (its artifacts are
    copied by each test)."""
    tmp = tmp_path_factory.mktemp("daily_roster")
    summary, _ = train(
        run_config(
            tmp,
            *DAILY,
            "data.end=2024-09-01",
            "pipeline.champion_min_trades=0",
            "pipeline.report_days=0",
        )
    )
    assert sum(j["status"] == "completed" for j in summary["per_coin"]["jobs"].values()) >= 2
    return tmp / "artifacts"


def daily_mechanic(daily_roster, tmp_path, *overrides):
    shutil.copytree(daily_roster, tmp_path / "artifacts")
    market = [o for o in DAILY if o != "pipeline=per_coin" and not o.startswith("pipeline.")]
    summary, _ = train(run_config(tmp_path, "pipeline=mechanic", *market, *overrides))
    report = json.loads((tmp_path / "run" / "mechanic.json").read_text())
    roster = json.loads((tmp_path / "artifacts" / "champions" / "roster.json").read_text())
    return summary, report, roster


def test_a_mechanic_cycle_on_daily_champions_reclusters_on_enough_bars(daily_roster, tmp_path):
    """drift.cluster_window_days=30 holds 30 daily bars, fewer than cluster.min_overlap
    (60): the check re-clusters on the latest 60 bars instead (it failed the cycle with
    'n_clusters=2 is more than the 0 assets to cluster'), and the roster is rewritten."""
    _, report, roster = daily_mechanic(daily_roster, tmp_path)
    drift = report["cluster_drift"]
    start, end = (pd.Timestamp(t) for t in drift["window"])
    assert (end - start) / pd.Timedelta(days=1) + 1 == 60
    assert "error" not in drift and len(drift["clusters"]) >= 2 and drift["ari"] is not None
    assert roster["run_id"] == report["version_id"]


def test_a_drift_check_that_cannot_run_is_recorded_and_the_cycle_ends(daily_roster, tmp_path):
    """No coin has the 1000 bars cluster.min_overlap asks: the re-clustering cannot run;
    its error is recorded, nothing is flagged for it, and the roster is still rewritten."""
    _, report, roster = daily_mechanic(daily_roster, tmp_path, "cluster.min_overlap=1000")
    drift = report["cluster_drift"]
    assert "assets to cluster" in drift["error"]
    assert drift["ari"] is None and drift["retrain_due"] is False
    assert report["full_retrain_due"] is False
    assert roster["run_id"] == report["version_id"]
