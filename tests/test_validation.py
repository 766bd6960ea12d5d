"""Walk-forward folds (purge, embargo, timestamps) and after-cost metrics."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from huracan.data import SyntheticMarket
from huracan.errors import ConfigError, DataError
from huracan.metrics import (
    COLUMNS,
    asset_metrics,
    cluster_metrics,
    fold_metrics,
    group_metrics,
    pooled_group_metrics,
    take_trades,
)
from huracan.validation import Fold, WalkForward, long_rows

BARS_PER_YEAR = 8766.0


def grid(n_bars: int) -> pd.DatetimeIndex:
    return pd.date_range("2024-01-01", periods=n_bars, freq="1h", tz="UTC")


@pytest.mark.parametrize(
    ("horizon", "purge", "embargo", "val_fraction"),
    [(1, None, None, 0.2), (4, None, 10, 0.2), (24, 30, 0, 0.0), (6, 6, 50, 0.3)],
)
def test_folds_leave_no_label_overlap_and_respect_the_embargo(
    horizon, purge, embargo, val_fraction
):
    n_folds = 5
    splitter = WalkForward(n_folds, horizon, purge, embargo, val_fraction)
    folds = splitter.split(grid(1200))
    embargo = (purge or horizon) if embargo is None else embargo
    assert [f.index for f in folds] == list(range(n_folds))
    tests = [f.test for f in folds]
    assert tests[-1][-1] == 1199
    assert all(np.all(np.diff(t) == 1) for t in tests)  # contiguous test windows
    assert all(a[-1] + 1 == b[0] for a, b in pairwise(tests))
    for fold in folds:
        test_start = fold.test[0]
        # every training and validation label window [t, t + h] ends before the test window
        assert fold.train.max() + horizon < test_start
        if len(fold.val):
            assert fold.val.max() + horizon < test_start
            assert fold.train.max() + horizon < fold.val.min()
        assert (len(fold.val) > 0) == (val_fraction > 0)
        # no training or validation row right after an earlier test window
        used = np.concatenate([fold.train, fold.val])
        for earlier in folds[: fold.index]:
            after = np.arange(earlier.test[-1] + 1, earlier.test[-1] + 1 + embargo)
            assert not np.isin(used, after).any()
    for a, b in pairwise(folds):  # the training window only grows
        assert np.isin(a.train, b.train).all() and len(b.train) > len(a.train)


def test_folds_split_on_timestamps_and_map_to_long_rows():
    panel = SyntheticMarket(n_assets=5, years=0.05, seed=4, late_listing_share=0.5).load()
    folds = WalkForward(n_folds=3, horizon=2).split(panel)
    long = panel.to_long()
    long_times = long.index.get_level_values("timestamp")
    for fold in folds:
        pd.testing.assert_index_equal(fold.test_times, panel.timestamps[fold.test])
        pd.testing.assert_index_equal(fold.train_times, panel.timestamps[fold.train])
        train = long_rows(fold.train, panel.timestamps, long_times)
        test = long_rows(fold.test, panel.timestamps, long_times)
        assert set(long_times[train]) == set(fold.train_times[panel.listed[fold.train].any(1)])
        assert long_times[train].max() + 2 * pd.Timedelta("1h") < long_times[test].min()
        assert len(test) == panel.listed[fold.test].sum()  # every asset of a test timestamp
        assert np.all(np.diff(test) == 1)  # a contiguous block of the sorted long table


def test_too_little_data_and_bad_parameters_are_clear_errors():
    with pytest.raises(ConfigError, match="too few for 5 folds"):
        WalkForward(n_folds=5, horizon=4).split(grid(30))
    with pytest.raises(ConfigError, match="cannot hold 5 test windows"):
        WalkForward(n_folds=5).split(grid(5))
    with pytest.raises(ConfigError, match="at least the label horizon"):
        WalkForward(horizon=4, purge=2).split(grid(500))
    with pytest.raises(ConfigError, match="val_fraction"):
        WalkForward(val_fraction=1.0).split(grid(500))
    with pytest.raises(DataError, match="sorted, unique"):
        WalkForward().split(grid(500)[::-1])
    with pytest.raises(DataError, match="sorted"):
        long_rows(np.arange(3), grid(5), grid(5)[::-1])
    with pytest.raises(DataError, match="not on the panel's grid"):
        long_rows(np.arange(3), grid(5), grid(7))


def test_explicit_test_size():
    folds = WalkForward(n_folds=2, horizon=1, test_size=100, val_fraction=0).split(grid(1000))
    assert [len(f.test) for f in folds] == [100, 100]
    assert folds[0].test[0] == 800 and len(folds[0].train) == 799


# --- metrics -------------------------------------------------------------------------------
NET = np.array([[0.01, -0.02], [-0.005, 0.03], [0.02, np.nan], [np.nan, np.nan]])
LABELS = np.where(np.isnan(NET), np.nan, (NET > 0).astype(float))
SIGNALS = np.array([[True, True], [True, False], [False, True], [True, False]])


def annualised(series: list[float]) -> float:
    return np.mean(series) / np.std(series, ddof=1) * np.sqrt(BARS_PER_YEAR)


def test_asset_metrics_on_a_hand_made_example():
    table = asset_metrics(SIGNALS, LABELS, NET, symbols=["A", "B"], bars_per_year=BARS_PER_YEAR)
    assert list(table.columns) == COLUMNS and list(table.index) == ["A", "B"]
    a, b = table.loc["A"], table.loc["B"]
    # A trades rows 0 and 1 (row 3 has no net return, so it is no trade)
    assert a.n_trades == 2 and a.precision == 0.5 and a.recall == 0.5
    assert a.expectancy == pytest.approx(0.0025) and a.net_bps == pytest.approx(50)
    assert a.sharpe == pytest.approx(annualised([0.01, -0.005, 0.0]))
    # B trades row 0 only, misses its one winner (row 1)
    assert b.n_trades == 1 and b.precision == 0 and b.recall == 0
    assert b.expectancy == pytest.approx(-0.02) and b.net_bps == pytest.approx(-200)
    assert b.sharpe == pytest.approx(annualised([-0.02, 0.0]))


def test_longer_horizons_take_no_overlapping_trades():
    table = asset_metrics(
        SIGNALS, LABELS, NET, symbols=["A", "B"], bars_per_year=BARS_PER_YEAR, horizon=2
    )
    # A's trade of row 0 is open at rows 0..1, so row 1's signal is not taken; row 3 has
    # no exit bar: a signal counted in n_no_exit, not a trade
    a = table.loc["A"]
    assert a.n_trades == 1 and a.expectancy == pytest.approx(0.01) and a.n_no_exit == 1
    assert a.sharpe == pytest.approx(annualised([0.005, 0.005, 0.0]))


def test_take_trades_with_a_hold_per_entry():
    entries = np.array([[1, 1], [1, 1], [1, 0], [1, 1], [1, 1]], dtype=bool)
    hold = np.array([[3, 1], [1, 1], [1, 1], [2, 2], [1, 1]])
    taken = take_trades(entries, hold)
    # A: row 0 held 3 bars -> next at row 3 (held 2) -> next at row 5 (none); B every bar
    # until row 3 held 2 bars
    assert taken[:, 0].tolist() == [True, False, False, True, False]
    assert taken[:, 1].tolist() == [True, True, False, True, False]
    for column in range(2):  # one asset alone (a coin's job) takes the same trades
        alone = take_trades(entries[:, [column]], hold[:, [column]])
        assert alone[:, 0].tolist() == taken[:, column].tolist()
    rng = np.random.default_rng(0)
    many, holds = rng.random((500, 4)) < 0.3, rng.integers(1, 30, (500, 4))
    taken = take_trades(many, holds)
    for column in range(4):
        assert (take_trades(many[:, [column]], holds[:, [column]])[:, 0] == taken[:, column]).all()


@pytest.mark.parametrize("per_entry_hold", [False, True])
def test_pooled_group_metrics_are_each_sets_group_metrics_bit_for_bit(per_entry_hold):
    """One pass for overlapping sets (clusters, one asset alone, the alts, all) gives
    exactly what ``group_metrics`` gives on each set's columns alone (the report's
    per-cluster table was one such call per set)."""
    rng = np.random.default_rng(3)
    t_len, n = 24 * 40, 9
    signals = rng.random((t_len, n)) < 0.2
    net = rng.normal(0, 0.01, (t_len, n))
    net[rng.random((t_len, n)) < 0.1] = np.nan  # no exit
    labels = np.where(np.isfinite(net), (net > 0).astype(float), np.nan)
    hold = rng.integers(1, 12, (t_len, n)).astype(np.int32) if per_entry_hold else 6
    rows = np.r_[200:500, 600:t_len]
    days = np.arange(t_len) // 24
    sets = [np.array([0, 2, 5]), np.array([1]), np.array([3, 4, 6, 7, 8]), np.arange(1, n)]
    sets.append(np.arange(n))
    pooled = pooled_group_metrics(signals, labels, net, rows, sets, BARS_PER_YEAR, hold, days)
    for columns, got in zip(sets, pooled, strict=True):
        alone = group_metrics(
            signals[:, columns],
            labels[:, columns],
            net[:, columns],
            rows,
            np.zeros(len(columns), dtype=np.int64),
            BARS_PER_YEAR,
            hold if np.ndim(hold) == 0 else hold[:, columns],
            days,
        )
        assert got.keys() == alone.keys()
        for key, value in alone.items():
            np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert pooled[-1]["n_trades"][0] == sum(p["n_trades"][0] for p in pooled[:3])


def test_pooled_group_metrics_reads_a_mask_as_its_columns_and_refuses_repeats():
    rng = np.random.default_rng(4)
    signals = rng.random((240, 4)) < 0.3
    net = rng.normal(0, 0.01, (240, 4))
    labels = (net > 0).astype(float)
    args = (signals, labels, net, np.arange(240))
    mask = np.array([True, False, True, False])
    by_mask, by_index = (
        pooled_group_metrics(*args, [cols], BARS_PER_YEAR, 4)[0] for cols in (mask, [0, 2])
    )
    for key, value in by_index.items():
        np.testing.assert_array_equal(by_mask[key], value, err_msg=key)
    with pytest.raises(ValueError, match="unique indices below 4"):
        pooled_group_metrics(*args, [np.array([0, 0, 2])], BARS_PER_YEAR, 4)


def test_daily_t_stat_and_bootstrap_interval():
    rng = np.random.default_rng(0)
    t_len = 24 * 200
    net = rng.normal(0.001, 0.01, size=(t_len, 1))
    signals = rng.random((t_len, 1)) < 0.2
    days = np.arange(t_len) // 24
    row = asset_metrics(
        signals,
        (net > 0).astype(float),
        net,
        symbols=["A"],
        bars_per_year=BARS_PER_YEAR,
        days=days,
    ).loc["A"]
    daily = np.bincount(days, weights=np.where(signals, net, 0.0)[:, 0])
    expected_t = daily.mean() / (daily.std(ddof=1) / np.sqrt(len(daily)))
    assert row.t_stat == pytest.approx(expected_t)
    assert row.ci_low < row.expectancy < row.ci_high
    assert row.ci_low < 0.001 < row.ci_high  # covers the true mean
    assert row.ci_high - row.ci_low == pytest.approx(
        2 * 1.96 * 0.01 / np.sqrt(row.n_trades), rel=0.3
    )


def test_cluster_fold_and_row_restricted_metrics():
    clusters = cluster_metrics(
        SIGNALS,
        LABELS,
        NET,
        symbols=["A", "B"],
        cluster_map={"A": 3, "B": 3},
        bars_per_year=BARS_PER_YEAR,
    )
    pooled = clusters.loc[3]
    assert pooled.n_trades == 3 and pooled.precision == pytest.approx(1 / 3)
    assert pooled.recall == pytest.approx(1 / 3) and pooled.net_bps == pytest.approx(-150)
    assert pooled.sharpe == pytest.approx(annualised([-0.01, -0.005, 0.0]))

    folds = [
        Fold(0, np.arange(0), np.arange(0), np.arange(0, 2), *[grid(0)] * 3),
        Fold(1, np.arange(2), np.arange(0), np.arange(2, 4), *[grid(0)] * 3),
    ]
    by_fold = fold_metrics(SIGNALS, LABELS, NET, folds=folds, bars_per_year=BARS_PER_YEAR)
    assert list(by_fold.n_trades) == [3, 0]
    assert by_fold.loc[0, "net_bps"] == pytest.approx(-150)
    assert np.isnan(by_fold.loc[1, "precision"]) and by_fold.loc[1, "recall"] == 0

    later = asset_metrics(
        SIGNALS, LABELS, NET, symbols=["A", "B"], bars_per_year=BARS_PER_YEAR, rows=np.arange(1, 4)
    )
    assert list(later.n_trades) == [1, 0] and later.loc["A", "net_bps"] == pytest.approx(-50)


def test_metrics_reject_bad_inputs():
    with pytest.raises(ValueError, match="bool"):
        asset_metrics(
            SIGNALS.astype(float), LABELS, NET, symbols=["A", "B"], bars_per_year=BARS_PER_YEAR
        )
    with pytest.raises(ValueError, match="share one"):
        asset_metrics(SIGNALS[:2], LABELS, NET, symbols=["A", "B"], bars_per_year=BARS_PER_YEAR)
    with pytest.raises(ConfigError, match="no cluster for \\['B'\\]"):
        cluster_metrics(
            SIGNALS,
            LABELS,
            NET,
            symbols=["A", "B"],
            cluster_map={"A": 0},
            bars_per_year=BARS_PER_YEAR,
        )


def test_the_config_test_size_places_the_out_of_sample_part():
    """``validation.test_size`` reaches the run's splitter: five windows of 146 days end on
    the last day, so the tests begin 730 days before it (bench_edge.py daily's held-out)."""
    from omegaconf import OmegaConf

    from huracan.training.folds import walk_forward

    grid = pd.date_range("2020-05-11", "2024-05-07", freq="D")
    cfg = OmegaConf.create(
        {
            "validation": {"n_folds": 5, "purge": None, "embargo": None, "val_fraction": 0.2},
            "labels": {"horizon": 14},
        }
    )
    default = walk_forward(cfg).split(grid)
    cfg.validation.test_size = 146
    folds = walk_forward(cfg).split(grid)
    assert [len(f.test) for f in folds] == [146] * 5
    assert folds[0].test_times[0] == grid[-730] and folds[-1].test_times[-1] == grid[-1]
    assert folds[0].train_times[-1] < folds[0].test_times[0] - pd.Timedelta(days=14)
    assert default[0].test_times[0] != folds[0].test_times[0]
