"""The validation bound behind every cut: trades counted as independent, or by day."""

import numpy as np
import pytest

from huracan.errors import ConfigError
from huracan.thresholds import (
    DAY_NS,
    choose_horizons,
    choose_thresholds,
    daily_bounds,
    threshold_bounds,
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


def test_cut_z_trades_more_of_a_significant_edge_and_every_cut_stays_significant():
    rng = np.random.default_rng(9)
    prob = rng.uniform(0, 1, 4000)
    net = 0.002 * (prob - 0.6) + rng.normal(0, 0.006, len(prob))  # worth trading above 0.6
    group = np.zeros(len(prob), dtype=int)
    cuts = {}
    for cut_z in (None, 1.0, 0.0):  # None: the best lower bound at z = 2
        [cut], [bound], _ = threshold_bounds(prob, net, group, 1, 20, 2.0, None, cut_z)
        traded = net[prob >= cut]
        # the bound returned is the chosen cut's own bound at z = 2, and it is positive
        assert bound == pytest.approx(traded.sum() - 2.0 * net.std() * np.sqrt(len(traded)))
        assert bound > 0
        cuts[cut_z] = cut
    # a smaller margin trades more of the edge (se grows with k: the argmax moves down)
    assert cuts[0.0] < cuts[1.0] < cuts[None]
    assert 0.45 < cuts[0.0] < 0.7  # the most profitable cut: where the edge pays the cost


def test_cut_z_never_makes_a_head_without_a_significant_edge_trade():
    rng = np.random.default_rng(5)
    day = np.repeat(np.arange(60), 24)
    prob = rng.uniform(0, 1, len(day))
    net = rng.normal(-0.0003, 0.003, len(day))  # no edge: costs only
    group = np.zeros(len(day), dtype=int)
    for cut_z in (None, 1.0, 0.0):
        index, cuts, bounds = choose_horizons(
            prob[:, None], net[:, None], group, np.arange(len(day)), (1,), 1, 20, 2.0, day, cut_z
        )
        assert index[0] == -1 and np.isinf(cuts[0]) and bounds[0] == -np.inf


def test_a_negative_cut_z_is_refused():
    prob, net = np.linspace(0, 1, 100), np.full(100, 0.001)
    with pytest.raises(ConfigError, match="thresholds.cut_z"):
        choose_thresholds(prob, net, np.zeros(100, int), 1, 20, 2.0, cut_z=-1.0)


def test_the_horizon_is_chosen_by_the_same_score_as_the_cut():
    """Column 1 has the higher lower bound, column 0 the higher S - 1 * se: the best bound
    (cut_z null) takes column 1, cut_z = 1 column 0; both bounds stay positive."""
    rng = np.random.default_rng(1)
    n = 4000
    prob = rng.uniform(0, 1, (n, 2))
    net = np.column_stack(
        [
            0.002 * (prob[:, 0] - 0.6) + rng.normal(0, 0.006, n),
            0.001 * (prob[:, 1] - 0.4) + rng.normal(0, 0.004, n),
        ]
    )
    group, rows = np.zeros(n, dtype=int), np.arange(n)  # (1, 1): both judged on every row
    by_bound = choose_horizons(prob, net, group, rows, (1, 1), 1, 20, 2.0, None, None)
    by_score = choose_horizons(prob, net, group, rows, (1, 1), 1, 20, 2.0, None, 1.0)
    assert by_bound[0][0] == 1 and by_score[0][0] == 0
    assert by_bound[2][0] > by_score[2][0] > 0
