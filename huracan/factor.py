"""Market factor: one series from the dominant cluster, injected into every asset as input.

Fitted on a fold's training window only; ``transform`` applies the learned loadings and
training mean and std unchanged to any window, one bar at a time (nothing looks ahead).

Longer than most modules on purpose: the four extractors share one fit/transform contract
and one stored state, and the channel injection is what every one of them feeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import DTypeLike
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from huracan.errors import ConfigError, DataError


class MarketFactorExtractor(BaseEstimator):
    """The market factor of the dominant cluster's members, and its input channels.

    Subclasses say how the members' returns become one series: :class:`PCAFactor`,
    :class:`MeanFactor`, :class:`WeightedMeanFactor`, or :class:`NoFactor` (the
    ablation). The factor is standardised with its training mean and std (``mean_``,
    ``std_``); :meth:`channels` injects it and ``n_lags`` lags into every asset, with
    ``residual`` each asset's own residual to it, and with ``leader_channel`` the leader's
    own standardised return and its lags beside the factor.

    Args:
        n_lags: lags of the factor added as channels after the factor itself.
        max_ffill: longest stretch, in bars, a missing factor is forward-filled (then 0).
        leader: symbol the ``pca`` factor's sign follows; the first member when it is not
            a member or the symbols are not given.
        residual: add the channel ``factor_residual``: the asset's return less its beta
            times the factor, in units of its residual std (beta and std fitted per asset
            on the training window: ``betas_``, ``residual_std_``).
        leader_channel: add the channel ``leader_return`` (and its ``n_lags`` lags): the
            return of ``leader`` (else the first member), standardised with its training
            mean and std (``leader_column_``, ``leader_mean_``, ``leader_std_``). What a
            lead-lag trader watches, beside the cluster's common move; no effect for
            ``factor=leader`` (the factor is that already) or ``factor=none``.
        lead_fit: add the channel ``lead_fit`` after every other (the hierarchy's
            included): each asset's next-bar move fitted on its channels
            (``huracan.lead_fit``, built by ``prepare_fold``; stored, not used, here).
    """

    method = ""
    n_factors = 1

    def __init__(
        self,
        n_lags: int = 2,
        max_ffill: int = 3,
        leader: str = "BTC",
        residual: bool = False,
        leader_channel: bool = False,
        lead_fit: bool = False,
    ):
        self.n_lags = n_lags
        self.max_ffill = max_ffill
        self.leader = leader
        self.residual = residual
        self.leader_channel = leader_channel
        self.lead_fit = lead_fit

    def fit(
        self,
        returns: np.ndarray,
        members: Sequence[int] | Sequence[str],
        symbols: Sequence[str] | None = None,
        quote_volume: np.ndarray | None = None,
    ) -> MarketFactorExtractor:
        """Learns the factor from a training window.

        Args:
            returns: (T, N) returns of the training window, NaN where no bar.
            members: the dominant cluster's members, as column indices or symbols.
            symbols: the N column names; needed when ``members`` are symbols.
            quote_volume: (T, N) quote volume; needed by ``weighted_mean``.

        Returns:
            self, with ``members_``, ``n_factors_``, ``mean_``, ``std_`` and what the
            subclass learns (``pca``: ``member_mean_``, ``member_std_``, ``loadings_``,
            ``explained_variance_ratio_``).
        """
        self._check_params()
        returns = np.asarray(returns, dtype=float)
        if returns.ndim != 2:
            raise ValueError(f"returns must be (T, N), got shape {returns.shape}")
        self.n_features_in_ = returns.shape[1]
        self.symbols_ = None if symbols is None else list(symbols)
        self.members_ = _member_columns(members, self.symbols_, self.n_features_in_)
        self.n_factors_ = self.n_factors
        if self.n_factors:
            self._fit_members(returns[:, self.members_])
            raw = self._raw_factor(returns, quote_volume)
            self.mean_ = float(np.nanmean(raw))
            self.std_ = float(np.nanstd(raw))
            if not self.std_ > 0:
                raise DataError(
                    f"members {self._member_names()}",
                    "the market factor has no variance over the training window",
                )
        if self.residual and self.n_factors:
            self.betas_, self.residual_std_ = _residual_fit(
                returns, self.transform(returns, quote_volume)[:, 0]
            )
        if self._with_leader():
            self.leader_column_ = self._leader_column()
            lead = returns[:, self.leader_column_]
            self.leader_mean_, self.leader_std_ = float(np.nanmean(lead)), float(np.nanstd(lead))
            if not self.leader_std_ > 0:
                raise DataError(
                    f"leader {self.leader}", "has no return variance over the training window"
                )
        return self

    def transform(self, returns: np.ndarray, quote_volume: np.ndarray | None = None) -> np.ndarray:
        """The standardised factor of any window.

        Args:
            returns: (T, N) returns, the same columns as in ``fit``.
            quote_volume: (T, N) quote volume; needed by ``weighted_mean``, whose first
                ``volume_window`` bars use what volume history the window holds.

        Returns:
            (T, n_factors_) factor: one column, or none for :class:`NoFactor`; NaN where
            no member has a bar.
        """
        check_is_fitted(self, "members_")
        returns = np.asarray(returns, dtype=float)
        if returns.ndim != 2 or returns.shape[1] != self.n_features_in_:
            raise ValueError(
                f"returns must be (T, {self.n_features_in_}) like in fit, got {returns.shape}"
            )
        if not self.n_factors:
            return np.empty((len(returns), 0))
        raw = self._raw_factor(returns, quote_volume)
        return ((raw - self.mean_) / self.std_)[:, None]

    def channels(
        self,
        returns: np.ndarray,
        quote_volume: np.ndarray | None,
        listed: np.ndarray,
        dtype: DTypeLike = np.float64,
    ) -> FactorChannels:
        """The fitted factor of any window as input channels of every listed asset.

        Args:
            dtype: of the (T, N, C) channels; the factor is computed in float64 either way,
                so float32 channels are exactly the float64 ones cast (a fleet run's
                channels are float32: no float64 grid of them is ever held).
        """
        factor = self.transform(returns, quote_volume)
        stems = None
        if self._with_leader():
            lead = np.asarray(returns, dtype=float)[:, self.leader_column_]
            factor = np.column_stack([factor, (lead - self.leader_mean_) / self.leader_std_])
            stems = ["market_factor", "leader_return"]
        residual = self.residual and self.n_factors
        channels = inject_market_factor(
            factor, listed, self.n_lags, self.max_ffill, stems, np.float64 if residual else dtype
        )
        if not residual:
            return channels
        filled = channels.values[..., 0]  # (T, N) the factor as injected (filled, or 0)
        with np.errstate(invalid="ignore"):
            resid = (np.asarray(returns, dtype=float) - self.betas_ * filled) / self.residual_std_
        values = np.concatenate([channels.values, resid[:, :, None]], axis=2).astype(dtype)
        names = [*channels.names, "factor_residual"]
        return FactorChannels(values, names, channels.n_filled, channels.n_zeroed)

    def to_dict(self) -> dict:
        """JSON-ready fitted state (for ``factor.json``)."""
        check_is_fitted(self, "members_")
        fitted = bool(self.n_factors)
        return {
            "method": self.method,
            "members": self._member_names(),
            "mean": self.mean_ if fitted else None,
            "std": self.std_ if fitted else None,
            "loadings": None,
            "explained_variance_ratio": None,
            # what transform needs besides the loadings, so a reader can rebuild the factor
            "member_mean": None,
            "member_std": None,
            "volume_window": None,
            "leader": self.leader,
            **self._residual_state(),
            **self._leader_state(),
        }

    def _leader_state(self) -> dict:
        if not self._with_leader():
            return {}
        names = self.symbols_ or list(range(self.n_features_in_))
        column = names[self.leader_column_]
        return {
            "leader_channel": {"symbol": column, "mean": self.leader_mean_, "std": self.leader_std_}
        }

    def _residual_state(self) -> dict:
        """Per symbol (else column) beta and residual std, when ``residual`` is on."""
        if not (self.residual and self.n_factors):
            return {}
        names = self.symbols_ or list(range(self.n_features_in_))
        return {
            "residual": True,
            "betas": {str(k): _num(b) for k, b in zip(names, self.betas_, strict=True)},
            "residual_std": {
                str(k): _num(v) for k, v in zip(names, self.residual_std_, strict=True)
            },
        }

    @classmethod
    def from_dict(cls, state: dict, symbols: Sequence[str]) -> MarketFactorExtractor:
        """Rebuilds a fitted extractor from ``to_dict()`` for a panel with ``symbols``.

        The columns need not be those of the fitting panel: the members are found by name.

        Raises:
            ConfigError: an unknown method, a state without what ``transform`` needs
                (written by an older Huracan), or a member that is not in ``symbols``.
        """
        kinds = {kind.method: kind for kind in _subclasses(MarketFactorExtractor)}
        kind = kinds.get(state["method"])
        if kind is None:
            raise ConfigError(f"stored market factor method {state['method']!r} is unknown")
        lead = state.get("leader_channel")
        params = {
            "leader": state.get("leader", "BTC"),
            "residual": bool(state.get("residual")),
            "leader_channel": lead is not None,
        }
        if state.get("volume_window") is not None:
            params["volume_window"] = int(state["volume_window"])
        extractor = kind(**params)
        extractor.n_features_in_ = len(symbols)
        extractor.symbols_ = list(symbols)
        extractor.members_ = _member_columns(state["members"], extractor.symbols_, len(symbols))
        extractor.n_factors_ = extractor.n_factors
        if extractor.n_factors:
            extractor.mean_, extractor.std_ = float(state["mean"]), float(state["std"])
        if extractor.residual and extractor.n_factors:  # symbols it was not fitted on: NaN
            betas, stds = state["betas"], state["residual_std"]
            extractor.betas_ = np.array([_nan(betas.get(s)) for s in symbols])
            extractor.residual_std_ = np.array([_nan(stds.get(s)) for s in symbols])
        if extractor._with_leader():
            if lead["symbol"] not in extractor.symbols_:
                raise ConfigError(
                    f"the market factor's leader channel needs {lead['symbol']!r}, "
                    f"which is not among the {len(symbols)} symbols"
                )
            extractor.leader_column_ = extractor.symbols_.index(lead["symbol"])
            extractor.leader_mean_, extractor.leader_std_ = float(lead["mean"]), float(lead["std"])
        extractor._load_state(state)
        return extractor

    @staticmethod
    def input_symbols(state: dict) -> list[str]:
        """Every symbol whose bars a stored factor (``to_dict()``) reads: its members, then
        the leader channel's symbol, which need be neither a member nor a served coin."""
        lead = (state.get("leader_channel") or {}).get("symbol")
        members = list(state["members"])
        return members + [lead] if lead is not None and lead not in members else members

    def _load_state(self, state: dict) -> None:
        """Takes what the subclass learns from a stored state (nothing by default)."""

    def _check_params(self) -> None:
        if self.n_lags < 0 or self.max_ffill < 0:
            raise ConfigError(
                f"n_lags and max_ffill must be >= 0, got {self.n_lags} and {self.max_ffill}"
            )

    def _fit_members(self, member_returns: np.ndarray) -> None:
        """Learns what the factor needs beyond its mean and std (nothing by default)."""

    def _raw_factor(self, returns: np.ndarray, quote_volume: np.ndarray | None) -> np.ndarray:
        """(T,) factor before standardising; NaN where no member has a bar."""
        raise NotImplementedError

    def _with_leader(self) -> bool:
        return bool(self.leader_channel and self.n_factors and self.method != "leader")

    def _leader_column(self) -> int:
        """The column of ``leader`` among all symbols (a lead-lag need not lie inside the
        dominant cluster), else of the first member."""
        if self.symbols_ is not None and self.leader in self.symbols_:
            return self.symbols_.index(self.leader)
        return int(self.members_[self._leader_position()])

    def _leader_position(self) -> int:
        names = self._member_names()
        return names.index(self.leader) if self.leader in names else 0

    def _member_names(self) -> list:
        if self.symbols_ is None:
            return [int(j) for j in self.members_]
        return [self.symbols_[j] for j in self.members_]


class PCAFactor(MarketFactorExtractor):
    """First principal component of the members' returns, each standardised.

    Loadings and the members' means and stds are fitted on the training rows where every
    member has a bar; in ``transform`` a missing member counts as 0 after standardising
    (its training mean), so the factor is missing only where no member has a bar. The
    sign is fixed so the factor moves with ``leader``.
    """

    method = "pca"

    def to_dict(self) -> dict:
        return {
            **super().to_dict(),
            "loadings": self.loadings_.tolist(),
            "explained_variance_ratio": self.explained_variance_ratio_,
            "member_mean": self.member_mean_.tolist(),
            "member_std": self.member_std_.tolist(),
        }

    def _load_state(self, state: dict) -> None:
        if state.get("member_mean") is None:
            raise ConfigError(
                "the stored pca market factor lacks member_mean/member_std: the model was "
                "saved by an older Huracan; retrain it to serve signals"
            )
        self.loadings_ = np.asarray(state["loadings"], dtype=float)
        self.member_mean_ = np.asarray(state["member_mean"], dtype=float)
        self.member_std_ = np.asarray(state["member_std"], dtype=float)
        self.explained_variance_ratio_ = state.get("explained_variance_ratio")

    def _fit_members(self, member_returns: np.ndarray) -> None:
        complete = ~np.isnan(member_returns).any(axis=1)
        if complete.sum() < 2:
            raise DataError(
                f"members {self._member_names()}",
                f"only {complete.sum()} bars where every member has a bar; PCA needs >= 2",
            )
        rows = member_returns[complete]
        self.member_mean_ = rows.mean(axis=0)
        self.member_std_ = rows.std(axis=0)
        flat = self.member_std_ == 0
        if flat.any():
            raise DataError(
                f"member {self._member_names()[int(np.argmax(flat))]}",
                "has constant returns over the training window",
            )
        standardised = (rows - self.member_mean_) / self.member_std_
        covariance = np.atleast_2d(np.cov(standardised, rowvar=False))
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
        loadings = eigenvectors[:, -1]
        leader = self._leader_position()
        # the factor's covariance with the leader is (covariance @ loadings)[leader]
        if (covariance @ loadings)[leader] < 0:
            loadings = -loadings
        self.loadings_ = loadings
        self.explained_variance_ratio_ = float(eigenvalues[-1] / eigenvalues.sum())

    def _raw_factor(self, returns: np.ndarray, quote_volume: np.ndarray | None) -> np.ndarray:
        member_returns = returns[:, self.members_]
        present = ~np.isnan(member_returns)
        standardised = (member_returns - self.member_mean_) / self.member_std_
        raw = np.where(present, standardised, 0.0) @ self.loadings_
        return np.where(present.any(axis=1), raw, np.nan)


class MeanFactor(MarketFactorExtractor):
    """Equal-weight mean of the members' returns present at each bar."""

    method = "mean"

    def _weights(self, quote_volume: np.ndarray | None, present: np.ndarray) -> np.ndarray:
        return present.astype(float)

    def _raw_factor(self, returns: np.ndarray, quote_volume: np.ndarray | None) -> np.ndarray:
        member_returns = returns[:, self.members_]
        present = ~np.isnan(member_returns)
        weights = self._weights(quote_volume, present)
        total = weights.sum(axis=1)
        weighted = np.where(present, member_returns, 0.0) * weights
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, weighted.sum(axis=1) / total, np.nan)


class WeightedMeanFactor(MeanFactor):
    """Mean weighted by each member's trailing quote volume over the ``volume_window``
    bars before the bar (never the bar itself).

    Args:
        volume_window: bars of trailing quote volume behind the weights.
        n_lags: as `MarketFactorExtractor`.
        max_ffill: as `MarketFactorExtractor`.
        leader: as `MarketFactorExtractor`.
    """

    method = "weighted_mean"

    def __init__(
        self,
        volume_window: int = 24,
        n_lags: int = 2,
        max_ffill: int = 3,
        leader: str = "BTC",
        residual: bool = False,
        leader_channel: bool = False,
        lead_fit: bool = False,
    ):
        self.volume_window = volume_window
        super().__init__(n_lags, max_ffill, leader, residual, leader_channel, lead_fit)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "volume_window": self.volume_window}

    def _check_params(self) -> None:
        super()._check_params()
        if self.volume_window < 1:
            raise ConfigError(f"volume_window must be >= 1 bar, got {self.volume_window}")

    def _weights(self, quote_volume: np.ndarray | None, present: np.ndarray) -> np.ndarray:
        if quote_volume is None:
            raise ConfigError("factor method 'weighted_mean' needs quote_volume")
        quote_volume = np.asarray(quote_volume, dtype=float)
        expected = (len(present), self.n_features_in_)
        if quote_volume.shape != expected:
            raise ValueError(f"quote_volume has shape {quote_volume.shape}, expected {expected}")
        trailing = trailing_mean(quote_volume[:, self.members_], self.volume_window)
        weights = np.where(present & (trailing > 0), trailing, 0.0)
        # without volume history (a window's first bar), members present weigh equally
        no_history = weights.sum(axis=1) == 0
        return np.where(no_history[:, None], present, weights)


class LeaderFactor(MarketFactorExtractor):
    """The leader's own return: the dominant cluster's member named ``leader`` (else its
    first member). What a lead-lag trader watches; the ablation of the cluster's PCA."""

    method = "leader"

    def _raw_factor(self, returns: np.ndarray, quote_volume: np.ndarray | None) -> np.ndarray:
        return returns[:, self.members_[self._leader_position()]]


class NoFactor(MarketFactorExtractor):
    """Ablation: no factor; ``transform`` returns zero columns, so no channels."""

    method = "none"
    n_factors = 0


def _residual_fit(returns: np.ndarray, factor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of (T, N) ``returns``: the OLS beta on the (T,) ``factor`` and the
    residual std, over the bars where both exist (NaN with fewer than 2 such bars)."""
    both = np.isfinite(returns) & np.isfinite(factor)[:, None]
    n = both.sum(0)
    r = np.where(both, returns, 0.0)
    f = np.where(both, factor[:, None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r_mean, f_mean = r.sum(0) / n, f.sum(0) / n
        rc, fc = np.where(both, r - r_mean, 0.0), np.where(both, f - f_mean, 0.0)
        beta = (rc * fc).sum(0) / (fc * fc).sum(0)
        std = np.sqrt(((rc - beta * fc) ** 2).sum(0) / n)
    ok = (n >= 2) & np.isfinite(beta) & (std > 0)
    return np.where(ok, beta, np.nan), np.where(ok, std, np.nan)


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _nan(value: float | None) -> float:
    return np.nan if value is None else float(value)


def _subclasses(kind: type) -> list[type]:
    return [sub for direct in kind.__subclasses__() for sub in (direct, *_subclasses(direct))]


def _member_columns(
    members: Sequence[int] | Sequence[str], symbols: list[str] | None, n_columns: int
) -> np.ndarray:
    members = list(members)
    if not members:
        raise ConfigError("the market factor needs at least one dominant-cluster member")
    if all(isinstance(m, str) for m in members):
        if symbols is None:
            raise ConfigError("members given as symbols need the symbols of the columns")
        missing = [m for m in members if m not in symbols]
        if missing:
            raise ConfigError(f"members {missing} are not among the {len(symbols)} symbols")
        return np.array([symbols.index(m) for m in members])
    columns = np.asarray(members)
    if (
        not np.issubdtype(columns.dtype, np.integer)
        or (columns < 0).any()
        or (columns >= n_columns).any()
    ):
        raise ConfigError(f"members {members} are not column indices in [0, {n_columns})")
    return columns


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each column over the ``window`` bars before each bar, NaN ignored.

    Bar t uses bars ``t - window .. t - 1`` only; NaN where none of them has a value.

    Args:
        values: (T, N) array.
        window: bars to average.

    Returns:
        (T, N) trailing means.
    """
    present = ~np.isnan(values)
    zeros = np.zeros((1, values.shape[1]))
    sums = np.concatenate([zeros, np.cumsum(np.where(present, values, 0.0), axis=0)])
    counts = np.concatenate([zeros, np.cumsum(present, axis=0)])
    end = np.arange(len(values))
    start = np.maximum(end - window, 0)
    n = counts[end] - counts[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[end] - sums[start]) / n, np.nan)


@dataclass
class FactorChannels:
    """The market factor as input channels of every asset.

    Attributes:
        values: (T, N, C) channels; NaN where the asset has no bar.
        names: the C channel names: the factor, then its lags (then the leader channel
            and its lags, then the residual, where on).
        n_filled: factor bars forward-filled (missing at most ``max_ffill`` bars so far).
        n_zeroed: factor bars set to 0 (missing longer, or before the first value).
    """

    values: np.ndarray
    names: list[str]
    n_filled: int
    n_zeroed: int


def inject_market_factor(
    factor: np.ndarray,
    listed: np.ndarray,
    n_lags: int = 2,
    max_ffill: int = 3,
    stems: Sequence[str] | None = None,
    dtype: DTypeLike = np.float64,
) -> FactorChannels:
    """Turns the factor into input channels for every asset: the factor and its lags.

    Causal: a missing factor bar takes the last value when that is at most ``max_ffill``
    bars old, else 0 (neutral), so a gap of at most ``max_ffill`` bars is filled whole
    and a longer one is filled for its first ``max_ffill`` bars, then zeroed. Lag k at
    bar t is the filled factor at bar t - k (0 before the first bar).

    Args:
        factor: (T,) or (T, K) standardised factor on the panel's grid, NaN where missing.
        listed: (T, N) bool, True where the asset has a bar.
        n_lags: lags added after the factor itself.
        max_ffill: longest stretch, in bars, a missing factor is forward-filled.
        stems: the K columns' channel names (default ``market_factor`` or
            ``market_factor_<i>``); a lag's name adds ``_lag<k>``.
        dtype: of the (T, N, C) channels (float32: the float64 values cast, no float64
            copy of the grid held).

    Returns:
        The (T, N, K * (1 + n_lags)) channels and the counts of filled and zeroed bars.
    """
    if n_lags < 0 or max_ffill < 0:
        raise ConfigError(f"n_lags and max_ffill must be >= 0, got {n_lags} and {max_ffill}")
    factor = np.asarray(factor, dtype=float)
    factor = factor[:, None] if factor.ndim == 1 else factor
    listed = np.asarray(listed, dtype=bool)
    if listed.ndim != 2 or listed.shape[0] != factor.shape[0]:
        raise ValueError(f"listed must be (T={factor.shape[0]}, N), got shape {listed.shape}")
    n_bars, n_factors = factor.shape
    missing = np.isnan(factor)
    rows = np.arange(n_bars)[:, None]
    last_seen = np.maximum.accumulate(np.where(missing, -1, rows), axis=0)
    filled = missing & (last_seen >= 0) & (rows - last_seen <= max_ffill)
    zeroed = missing & ~filled
    cols = np.broadcast_to(np.arange(n_factors), factor.shape)
    base = np.where(filled, factor[np.maximum(last_seen, 0), cols], factor)
    base[zeroed] = 0.0
    lagged = [_shift(base, k) for k in range(n_lags + 1)]
    channels = np.stack(lagged, axis=2).reshape(n_bars, n_factors * (n_lags + 1))
    if stems is None:
        stems = (
            ["market_factor"]
            if n_factors == 1
            else [f"market_factor_{i}" for i in range(n_factors)]
        )
    names = [f"{stem}_lag{k}" if k else stem for stem in stems for k in range(n_lags + 1)]
    channels = channels.astype(dtype, copy=False)
    values = np.where(listed[:, :, None], channels[:, None, :], np.array(np.nan, dtype))
    return FactorChannels(values, names, int(filled.sum()), int(zeroed.sum()))


def _shift(values: np.ndarray, k: int) -> np.ndarray:
    """``values`` k bars later: row t holds row t - k, 0 before the first bar."""
    shifted = np.zeros_like(values)
    if k < len(values):
        shifted[k:] = values[: len(values) - k]
    return shifted
