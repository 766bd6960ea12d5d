from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import binom
from sklearn.base import clone
from statsmodels.tsa.stattools import adfuller

from huracan.features.fracdiff import (
    FracDiff,
    StationaryFracDiff,
    adf_statistic,
    ffd,
    ffd_weights,
)

# The FFT path rounds each value with every input of its block, future ones included, at
# the 1e-16 level; causality is checked to well below anything a feature could notice.
ROUNDING = 1e-12


def random_walks(n_bars: int, n_assets: int, seed: int = 0) -> np.ndarray:
    """(T, N) log prices of random walks at very different price levels."""
    rng = np.random.default_rng(seed)
    levels = np.log(rng.uniform(0.01, 30_000, n_assets))
    return levels + np.cumsum(rng.normal(0, 0.01, (n_bars, n_assets)), axis=0)


def naive_ffd(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The definition, one bar at a time: NaN unless the whole window exists."""
    out = np.full(x.shape, np.nan)
    lags = np.arange(len(weights))
    for t in range(len(weights) - 1, len(x)):
        out[t] = weights @ x[t - lags]
    return out


@pytest.mark.parametrize("d", [0.05, 0.3, 0.5, 0.99, 1.5])
def test_weights_follow_the_closed_form_and_stop_at_the_threshold(d):
    weights = ffd_weights(d, threshold=1e-4)
    k = np.arange(len(weights))
    np.testing.assert_allclose(weights, (-1.0) ** k * binom(d, k), rtol=1e-12, atol=1e-15)
    assert np.abs(weights[-1]) >= 1e-4
    next_weight = -weights[-1] * (d - len(weights) + 1) / len(weights)
    assert abs(next_weight) < 1e-4


def test_weights_integer_orders_and_max_window():
    np.testing.assert_array_equal(ffd_weights(0.0), [1.0])
    np.testing.assert_array_equal(ffd_weights(1.0), [1.0, -1.0])
    np.testing.assert_array_equal(ffd_weights(2.0), [1.0, -2.0, 1.0])
    assert len(ffd_weights(0.4, max_window=50)) == 50
    assert len(ffd_weights(0.4, threshold=0.0, max_window=1000)) == 1000
    with pytest.raises(ValueError, match="max_window"):
        ffd_weights(0.4, threshold=0.0)
    with pytest.raises(ValueError, match="d must be >= 0"):
        ffd_weights(-0.1)
    with pytest.raises(ValueError, match="raise the threshold"):
        ffd_weights(0.01, threshold=1e-15)


@pytest.mark.parametrize("max_window", [7, None])  # direct filter and FFT paths
def test_ffd_equals_the_naive_loop_with_listings_gaps_and_delistings(max_window):
    x = random_walks(900, 6)
    x[:250, 1] = np.nan  # late listing
    x[600:, 2] = np.nan  # delisting
    x[400:403, 3] = np.nan  # outage
    x[:, 4] = np.nan  # never listed
    weights = ffd_weights(0.35, max_window=max_window)
    got = ffd(x, 0.35, max_window=max_window)
    want = naive_ffd(x, weights)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9, equal_nan=True)


def test_nan_during_each_assets_warm_up_and_after_gaps():
    x = random_walks(500, 3)
    x[:120, 1] = np.nan
    x[300:305, 2] = np.nan
    window = len(ffd_weights(0.6))
    out = ffd(x, 0.6)
    assert np.isnan(out[: window - 1]).all()
    assert np.isfinite(out[window - 1 :, 0]).all()
    assert (
        np.isnan(out[: 120 + window - 1, 1]).all() and np.isfinite(out[120 + window - 1 :, 1]).all()
    )
    assert (
        np.isnan(out[300 : 305 + window - 1, 2]).all()
        and np.isfinite(out[305 + window - 1 :, 2]).all()
    )
    # A late listing gives the same values as the series cut to its own life.
    np.testing.assert_allclose(out[120:, 1], ffd(x[120:, 1], 0.6), atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("window", [10, 100])
def test_matches_fracdiff_modern(window):
    fdiff = pytest.importorskip("fracdiff").fdiff
    x = random_walks(2000, 4)
    want = fdiff(x, 0.4, axis=0, window=window, mode="valid")
    got = ffd(x, 0.4, threshold=0.0, max_window=window)
    assert np.isnan(got[: window - 1]).all()
    np.testing.assert_allclose(got[window - 1 :], want, rtol=0, atol=1e-9)


def test_order_zero_is_identity_and_order_one_is_first_difference():
    x = random_walks(300, 3)
    np.testing.assert_allclose(ffd(x, 0.0), x, rtol=0, atol=1e-12)
    first_difference = ffd(x, 1.0)
    assert np.isnan(first_difference[0]).all()
    np.testing.assert_allclose(first_difference[1:], np.diff(x, axis=0), atol=1e-12)


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("lags", [0, 1, 3])
def test_vectorised_adf_equals_statsmodels(lags):
    rng = np.random.default_rng(3)
    x = np.column_stack(
        [
            random_walks(800, 1, seed=1)[:, 0],  # unit root, level far from 0
            rng.normal(size=800),  # white noise
            np.cumsum(rng.normal(size=800)) * 0.1 + rng.normal(size=800),  # in between
        ]
    )
    x[:150, 2] = np.nan  # listed late: tested on what it has
    stat, n_obs = adf_statistic(x, lags)
    for j, series in enumerate([x[:, 0], x[:, 1], x[150:, 2]]):
        want = adfuller(series, maxlag=lags, autolag=None, regression="c")
        assert stat[j] == pytest.approx(want[0], abs=1e-8)
        assert n_obs[j] == want[3]


def test_adf_of_degenerate_series_is_nan():
    x = np.column_stack([np.full(200, 3.0), np.r_[np.full(195, np.nan), np.arange(5.0)]])
    stat, _ = adf_statistic(x, 1)
    assert np.isnan(stat).all()


def test_chosen_order_is_small_when_stationary_and_larger_for_a_random_walk():
    rng = np.random.default_rng(4)
    n_bars = 3000
    noise = rng.normal(0, 0.01, (n_bars, 4))
    ar = np.zeros(n_bars)
    for t in range(1, n_bars):
        ar[t] = 0.5 * ar[t - 1] + noise[t, 0]
    walks = np.cumsum(noise[:, 1:], axis=0)
    x = np.column_stack([ar + 4.0, walks + 2.0])
    model = StationaryFracDiff(max_d=0.65).fit(x)
    assert model.d_[0] == 0.0 and model.stationary_[0]
    assert (model.d_[1:] >= 0.05).all() and (model.d_ <= 0.65).all()
    assert model.window_[0] == 1 and model.warmup_bars_[0] == 0
    np.testing.assert_array_equal(model.window_[1:], [len(ffd_weights(d)) for d in model.d_[1:]])
    assert (model.adf_pvalue_[model.stationary_] < 0.05).all()


def test_order_is_capped_at_max_d():
    x = random_walks(2000, 3, seed=5)
    model = StationaryFracDiff(max_d=0.02, step=0.01).fit(x)
    assert (model.d_ <= 0.02).all()
    assert (model.d_[~model.stationary_] == 0.02).all()


def test_transform_applies_each_assets_own_order():
    x = random_walks(3000, 5, seed=6)
    x[:, 0] = 3.0 + 0.01 * np.random.default_rng(6).normal(size=3000)  # stationary: d = 0
    model = StationaryFracDiff().fit(x)
    assert len(np.unique(model.d_)) > 1
    out = model.transform(x)
    for j, d in enumerate(model.d_):
        np.testing.assert_allclose(out[:, j], ffd(x[:, j], d), atol=1e-12, equal_nan=True)


def test_short_series_are_recorded_skips():
    x = random_walks(1500, 3, seed=7)
    x[:1350, 1] = np.nan  # 150 bars: shorter than the window of every d > 0
    x[:, 2] = np.nan
    frame = pd.DataFrame(x, columns=["BTC", "NEWCOIN", "DEAD"])
    model = StationaryFracDiff().fit(frame)
    assert set(model.skip_reasons_) == {"NEWCOIN", "DEAD"}
    assert "too short" in model.skip_reasons_["NEWCOIN"]
    assert np.isnan(model.d_[1:]).all() and (model.window_[1:] == 0).all()
    out = model.transform(frame)
    assert np.isnan(out[:, 1:]).all() and np.isfinite(out[-100:, 0]).all()

    fixed = FracDiff(d=0.4).fit(x)
    assert set(fixed.skip_reasons_) == {1, 2}
    assert f"{fixed.window_}-bar window" in fixed.skip_reasons_[1]


def test_bad_prices_name_the_asset():
    x = pd.DataFrame(random_walks(300, 2), columns=["BTC", "LUNA"])
    x.loc[200, "LUNA"] = -np.inf
    with pytest.raises(ValueError, match="LUNA"):
        StationaryFracDiff().fit(x)
    with pytest.raises(ValueError, match="shape"):
        FracDiff().fit(np.ones(10))


@pytest.mark.parametrize("estimator", [FracDiff(d=0.45), FracDiff(d=0.45, max_window=8)])
def test_fixed_order_estimator(estimator):
    x = random_walks(800, 4)
    model = clone(estimator)
    assert model.fit(x) is model
    assert model.warmup_bars_ == model.window_ - 1 == len(model.weights_) - 1
    np.testing.assert_array_equal(model.transform(x), ffd(x, 0.45, max_window=estimator.max_window))
    with pytest.raises(ValueError, match="fitted on 4"):
        model.transform(x[:, :3])


@pytest.mark.parametrize(
    "estimator", [FracDiff(d=0.4), FracDiff(d=0.4, max_window=10), StationaryFracDiff()]
)
def test_transform_is_causal(estimator):
    x = random_walks(2500, 5, seed=8)
    x[:900, 3] = np.nan
    model = clone(estimator).fit(x[:1500])
    t = 1999
    changed = x.copy()
    changed[t + 1 :] += np.random.default_rng(9).normal(0, 1, changed[t + 1 :].shape)
    changed[t + 50 :, 2] = np.nan
    full = model.transform(x)
    np.testing.assert_allclose(model.transform(changed)[: t + 1], full[: t + 1], atol=ROUNDING)
    np.testing.assert_allclose(model.transform(x[: t + 1]), full[: t + 1], atol=ROUNDING)


def test_fitted_order_ignores_data_after_the_training_window():
    x = random_walks(4000, 6, seed=10)
    n_train = 2500
    changed = x.copy()
    changed[n_train:] = random_walks(4000 - n_train, 6, seed=11)
    changed[n_train + 10 :, 1] = np.nan
    model = StationaryFracDiff().fit(x[:n_train])
    other = StationaryFracDiff().fit(changed[:n_train])
    np.testing.assert_array_equal(model.d_, other.d_)
    np.testing.assert_array_equal(model.adf_stat_, other.adf_stat_)
    assert StationaryFracDiff().fit(x).adf_stat_.tolist() != model.adf_stat_.tolist()


# 1 to 7 FFT blocks; numpy's FFT up to 256 taps (1,024-bar blocks), torch's beyond
@pytest.mark.parametrize("window", [11, 60, 300, 1100])
@pytest.mark.parametrize("with_gaps", [False, True])
def test_blocked_paths_equal_the_naive_loop_across_block_edges(window, with_gaps):
    x = random_walks(1700, 4, seed=12)
    if with_gaps:
        x[:333, 1] = np.nan
        x[900:905, 2] = np.nan
    weights = ffd_weights(0.45, threshold=0.0, max_window=window)
    got = ffd(x, 0.45, threshold=0.0, max_window=window)
    want = naive_ffd(x, weights)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9, equal_nan=True)
    # A window longer than the history leaves nothing.
    assert np.isnan(ffd(x[: window - 1], 0.45, threshold=0.0, max_window=window)).all()


@pytest.mark.parametrize("max_window", [8, 120])
def test_fit_transform_equals_fit_then_transform(max_window):
    x = random_walks(1000, 5, seed=13)
    x[:950, 1] = np.nan  # too short for the window
    x[:, 2] = np.nan
    x[400:410, 3] = np.nan
    frame = pd.DataFrame(x, columns=list("ABCDE"))
    once = FracDiff(d=0.4, max_window=max_window)
    out = once.fit_transform(frame)
    twice = FracDiff(d=0.4, max_window=max_window).fit(frame)
    np.testing.assert_array_equal(out, twice.transform(frame))
    assert once.skip_reasons_ == twice.skip_reasons_
    assert set(once.skip_reasons_) == ({"B", "C"} if max_window > 50 else {"C"})


def test_non_contiguous_and_float32_input_give_the_float64_values():
    x = random_walks(800, 6, seed=14)
    want = ffd(x, 0.4, threshold=0.0, max_window=50)
    fortran = np.asfortranarray(x)
    np.testing.assert_array_equal(FracDiff(0.4, 0.0, 50).fit_transform(fortran), want)
    np.testing.assert_allclose(ffd(x[:, ::2], 0.4, 0.0, 50), want[:, ::2], atol=1e-12)
    single = x.astype(np.float32)
    np.testing.assert_allclose(
        ffd(single, 0.4, 0.0, 50), ffd(single.astype(np.float64), 0.4, 0.0, 50), atol=0
    )
