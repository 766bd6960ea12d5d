"""The ensemble across clusters (issue 31): a meta-model stacked on the fleet's heads.

Components, per asset and horizon: its own cluster's head, every other cluster's head
evaluated on the same input (``GroupedMoEHead`` takes any group's parameters for any
input), a global head (one parameter set for all assets, trained on the same encoder
codes) and, where ``baselines.extra`` holds ``lightgbm``, LightGBM's probability.

The meta-model reads, per sample, each component's logit and its logit times its skill
(the Spearman correlation of its probability with the net return of that horizon, over
the fitting samples of the asset's own cluster): a component that ranked an asset's
cluster well on the fitting samples can be trusted more there. It is fitted per fold and
horizon on the fold's validation slice only, which no component was trained on:

1. the validation days are cut in two halves (:func:`cross_fit_halves`); a meta-model
   fitted on one half predicts the other, and back, giving out-of-fold predictions of
   every validation sample; samples whose label reaches across the cut are purged from
   the fitting half;
2. the ensemble's horizon and cut are chosen on those out-of-fold predictions by the
   heads' rule (``thresholds``, the family gate);
3. the meta-model that scores the test window is refitted on the whole validation slice.

The test window is never read by a fit. Meta-models (``ensemble.meta``): ``logistic``,
L2-regularised logistic stacking (scikit-learn); ``gating_mlp``, a small MLP whose softmax
gate weighs the components' logits (torch).
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

from huracan.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

LOGIT_CLIP = 8.0  # |logit| of a probability within 3e-4 of 0 or 1: beyond it, no information


@dataclass(frozen=True)
class EnsembleConfig:
    """The ``ensemble`` config group.

    Attributes:
        kind: ``none`` (no ensemble, the default) or ``stack`` (the meta-model, its
            components and its row in ``results.csv``).
        meta: ``logistic`` (L2 logistic stacking) or ``gating_mlp`` (a softmax gate over
            the components' logits).
        l2: the meta-model's L2 penalty (scikit-learn's ``C`` is ``1 / l2``; the MLP's
            weight decay).
        global_head: train a global head (one parameter set for all assets) as a component.
        hidden: the gating MLP's hidden width.
        epochs: the gating MLP's full-batch training steps.
        lr: the gating MLP's Adam learning rate.
        min_samples: fewest fitting samples (with both classes) a meta-model is fitted on;
            with fewer, the ensemble does not predict at that horizon in that fold.
    """

    kind: Literal["none", "stack"] = "none"
    meta: Literal["logistic", "gating_mlp"] = "logistic"
    l2: float = 1.0
    global_head: bool = True
    hidden: int = 8
    epochs: int = 300
    lr: float = 0.01
    min_samples: int = 50

    def __post_init__(self) -> None:
        if self.kind not in ("none", "stack"):
            raise ConfigError(f"ensemble.kind must be none or stack, got {self.kind!r}")
        if self.meta not in ("logistic", "gating_mlp"):
            raise ConfigError(f"ensemble.meta must be logistic or gating_mlp, got {self.meta!r}")
        if not self.l2 > 0:
            raise ConfigError(f"ensemble.l2 must be > 0, got {self.l2}")
        for name in ("hidden", "epochs", "min_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ensemble.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"ensemble.lr must be > 0, got {self.lr}")

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


def logit(prob: np.ndarray) -> np.ndarray:
    """Clipped log-odds of probabilities; NaN (no prediction) reads as 0 (no opinion)."""
    p = np.clip(np.nan_to_num(prob, nan=0.5), 1e-6, 1 - 1e-6)
    return np.clip(np.log(p / (1 - p)), -LOGIT_CLIP, LOGIT_CLIP)


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


def make_meta(config: EnsembleConfig) -> LogisticMeta | GatingMLPMeta:
    if config.meta == "gating_mlp":
        return GatingMLPMeta(config.l2, config.hidden, config.epochs, config.lr)
    return LogisticMeta(config.l2)


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
    n_clusters: int,
    seed: int,
):
    """A meta-model on the fitting samples, with the skills measured on the same ones;
    None with fewer than ``min_samples`` samples or one class only."""
    keep = np.isfinite(label) & np.isfinite(net)
    if keep.sum() < config.min_samples or len(np.unique(label[keep])) < 2:
        return None, None
    skill = component_skill(prob[keep], net[keep], cluster[keep], n_clusters)
    x = meta_inputs(prob[keep], skill, cluster[keep])
    return make_meta(config).fit(x, label[keep], seed), skill


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
        fit_first, fit_second = first & (row < cut - h), second & (row >= cut + h)
        for fitting, predicted in ((fit_first, second), (fit_second, first)):
            model, skill = fit_meta(
                config, prob[fitting, :, i], cluster[fitting], label[fitting, i],
                net[fitting, i], n_clusters, seed,
            )  # fmt: skip
            if model is not None and predicted.any():
                x = meta_inputs(prob[predicted, :, i], skill, cluster[predicted])
                out_val[predicted, i] = model.predict_proba(x)
        model, skill = fit_meta(
            config, prob[:, :, i], cluster, label[:, i], net[:, i], n_clusters, seed
        )
        if model is None:
            meta.append(None)
            continue
        if len(test_prob):
            x = meta_inputs(test_prob[:, :, i], skill, test_cluster)
            out_test[:, i] = model.predict_proba(x)
        meta.append(
            {
                **model.describe(),
                "skill": np.round(skill, 4).tolist(),
                "samples": int(np.isfinite(label[:, i]).sum()),
            }
        )
    return Stacked(out_val, out_test, meta)
