"""``data=synthetic``: a seeded market with planted structure and its ground truth.

Log return of asset i in planted cluster k at bar t::

    r[t, i] = sigma[t] * (beta_i * ((1 - s_i) * m[t] + s_i * m[t - lag]) + g_i * c_k[t] + e_i[t])

- ``m``: the leader's (BTC's) own return, the market factor; BTC is ``r = sigma * m``.
- ``s_i``: the share of the asset's market exposure that arrives ``lag`` bars late. Majors
  follow at once (small s), alts follow late, so ``m[t]`` predicts alts' ``r[t + lag]``.
- ``c_k``: the cluster's own factor; ``e_i``: fat-tailed (Student-t) idiosyncratic noise.
  Majors (the dominant cluster) carry less of both (``majors_idio``): they mostly move
  with the market, as BTC, ETH and BNB do.
- ``sigma[t]``: a market-wide volatility regime (two-state Markov chain).

The oracle's expected next-bar log return is ``sigma[t+1] * beta_i * s_i * m[t]`` for
``lag = 1`` (the regime of the next bar is known to the oracle, not to models).

``levels`` plants a second level on the same draws: sector leaders that follow BTC and
lead their sectors' followers (``huracan.data.levels``); the oracle then trades each coin
on its parent's move.

Longer than most modules on purpose: the generator, its planted truth (clusters, follow
shares, the oracle's expectations) and the optional regime change must stay together so
the oracle always describes exactly the market that was drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from huracan.data.align import forward_fill, timeframe_ns
from huracan.data.levels import check_levels, two_level_market
from huracan.data.now import NOW, now_span
from huracan.data.panel import DropRecord, Panel
from huracan.data.validate import check_max_bar_move
from huracan.errors import ConfigError

NAMED_COINS = (
    "BTC ETH BNB LTC SOL AVAX ADA DOT DOGE SHIB XRP LINK TRX BCH ATOM NEAR UNI ICP APT FIL "
    "ARB OP ETC XLM HBAR INJ STX IMX SUI TIA AAVE MKR GRT ALGO FET THETA EOS XTZ PEPE WIF"
).split()


@dataclass
class SyntheticTruth:
    """What the simulator planted, for comparing what Huracan finds against the truth.

    Attributes:
        cluster_labels: (N,) planted cluster id; 0 is the dominant cluster (BTC, ETH).
        betas: (N,) exposure to the market factor (with ``data.levels``: to the coin's
            parent's move, its sector leader's for a follower).
        follow_share: (N,) share of that exposure arriving ``lag`` bars late.
        tiers: (N,) liquidity tier, 1 (most liquid) to 3.
        market_factor: (T,) the market factor's return ``sigma[t] * m[t]`` (BTC's return).
        cluster_factors: (T, K) the clusters' own shocks.
        regime_vol: (T,) volatility level sigma of each bar.
        expected_return: (T, N) the oracle's expected log return of the *next* bar,
            known at the close of bar t (NaN where the next bar does not exist).
        sector_labels: (N,) planted level-1 sector (``data.levels``; None: one level),
            nested in ``cluster_labels``: 0 is BTC alone, 1 the other majors, then the
            alt clusters' sectors (``huracan.data.levels``).
        sector_leader: (N,) whether the coin leads its sector (BTC leads its own).
        parent: (N,) the column whose move each coin follows (BTC for the majors and the
            sector leaders, the leader for a follower; -1: BTC, or a parent not selected).
        level_lags: bars by which each level follows its parent: sector leaders BTC,
            followers their leader (None: one level).
    """

    cluster_labels: np.ndarray
    betas: np.ndarray
    follow_share: np.ndarray
    tiers: np.ndarray
    market_factor: np.ndarray
    cluster_factors: np.ndarray
    regime_vol: np.ndarray
    expected_return: np.ndarray
    sector_labels: np.ndarray | None = None
    sector_leader: np.ndarray | None = None
    parent: np.ndarray | None = None
    level_lags: tuple[int, int] | None = None

    def select(self, cols: list[int]) -> SyntheticTruth:
        levels = {}
        if self.sector_labels is not None:
            column = np.full(len(self.parent), -1)  # old column -> new, -1 when left out
            column[cols] = np.arange(len(cols))
            parent = self.parent[cols]
            levels = {
                "sector_labels": self.sector_labels[cols],
                "sector_leader": self.sector_leader[cols],
                "parent": np.where(parent >= 0, column[parent], -1),
            }
        return replace(
            self,
            cluster_labels=self.cluster_labels[cols],
            betas=self.betas[cols],
            follow_share=self.follow_share[cols],
            tiers=self.tiers[cols],
            expected_return=self.expected_return[:, cols],
            **levels,
        )

    def level_labels(self) -> np.ndarray | None:
        """(2, N) the planted tree's labels, clusters then sectors; None for one level."""
        if self.sector_labels is None:
            return None
        return np.stack([self.cluster_labels, self.sector_labels])

    def tree(self, symbols: list[str]) -> dict | None:
        """JSON-ready planted tree (for ``clusters.json``): each level's members, each
        sector's leader and the lags; None for the one-level market."""
        if self.sector_labels is None:
            return None
        levels = []
        for name, labels in (("cluster", self.cluster_labels), ("sector", self.sector_labels)):
            levels.append(
                {
                    "level": name,
                    "members": {
                        str(c): [s for s, k in zip(symbols, labels, strict=True) if k == c]
                        for c in sorted(set(labels.tolist()))
                    },
                }
            )
        levels[1]["leaders"] = {
            str(c): s
            for s, c, lead in zip(symbols, self.sector_labels, self.sector_leader, strict=True)
            if lead
        }
        return {
            "levels": levels,
            "parents": {s: symbols[p] for s, p in zip(symbols, self.parent, strict=True) if p >= 0},
            "lags": {
                "btc_to_sector_leaders": self.level_lags[0],
                "leader_to_followers": self.level_lags[1],
            },
        }

    def slice_rows(self, rows: slice) -> SyntheticTruth:
        return replace(
            self,
            market_factor=self.market_factor[rows],
            cluster_factors=self.cluster_factors[rows],
            regime_vol=self.regime_vol[rows],
            expected_return=self.expected_return[rows],
        )


class SyntheticMarket:
    """A seeded market simulator with planted clusters, a leader and lagged followers.

    Args:
        n_assets: number of coins; the first are named after real ones (BTC, ETH, ...).
        years: length of history.
        timeframe: bar length.
        start: first bar.
        n_clusters: planted clusters; cluster 0 holds BTC and ETH.
        seed: random seed; the same seed gives the same market.
        vol_bps: typical per-bar volatility of the leader, in basis points.
        lag: bars by which followers lag the leader.
        follow_share: (low, high) range of alts' late share of market exposure.
        majors_follow_share: the same for the dominant cluster's coins other than the
            leader: a faint lead by default; (0, 0) leaves no lead anywhere (a pure null).
        cluster_strength: loading on the own cluster factor, relative to the market's.
        noise: scale of the idiosyncratic noise, relative to the market's.
        majors_idio: the dominant cluster's own-factor loading and noise, relative to alts'.
        tail_df: degrees of freedom of the Student-t noise (fat tails).
        high_vol_multiplier: volatility of the high regime relative to the calm one.
        regime_persistence: probability of staying in the current regime each bar.
        late_listing_share: share of alts listed part-way through the history.
        n_outages: exchange-wide outages (1 to 6 bars without data).
        max_ffill: longest gap, in bars, forward-filled when the panel is built.
        max_bar_move: accepted (and checked) so every data source takes the same key; not
            applied, since simulated bars hold no bad ticks (the default market's largest
            move is far below any sensible limit).
        end: keep only the bars before this time (the same market, cut short: the first
            months of a longer history); None keeps them all. ``now``: the market reaches
            the present, its last bar the last closed one (``start`` is then ignored; see
            ``huracan.data.now``).
        levels: a planted second level, off by default (None leaves the market
            byte-identical): ``{sectors, follow_share, sector_strength, lag}``; each alt
            cluster is cut into ``sectors`` sectors whose first coin leads the others
            ``lag`` bars ahead while BTC leads it (see ``huracan.data.levels``). The draws
            of the one-level market are kept; the sectors' come from a generator of their
            own.
        regime_change: a planted change, off by default (None leaves the market
            byte-identical): ``{at, symbol, to_cluster, lead_lag, vol_multiplier}``. From
            bar ``at`` (a share of the history in (0, 1), or a time) on, ``symbol`` loads
            on cluster ``to_cluster``'s factor instead of its own, follows the leader at
            once unless ``lead_lag`` (default false: its late share becomes 0), and its
            volatility is multiplied by ``vol_multiplier`` (default 1).
        spread_column: quote a ``spread_bps`` column (1-12 bps by tier, charged as the
            spread); false: the panel has none and ``costs.spread_bps`` applies, so that a
            round trip costs exactly what the config says.
    """

    def __init__(
        self,
        n_assets: int = 12,
        years: float = 1.0,
        timeframe: str = "1h",
        start: str = "2023-01-01",
        n_clusters: int = 3,
        seed: int = 0,
        vol_bps: float = 50.0,
        lag: int = 1,
        follow_share: tuple[float, float] = (0.3, 0.6),
        cluster_strength: float = 0.9,
        noise: float = 0.9,
        majors_idio: float = 0.4,
        tail_df: float = 4.0,
        high_vol_multiplier: float = 2.0,
        regime_persistence: float = 0.995,
        late_listing_share: float = 0.0,
        n_outages: int = 0,
        max_ffill: int = 3,
        max_bar_move: float | None = None,
        end: str | None = None,
        regime_change: dict | None = None,
        majors_follow_share: tuple[float, float] = (0.0, 0.1),
        spread_column: bool = True,
        levels: dict | None = None,
    ):
        self.n_assets = n_assets
        self.years = years
        self.timeframe = timeframe
        self.start = start
        self.n_clusters = n_clusters
        self.seed = seed
        self.vol_bps = vol_bps
        self.lag = lag
        self.follow_share = follow_share
        self.cluster_strength = cluster_strength
        self.noise = noise
        self.majors_idio = majors_idio
        self.tail_df = tail_df
        self.high_vol_multiplier = high_vol_multiplier
        self.regime_persistence = regime_persistence
        self.late_listing_share = late_listing_share
        self.n_outages = n_outages
        self.max_ffill = max_ffill
        self.max_bar_move = check_max_bar_move(max_bar_move)
        self.end = end
        if end == NOW:  # the live demo's market: anchored so that its past stays put
            self.start, self.end = now_span(years, timeframe_ns(timeframe))
        self.regime_change = _check_regime_change(regime_change, self.symbols(), n_clusters)
        self.majors_follow_share = majors_follow_share
        self.spread_column = spread_column
        self.levels = check_levels(levels)
        if self.levels is not None and self.regime_change is not None:
            raise ConfigError("data.levels and data.regime_change cannot be planted together")

    def symbols(self) -> list[str]:
        extra = [f"X{i:03d}" for i in range(len(NAMED_COINS), self.n_assets)]
        return (list(NAMED_COINS) + extra)[: self.n_assets]

    def load(self) -> Panel:
        if self.n_assets < 2 or not 1 <= self.n_clusters <= self.n_assets:
            raise ValueError(
                f"synthetic market needs 2 <= n_assets and 1 <= n_clusters <= n_assets, "
                f"got n_assets={self.n_assets}, n_clusters={self.n_clusters}"
            )
        rng = np.random.default_rng(self.seed)
        step = timeframe_ns(self.timeframe)
        n_bars = int(round(self.years * 365 * 86400e9 / step))
        n, k = self.n_assets, self.n_clusters
        labels = np.arange(n) * k // n  # contiguous blocks; block 0 holds BTC and ETH
        dominant = labels == 0

        betas = np.where(dominant, rng.uniform(0.9, 1.2, n), rng.uniform(0.8, 1.5, n))
        betas[0] = 1.0
        follow = np.where(
            dominant, rng.uniform(*self.majors_follow_share, n), rng.uniform(*self.follow_share, n)
        )
        follow[0] = 0.0
        idio_scale = np.where(dominant, self.majors_idio, 1.0)
        strength = rng.uniform(0.8, 1.2, n) * self.cluster_strength * idio_scale
        strength[0] = 0.0
        noise = rng.uniform(0.8, 1.2, n) * self.noise * idio_scale
        noise[0] = 0.0

        regime_vol = self._regime_vol(rng, n_bars)
        market = _student_t(rng, self.tail_df, n_bars)
        cluster_factors = _student_t(rng, self.tail_df, (n_bars, k))
        idio = _student_t(rng, self.tail_df, (n_bars, n))
        lagged = np.concatenate([np.zeros(self.lag), market[: n_bars - self.lag]])
        shocks = betas * ((1 - follow) * market[:, None] + follow * lagged[:, None])
        shocks += strength * cluster_factors[:, labels] + noise * idio
        changed, planted = None, None
        if self.levels is not None:
            planted = two_level_market(
                np.random.default_rng([self.seed, 1]),
                self.levels,
                labels,
                market,
                self.lag,
                (betas, follow, strength, noise),
                cluster_factors,
                idio,
                self.tail_df,
            )
            shocks, follow = planted.shocks, planted.follow_share
        if self.regime_change is not None:
            changed = self._regime_change(n_bars, betas, follow, strength, noise)
            shocks = changed(shocks, market, lagged, cluster_factors, idio)
        log_returns = regime_vol[:, None] * shocks  # (T, N)

        expected = np.full((n_bars, n), np.nan)
        # bar t+lag gets sigma[t+lag] * beta * s * m[t]; for lag > 1 the t+1 part is 0.
        if self.lag == 1:
            expected[:-1] = regime_vol[1:, None] * betas * follow * market[:-1, None]
        else:
            expected[:-1] = 0.0
        if changed is not None:
            expected = changed.expected(expected)
        if planted is not None:
            expected = planted.expected(regime_vol, betas)

        tiers = np.where(dominant, 1, rng.choice([2, 3], n, p=[0.5, 0.5]))
        tiers[:2] = 1
        bars = self._bars(rng, log_returns, regime_vol, tiers)
        if not self.spread_column:
            del bars["spread_bps"]
        drops: list[DropRecord] = []
        never_late = dominant if planted is None else dominant | planted.sector_leader
        self._late_listings(rng, bars, never_late)
        self._outages(rng, bars)
        symbols = self.symbols()
        filled = forward_fill(bars, self.max_ffill, symbols, drops)
        timestamps = pd.date_range(
            pd.Timestamp(self.start, tz="UTC"), periods=n_bars, freq=pd.Timedelta(step)
        )
        truth = SyntheticTruth(
            labels,
            betas,
            follow,
            tiers,
            regime_vol * market,
            cluster_factors,
            regime_vol,
            expected,
        )
        if planted is not None:
            truth = replace(
                truth,
                sector_labels=planted.sector_labels,
                sector_leader=planted.sector_leader,
                parent=planted.parent,
                level_lags=(self.lag, self.levels.lag),
            )
        tf = pd.Timedelta(step)
        panel = Panel(timestamps, symbols, bars, _name(tf, self.timeframe), filled, drops, truth)
        return panel if self.end is None else panel.between(None, self.end)

    def _regime_change(self, n_bars, betas, follow, strength, noise) -> _RegimeChange:
        change = self.regime_change
        at = change["at"]
        if isinstance(at, int | float) and not isinstance(at, bool):
            row = int(round(float(at) * n_bars))
        else:
            step = pd.Timedelta(timeframe_ns(self.timeframe))
            row = int(
                np.ceil((pd.Timestamp(at, tz="UTC") - pd.Timestamp(self.start, tz="UTC")) / step)
            )
        j = self.symbols().index(change["symbol"])
        return _RegimeChange(
            max(row, 0),
            j,
            int(change["to_cluster"]),
            bool(change.get("lead_lag", False)),
            float(change.get("vol_multiplier", 1.0)),
            betas[j],
            follow[j],
            strength[j],
            noise[j],
        )

    def _regime_vol(self, rng: np.random.Generator, n_bars: int) -> np.ndarray:
        """Per-bar volatility from a two-state Markov chain (calm / turbulent)."""
        switch = rng.random(n_bars) > self.regime_persistence
        regime = np.cumsum(switch) % 2  # flips state at each switch
        level = np.where(regime == 1, self.high_vol_multiplier, 1.0)
        return self.vol_bps * 1e-4 * level / np.sqrt(np.mean(level**2))

    def _bars(
        self,
        rng: np.random.Generator,
        log_returns: np.ndarray,
        regime_vol: np.ndarray,
        tiers: np.ndarray,
    ) -> dict[str, np.ndarray]:
        n_bars, n = log_returns.shape
        start_price = np.exp(rng.uniform(np.log(0.01), np.log(30_000), n))
        start_price[0] = 30_000.0
        close = start_price * np.exp(np.cumsum(log_returns, axis=0))
        open_ = np.vstack([start_price, close[:-1]])
        wick = regime_vol[:, None] * 0.6
        high = np.maximum(open_, close) * np.exp(np.abs(rng.standard_normal((n_bars, n))) * wick)
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.standard_normal((n_bars, n))) * wick)
        base_quote_volume = np.array([5e7, 2e6, 2e5])[tiers - 1] * rng.lognormal(0, 0.5, n)
        activity = 1 + 2 * np.abs(log_returns) / regime_vol[:, None]
        quote_volume = base_quote_volume * activity * rng.lognormal(0, 0.4, (n_bars, n))
        base_spread = np.array([1.0, 4.0, 12.0])[tiers - 1] * rng.uniform(0.8, 1.25, n)
        spread = base_spread * np.sqrt(regime_vol / regime_vol.mean())[:, None]
        return {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": quote_volume / close,
            "spread_bps": spread,
        }

    def _late_listings(
        self, rng: np.random.Generator, bars: dict[str, np.ndarray], never_late: np.ndarray
    ) -> None:
        """Lists a share of the alts late; never the coins of ``never_late`` (the majors, and
        the sector leaders a planted second level's followers read)."""
        candidates = np.flatnonzero(~never_late)
        n_late = int(round(self.late_listing_share * len(candidates)))
        n_bars = len(bars["close"])
        for j in rng.choice(candidates, n_late, replace=False):
            listed_at = int(rng.uniform(0.1, 0.5) * n_bars)
            for values in bars.values():
                values[:listed_at, j] = np.nan

    def _outages(self, rng: np.random.Generator, bars: dict[str, np.ndarray]) -> None:
        n_bars = len(bars["close"])
        for _ in range(self.n_outages):
            at = int(rng.integers(1, n_bars - 7))
            length = int(rng.integers(1, 7))
            for values in bars.values():
                values[at : at + length] = np.nan


@dataclass(frozen=True)
class _RegimeChange:
    """The planted change of one coin from bar ``row`` on (see ``regime_change``)."""

    row: int
    column: int
    to_cluster: int
    lead_lag: bool
    vol_multiplier: float
    beta: float
    follow: float
    strength: float
    noise: float

    def __call__(self, shocks, market, lagged, cluster_factors, idio) -> np.ndarray:
        """The shocks with the coin's after the change rebuilt from the same draws."""
        rows, j = slice(self.row, None), self.column
        follow = self.follow if self.lead_lag else 0.0
        after = self.beta * ((1 - follow) * market[rows] + follow * lagged[rows])
        after = after + self.strength * cluster_factors[rows, self.to_cluster]
        after = after + self.noise * idio[rows, j]
        shocks = shocks.copy()
        shocks[rows, j] = self.vol_multiplier * after
        return shocks

    def expected(self, expected: np.ndarray) -> np.ndarray:
        """The oracle's expectation: nothing to predict once the lead-lag is off."""
        if not self.lead_lag:
            expected = expected.copy()
            expected[max(self.row - 1, 0) :, self.column] = 0.0
            expected[-1] = np.nan
        return expected


def _check_regime_change(change: dict | None, symbols: list[str], n_clusters: int) -> dict | None:
    """The ``regime_change`` option, checked: one line naming the bad key."""
    if change is None:
        return None
    change = dict(change)
    unknown = set(change) - {"at", "symbol", "to_cluster", "lead_lag", "vol_multiplier"}
    missing = {"at", "symbol", "to_cluster"} - set(change)
    if unknown or missing:
        raise ConfigError(
            f"data.regime_change: unknown keys {sorted(unknown)}, missing {sorted(missing)} "
            "(keys: at, symbol, to_cluster, lead_lag, vol_multiplier)"
        )
    if change["symbol"] not in symbols:
        raise ConfigError(f"data.regime_change.symbol {change['symbol']!r} is not in the market")
    if not 0 <= int(change["to_cluster"]) < n_clusters:
        raise ConfigError(
            f"data.regime_change.to_cluster {change['to_cluster']} is not in 0..{n_clusters - 1}"
        )
    return change


def _student_t(rng: np.random.Generator, df: float, size: int | tuple) -> np.ndarray:
    """Student-t draws scaled to unit variance."""
    return rng.standard_t(df, size) * np.sqrt((df - 2) / df)


def _name(delta: pd.Timedelta, given: str) -> str:
    return given if pd.Timedelta(given) == delta else str(delta)
