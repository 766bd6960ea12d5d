"""``factor.lead_fit``: each coin's own lead-lag loading on its factor channels, as a channel.

A head serves a whole cluster, so it reads one market factor (and the level factors of
``cluster=hierarchy``) the same way for every coin of the cluster; but how much of the
leader's move reaches a coin on the next bar, and so the move worth a trade, differs
from coin to coin. The lead fit regresses each coin's next-bar return on its factor
channels at the bar (OLS with an intercept, the fold's training rows only: a pair of
bars counts where both are training rows) and adds the fitted move, without the
intercept, as the channel ``lead_fit``: the coin's expected next-bar move from the
factors, in one unit for every coin (divided by one scale, the std of the fitted moves
over every coin's training rows), so that a shared head can read one cut off it.

Fitted per fold in ``prepare_fold`` and applied unchanged to every row; a bar's channel
reads the channels of that bar only. The hierarchical pipeline alone builds it (serving,
the Mechanic and replay do not: ``refuse_lead_fit``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike
from omegaconf import DictConfig
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from huracan.errors import ConfigError
from huracan.factor import FactorChannels


class LeadFit(BaseEstimator):
    """Per asset, the OLS of its next-bar return on its factor channels at the bar.

    Learns ``coef_`` ((N, 1 + C): intercept, then one coefficient per channel; 0 for an
    asset with fewer than ``C + 2`` usable pairs of training bars: no fitted move) and
    ``scale_`` (the
    std of the fitted moves, intercepts left out, over every asset's training rows).
    """

    def fit(self, channels: np.ndarray, returns: np.ndarray, rows: np.ndarray) -> LeadFit:
        """Fits on the training ``rows`` of the grid.

        Args:
            channels: (T, N, C) factor channels, NaN where an asset has no bar.
            returns: (T, N) log return of each bar.
            rows: sorted grid rows to fit on; bar t's channels pair with bar t + 1's
                return where both t and t + 1 are among them.
        """
        rows = np.asarray(rows)
        pairs = rows[:-1][np.diff(rows) == 1]  # t and t + 1 both training rows
        x = _with_intercept(np.asarray(channels[pairs], dtype=float))  # (P, N, 1 + C)
        y = np.asarray(returns[pairs + 1], dtype=float)  # (P, N)
        usable = np.isfinite(x).all(-1) & np.isfinite(y)
        x = np.where(usable[..., None], x, 0.0)
        gram = np.einsum("pnu,pnv->nuv", x, x)
        moment = np.einsum("pnu,pn->nu", x, np.where(usable, y, 0.0))
        coef = np.einsum("nuv,nv->nu", np.linalg.pinv(gram), moment)
        coef[usable.sum(0) < x.shape[-1] + 1] = 0.0  # too few pairs to fit: no move
        self.coef_ = coef
        moves = np.einsum("pnc,nc->pn", x[..., 1:], coef[:, 1:])[usable]
        self.scale_ = float(moves.std()) if moves.size > 1 and moves.std() > 0 else 1.0
        return self

    def of_peers(self, peers: list[np.ndarray]) -> LeadFit:
        """A lead fit for coins the fit never saw (a fold's late coins): each the mean
        loading of its peers (boolean masks over this fit's assets), in the same scale; a
        peer with too few training pairs to fit (loading 0) counts as 0."""
        lead = LeadFit()
        lead.coef_ = np.stack([self.coef_[p].mean(0) for p in peers])
        lead.scale_ = self.scale_
        return lead

    def channels(self, channels: FactorChannels, dtype: DTypeLike = np.float32) -> FactorChannels:
        """``channels`` with ``lead_fit`` appended: each asset's fitted move at every bar,
        in units of ``scale_`` (NaN where a channel is)."""
        check_is_fitted(self, "coef_")
        values = channels.values
        move = np.einsum("tnc,nc->tn", values, self.coef_[:, 1:].astype(values.dtype))
        joined = np.concatenate([values, (move / self.scale_)[..., None].astype(dtype)], axis=2)
        names = [*channels.names, "lead_fit"]
        return FactorChannels(joined, names, channels.n_filled, channels.n_zeroed)


def _with_intercept(x: np.ndarray) -> np.ndarray:
    return np.concatenate([np.ones(x.shape[:-1] + (1,)), x], axis=-1)


def refuse_lead_fit(cfg: DictConfig, pipeline: str) -> None:
    """Raises a ConfigError for ``factor.lead_fit`` in a pipeline that serves per-coin
    models: serving and the Mechanic do not rebuild the lead_fit channel."""
    if cfg.factor.get("lead_fit"):
        raise ConfigError(
            f"pipeline={pipeline} factor.lead_fit=true: serving and the Mechanic do not "
            "rebuild the lead_fit channel; it runs with pipeline=hierarchical only"
        )
