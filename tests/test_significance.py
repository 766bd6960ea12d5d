"""Daily P&L, t-statistic, moving-block bootstrap and deflated Sharpe ratio."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from statsmodels.tsa.arima_process import ArmaProcess

from huracan.significance import (
    block_days,
    block_draws,
    bootstrap_expectancy_ci,
    daily_pnl,
    day_statistics,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    t_stat,
)


def test_daily_pnl_sums_each_day_and_counts_days_without_trades_as_zero():
    day = np.array([12, 10, 12, 10, 10])
    ret = np.array([0.01, 0.02, -0.03, 0.005, 0.001])
    assert np.allclose(daily_pnl(day, ret), [0.026, -0.02])
    assert np.allclose(daily_pnl(day, ret, days=np.arange(10, 14)), [0.026, 0.0, -0.02, 0.0])
    assert daily_pnl(day[:0], ret[:0], days=np.arange(3)).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="day 12"):
        daily_pnl(day, ret, days=np.array([10, 11]))


def test_t_stat_is_mean_over_standard_error_and_nan_without_spread():
    daily = np.array([0.01, 0.03, -0.01, 0.02])
    expected = daily.mean() / (daily.std(ddof=1) / 2.0)
    assert t_stat(daily) == pytest.approx(expected)
    assert np.isnan(t_stat(np.array([0.01])))
    assert np.isnan(t_stat(np.full(5, 0.01)))


def test_bootstrap_weights_days_by_their_trades():
    # day 0: one trade of +1; day 1: three trades of 0. Replicates: {0,0} -> 0,
    # {0,1} -> 1/4 (pooled; a mean of day means would say 1/2), {1,1} -> 0 or 1.
    day = np.array([0, 1, 1, 1])
    ret = np.array([1.0, 0.0, 0.0, 0.0])
    low, high = bootstrap_expectancy_ci(day, ret, n_boot=4000, alpha=0.9)  # 45%..55%
    assert low == high == pytest.approx(0.25)
    assert np.isnan(bootstrap_expectancy_ci(day[:0], ret[:0])).all()


def test_bootstrap_resamples_whole_days_so_correlated_trades_widen_the_interval():
    rng = np.random.default_rng(1)
    n_days, per_day = 200, 25
    day_effect = rng.normal(0.001, 0.01, n_days)
    day = np.repeat(np.arange(n_days), per_day)
    ret = day_effect[day] + rng.normal(0, 0.001, len(day))  # trades of a day move together
    low, high = bootstrap_expectancy_ci(day, ret, n_boot=4000, seed=3)
    # the circular block bootstrap's variance of a mean: the day means' autocovariances
    # within a block, Bartlett-weighted (trade-level resampling would be ~5x narrower)
    day_means = daily_pnl(day, ret) / per_day
    centred, block = day_means - day_means.mean(), block_days(n_days)
    variance = sum(
        (1 - abs(lag) / block) * (centred * np.roll(centred, lag)).mean()
        for lag in range(1 - block, block)
    )
    expected_width = 2 * norm.ppf(0.975) * np.sqrt(variance / n_days)
    assert high - low == pytest.approx(expected_width, rel=0.08)
    assert low < ret.mean() < high
    assert bootstrap_expectancy_ci(day, ret, seed=5) == bootstrap_expectancy_ci(day, ret, seed=5)


def test_block_length_keeps_the_longest_hold_and_grows_with_the_series():
    assert block_days(120) == 5  # ceil(120 ** (1/3)), one-day trades
    assert block_days(120, hold_days=1.0) == 5
    assert block_days(120, hold_days=6.5) == 8  # the 7 days a trade can touch, plus its entry day
    assert block_days(1000, hold_days=1.0) == 10
    assert block_days(10, hold_days=20.0) == 5  # at least two blocks a replicate
    assert block_days(2) == 1


def test_block_draws_are_runs_of_consecutive_days_that_fill_each_replicate():
    draws = block_draws(10, 4, 500, seed=0)
    assert draws.shape == (500, 10) and (draws.sum(1) == 10).all()
    assert np.allclose(draws.mean(0), 1.0, atol=0.15)  # circular: every day drawn as often
    one = block_draws(10, 4, 1, seed=3)[0]
    drawn = np.flatnonzero(one)
    # three blocks (4, 4 and 2 days) cover at most 10 days, each block a run (wrapping)
    assert len(drawn) <= 10 and set(np.unique(one)) <= {0, 1, 2, 3}
    assert (block_draws(10, 1, 200, seed=1).max(1) >= 2).any()  # single days: repeats


def test_block_interval_covers_the_true_mean_of_autocorrelated_daily_pnl():
    """400 series of 120 days, AR(1) noise with phi=0.6 around a known mean: the nominal
    95 % interval of single days covers the mean in ~70 % of series, the moving-block one
    in ~86 % (bench/bench_bootstrap.py prints the whole table)."""
    n_days, series, mean, phi = 120, 400, 0.001, 0.6
    rng = np.random.default_rng(7)
    noise = ArmaProcess(ar=[1, -phi]).generate_sample(
        (n_days, series), scale=0.01 * np.sqrt(1 - phi**2), distrvs=rng.standard_normal
    )
    daily = mean + noise  # one trade a day: expectancy is the daily mean
    _, low, high = day_statistics(
        np.arange(n_days), daily, np.ones_like(daily), 1000, seed=1, hold_days=1.0
    )
    blocks = ((low <= mean) & (mean <= high)).mean()
    single = block_draws(n_days, 1, 1000, seed=1) @ daily / n_days
    low, high = np.percentile(single, [2.5, 97.5], axis=0)
    single_days = ((low <= mean) & (mean <= high)).mean()
    assert blocks >= 0.80, blocks
    assert single_days <= 0.78, single_days
    assert blocks >= single_days + 0.08


def test_block_interval_keeps_its_coverage_on_independent_days():
    n_days, series, mean = 120, 400, 0.001
    daily = mean + np.random.default_rng(8).normal(0, 0.01, (n_days, series))
    _, low, high = day_statistics(np.arange(n_days), daily, np.ones_like(daily), 1000, seed=2)
    assert ((low <= mean) & (mean <= high)).mean() >= 0.90


def trials_with_variance(n_trials: int, variance: float, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=n_trials)
    return (x - x.mean()) / x.std(ddof=1) * np.sqrt(variance)


def test_deflated_sharpe_matches_the_papers_numerical_example():
    # Bailey & López de Prado (2014), section 4: 100 trials, V[SR] = 0.5 (annual),
    # best SR 2.5 (annual), 1250 daily observations, skew -3, kurtosis 10:
    # E[max SR] = 0.1132 per day and DSR = 0.9004.
    trials = trials_with_variance(100, 0.5 / 250)
    assert expected_max_sharpe(trials) == pytest.approx(0.1132, abs=1e-4)
    dsr = deflated_sharpe_ratio(2.5 / np.sqrt(250), trials, 1250, skew=-3.0, kurtosis=10.0)
    assert dsr == pytest.approx(0.9004, abs=1e-4)


def test_deflated_sharpe_by_hand():
    trials = np.array([0.02, 0.05, -0.01, 0.03])
    sr, n_obs = 0.05, 500
    gamma = 0.5772156649015329
    sr0 = trials.std(ddof=1) * (
        (1 - gamma) * norm.ppf(1 - 1 / 4) + gamma * norm.ppf(1 - 1 / (4 * np.e))
    )
    expected = norm.cdf((sr - sr0) * np.sqrt(n_obs - 1) / np.sqrt(1 + 0.5 * sr + 1.5 * sr**2))
    assert deflated_sharpe_ratio(sr, trials, n_obs, skew=-0.5, kurtosis=7.0) == pytest.approx(
        expected
    )


def test_more_trials_and_fatter_tails_deflate_more():
    sr = 0.08
    dsr = [
        deflated_sharpe_ratio(sr, trials_with_variance(n, 0.002), 400) for n in (2, 10, 100, 1000)
    ]
    assert all(a > b for a, b in zip(dsr, dsr[1:], strict=False))
    trials = trials_with_variance(20, 0.0005)  # SR0 ~ 0.04 < sr: tails lower the DSR
    assert deflated_sharpe_ratio(sr, trials, 400) > 0.5
    assert deflated_sharpe_ratio(sr, trials, 400, kurtosis=3.0) > deflated_sharpe_ratio(
        sr, trials, 400, kurtosis=12.0
    )
    assert deflated_sharpe_ratio(sr, trials, 400) < deflated_sharpe_ratio(sr, trials, 4000)


def test_one_trial_is_the_probabilistic_sharpe_against_zero_and_bad_inputs_are_nan():
    assert deflated_sharpe_ratio(0.05, np.array([0.05]), 101) == pytest.approx(
        norm.cdf(0.05 * 10 / np.sqrt(1 + 0.5 * 0.05**2))
    )
    # an untraded trial (NaN) still counts: 3 trials, variance from the 2 finite ones
    with_nan = deflated_sharpe_ratio(0.05, np.array([0.05, 0.01, np.nan]), 101)
    assert with_nan < deflated_sharpe_ratio(0.05, np.array([0.05, 0.01]), 101)
    assert np.isnan(deflated_sharpe_ratio(np.nan, np.array([0.1, 0.2]), 100))
    assert np.isnan(deflated_sharpe_ratio(0.1, np.array([0.1, 0.2]), 1))
    assert np.isnan(deflated_sharpe_ratio(2.0, np.array([0.1, 0.2]), 100, skew=5.0))
