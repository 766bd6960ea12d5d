"""The ensemble across clusters (issue 31): a meta-model stacked on the fleet's heads.

Components, per asset and horizon: its own cluster's head, every other cluster's head
evaluated on the same input (``GroupedMoEHead`` takes any group's parameters for any
input), a global head (one parameter set for all assets, trained on the same encoder
codes) and, where ``baselines.extra`` holds ``lightgbm``, LightGBM's probability.

The default meta-model (``convex``) weighs the components' logits by their rank IC on the
fitting samples; the label-fitted ones (``logistic``, ``gating_mlp``) read each
component's logit and its logit times its skill (the Spearman correlation of its
probability with the net return of that horizon, over the fitting samples of the asset's
own cluster). Every meta-model is fitted per fold and horizon on the fold's validation
slice only, which no component was trained on:

1. the validation days are cut in two halves (:func:`cross_fit_halves`); a meta-model
   fitted on one half predicts the other, and back, giving out-of-fold predictions of
   every validation sample; samples whose label reaches across the cut are purged from
   the fitting half;
2. the ensemble's horizon and cut are chosen on those out-of-fold predictions by the
   heads' rule (``thresholds``, the family gate);
3. the meta-model that scores the test window is refitted on the whole validation slice.

The test window is never read by a fit. Meta-models (``ensemble.meta``): ``convex``,
non-negative weights on the components' standardised logits from their rank IC, shrunk
toward equal weights, and ``best``, the one component with the best rank IC
(``huracan.ensemble_convex``); ``logistic``, L2-regularised logistic stacking
(scikit-learn); ``gating_mlp``, a small MLP whose softmax gate weighs the components'
logits (torch). With ``ensemble.fallback``, a horizon whose out-of-fold rank IC is not
above ``best``'s takes ``best`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from huracan.ensemble_convex import ConvexMeta, logit, rank_ic_by_bar
from huracan.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

METAS = ("convex", "best", "logistic", "gating_mlp")


@dataclass(frozen=True)
class EnsembleConfig:
    """The ``ensemble`` config group.

    Attributes:
        kind: ``none`` (no ensemble, the default) or ``stack`` (the meta-model, its
            components and its row in ``results.csv``).
        meta: ``convex`` (rank-IC weights on the standardised logits, shrunk toward
            equal), ``best`` (the best component by rank IC), ``logistic`` (L2 logistic
            stacking) or ``gating_mlp`` (a softmax gate over the components' logits).
        shrink: ``convex``'s lambda: 0 weighs by rank IC, 1 equally.
        fallback: per fold and horizon, ``best`` where the meta-model's out-of-fold rank
            IC is not above ``best``'s.
        l2: the meta-model's L2 penalty (scikit-learn's ``C`` is ``1 / l2``; the MLP's
            weight decay).
        global_head: train a global head (one parameter set for all assets) as a component.
        global_patience: the global head's early-stopping patience in epochs; None:
            ``head.patience // n_groups``, at least 1 (:func:`global_patience`).
        hidden: the gating MLP's hidden width.
        epochs: the gating MLP's full-batch training steps.
        lr: the gating MLP's Adam learning rate.
        min_samples: fewest fitting samples (with both classes) a meta-model is fitted on;
            with fewer, the ensemble does not predict at that horizon in that fold.
    """

    kind: Literal["none", "stack"] = "none"
    meta: Literal["convex", "best", "logistic", "gating_mlp"] = "convex"
    shrink: float = 0.0
    fallback: bool = False
    l2: float = 1.0
    global_head: bool = True
    global_patience: int | None = None
    hidden: int = 8
    epochs: int = 300
    lr: float = 0.01
    min_samples: int = 50

    def __post_init__(self) -> None:
        if self.kind not in ("none", "stack"):
            raise ConfigError(f"ensemble.kind must be none or stack, got {self.kind!r}")
        if self.meta not in METAS:
            raise ConfigError(f"ensemble.meta must be one of {METAS}, got {self.meta!r}")
        if not 0 <= self.shrink <= 1:
            raise ConfigError(f"ensemble.shrink must be in [0, 1], got {self.shrink}")
        if not self.l2 > 0:
            raise ConfigError(f"ensemble.l2 must be > 0, got {self.l2}")
        for name in ("hidden", "epochs", "min_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ensemble.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"ensemble.lr must be > 0, got {self.lr}")
        if self.global_patience is not None and self.global_patience < 1:
            raise ConfigError(
                f"ensemble.global_patience must be >= 1 or null, got {self.global_patience}"
            )

    def global_patience_for(self, head_patience: int, n_groups: int) -> int:
        """The global head's patience (:func:`global_patience`, or the configured one)."""
        if self.global_patience is not None:
            return self.global_patience
        return global_patience(head_patience, n_groups)

    @property
    def enabled(self) -> bool:
        return self.kind == "stack"


def ensemble_config(cfg: DictConfig) -> EnsembleConfig:
    """The run's ``ensemble`` group (none where a config has none), checked against the
    rest of the config: only the hierarchical pipeline stacks, and only cluster heads."""
    from omegaconf import OmegaConf

    node = cfg.get("ensemble")
    options = {} if node is None else OmegaConf.to_container(node, resolve=True)
    config = EnsembleConfig(**{k: v for k, v in options.items() if not k.startswith("_")})
    if config.enabled:
        pipeline = str(cfg.get("pipeline", {}).get("_target_", ""))
        if "hierarchical" not in pipeline:
            raise ConfigError(f"ensemble=stack needs pipeline=hierarchical, got {pipeline!r}")
        if cfg.get("head", {}).get("granularity") == "coin":
            raise ConfigError(
                "ensemble=stack combines cluster heads, and head=coin has one head per coin: "
                "use head=cluster or head=global"
            )
    return config


def global_patience(head_patience: int, n_groups: int) -> int:
    """The heads' patience counted in samples per parameter set: an epoch gives the global
    head's one parameter set every training sample, ``n_groups`` times what it gives a
    cluster head's (on average), so it waits ``head_patience // n_groups`` epochs (at
    least 1) without a better validation loss, about as many samples per parameter set
    as a cluster head waits."""
    return max(1, head_patience // max(n_groups, 1))


def cross_fit_halves(day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B,) masks of the first and the second half of the validation samples' days: the
    earlier half of the distinct days and the later one, so no day is in both."""
    days = np.unique(day)
    first_days = days[: len(days) // 2]
    first = np.isin(day, first_days)
    return first, ~first


def component_skill(
    prob: np.ndarray, net: np.ndarray, cluster: np.ndarray, n_clusters: int
) -> np.ndarray:
    """(n_clusters, K) Spearman correlation of each component's probability with the net
    return, over the samples of each cluster (0 where a cluster has under 3 samples or a
    constant column).

    Args:
        prob: (B, K) the components' probabilities; net: (B,) net returns (finite);
        cluster: (B,) the asset's own cluster of each sample.
    """
    skill = np.zeros((n_clusters, prob.shape[1]))
    for c in range(n_clusters):
        rows = cluster == c
        if rows.sum() < 3:
            continue
        ranks = rankdata(prob[rows], axis=0)  # (b, K)
        target = rankdata(net[rows])
        ranks = ranks - ranks.mean(0)
        target = target - target.mean()
        scale = np.sqrt((ranks**2).sum(0) * (target**2).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            skill[c] = np.where(scale > 0, ranks.T @ target / scale, 0.0)
    return skill


def meta_inputs(prob: np.ndarray, skill: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """(B, 2K) meta-model inputs: each component's logit and its logit times its skill on
    the sample's own cluster (its confidence there)."""
    z = logit(prob)  # (B, K)
    return np.concatenate([z, z * skill[cluster]], axis=1)


class LogisticMeta:
    """L2-regularised logistic stacking on standardised inputs (scikit-learn)."""

    def __init__(self, l2: float = 1.0):
        self.l2 = l2

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int = 0) -> LogisticMeta:
        self.model_ = make_pipeline(
            StandardScaler(), LogisticRegression(C=1.0 / self.l2, max_iter=1000)
        ).fit(x, y)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(x)[:, 1]

    def describe(self) -> dict:
        model = self.model_[-1]
        return {
            "coef": np.round(model.coef_[0], 5).tolist(),
            "intercept": float(model.intercept_[0]),
        }


class GatingMLPMeta:
    """A softmax gate over the K components' logits, from a small MLP of all 2K inputs:
    ``p = sigmoid(a * sum_k gate_k(x) * logit_k + b)``; full-batch Adam, seeded."""

    def __init__(self, l2: float = 1.0, hidden: int = 8, epochs: int = 300, lr: float = 0.01):
        self.l2, self.hidden, self.epochs, self.lr = l2, hidden, epochs, lr

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int = 0) -> GatingMLPMeta:
        self.scaler_ = StandardScaler().fit(x)
        k = x.shape[1] // 2
        generator = torch.Generator().manual_seed(seed)
        self.gate_ = torch.nn.Sequential(
            torch.nn.Linear(x.shape[1], self.hidden),
            torch.nn.GELU(),
            torch.nn.Linear(self.hidden, k),
        )
        for p in self.gate_.parameters():  # seeded here, not by the global torch seed
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
        self.scale_ = torch.nn.Parameter(torch.ones(()))
        self.bias_ = torch.nn.Parameter(torch.zeros(()))
        params = [*self.gate_.parameters(), self.scale_, self.bias_]
        optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.l2 * 1e-2)
        inputs, target = self._tensors(x), torch.as_tensor(y, dtype=torch.float32)
        with single_thread():
            for _ in range(self.epochs):
                optimizer.zero_grad()
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    self._logits(*inputs), target
                )
                loss.backward()
                optimizer.step()
        return self

    def _tensors(self, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        k = x.shape[1] // 2
        scaled = torch.as_tensor(self.scaler_.transform(x), dtype=torch.float32)
        return scaled, torch.as_tensor(x[:, :k], dtype=torch.float32)  # (B, 2K), raw logits

    def _logits(self, scaled: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        gate = self.gate_(scaled).softmax(-1)  # (B, K)
        return self.scale_ * (gate * logits).sum(-1) + self.bias_

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        with single_thread():
            return self._logits(*self._tensors(x)).sigmoid().numpy().astype(np.float64)

    @torch.no_grad()
    def describe(self) -> dict:
        return {"scale": float(self.scale_), "bias": float(self.bias_)}


@contextmanager
def single_thread() -> Iterator[None]:
    """One torch and one BLAS thread inside (a decorator too): fits this small spend more
    time synchronising threads than computing (measured on a loaded 2-core machine: the
    gate 35x slower with two torch threads; the logistic stack 6.5x with two BLAS threads,
    6,000 samples x 14 inputs: 1.1 s against 0.17 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


class SkillStack:
    """A label-fitted meta-model (``logistic``, ``gating_mlp``) on :func:`meta_inputs`,
    with the components' skills measured on its fitting samples."""

    def __init__(self, model: LogisticMeta | GatingMLPMeta, n_clusters: int):
        self.model, self.n_clusters = model, n_clusters

    def fit(self, prob, cluster, label, net, bar, seed: int = 0) -> SkillStack:
        self.skill_ = component_skill(prob, net, cluster, self.n_clusters)
        self.model.fit(meta_inputs(prob, self.skill_, cluster), label, seed)
        return self

    def predict_proba(self, prob: np.ndarray, cluster: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(meta_inputs(prob, self.skill_, cluster))

    def describe(self) -> dict:
        return {**self.model.describe(), "skill": np.round(self.skill_, 4).tolist()}


Meta = ConvexMeta | SkillStack


def make_meta(config: EnsembleConfig, n_clusters: int, meta: str | None = None) -> Meta:
    """The meta-model ``meta`` names (``config.meta`` by default)."""
    meta = meta or config.meta
    if meta in ("convex", "best"):
        return ConvexMeta(config.shrink, corner=meta == "best")
    if meta == "gating_mlp":
        return SkillStack(
            GatingMLPMeta(config.l2, config.hidden, config.epochs, config.lr), n_clusters
        )
    return SkillStack(LogisticMeta(config.l2), n_clusters)


@dataclass
class Stacked:
    """One fold's meta-model predictions: out-of-fold on validation, refitted on test.

    Attributes:
        validation: (Bv, H) out-of-fold probabilities (NaN where none).
        test: (Bt, H) probabilities of the meta-model refitted on the whole slice.
        meta: per horizon, the refitted meta-model's description and its sample counts.
    """

    validation: np.ndarray
    test: np.ndarray
    meta: list[dict | None]


def fit_meta(
    config: EnsembleConfig,
    prob: np.ndarray,
    cluster: np.ndarray,
    label: np.ndarray,
    net: np.ndarray,
    bar: np.ndarray,
    n_clusters: int,
    seed: int,
    meta: str | None = None,
) -> Meta | None:
    """A meta-model on the fitting samples with a label and a net return; None with
    fewer than ``min_samples`` of them or one class only."""
    keep = np.isfinite(label) & np.isfinite(net)
    if keep.sum() < config.min_samples or len(np.unique(label[keep])) < 2:
        return None
    model = make_meta(config, n_clusters, meta)
    return model.fit(prob[keep], cluster[keep], label[keep], net[keep], bar[keep], seed)


def cross_fitted(
    config: EnsembleConfig,
    halves: tuple[tuple[np.ndarray, np.ndarray], ...],
    val: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    n_clusters: int,
    seed: int,
    meta: str | None = None,
) -> np.ndarray:
    """(Bv,) out-of-fold probabilities at one horizon: each half predicted by a meta-model
    fitted on the other (NaN where none could be fitted).

    Args:
        halves: (fitting mask, predicted mask) pairs.
        val: (prob (Bv, K), cluster, label, net, bar) of the validation samples.
    """
    prob, cluster, label, net, bar = val
    out = np.full(len(prob), np.nan)
    for fitting, predicted in halves:
        model = fit_meta(
            config, prob[fitting], cluster[fitting], label[fitting], net[fitting],
            bar[fitting], n_clusters, seed, meta,
        )  # fmt: skip
        if model is not None and predicted.any():
            out[predicted] = model.predict_proba(prob[predicted], cluster[predicted])
    return out


def oof_rank_ic(score: np.ndarray, net: np.ndarray, bar: np.ndarray) -> float:
    """The mean rank IC by bar of out-of-fold predictions (-inf where there are none)."""
    keep = np.isfinite(score) & np.isfinite(net)
    return (
        float(rank_ic_by_bar(score[keep, None], net[keep], bar[keep])[0]) if keep.any() else -np.inf
    )


@single_thread()
def stack_fold(
    config: EnsembleConfig,
    val: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    label: np.ndarray,
    net: np.ndarray,
    horizons: tuple[int, ...],
    n_clusters: int,
    seed: int,
) -> Stacked:
    """Cross-fitted meta predictions of one fold's validation slice, and the test window's
    from a meta-model refitted on the whole slice.

    Args:
        val: (prob (Bv, K, H), cluster (Bv,), row (Bv,), day (Bv,)) of the validation
            samples: the components' probabilities, the asset's cluster, grid row, day.
        test: (prob (Bt, K, H), cluster (Bt,)) of the test samples.
        label: (Bv, H) validation labels (NaN: none); net: (Bv, H) their net returns.
    """
    prob, cluster, row, day = val
    test_prob, test_cluster = test
    out_val = np.full(label.shape, np.nan)
    out_test = np.full((len(test_prob), len(horizons)), np.nan)
    first, second = cross_fit_halves(day)
    cut = row[second].min() if second.any() else row.max() + 1
    meta: list[dict | None] = []
    for i, h in enumerate(horizons):
        # a label held h bars that reaches across the cut would tell one half the other's
        # outcome: purge h rows on each side of it from the fitting half
        halves = ((first & (row < cut - h), second), (second & (row >= cut + h), first))
        at_h = (prob[:, :, i], cluster, label[:, i], net[:, i], row)
        chosen = config.meta
        out_val[:, i] = cross_fitted(config, halves, at_h, n_clusters, seed)
        if config.fallback and chosen != "best":
            best = cross_fitted(config, halves, at_h, n_clusters, seed, "best")
            if oof_rank_ic(out_val[:, i], net[:, i], row) <= oof_rank_ic(best, net[:, i], row):
                chosen, out_val[:, i] = "best", best
        model = fit_meta(config, *at_h, n_clusters, seed, chosen)
        if model is None:
            meta.append(None)
            continue
        if len(test_prob):
            out_test[:, i] = model.predict_proba(test_prob[:, :, i], test_cluster)
        meta.append(
            {
                "meta": chosen,
                **model.describe(),
                "samples": int(np.isfinite(label[:, i]).sum()),
            }
        )
    return Stacked(out_val, out_test, meta)
