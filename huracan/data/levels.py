"""``data.levels``: a second planted level in the synthetic market, sectors and their leaders.

The one-level market has BTC lead every alt one bar ahead. With ``data.levels`` each alt
cluster is cut into ``sectors`` contiguous sectors; the first coin of a sector is its
leader, the others its followers:

- a sector leader follows BTC as an alt of the one-level market does (``follow_share`` of
  its market exposure ``lag`` bars late), and carries its sector's own shock ``d_s`` with
  loading ``sector_strength``: news only the leader's move brings to the sector;
- a follower takes its leader's move instead of the market's::

      r[t, i] = sigma[t] * (b_i * ((1 - s_i) * x_L[t] + s_i * x_L[t - lag]) + g_i * c_k[t] + e_i[t])

  where ``x_L`` is the leader's shock in units of its own volatility and ``s_i`` is drawn
  from ``levels.follow_share``. So BTC's move reaches a follower two bars later through its
  leader, and the leader's own move one bar later.

BTC is a sector of its own (the market: once it is taken out, nothing of BTC's move is
left to share) and the rest of the dominant cluster, the majors, is one sector that follows
BTC as in the one-level market.

The oracle trades each coin on its parent's move: ``sigma[t+1] * b_i * s_i * x_parent[t]``
(the parent of BTC's followers is the market, ``x = m``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from huracan.errors import ConfigError

LEVEL_KEYS = ("sectors", "follow_share", "sector_strength", "lag")


@dataclass(frozen=True)
class Levels:
    """The checked ``data.levels`` option (see the module docstring)."""

    sectors: int = 2
    follow_share: tuple[float, float] = (0.4, 0.7)
    sector_strength: float = 1.0
    lag: int = 1


def check_levels(levels: dict | None) -> Levels | None:
    """``data.levels`` as :class:`Levels`; None when off. Raises a one-line ConfigError
    naming the bad key or value."""
    if levels is None:
        return None
    options = dict(levels)
    unknown = sorted(set(options) - set(LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"data.levels: unknown keys {unknown} (keys: {', '.join(LEVEL_KEYS)})")
    checked = Levels(**options)
    low_high = list(checked.follow_share)
    if len(low_high) != 2 or not 0 <= low_high[0] <= low_high[1] <= 1:
        raise ConfigError(
            f"data.levels.follow_share must be [low, high] with 0 <= low <= high <= 1, "
            f"got {low_high}"
        )
    if not (isinstance(checked.sectors, int) and checked.sectors >= 1):
        raise ConfigError(f"data.levels.sectors must be a whole number >= 1, got {checked.sectors}")
    if not (isinstance(checked.lag, int) and checked.lag >= 1):
        raise ConfigError(f"data.levels.lag must be a whole number >= 1, got {checked.lag}")
    if checked.sector_strength < 0:
        raise ConfigError(
            f"data.levels.sector_strength must be >= 0, got {checked.sector_strength}"
        )
    return Levels(checked.sectors, tuple(low_high), float(checked.sector_strength), checked.lag)


def plant_sectors(
    cluster_labels: np.ndarray, sectors: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The planted level 1: (N,) sector of each coin, (N,) whether it leads its sector and
    (N,) the column of the leader each coin follows.

    Sector 0 is BTC (column 0) alone: the market itself, whose move leaves nothing to
    share once the market is taken out. Sector 1 is the rest of the dominant cluster, the
    majors, which follow BTC (their leader, outside their sector). Each alt cluster is cut
    into ``sectors`` contiguous blocks numbered on from there, each led by its first coin.

    Raises:
        ConfigError: when an alt cluster has fewer than two coins per sector.
    """
    sector_labels = np.where(cluster_labels == 0, 1, 0)
    sector_labels[0] = 0
    next_id = 2
    for k in range(1, int(cluster_labels.max()) + 1):  # a loop over clusters
        members = np.flatnonzero(cluster_labels == k)
        if len(members) < 2 * sectors:
            raise ConfigError(
                f"data.levels.sectors={sectors}: planted cluster {k} has {len(members)} coins, "
                f"fewer than 2 per sector (a leader and a follower); raise data.n_assets"
            )
        sector_labels[members] = next_id + np.arange(len(members)) * sectors // len(members)
        next_id += sectors
    sector_labels = np.unique(sector_labels, return_inverse=True)[1]  # no majors: no sector 1
    _, first = np.unique(sector_labels, return_index=True)
    leaders = np.zeros(len(cluster_labels), dtype=bool)
    leaders[first] = True  # blocks are contiguous: each sector's first coin
    leaders &= (cluster_labels > 0) | (np.arange(len(cluster_labels)) == 0)  # majors: BTC's
    leader_of_sector = np.zeros(int(sector_labels.max()) + 1, dtype=int)  # majors: BTC's
    leader_of_sector[sector_labels[leaders]] = np.flatnonzero(leaders)
    return sector_labels, leaders, leader_of_sector[sector_labels]


@dataclass(frozen=True)
class TwoLevelMarket:
    """The shocks of a two-level market and what the oracle needs to know of them.

    Attributes:
        shocks: (T, N) every coin's shock (the log return divided by ``sigma``).
        parent_move: (T, N) the move each coin follows: the market's ``m`` for BTC's
            followers (majors and sector leaders), the leader's standardised shock for
            a sector's followers.
        parent_lag: (N,) bars by which each coin follows that move.
        follow_share: (N,) the late share of each coin's exposure to its parent.
        sector_labels: (N,) planted sector of each coin.
        sector_leader: (N,) whether the coin leads its sector (BTC leads its own).
        parent: (N,) the column of the coin whose move each coin follows: BTC for the
            majors and the sector leaders, the leader for a follower; -1 for BTC.
    """

    shocks: np.ndarray
    parent_move: np.ndarray
    parent_lag: np.ndarray
    follow_share: np.ndarray
    sector_labels: np.ndarray
    sector_leader: np.ndarray
    parent: np.ndarray

    def expected(self, regime_vol: np.ndarray, betas: np.ndarray) -> np.ndarray:
        """(T, N) the oracle's expected log return of the next bar, known at bar t: the
        late part of the parent's move where it arrives one bar late, else 0."""
        expected = np.full(self.shocks.shape, np.nan)
        late = np.where(self.parent_lag == 1, betas * self.follow_share, 0.0)
        expected[:-1] = regime_vol[1:, None] * late * self.parent_move[:-1]
        return expected


def two_level_market(
    rng: np.random.Generator,
    levels: Levels,
    cluster_labels: np.ndarray,
    market: np.ndarray,
    market_lag: int,
    loadings: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    cluster_factors: np.ndarray,
    idio: np.ndarray,
    tail_df: float,
) -> TwoLevelMarket:
    """Plants the sectors on the one-level market's draws.

    Args:
        rng: the levels' own generator (the one-level draws stay those of the seed).
        levels: the checked option.
        cluster_labels: (N,) planted level-0 clusters; 0 is the dominant one.
        market: (T,) BTC's shock ``m``; ``market_lag``: the alts' lag behind it.
        loadings: (N,) each of betas, follow shares, cluster-factor loadings and noise
            scales of the one-level market (a follower's beta becomes its exposure to its
            leader, its follow share is drawn anew from ``levels.follow_share``).
        cluster_factors: (T, K) the clusters' shocks; ``idio``: (T, N) the coins' noise.
        tail_df: degrees of freedom of the sectors' Student-t shocks.
    """
    betas, follow, strength, noise = (np.asarray(x, dtype=float) for x in loadings)
    n_bars, n = idio.shape
    sector_labels, leaders, leader_of = plant_sectors(cluster_labels, levels.sectors)
    followers = (cluster_labels > 0) & ~leaders
    sector_shocks = rng.standard_t(tail_df, (n_bars, int(sector_labels.max()) + 1))
    sector_shocks *= np.sqrt((tail_df - 2) / tail_df)  # unit variance, as every shock
    sector_loading = np.where(leaders & (cluster_labels > 0), 1.0, 0.0)
    sector_loading *= rng.uniform(0.8, 1.2, n) * levels.sector_strength
    follow = np.where(followers, rng.uniform(*levels.follow_share, n), follow)

    market_moves = _lagged(market[:, None], market_lag)[:, 0]
    leader_shocks = betas * ((1 - follow) * market[:, None] + follow * market_moves[:, None])
    leader_shocks += strength * cluster_factors[:, cluster_labels] + noise * idio
    leader_shocks += sector_loading * sector_shocks[:, sector_labels]
    leader_std = np.sqrt(
        betas**2 * ((1 - follow) ** 2 + follow**2) + strength**2 + sector_loading**2 + noise**2
    )
    leader_move = leader_shocks[:, leader_of] / leader_std[leader_of]  # (T, N)
    leader_late = _lagged(leader_move, levels.lag)
    follower_shocks = betas * ((1 - follow) * leader_move + follow * leader_late)
    follower_shocks += strength * cluster_factors[:, cluster_labels] + noise * idio
    return TwoLevelMarket(
        shocks=np.where(followers, follower_shocks, leader_shocks),
        parent_move=np.where(followers, leader_move, market[:, None]),
        parent_lag=np.where(followers, levels.lag, market_lag),
        follow_share=follow,
        sector_labels=sector_labels,
        sector_leader=leaders,
        parent=np.where(followers, leader_of, np.where(np.arange(n) == 0, -1, 0)),
    )


def _lagged(values: np.ndarray, lag: int) -> np.ndarray:
    """(T, M) the values ``lag`` bars earlier, 0 before the first."""
    return np.concatenate([np.zeros((lag, values.shape[1])), values[: len(values) - lag]])
