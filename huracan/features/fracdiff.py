"""Fractional differentiation with a fixed-width window (FFD), and the order d that makes
each asset's log price stationary.

FFD keeps as much memory of the price level as stationarity allows (López de Prado,
*Advances in Financial Machine Learning*, ch. 5): ``y[t] = sum_k w[k] * x[t - k]`` over a
window of weights cut where they fall below a tolerance. Everything here is causal, so a
value at bar t depends only on bars <= t, and works on all assets of a (T, N) panel at once.

Longer than most modules on purpose: the weights, the vectorised FFD kernels, the
choice of d by the ADF test and the scikit-learn estimator are one algorithm.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft
from scipy.signal import lfilter
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from statsmodels.tsa.adfvalues import mackinnonp

from huracan.features.cross_section import to_bars

# Up to this many taps a direct filter beats FFT convolution (measured on 400 x 35,000
# log prices, 2 cores: lfilter 0.04 s vs FFT 0.09 s at 8 taps, 0.13 s vs 0.09 s at 12).
_DIRECT_MAX_WINDOW = 10
# Up to this FFT length numpy's FFT (into reused buffers, assets split between threads)
# beats torch's in overlap-save (400 x 35,040 log prices, 2 cores: 0.062 to 0.069 s
# against 0.089 to 0.106 s at window 100, a 1,024-bar block, bench_fracdiff.py; at
# window 1,000 torch's is faster, 0.085 s against 0.10 s).
_NUMPY_MAX_BLOCK = 1024
# Longer than any price history; a threshold that needs more is a mistake.
_LONGEST_WINDOW = 2**22

_adf_pvalue = np.vectorize(lambda stat: mackinnonp(stat, regression="c", N=1), otypes=[float])


def ffd_weights(d: float, threshold: float = 1e-4, max_window: int | None = None) -> np.ndarray:
    """Weights of the fixed-width fractional difference of order ``d``.

    ``w[0] = 1`` and ``w[k] = -w[k-1] * (d - k + 1) / k``, cut before the first weight whose
    magnitude is below ``threshold``, and at ``max_window`` weights if that comes first.

    Args:
        d: order of differentiation, >= 0; 0 is the identity, 1 the first difference.
        threshold: smallest weight magnitude kept, in [0, 1); 0 needs ``max_window``.
        max_window: most weights kept; None leaves the window to ``threshold``.

    Returns:
        (window,) weights, ``w[k]`` applying to the value k bars back.
    """
    if not d >= 0:
        raise ValueError(f"fractional order d must be >= 0, got {d}")
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if max_window is None and threshold == 0:
        raise ValueError("threshold=0 keeps every weight: set max_window as well")
    if max_window is not None and max_window < 1:
        raise ValueError(f"max_window must be >= 1, got {max_window}")
    size = max_window or 1024
    while True:
        k = np.arange(1, size)
        weights = np.concatenate([[1.0], np.cumprod((k - 1 - d) / k)])
        below = np.flatnonzero(np.abs(weights) < threshold)
        if below.size:
            return weights[: below[0]]
        if max_window is not None:
            return weights
        if size >= _LONGEST_WINDOW:
            raise ValueError(
                f"FFD weights of d={d} stay above threshold={threshold} for {size} bars: "
                "raise the threshold or set max_window"
            )
        size *= 4


def ffd(
    x: np.ndarray, d: float, threshold: float = 1e-4, max_window: int | None = None
) -> np.ndarray:
    """Fixed-width fractional difference of every column of ``x``.

    Args:
        x: (T,) or (T, N) log prices, NaN where an asset has no bar.
        d: order of differentiation, see :func:`ffd_weights`.
        threshold: weight tolerance, see :func:`ffd_weights`.
        max_window: most weights, see :func:`ffd_weights`.

    Returns:
        Array shaped like ``x``; NaN wherever the window of the last ``window`` bars is
        incomplete: the first ``window - 1`` bars of each asset's life, and after any gap.
    """
    x = np.asarray(x, dtype=np.float64)
    weights = ffd_weights(d, threshold, max_window)
    if x.ndim == 1:
        return _ffd_panel(x[:, None], weights)[:, 0]
    return _ffd_panel(x, weights)


def adf_statistic(x: np.ndarray, lags: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Augmented Dickey-Fuller t-statistic with a constant and a fixed lag order.

    The same statistic as ``statsmodels.tsa.stattools.adfuller(x, maxlag=lags,
    autolag=None, regression="c")[0]``, for all columns in one batched regression. Rows
    with a NaN among the regression's values are left out, so a series listed late or with
    gaps is tested on what it has.

    Args:
        x: (T,) or (T, N) series.
        lags: lagged differences in the regression.

    Returns:
        ``(statistic, n_obs)``, each shaped ``x.shape[1:]``: NaN statistic where the
        regression is degenerate (too few rows, a constant series).
    """
    x = np.asarray(x, dtype=np.float64)
    if lags < 0:
        raise ValueError(f"ADF lags must be >= 0, got {lags}")
    stat, n_obs = _adf_series(_to_series(x.reshape(len(x), -1)), lags)
    return stat.reshape(x.shape[1:]), n_obs.reshape(x.shape[1:])


class FracDiff(TransformerMixin, BaseEstimator):
    """Fixed-width fractional difference of order ``d``, the same for every asset.

    Args:
        d: order of differentiation, >= 0.
        threshold: smallest weight magnitude kept.
        max_window: most weights kept; None leaves the window to ``threshold``.

    Attributes:
        weights_: (window_,) FFD weights.
        window_: bars each value uses.
        warmup_bars_: bars lost at the start of each asset's life (``window_ - 1``).
        skip_reasons_: column (name, or index for arrays) -> why the fitting data give it
            no value at all (shorter than the window, or no gap-free window).
        n_features_in_: assets seen in fit.
    """

    def __init__(self, d: float = 0.4, threshold: float = 1e-4, max_window: int | None = None):
        self.d = d
        self.threshold = threshold
        self.max_window = max_window

    def fit(self, X: np.ndarray, y: object = None) -> FracDiff:
        """Computes the weights and records assets too short for the window.

        Args:
            X: (T, N) log prices (array or DataFrame), NaN where an asset has no bar.
            y: ignored.
        """
        panel, names = _check_prices(X)
        self._fit_weights(panel)
        missing = np.isnan(panel)
        self._record_skips(panel, names, _complete_windows(missing, self.window_).any(axis=0))
        return self

    def fit_transform(self, X: np.ndarray, y: object = None) -> np.ndarray:
        """``fit(X).transform(X)`` with one pass over X: the skips are read off the output.

        Args:
            X: (T, N) log prices (array or DataFrame), NaN where an asset has no bar.
            y: ignored.

        Returns:
            (T, N) FFD series, as :meth:`transform` gives.
        """
        panel, names = _check_prices(X)
        self._fit_weights(panel)
        out = _ffd_panel(panel, self.weights_)
        # Finite prices give a finite value exactly where the window is complete.
        complete = ~np.isnan(out[-1])
        if not complete.all():
            complete[~complete] = ~np.isnan(out[:, ~complete]).all(axis=0)
        self._record_skips(panel, names, complete)
        return out

    def _fit_weights(self, panel: np.ndarray) -> None:
        self.weights_ = ffd_weights(self.d, self.threshold, self.max_window)
        self.window_ = len(self.weights_)
        self.warmup_bars_ = self.window_ - 1
        self.n_features_in_ = panel.shape[1]

    def _record_skips(self, panel: np.ndarray, names: list[Hashable], complete: np.ndarray) -> None:
        skipped = np.flatnonzero(~complete)
        n_bars = (~np.isnan(panel[:, skipped])).sum(axis=0)
        self.skip_reasons_ = {
            names[j]: f"{n} bars hold no gap-free {self.window_}-bar window"
            for j, n in zip(skipped, n_bars, strict=True)
        }

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Fractionally differences each column; causal, so row t uses rows <= t only.

        Args:
            X: (T, N) log prices with the assets of the fitting data.

        Returns:
            (T, N) FFD series, NaN during warm-up and wherever the window has a gap.
        """
        check_is_fitted(self)
        panel, _ = _check_prices(X, self.n_features_in_)
        return _ffd_panel(panel, self.weights_)


class StationaryFracDiff(TransformerMixin, BaseEstimator):
    """FFD with, per asset, the smallest order d that makes its log price stationary.

    ``fit`` walks the grid ``0, step, 2 step, ..., max_d`` and gives each asset the first d
    whose FFD series rejects a unit root (ADF with a constant and ``adf_lags`` lags,
    MacKinnon p-value below ``significance``), using only the rows it is given. An asset
    still non-stationary at ``max_d`` keeps ``max_d`` (``stationary_`` is False). An asset
    with fewer than ``min_obs`` ADF observations at a d it must try is skipped: d_ is NaN,
    its output is NaN, and ``skip_reasons_`` says why.

    Args:
        max_d: largest order tried, and the cap on d_.
        step: spacing of the grid of orders.
        threshold: smallest FFD weight magnitude kept.
        max_window: most FFD weights kept; None leaves the window to ``threshold``.
        adf_lags: lagged differences in the ADF regression (fixed, no search).
        significance: p-value below which the unit root is rejected.
        min_obs: fewest ADF observations an asset needs.

    Attributes:
        d_: (N,) chosen order per asset, NaN if skipped.
        window_: (N,) FFD window length per asset, 0 if skipped.
        warmup_bars_: (N,) bars lost at the start of each asset's life.
        adf_stat_: (N,) ADF statistic of the training FFD series at d_.
        adf_pvalue_: (N,) its MacKinnon p-value.
        stationary_: (N,) whether the unit root was rejected at d_.
        skip_reasons_: column (name, or index for arrays) -> why it was skipped.
        skip_bars_: column -> (bars it has, bars its ADF test needs) where it was skipped:
            the FFD window, ``adf_lags`` and ``min_obs`` observations, at the ``d`` tried.
        n_features_in_: assets seen in fit.
    """

    def __init__(
        self,
        max_d: float = 0.65,
        step: float = 0.05,
        threshold: float = 1e-4,
        max_window: int | None = None,
        adf_lags: int = 1,
        significance: float = 0.05,
        min_obs: int = 100,
    ):
        self.max_d = max_d
        self.step = step
        self.threshold = threshold
        self.max_window = max_window
        self.adf_lags = adf_lags
        self.significance = significance
        self.min_obs = min_obs

    def fit(self, X: np.ndarray, y: object = None) -> StationaryFracDiff:
        """Chooses d per asset on the training window.

        Args:
            X: (T, N) training log prices (array or DataFrame), NaN where no bar.
            y: ignored.
        """
        panel, names = _check_prices(X)
        series = _to_series(panel)
        if not self.max_d >= 0 or not self.step > 0:
            raise ValueError(f"need max_d >= 0 and step > 0, got {self.max_d}, {self.step}")
        if not 0 < self.significance < 1:
            raise ValueError(f"significance must be in (0, 1), got {self.significance}")
        grid = np.unique(np.round(np.append(np.arange(0.0, self.max_d, self.step), self.max_d), 12))
        n_assets = len(series)
        n_bars = (~np.isnan(series)).sum(axis=1)
        self.d_ = np.full(n_assets, np.nan)
        self.adf_stat_ = np.full(n_assets, np.nan)
        self.adf_pvalue_ = np.full(n_assets, np.nan)
        self.skip_reasons_: dict[Hashable, str] = {}
        self.skip_bars_: dict[Hashable, tuple[int, int]] = {}
        undecided = np.ones(n_assets, dtype=bool)
        for d in grid:
            assets = np.flatnonzero(undecided)
            if not assets.size:
                break
            weights = ffd_weights(d, self.threshold, self.max_window)
            # (n, T) rows seen as a (T, n) panel: the output's transpose is (n, T) rows again.
            filtered = _ffd_panel(series[assets].T, weights).T
            stat, n_obs = _adf_series(filtered, self.adf_lags)
            short = n_obs < self.min_obs
            for j, n in zip(assets[short], n_obs[short], strict=True):
                # contiguous bars give (bars - window - lags) observations; gaps lose more
                needed = max(len(weights) + self.adf_lags, n_bars[j] - n) + self.min_obs
                self.skip_bars_[names[j]] = (int(n_bars[j]), int(needed))
                self.skip_reasons_[names[j]] = (
                    f"too short for the ADF test at d={d:g}: {n_bars[j]} bars leave {n} "
                    f"observations after the {len(weights)}-bar window, {self.min_obs} needed"
                )
            pvalue = _adf_pvalue(stat)
            chosen = ~short & ((pvalue < self.significance) | (d == grid[-1]))
            self.d_[assets[chosen]] = d
            self.adf_stat_[assets[chosen]] = stat[chosen]
            self.adf_pvalue_[assets[chosen]] = pvalue[chosen]
            undecided[assets[short | chosen]] = False
        self.stationary_ = self.adf_pvalue_ < self.significance
        self.window_ = np.zeros(n_assets, dtype=int)
        for d in np.unique(self.d_[~np.isnan(self.d_)]):
            self.window_[self.d_ == d] = len(ffd_weights(d, self.threshold, self.max_window))
        self.warmup_bars_ = np.maximum(self.window_ - 1, 0)
        self.n_features_in_ = n_assets
        return self

    def with_orders(self, d: Sequence[float | None]) -> StationaryFracDiff:
        """Takes orders chosen earlier (one per asset, None for a skipped one) as fitted.

        Serving a model rebuilds its FFD from the stored order: the window follows from d
        and this estimator's ``threshold`` and ``max_window``, as in ``fit``.
        """
        self.d_ = np.array([np.nan if v is None else float(v) for v in d])
        self.window_ = np.zeros(len(self.d_), dtype=int)
        for order in np.unique(self.d_[~np.isnan(self.d_)]):
            self.window_[self.d_ == order] = len(
                ffd_weights(order, self.threshold, self.max_window)
            )
        self.warmup_bars_ = np.maximum(self.window_ - 1, 0)
        self.n_features_in_ = len(self.d_)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Applies each asset's own d_ and window; causal, so row t uses rows <= t only.

        Args:
            X: (T, N) log prices with the assets of the fitting data.

        Returns:
            (T, N) FFD series, NaN during each asset's warm-up, after gaps, and for
            skipped assets.
        """
        check_is_fitted(self)
        panel, _ = _check_prices(X, self.n_features_in_)
        out = np.full(panel.shape, np.nan)
        for d in np.unique(self.d_[~np.isnan(self.d_)]):
            cols = self.d_ == d
            weights = ffd_weights(d, self.threshold, self.max_window)
            out[:, cols] = _ffd_panel(panel[:, cols], weights)
        return out


def for_features(features: Mapping, bar_seconds: float) -> StationaryFracDiff:
    """The FFD estimator of a ``features`` config on bars of ``bar_seconds`` seconds.

    The weight tolerance alone keeps 117 (d=0.65) to 527 (d=0.15) weights whatever the bar
    (``d`` on its 0.05 grid; 1 at d=0, 282 at d=0.4): 22 days of hourly bars and 88 of 4h
    ones, but a year and a half of daily ones, longer than a daily coin's training window,
    so that its ADF test has no observations left. ``fracdiff_max_window``, a duration
    (``90d``), caps the window in time; it binds on bars of 5 hours and longer (6h: 360
    bars, 12h: 180); hourly and 4h windows never reach 90 days, so there it changes
    nothing. A config
    without the key (a model stored before it) keeps the tolerance's window.

    Raises:
        ConfigError: ``fracdiff_max_window`` is not a duration of at least one bar.
    """
    cap = features.get("fracdiff_max_window")
    max_window = None if cap is None else to_bars(cap, bar_seconds, "features.fracdiff_max_window")
    return StationaryFracDiff(max_d=features["max_d"], max_window=max_window)


def _to_series(panel: np.ndarray) -> np.ndarray:
    """(T, N) -> (N, T) C-contiguous: the ADF regression runs along each asset's own memory."""
    return np.ascontiguousarray(panel.T)


def _block_size(window: int) -> int:
    """FFT length of one overlap-save block for a ``window``-tap filter."""
    # 4 windows per block, at least 1,024 bars, was fastest from 100 to 1,000 taps on
    # 400 x 35,040 (2 cores): a block of 400 assets then stays in cache, where one FFT over
    # all 35,040 bars does not.
    return scipy.fft.next_fast_len(max(4 * window, 1024), real=True)


def _ffd_panel(panel: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(T, N) causal convolution with ``weights`` along time, NaN where the window is incomplete."""
    if not panel.size:
        return np.empty_like(panel)
    if len(weights) <= _DIRECT_MAX_WINDOW:
        return _direct_filter(panel, weights)
    return _overlap_save(panel, weights)


def _direct_filter(panel: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """:func:`_ffd_panel` for a few taps: one ``lfilter`` over the whole panel."""
    window = len(weights)
    level = _first_prices(panel)
    centred = panel - level
    missing = np.isnan(centred)
    centred[missing] = 0.0
    out = lfilter(weights, [1.0], centred, axis=0)
    out += level * weights.sum()
    np.copyto(out, np.nan, where=~_complete_windows(missing, window))
    return out


def _first_prices(panel: np.ndarray) -> np.ndarray:
    """(N,) each column's first non-NaN value, 0 for an all-NaN column."""
    # Filtering the distance to each asset's first price, not the price, keeps rounding
    # small; the first price is known from listing on, so this stays causal.
    level = panel[0].copy()
    unlisted = np.flatnonzero(np.isnan(level))
    if unlisted.size:
        first = np.argmax(~np.isnan(panel[:, unlisted]), axis=0)
        level[unlisted] = np.nan_to_num(panel[first, unlisted])
    return level


def _overlap_save(panel: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """:func:`_ffd_panel` by FFT overlap-save, one cache-sized block of bars at a time.

    Each block is read, transformed and written while in cache, so the panel is read once
    and the output written once. Blocks of up to :data:`_NUMPY_MAX_BLOCK` bars go through
    numpy's FFT into reused buffers, the assets split among the threads wide work gets;
    longer ones through torch's FFT (MKL, on torch's threads), which is faster there but
    returns a block column-major, so writing it back transposes it, which costs more than
    the FFT itself while blocks are short. The output is a numpy allocation (huge pages,
    so its first write does not fault page by page).
    """
    from huracan.threads import wide_workers

    size = _block_size(len(weights))
    out = np.empty_like(panel)
    if size > _NUMPY_MAX_BLOCK:
        _save_blocks(panel, weights, size, out, _torch_convolver(weights, size))
    else:
        n_parts = min(wide_workers(), panel.shape[1])
        bounds = np.linspace(0, panel.shape[1], n_parts + 1).astype(int)
        parts = [slice(bounds[i], bounds[i + 1]) for i in range(n_parts)]

        def run(cols: slice) -> None:
            convolve = _numpy_convolver(weights, size, cols.stop - cols.start)
            _save_blocks(panel[:, cols], weights, size, out[:, cols], convolve)

        if len(parts) == 1:
            run(parts[0])
        else:  # numpy's FFT releases the GIL
            with ThreadPoolExecutor(len(parts)) as pool:
                list(pool.map(run, parts))
    out[: len(weights) - 1] = np.nan
    return out


def _save_blocks(panel: np.ndarray, weights: np.ndarray, size: int, out: np.ndarray, convolve):
    """Fills (T, k) ``out`` block by block with ``convolve`` (see :func:`_numpy_convolver`).

    A NaN among a column's bars makes that column's whole block result NaN (every FFT
    output mixes every input), which is how gaps are found without a pass of their own:
    only those columns are transformed again, NaN zeroed, and masked where a window holds
    one.
    """
    n_bars = len(panel)
    window = len(weights)
    step = size - window + 1
    for start in range(0, n_bars, step):
        # Output bars [start, stop) need input bars [lo, stop).
        stop = min(start + step, n_bars)
        lo = max(start - window + 1, 0)
        convolve(panel[lo:stop], start - lo, out[start:stop])
        gappy = np.flatnonzero(np.isnan(out[start]))
        if gappy.size:
            bars = panel[lo:stop, gappy]
            missing = np.isnan(bars)
            listed = ~missing.all(axis=0)  # a coin not yet listed stays NaN throughout
            gappy, bars, missing = gappy[listed], bars[:, listed], missing[:, listed]
        if gappy.size:
            bars[missing] = 0.0
            values = np.empty((stop - start, gappy.size))
            convolve(bars, start - lo, values)
            values[_gaps_in_window(missing, window, start - lo, stop - start)] = np.nan
            out[start:stop, gappy] = values


def _numpy_convolver(weights: np.ndarray, size: int, width: int):
    """``convolve(bars, first, dest)``: writes rows ``first, first + 1, ...`` of the
    length-``size`` circular convolution of (B, k) ``bars`` with ``weights`` into (n, k)
    ``dest``; the transforms of ``width`` columns go into buffers made once.

    Bars placed at the start of a zero-padded block: bar ``first + i`` comes out at row
    ``first + i``; rows before ``window - 1`` wrap around, and only the first block has
    such output bars, which are NaN anyway.
    """
    spectrum_w = np.fft.rfft(weights, n=size)[:, None]
    spectrum = np.empty((size // 2 + 1, width), dtype=np.complex128)
    result = np.empty((size, width))

    def convolve(bars: np.ndarray, first: int, dest: np.ndarray) -> None:
        k = bars.shape[1]
        spec = spectrum if k == width else np.empty((size // 2 + 1, k), dtype=np.complex128)
        res = result if k == width else np.empty((size, k))
        np.fft.rfft(bars, n=size, axis=0, out=spec)
        spec *= spectrum_w
        np.fft.irfft(spec, n=size, axis=0, out=res)
        dest[...] = res[first : first + len(dest)]

    return convolve


def _torch_convolver(weights: np.ndarray, size: int):
    """:func:`_numpy_convolver` with torch's FFT."""
    import torch  # the features are usable without loading torch until a long filter runs

    spectrum_w = torch.fft.rfft(torch.from_numpy(weights), n=size)[:, None]

    def convolve(bars: np.ndarray, first: int, dest: np.ndarray) -> None:
        if any(stride < 0 for stride in bars.strides) or not bars.flags.writeable:
            bars = bars.copy()  # torch takes neither; nothing is written to it here
        spectrum = torch.fft.rfft(torch.from_numpy(bars), n=size, dim=0)
        spectrum *= spectrum_w
        result = torch.fft.irfft(spectrum, n=size, dim=0)
        torch.from_numpy(dest).copy_(result[first : first + len(dest)])

    return convolve


def _gaps_in_window(missing: np.ndarray, window: int, first: int, n_out: int) -> np.ndarray:
    """(n_out, k) True where output bar ``first + i`` has a missing bar among its last
    ``window`` (``missing`` is (bars, k); bars before row 0 count as present)."""
    seen = np.zeros((len(missing) + 1, missing.shape[1]), dtype=np.int32)
    np.cumsum(missing, axis=0, out=seen[1:])
    rows = np.arange(first, first + n_out)
    return seen[rows + 1] != seen[np.maximum(rows + 1 - window, 0)]


def _complete_windows(missing: np.ndarray, window: int) -> np.ndarray:
    """(T, N) bool: the last ``window`` bars up to t all exist (``missing`` is (T, N))."""
    n_bars = missing.shape[0]
    gaps = np.zeros((n_bars + 1, *missing.shape[1:]), dtype=np.int32)
    np.cumsum(missing, axis=0, out=gaps[1:])
    complete = np.zeros(missing.shape, dtype=bool)
    if n_bars >= window:
        complete[window - 1 :] = gaps[window:] == gaps[: n_bars - window + 1]
    return complete


def _adf_series(series: np.ndarray, lags: int) -> tuple[np.ndarray, np.ndarray]:
    """ADF statistic and observations of each row of (N, T) ``series``."""
    diff = np.diff(series, axis=1)
    n_rows = max(diff.shape[1] - lags, 0)
    lagged_diffs = [diff[:, lags - j : lags - j + n_rows] for j in range(1, lags + 1)]
    # (N, K + 1, R): lagged level, lagged differences, and the difference they explain.
    data = np.stack([series[:, lags : lags + n_rows], *lagged_diffs, diff[:, lags:]], axis=1)
    rows = np.isfinite(data).all(axis=1)
    n_obs = rows.sum(axis=1)
    data[~np.broadcast_to(rows[:, None, :], data.shape)] = 0.0
    # The constant is absorbed by centring on each asset's own rows (Frisch-Waugh).
    data -= data.sum(axis=2, keepdims=True) / np.maximum(n_obs, 1)[:, None, None]
    data *= rows[:, None, :]
    moments = data @ data.transpose(0, 2, 1)
    gram, cross, total = moments[:, :-1, :-1], moments[:, :-1, -1], moments[:, -1, -1]
    n_coef = lags + 2  # with the constant
    scale = np.sqrt(np.diagonal(gram, axis1=1, axis2=2))
    ok = (n_obs > n_coef) & (scale > 0).all(axis=1)
    scale = np.where(ok[:, None], scale, 1.0)
    # Solving the unit-diagonal system keeps the level's large variance from hurting.
    corr = gram / (scale[:, :, None] * scale[:, None, :])
    corr[~ok] = np.eye(lags + 1)
    ok &= np.linalg.det(corr) > 1e-12
    corr[~ok] = np.eye(lags + 1)
    inverse = np.linalg.inv(corr)
    coef = np.einsum("nkj,nj->nk", inverse, cross / scale)
    residual_ss = total - (coef * cross / scale).sum(axis=1)
    variance = residual_ss / np.maximum(n_obs - n_coef, 1)
    ok &= variance > 0
    stat = coef[:, 0] / np.sqrt(np.where(ok, variance, 1.0) * inverse[:, 0, 0])
    return np.where(ok, stat, np.nan), n_obs


def _check_prices(X: object, n_assets: int | None = None) -> tuple[np.ndarray, list[Hashable]]:
    """(T, N) prices as a float64 array (no copy when they are one), and the column keys."""
    names = list(X.columns) if hasattr(X, "columns") else None
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or not X.size:
        raise ValueError(f"expected (T, N) log prices, got an array of shape {X.shape}")
    names = names or list(range(X.shape[1]))
    # One read of X (NaN marks a missing bar, so most panels hold some); the columns are
    # searched only when there is an inf.
    infinite = np.flatnonzero(np.isinf(X).any(axis=0)) if np.isinf(X).any() else []
    if len(infinite):
        raise ValueError(f"infinite log prices (a price <= 0?) in {names[infinite[0]]!r}")
    if n_assets is not None and X.shape[1] != n_assets:
        raise ValueError(f"X has {X.shape[1]} assets, but the estimator was fitted on {n_assets}")
    return X, names
