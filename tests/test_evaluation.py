"""Rank IC, quintile returns and the long-short book (``huracan.evaluation``) on small
generated panels, cross-checked against scipy and alphalens."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata, spearmanr

from huracan.errors import ConfigError
from huracan.evaluation import (
    BookConfig,
    hac_t,
    ic_summary,
    long_short_book,
    long_short_positions,
    quantile_returns,
    quantile_summary,
    rank_ic,
    rebalance_rows,
    row_nanquantiles,
    row_ranks,
)
from huracan.features.labels import forward_return
from huracan.significance import t_stat


def panel(seed: int, t_len: int = 300, n: int = 12, noise: float = 1.0):
    """A realised return and a score that is that return plus noise (a planted signal)."""
    rng = np.random.default_rng(seed)
    realised = rng.normal(0, 0.01, (t_len, n))
    score = realised / 0.01 + rng.normal(0, noise, (t_len, n))
    return score, realised


def test_rank_ic_is_scipys_spearman_per_bar_over_the_assets_with_both():
    score, realised = panel(0, t_len=40, n=9)
    rng = np.random.default_rng(1)
    score[rng.random(score.shape) < 0.15] = np.nan
    realised[rng.random(realised.shape) < 0.15] = np.nan
    score[3] = np.round(score[3])  # ties: average ranks, as spearmanr
    score[5, 2:] = np.nan  # two assets left: no IC
    ic = rank_ic(score, realised)
    for t in range(len(score)):
        both = np.isfinite(score[t]) & np.isfinite(realised[t])
        if both.sum() < 3:
            assert np.isnan(ic[t])
        else:
            expected = spearmanr(score[t, both], realised[t, both]).statistic
            assert ic[t] == pytest.approx(expected, abs=1e-12)
    assert np.isnan(ic[5])
    rows = np.array([4, 7, 9])
    np.testing.assert_array_equal(rank_ic(score, realised, rows), ic[rows])


def test_a_planted_score_has_a_significant_ic_and_a_random_one_does_not():
    score, realised = panel(0, noise=3.0)
    planted = ic_summary(rank_ic(score, realised), horizon=1)
    assert planted["ic_mean"] > 0 and planted["ic_t"] > 2
    significant = 0
    for seed in range(40):
        noise = np.random.default_rng(100 + seed).normal(size=realised.shape)
        significant += abs(ic_summary(rank_ic(noise, realised), horizon=1)["ic_t"]) > 2
    assert significant <= 6  # about 5 % of 40 expected


def test_the_hac_t_of_overlapping_horizons_is_not_fooled_by_the_overlap():
    """A random score held h bars against h-bar returns: the IC series overlaps. The HAC t
    (h - 1 lags) keeps |t| > 2 rare; the plain t of the same series does not."""
    h, hac, plain = 8, 0, 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        steps = rng.normal(0, 0.01, (400 + h, 10))
        realised = np.stack([steps[t : t + h].sum(0) for t in range(400)])
        score = np.repeat(rng.normal(size=(400 // h, 10)), h, axis=0)  # rebalanced every h
        ic = rank_ic(score, realised)
        hac += abs(hac_t(ic, h)) > 2
        plain += abs(hac_t(ic, 1)) > 2
    assert hac <= 6
    assert plain > hac


def test_hac_t_with_one_bar_horizon_is_the_plain_t():
    values = np.random.default_rng(0).normal(0.1, 1, 200)
    assert hac_t(values, 1) == pytest.approx(t_stat(values), rel=1e-10)


def test_quintile_spread_has_the_score_sign():
    score, realised = panel(2, noise=2.0)
    up = quantile_summary(quantile_returns(score, realised), horizon=1)
    down = quantile_summary(quantile_returns(-score, realised), horizon=1)
    assert up["spread_bps"] > 0 and up["spread_t"] > 2
    assert down["spread_bps"] == pytest.approx(-up["spread_bps"])
    assert np.all(np.diff(up["quantile_bps"]) > 0)  # a strong planted score: monotone


def test_rank_ic_and_quintiles_match_alphalens():
    """alphalens-reloaded runs under this pandas: its IC per date and its mean return per
    quantile per date equal ours on the same frame."""
    from alphalens import performance, utils

    score, realised = panel(3, t_len=30, n=10, noise=2.0)
    score[4, 0] = np.nan  # an asset without a score on one date
    dates = pd.date_range("2024-01-01", periods=len(score), freq="D", tz="UTC")
    assets = [f"C{j}" for j in range(score.shape[1])]
    index = pd.MultiIndex.from_product([dates, assets], names=["date", "asset"])
    frame = pd.DataFrame({"1D": realised.ravel(), "factor": score.ravel()}, index=index)
    frame = frame.dropna()
    frame["factor_quantile"] = utils.quantize_factor(frame, quantiles=5)

    theirs_ic = performance.factor_information_coefficient(frame)["1D"].to_numpy()
    np.testing.assert_allclose(rank_ic(score, realised), theirs_ic, atol=1e-12)

    theirs, _ = performance.mean_return_by_quantile(frame, by_date=True, demeaned=False)
    theirs = theirs["1D"].unstack("factor_quantile").to_numpy()  # (dates, 5)
    np.testing.assert_allclose(quantile_returns(score, realised), theirs, atol=1e-12)


def test_row_quantiles_are_numpys_nanquantile_exactly():
    """The one-sort quantiles the quintile cuts read are np.nanquantile's, bit for bit
    (the cuts compare scores with them: any difference could move an asset across a
    cut), on rows of any length, with ties, NaN and every interpolation branch."""
    rng = np.random.default_rng(0)
    for trial in range(60):
        rows, width = rng.integers(1, 40), rng.integers(5, 90)
        values = rng.normal(size=(rows, width)) * 10 ** rng.uniform(-6, 2)
        if trial % 3 == 0:
            values = np.round(values, 1)  # ties
        values[rng.random((rows, width)) < rng.uniform(0, 0.9)] = np.nan
        values[:, :5] = rng.normal(size=(rows, 5))  # at least 5 finite per row
        for levels in (np.arange(1, 5) / 5, np.array([0.0, 0.3, 0.5, 1.0]), rng.random(7)):
            want = np.nanquantile(values, levels, axis=1).T
            np.testing.assert_array_equal(row_nanquantiles(values, levels), want)


def ragged_panel(seed: int, dtype=np.float64):
    """Scores with NaN, ties and bars of 0 to 4 assets, beside full bars."""
    rng = np.random.default_rng(seed)
    score, realised = panel(seed, t_len=400, n=11)
    score = np.round(score, 1).astype(dtype)  # ties
    score[rng.random(score.shape) < 0.2] = np.nan
    realised[rng.random(realised.shape) < 0.1] = np.nan
    for keep in range(5):  # bars with 0 .. 4 assets
        score[keep, keep:] = np.nan
    score[10, :] = 0.5  # one bar, all tied
    return score, realised


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_ranks_are_scipys_rankdata_exactly(dtype):
    score, _ = ragged_panel(2, dtype)
    np.testing.assert_array_equal(row_ranks(score), rankdata(score, axis=1, nan_policy="omit"))


def _old_rank_ic(score, realised):
    """The rank IC as computed before ``row_ranks`` (scipy's rankdata per call)."""
    both = np.isfinite(score) & np.isfinite(realised)
    score, realised = np.where(both, score, np.nan), np.where(both, realised, np.nan)
    count = both.sum(1)
    middle = (count[:, None] + 1) / 2
    rank_s = rankdata(score, axis=1, nan_policy="omit") - middle
    rank_r = rankdata(realised, axis=1, nan_policy="omit") - middle
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = np.nansum(rank_s * rank_r, axis=1)
        norm = np.sqrt(np.nansum(rank_s**2, axis=1) * np.nansum(rank_r**2, axis=1))
        return np.where((count >= 3) & (norm > 0), cov / norm, np.nan)


def _old_quantile_returns(score, realised, n_quantiles=5):
    """The quintile returns as computed before (every score against every edge at once)."""
    both = np.isfinite(score) & np.isfinite(realised)
    score, realised = np.where(both, score, np.nan), np.where(both, realised, np.nan)
    enough = both.sum(1) >= n_quantiles
    score = np.where(enough[:, None], score, np.nan)
    out = np.full((len(score), n_quantiles), np.nan)
    edges = row_nanquantiles(score[enough], np.arange(1, n_quantiles) / n_quantiles)
    group = np.full(score.shape, -1)
    group[enough] = (score[enough][:, :, None] > edges[:, None, :]).sum(-1)
    group[~np.isfinite(score)] = -1
    for q in range(n_quantiles):
        member = group == q
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, q] = np.where(member, realised, 0.0).sum(1) / member.sum(1)
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rank_ic_and_quintiles_are_the_old_computation_bit_for_bit(dtype):
    """The report's figures did not move with the faster ranks and quintile groups."""
    score, realised = ragged_panel(4, dtype)
    ic = rank_ic(score, realised)
    np.testing.assert_array_equal(ic, _old_rank_ic(score, realised))
    assert np.isnan(ic[:3]).all() and np.isnan(ic[10])
    quintiles = quantile_returns(score, realised)
    np.testing.assert_array_equal(quintiles, _old_quantile_returns(score, realised))
    assert np.isnan(quintiles[:5]).all() and np.isfinite(quintiles[20:]).any()


def test_rebalances_restart_at_each_test_window_and_step_by_the_period():
    rows = np.r_[10:20, 30:41]
    np.testing.assert_array_equal(rebalance_rows(rows, 4), [10, 14, 18, 30, 34, 38])
    np.testing.assert_array_equal(rebalance_rows(rows, 1), rows)


def test_a_zero_signal_long_short_book_loses_exactly_its_costs_on_both_legs():
    rng = np.random.default_rng(4)
    t_len, n = 60, 8
    cost = rng.uniform(0.001, 0.003, (t_len, n))
    net_long = -cost  # prices never move: a long nets minus its round trip
    score = rng.normal(size=(t_len, n))
    book = long_short_positions(score, net_long, cost, np.arange(t_len), 3, 2)
    assert book.long.sum(1).tolist() == [2] * len(book.rows)
    assert book.short.sum(1).tolist() == [2] * len(book.rows)
    opened = (book.long | book.short) & ~book.held_on  # a kept position pays no second trip
    paid = np.where(opened, cost[book.rows], 0.0).sum(1) / 4  # each position 1/(2k)
    assert book.held_on.any() and opened.any()  # both kinds are checked
    np.testing.assert_allclose(book.costs, paid)
    np.testing.assert_allclose(book.returns, -paid)
    np.testing.assert_allclose(
        book.short_returns, -np.where(book.short & ~book.held_on, cost[book.rows], 0).sum(1) / 4
    )
    np.testing.assert_allclose(
        book.held_on_costs, np.where(book.held_on, cost[book.rows], 0).sum(1) / 4
    )


def test_the_long_short_book_longs_the_top_and_shorts_the_bottom():
    score = np.array([[0.9, 0.1, 0.5, np.nan, 0.7, 0.3]])
    gross = np.array([[0.02, -0.01, 0.0, 0.5, 0.01, 0.03]])
    cost = np.full_like(gross, 0.002)
    book = long_short_positions(score, gross - cost, cost, np.array([0]), 1, 2)
    assert book.long[0].tolist() == [True, False, False, False, True, False]
    assert book.short[0].tolist() == [False, True, False, False, False, True]
    # long 0.02 + 0.01, short -(-0.01) - 0.03, four round trips, each position 1/4
    expected = (0.02 + 0.01 + 0.01 - 0.03 - 4 * 0.002) / 4
    assert book.returns[0] == pytest.approx(expected)
    small = long_short_positions(score, gross - cost, cost, np.array([0]), 1, 5)
    assert small.long.sum() == 2 and small.short.sum() == 2  # 5 scored coins: k = 2


def test_the_long_short_book_uses_no_bar_after_its_rebalance():
    """Moving prices after the last rebalance's hold changes nothing; and scrambling every
    score and return after a rebalance leaves that rebalance and those before unchanged."""
    rng = np.random.default_rng(5)
    t_len, n, hold = 120, 10, 6
    close = np.exp(np.cumsum(rng.normal(0, 0.01, (t_len, n)), axis=0))
    cost = np.full((t_len, n), 0.001)
    score = rng.normal(size=(t_len, n))
    rows = np.arange(100)
    day = np.arange(t_len) // 24

    def book(close, score):
        net = forward_return(close, hold) - cost
        return long_short_book(score, net, cost, rows, day, hold, 3, 24.0)

    base = book(close, score)
    last = rebalance_rows(rows, hold)[-1]
    moved = close.copy()
    moved[last + hold + 1 :] *= 1.5
    after = book(moved, score)
    np.testing.assert_array_equal(after.pop("daily_bps"), base.pop("daily_bps"))
    assert after == base

    net = forward_return(close, hold) - cost
    first = long_short_positions(score, net, cost, rows, hold, 3)
    cut = first.rows[8]
    other_score, other_net = score.copy(), net.copy()
    other_score[cut + 1 :] = rng.normal(size=other_score[cut + 1 :].shape)
    other_net[cut + 1 :] = rng.normal(size=other_net[cut + 1 :].shape)
    second = long_short_positions(other_score, other_net, cost, rows, hold, 3)
    np.testing.assert_array_equal(second.rows[:9], first.rows[:9])
    np.testing.assert_array_equal(second.long[:9], first.long[:9])
    np.testing.assert_array_equal(second.returns[:9], first.returns[:9])


def test_a_planted_score_makes_a_long_short_book_with_a_significant_profit():
    score, realised = panel(6, t_len=24 * 60, noise=1.0)
    cost = np.full_like(realised, 0.0005)
    day = np.arange(len(score)) // 24
    book = long_short_book(score, realised - cost, cost, np.arange(len(score)), day, 1, 3, 24)
    assert book["t_stat"] > 2 and book["sharpe"] > 1
    assert book["ci_low_bps"] > 0
    assert book["net_bps"] == pytest.approx(book["long_bps"] + book["short_bps"])
    assert len(book["daily_bps"]) == 60
    noise = np.random.default_rng(7).normal(size=score.shape)
    random = long_short_book(noise, realised - cost, cost, np.arange(len(score)), day, 1, 3, 24)
    assert random["net_bps"] < 0  # no signal: the costs


def test_book_config_checks_k_and_the_rebalance_period():
    assert BookConfig().horizon((1, 4, 24)) == 24
    assert BookConfig(rebalance=4).horizon((1, 4, 24)) == 4
    with pytest.raises(ConfigError, match="book.rebalance=5"):
        BookConfig(rebalance=5).horizon((1, 4, 24))
    with pytest.raises(ConfigError, match="book.k"):
        BookConfig(k=0).horizon((1,))


def test_a_book_whose_ranking_never_changes_holds_on_and_pays_one_round_trip_a_window():
    t_len, n = 40, 6
    score = np.tile(np.arange(n, dtype=float), (t_len, 1))  # the same ranking every bar
    cost = np.full((t_len, n), 0.002)
    net_long = np.zeros((t_len, n)) - cost
    rows = np.r_[0:20, 24:40]  # two test windows: the second starts afresh
    book = long_short_positions(score, net_long, cost, rows, 4, 2)
    np.testing.assert_array_equal(book.rows, [0, 4, 8, 12, 16, 24, 28, 32, 36])
    assert book.held_on.sum(1).tolist() == [0, 4, 4, 4, 4, 0, 4, 4, 4]
    summary = long_short_book(score, net_long, cost, rows, np.arange(t_len) // 8, 4, 2, 8)
    assert summary["turnover"] == pytest.approx(2 / 9)
    assert summary["net_bps"] == pytest.approx(-2 * 20.0)  # one round trip each window
    assert summary["cost_bps"] == pytest.approx(2 * 20.0)
    assert summary["net_bps_every_round_trip"] == pytest.approx(-9 * 20.0)
    assert summary["side_mean"] == 2 and summary["side_min"] == 2


def test_a_book_with_fewer_than_2k_eligible_coins_reports_the_sides_it_held():
    t_len = 12
    score = np.tile(np.arange(6, dtype=float), (t_len, 1))
    score[6:, 3:] = np.nan  # half the rebalances have 3 scored coins: one a side
    cost = np.full((t_len, 6), 0.002)
    summary = long_short_book(score, -cost, cost, np.arange(t_len), np.arange(t_len), 1, 5, 1)
    assert summary["k"] == 5
    assert summary["side_mean"] == pytest.approx(2.0) and summary["side_min"] == 1
