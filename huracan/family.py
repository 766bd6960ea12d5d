"""The family-wise gate: a head's margin widened for its search over horizons and cuts.

A head picks the best of about 1,000-5,000 (horizon x cut) candidates on its validation
slice. Testing only the winner at a preset ``z`` (``thresholds.gate=search``, the rule
before) lets noise through: on markets without an edge a head traded in about a third to
a half of its folds (``bench/bench_gate.py``). A family-wise gate gives each head the
critical value q of its whole search: the ``1 - alpha`` quantile of the largest
``t_c = S_c / se_c`` (validation profit over its daily standard error) over every
candidate c of every horizon, under a null drawn by resampling. A candidate may trade
only where ``S_c - q * se_c > 0`` (and never with q below ``thresholds.z``); under the
null a head trades with probability at most ``alpha`` (``thresholds.family_alpha``).

- ``permutation``: the null is "the head's ranking carries no information". Its
  validation samples, days and returns stay as they are and the order in which it would
  add them is shuffled; the observed search counts as one more draw, so the level is
  exact whatever the tails, the number of days or the market's drift in the window
  (Westfall-Young's max-t). Trading every sample is the same in every shuffle: a market
  that merely rose in the validation window does not open the gate. Its blind spot: a
  ranking that knows volatility but not direction is not noise to it, and after costs
  such a head's top cuts are the likeliest to show a lucky profit (measured on no-edge
  markets: 5.8 % of head-folds traded at 10 and 20 bps, at alpha 2.5 %).
- ``bootstrap``: White's reality check: the null is "no candidate earns"; the validation
  days are resampled in circular blocks of ``max(ceil(D ** (1/3)), hold_days)`` days
  with the same draws for every horizon, each resample's ``max_c (S*_c - S_c) / se_c``
  taken (``se_c`` the observed one; see :func:`max_t`). Where costs push every
  candidate's mean below 0 it is conservative (the null is taken at 0). Its blind spot:
  on the 15-60 validation days of a small run it is anti-conservative where the null
  sits on its boundary (0 bps, no edge: about 13 % of random rankings' head-folds
  passed at alpha 5 % on no-edge seeds 101-102).
- ``family`` (the default): both, the larger critical value. A head trades only where
  both nulls are rejected (an intersection-union test), so each test covers the other's
  blind spot and the error stays under either's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from huracan.errors import ConfigError

# resampled returns held at once (resamples x trades): ~0.4 MB an array, so the dozen a
# shuffle's sums take stay near the CPU's cache (at 1M elements the same gate took 1.8 to
# 2.3x the CPU time, at 4M they added about 0.3 GB to a fold's peak at 100 coins; 50k
# took a fifth less CPU than 100k on the ensemble bench's gates). The draws and values
# are the same for any chunk: each resample is its own row.
CHUNK = 50_000


@dataclass(frozen=True)
class Search:
    """One horizon's candidates of one head: trading the first k of ``returns``.

    Attributes:
        returns: (n,) validation net returns, in the order trades are added.
        day: (n,) day number of each; None where trades count as independent.
        total: (n,) ``S_k``, the sum of the first k.
        se: (n,) its daily standard error (``thresholds.daily_sums``).
        enough: (n,) whether the cut has enough trades to be a candidate.
        n_days: D, the days the standard error is taken over.
    """

    returns: np.ndarray
    day: np.ndarray | None
    total: np.ndarray
    se: np.ndarray
    enough: np.ndarray
    n_days: int = 0


@dataclass(frozen=True)
class FamilyGate:
    """The family-wise critical value of a head's search (``thresholds.gate``).

    Attributes:
        alpha: family-wise error rate (``thresholds.family_alpha``).
        resamples: shuffles of the ranking, or resamples of the validation days
            (``thresholds.resamples``).
        hold_days: the longest hold in days, the shortest block.
        seed: seeds the resampling (the run's seed; each head its own stream).
        method: ``family`` (both of the below: the larger critical value),
            ``permutation`` (the head's ranking shuffled) or ``bootstrap`` (its
            validation days resampled in blocks).
    """

    alpha: float = 0.05
    resamples: int = 200
    hold_days: int = 1
    seed: int = 0
    method: str = "family"

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ConfigError(f"thresholds.family_alpha must be in (0, 1), got {self.alpha}")
        if self.method not in ("family", "permutation", "bootstrap"):
            raise ConfigError(f"thresholds.gate: unknown family method {self.method!r}")
        if self.resamples < 20:
            raise ConfigError(f"thresholds.resamples must be >= 20, got {self.resamples}")

    def critical_z(
        self, searches: list[Search], head: int = 0, observed: float | None = None
    ) -> float:
        """The critical value of ``searches`` (one head's horizons): the ``1 - alpha``
        quantile of the largest t over all their candidates under the method's null;
        +inf without a candidate (or with too few resamples for ``alpha``).

        Args:
            observed: the largest t of the head's own candidates (:func:`largest_t`), or
                None. Where the resamples show that the critical value is above it, no
                candidate can pass whatever the exact value: the resampling stops there
                and +inf is returned (the head does not trade either way; see
                :meth:`_null_quantile`).
        """
        searches = [s for s in searches if (s.enough & np.isfinite(s.se) & (s.se > 0)).any()]
        if not searches:
            return np.inf
        if any(s.day is None for s in searches):
            raise ConfigError("a family-wise thresholds.gate needs thresholds.unit=day")
        # above ``bar`` the head's best candidate fails for sure: S - q * se < 0 with room
        # for the rounding of S / se (an exact tie is resampled to the end, not stopped)
        bar = np.inf if observed is None else observed + 1e-9 * abs(observed)
        critical = -np.inf
        if self.method in ("family", "bootstrap"):  # first: the cheaper of the two nulls
            rng = np.random.default_rng([self.seed, head, 1])
            first = min(int(s.day.min()) for s in searches)
            n_days = max(int(s.day.max()) for s in searches) - first + 1
            weights = self.day_weights(n_days, rng)
            chunks = (max_t_chunks(s, weights, first) for s in searches)
            critical = max(critical, self._null_quantile(chunks, bar))
        if self.method in ("family", "permutation") and critical < np.inf:
            rng = np.random.default_rng([self.seed, head, 0])
            # each horizon shuffled apart (drawn lazily, in order): a wider maximum
            chunks = (shuffled_chunks(s, self.resamples, rng) for s in searches)
            critical = max(critical, self._null_quantile(chunks, bar))
        return critical

    def _null_quantile(
        self, horizons: Iterator[Iterator[tuple[slice, np.ndarray]]], bar: float
    ) -> float:
        """The ``1 - alpha`` quantile of each resample's largest t over every horizon
        (``horizons``: per horizon, the resamples' largest t a chunk at a time); +inf as
        soon as it is known to be at least ``bar``.

        The quantile is the ``rank``-th smallest of the resamples' peaks, and a peak only
        grows with more horizons: once ``resamples + 1 - rank`` peaks reach ``bar``, the
        quantile does too, whatever the rest of the resamples hold.
        """
        rank = math.ceil((1 - self.alpha) * (self.resamples + 1))
        peak = np.full(self.resamples, -np.inf)
        for chunks in horizons:
            for rows, values in chunks:
                peak[rows] = np.maximum(peak[rows], values)
                if np.count_nonzero(peak >= bar) > self.resamples - rank:
                    return np.inf
        return self._quantile(peak)

    def _quantile(self, peak: np.ndarray) -> float:
        # the observed search counts as one more draw: an exact level for any resamples
        rank = math.ceil((1 - self.alpha) * (self.resamples + 1))
        return float(np.sort(peak)[rank - 1]) if rank <= self.resamples else np.inf

    def day_weights(self, n_days: int, rng: np.random.Generator) -> np.ndarray:
        """(resamples, n_days) circular-block bootstrap weights, each day's mean exactly 1."""
        block = max(math.ceil(n_days ** (1 / 3)), self.hold_days, 1)
        block = min(block, n_days)
        n_blocks = math.ceil(n_days / block)
        starts = rng.integers(0, n_days, (self.resamples, n_blocks))
        days = (starts[:, :, None] + np.arange(block)) % n_days  # (B, blocks, L)
        offsets = np.arange(self.resamples)[:, None, None] * n_days
        counts = np.bincount((days + offsets).ravel(), minlength=self.resamples * n_days)
        return counts.reshape(self.resamples, n_days) * (n_days / (n_blocks * block))


def max_t(search: Search, weights: np.ndarray, first_day: int) -> np.ndarray:
    """Per resample, ``max_k (S*_k - S_k) / se_k`` over the search's candidates.

    ``S*_k`` is the cumulative sum of each trade's return times its day's weight: every
    cut of one resample costs one cumulative sum. The scale is the observed ``se_k``, not
    each resample's own: a resample's standard error of a 20-trade cut on a few repeated
    days can be near 0, and its t then runs into the hundreds (measured: critical values
    of 30 to 450 on planted heads, which no edge passes).

    Args:
        weights: (B, D) day weights; day ``first_day + j`` is column j.

    Returns:
        (B,) the largest standardised bootstrap deviation of each resample.
    """
    return _joined(max_t_chunks(search, weights, first_day), len(weights))


def max_t_chunks(
    search: Search, weights: np.ndarray, first_day: int
) -> Iterator[tuple[slice, np.ndarray]]:
    """:func:`max_t` a chunk of resamples at a time: (their rows, their largest t)."""
    keep = search.enough & np.isfinite(search.se) & (search.se > 0)
    last = int(np.flatnonzero(keep)[-1]) + 1  # cuts past the last candidate are not needed
    keep = keep[:last]
    lo = int(np.argmax(keep))
    if keep[lo:].all():  # the usual case, every cut from the fewest trades on: a view
        keep = slice(lo, last)
    returns, day = search.returns[:last], search.day[:last] - first_day
    total, scale = search.total[:last][keep], 1.0 / search.se[:last][keep]
    step = max(1, CHUNK // last)
    for b in range(0, len(weights), step):
        drawn = weights[b : b + step, day]  # (b, last), a fresh array: worked on in place
        drawn *= returns
        drawn = np.cumsum(drawn, axis=1, out=drawn)[:, keep]  # (b, k)
        drawn -= total
        drawn *= scale
        yield slice(b, b + len(drawn)), drawn.max(axis=1)


def _joined(chunks: Iterator[tuple[slice, np.ndarray]], n: int) -> np.ndarray:
    """(n,) the values of every chunk, in their rows."""
    out = np.empty(n)
    for rows, values in chunks:
        out[rows] = values
    return out


def shuffled_max_t(search: Search, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Per shuffle of the head's ranking, ``max_k S_k / se_k`` over the search's candidates.

    The validation samples and their days stay as they are; only the order in which the
    head would add them (its ranking) is drawn at random. Under "the ranking carries no
    information" the observed search is one more such draw, whatever the returns' tails,
    days or drift: the ``1 - alpha`` quantile is an exact critical value. Trading every
    sample is the same in every shuffle, so a market that merely rose in the validation
    window lifts the critical value with it.

    Returns:
        (resamples,) the largest t of each shuffle.
    """
    return _joined(shuffled_chunks(search, resamples, rng), resamples)


def shuffled_chunks(
    search: Search, resamples: int, rng: np.random.Generator
) -> Iterator[tuple[slice, np.ndarray]]:
    """:func:`shuffled_max_t` a chunk of shuffles at a time (each drawn when its chunk is
    reached): (their rows, their largest t)."""
    keep = search.enough & np.isfinite(search.se) & (search.se > 0)
    last = int(np.flatnonzero(keep)[-1]) + 1
    n, n_days = len(search.returns), search.n_days
    _, day = np.unique(search.day, return_inverse=True)
    day = day.astype(np.int16 if n_days < 2**15 else np.int64)  # int16: a radix sort
    runs = day_runs(day)  # every shuffle holds the same days: their runs, found once
    step = max(1, CHUNK // n)
    for b in range(0, resamples, step):
        order = rng.permuted(np.broadcast_to(np.arange(n), (min(step, resamples - b), n)), axis=1)
        order = np.ascontiguousarray(order)  # drawn column-major: each row's passes contiguous
        returns, days = search.returns[order], day[order]  # (b, n), in the drawn order
        total = np.cumsum(returns[:, :last], axis=1)
        # the running sum of squared day sums: a trade adds r * (2 * its day's sum so far + r)
        term = day_before(returns, days, runs)[:, :last]  # in place below: no temporaries
        term *= 2
        term += returns[:, :last]
        term *= returns[:, :last]
        variance = np.cumsum(term, axis=1, out=term)
        variance *= n_days
        variance -= total**2
        np.maximum(variance, 0.0, out=variance)
        variance /= n_days - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            t = total / np.sqrt(variance)
        yield slice(b, b + len(order)), np.where(keep[:last] & (variance > 0), t, -np.inf).max(1)


def day_runs(day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each day starts among the trades sorted by day, and how many it holds: (first
    positions, counts), one per distinct day of ``day`` (n,)."""
    ordered = np.sort(day)
    first = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return first, np.diff(np.r_[first, len(ordered)])


def day_before(
    returns: np.ndarray, day: np.ndarray, runs: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Per trade, the sum of the earlier trades (in the row's order) on its day; rows of
    ``returns`` (b, n) are orders of the same n trades (a shuffle each), ``day`` (b, n)
    their day numbers.

    Each row is sorted by day (stably: a day's trades stay in the row's order) and summed
    cumulatively; a trade's earlier same-day sum is the running sum before it less the
    running sum before its day's first trade. Every row holds the same days, so sorted
    they are the same in every row: where each day starts is found once (``runs``:
    :func:`day_runs` of any row, passed by a caller that calls again with the same days),
    and the rows are gathered and scattered through one flat index.
    """
    b, n = returns.shape
    first, counts = day_runs(day[0]) if runs is None else runs
    by_day = np.argsort(day, axis=1, kind="stable")  # (b, n)
    flat = (by_day + np.arange(b)[:, None] * n).ravel()  # the same, into returns.ravel()
    ordered = returns.ravel()[flat].reshape(b, n)  # ravel: in C order, whatever the layout
    exclusive = np.cumsum(ordered, axis=1) - ordered  # (b, n) the sum before each trade
    before = np.empty((b, n), dtype=returns.dtype)
    # each trade less the sum before its day's first trade (repeated over the day's run)
    before.ravel()[flat] = (exclusive - np.repeat(exclusive[:, first], counts, axis=1)).ravel()
    return before
