"""The validation bound behind every cut: trades counted as independent, or by day."""

import numpy as np
import pytest

from huracan.errors import ConfigError
from huracan.thresholds import (
    DAY_NS,
    choose_horizons,
    choose_thresholds,
    daily_bounds,
    validation_days,
)


def test_daily_bounds_equal_the_daily_pnl_standard_error_for_every_cut():
    rng = np.random.default_rng(0)
    returns, day = rng.normal(0.001, 0.01, 300), rng.integers(0, 25, 300)
    bounds = daily_bounds(returns, day, z=2.0)
    days = np.unique(day)
    for k in (1, 7, 50, 300):
        daily = np.array([returns[:k][day[:k] == d].sum() for d in days])
        expected = daily.sum() - 2.0 * np.sqrt(len(days) * daily.var(ddof=1))
        assert bounds[k - 1] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_one_day_of_luck_is_no_evidence():
    # 60 validation days of noise; on one day every sample the model ranks first wins big
    rng = np.random.default_rng(1)
    n_days, per_day = 60, 40
    day = np.repeat(np.arange(n_days), per_day)
    net = rng.normal(-0.0005, 0.002, len(day))
    prob = rng.uniform(0.0, 0.5, len(day))
    lucky = day == 17
    net[lucky], prob[lucky] = 0.01, 0.9  # 40 correlated winners, all on day 17
    group = np.zeros(len(day), dtype=int)
    by_trade = choose_thresholds(prob, net, group, 1, min_trades=20, z=2.0)
    by_day = choose_thresholds(prob, net, group, 1, min_trades=20, z=2.0, day=day)
    assert np.isfinite(by_trade[0])  # 40 "independent" winners look significant
    assert np.isinf(by_day[0])  # one good day of 60 is not


def test_an_edge_spread_over_days_still_trades_by_day():
    rng = np.random.default_rng(2)
    n_days, per_day = 60, 24
    day = np.repeat(np.arange(n_days), per_day)
    prob = rng.uniform(0, 1, len(day))
    net = 0.004 * (prob - 0.5) + rng.normal(0, 0.002, len(day))  # an edge every day
    cut = choose_thresholds(prob, net, np.zeros(len(day), int), 1, 20, 2.0, day=day)
    assert 0.3 < cut[0] < 0.9


def test_choose_horizons_passes_days_per_horizon():
    rng = np.random.default_rng(3)
    rows = np.arange(2400)
    day = rows // 24
    prob = rng.uniform(0, 1, (len(rows), 2))
    net = np.stack([rng.normal(-0.001, 0.002, len(rows)), 0.01 * (prob[:, 1] - 0.5)], 1)
    group = np.zeros(len(rows), dtype=int)
    index, cuts, bounds = choose_horizons(prob, net, group, rows, (1, 4), 1, 20, 2.0, day)
    assert index[0] == 1 and np.isfinite(cuts[0]) and bounds[0] > 0


def test_validation_days():
    stamps = np.array([0, DAY_NS - 1, DAY_NS, 5 * DAY_NS + 7])
    assert validation_days("day", stamps).tolist() == [0, 0, 1, 5]
    assert validation_days("trade", stamps) is None
    with pytest.raises(ConfigError, match="thresholds.unit"):
        validation_days("week", stamps)
