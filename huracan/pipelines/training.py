"""Training one fold: the shared encoder, the grouped heads, and the decision thresholds.

The ``encoder`` and ``head`` config groups name one of the recipes below by ``_target_``;
each recipe holds its hyper-parameters and fits its part of the model on the fold's
sample tensors with the trainer factory of the ``trainer`` group.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch import nn

from huracan.config import build
from huracan.errors import ConfigError
from huracan.models import (
    Autoencoder,
    AutoencoderModule,
    FleetModule,
    GroupedMoEHead,
    IdentityEncoder,
    LinearEncoder,
)
from huracan.models.batches import FoldSamples
from huracan.progress import stage_trainer

TrainerFactory = Callable[..., pl.Trainer]
Samples = dict[str, torch.Tensor]
Granularity = Literal["global", "cluster", "coin"]


@dataclass(frozen=True)
class AutoencoderEncoder:
    """An MLP autoencoder pretrained on every coin's training-window features.

    Early stopping watches the validation slice's reconstruction loss; the weights of the
    epoch with the lowest one are kept (``BestWeights``). Above ``max_samples`` training
    (or validation) rows, a seeded uniform subset of that many is used: a 16-dimensional
    code of ~30 features does not need millions of rows, and the heads still learn from
    every row.
    """

    latent_dim: int = 16
    hidden: tuple[int, ...] = (64,)
    dropout: float = 0.0
    lr: float = 1e-3
    batch_size: int = 2048
    max_epochs: int = 20
    patience: int = 3
    max_samples: int | None = None

    def __post_init__(self) -> None:
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError(f"encoder.max_samples must be >= 1 or null, got {self.max_samples}")

    def fit(
        self,
        train: Samples,
        val: Samples,
        make_trainer: TrainerFactory,
        logger: object,
        seed: int,
        stage: str = "encoder",
    ) -> nn.Module:
        pl.seed_everything(seed, workers=True, verbose=False)
        autoencoder = Autoencoder(
            train["x"].shape[1], self.latent_dim, tuple(self.hidden), self.dropout
        )
        module = AutoencoderModule(autoencoder, lr=self.lr)
        trainer = stage_trainer(
            make_trainer,
            stage,
            max_epochs=self.max_epochs,
            logger=logger,
            callbacks=stopping("val/recon", self.patience),
        )
        x_train, x_val = (subsample(x, self.max_samples, seed) for x in (train["x"], val["x"]))
        samples = FoldSamples({"x": x_train}, {"x": x_val}, self.batch_size, seed)
        trainer.fit(module, datamodule=samples)
        return autoencoder.cpu().eval()


def subsample(x: torch.Tensor, limit: int | None, seed: int) -> torch.Tensor:
    """At most ``limit`` rows of ``x``: a seeded uniform subset in their order (all rows
    when there are no more, or ``limit`` is None)."""
    if limit is None or len(x) <= limit:
        return x
    rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:limit]
    return x[rows.sort().values]


@dataclass(frozen=True)
class PCAEncoder:
    """PCA of the training-window features: the leading ``latent_dim`` components."""

    latent_dim: int = 16

    def fit(self, train: Samples, val: Samples, make_trainer, logger, seed, stage="") -> nn.Module:
        return LinearEncoder.fit_pca(train["x"].numpy(), self.latent_dim)


@dataclass(frozen=True)
class NoEncoder:
    """No encoder: the heads see the scaled features themselves."""

    def fit(self, train: Samples, val: Samples, make_trainer, logger, seed, stage="") -> nn.Module:
        return IdentityEncoder(train["x"].shape[1])


@dataclass(frozen=True)
class MoEHeads:
    """Mixture-of-experts heads, one parameter set per group of assets.

    Attributes:
        granularity: ``global`` (one head), ``cluster`` (one per cluster) or ``coin``.
        stack_above: with more heads than this, every training step trains every head on
            ``group_batch_size`` of its own samples (stacked batches, one batched pass;
            see ``StackedGroupSampler``); 0 always, None never (flat batches of
            ``batch_size`` samples of any heads).
        finetune_encoder: train the encoder with the heads (on a copy of it).
    """

    granularity: Granularity = "cluster"
    n_experts: int = 4
    hidden: int = 32
    top_k: int | None = None
    balance_weight: float = 0.01
    finetune_encoder: bool = False
    lr: float = 2e-3
    batch_size: int = 2048
    stack_above: int | None = 16
    group_batch_size: int = 128
    max_epochs: int = 30
    patience: int = 4

    def fit(
        self,
        encoder: nn.Module,
        n_groups: int,
        train: Samples,
        val: Samples,
        make_trainer: TrainerFactory,
        logger: object,
        seed: int,
        stage: str = "heads",
    ) -> FleetModule:
        """Trains the grouped heads (and the encoder too when ``finetune_encoder``)."""
        pl.seed_everything(seed, workers=True, verbose=False)
        if self.finetune_encoder:  # fine-tuning changes the encoder: keep the caller's intact
            encoder = copy.deepcopy(encoder)
        n_channels = train["factor"].shape[1]
        n_outputs = 1 if train["y"].ndim == 1 else train["y"].shape[1]  # one per horizon
        head = GroupedMoEHead(
            n_groups,
            encoder.out_dim + n_channels,
            self.n_experts,
            self.hidden,
            self.top_k,
            n_outputs,
        )
        # a frozen encoder gives the same codes every epoch: encode once, train on the codes
        learner, train, val = encoder, train, val
        if not self.finetune_encoder:
            learner = IdentityEncoder(encoder.out_dim)
            train, val = (encoded(encoder, part) for part in (train, val))
        module = FleetModule(learner, head, self.lr, self.finetune_encoder, self.balance_weight)
        trainer = stage_trainer(
            make_trainer,
            stage,
            max_epochs=self.max_epochs,
            logger=logger,
            callbacks=stopping("val/loss", self.patience),
        )
        stacked = self.stack_above is not None and n_groups > self.stack_above
        per_group = self.group_batch_size if stacked else None
        trainer.fit(module, datamodule=FoldSamples(train, val, self.batch_size, seed, per_group))
        module = module.cpu()
        if learner is not encoder:  # the trained heads behind the real encoder
            module = FleetModule(
                encoder, module.head, self.lr, self.finetune_encoder, self.balance_weight
            )
        return module.eval()


@torch.no_grad()
def encoded(encoder: nn.Module, samples: Samples, chunk: int = 65536) -> Samples:
    """The samples with ``x`` replaced by the frozen encoder's codes (in eval mode)."""
    encoder = encoder.eval()
    codes = [encoder.encode(x) for x in samples["x"].split(chunk)]
    empty = torch.empty(0, encoder.out_dim, dtype=samples["x"].dtype)
    return {**samples, "x": torch.cat(codes) if codes else empty}


class BestWeights(Callback):
    """Keeps the weights of the epoch with the lowest ``monitor`` and restores them at the end.

    Early stopping alone leaves the weights of ``patience`` epochs after the best one; this
    keeps a copy of the best epoch's state in memory (no files) and loads it when fitting
    ends, so a model is always the one its validation slice liked best.

    Attributes:
        best: the lowest value seen; ``best_epoch`` its epoch (None before any).
    """

    def __init__(self, monitor: str):
        self.monitor = monitor
        self.best = float("inf")
        self.best_epoch: int | None = None
        self._state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or not float(value) < self.best:
            return
        self.best, self.best_epoch = float(value), trainer.current_epoch
        self._state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._state is not None:
            pl_module.load_state_dict(self._state)


def stopping(monitor: str, patience: int) -> list[Callback]:
    """Early stopping on ``monitor`` with the best epoch's weights restored."""
    return [EarlyStopping(monitor, patience=patience), BestWeights(monitor)]


def fit_encoder(cfg, train: Samples, val: Samples, make_trainer, logger, seed: int, stage=""):
    """Builds the ``encoder`` config's recipe and fits the shared encoder with it.

    ``stage`` labels the progress bar, e.g. ``"fold 3/5 encoder"``.
    """
    return build(cfg).fit(train, val, make_trainer, logger, seed, stage or "encoder")


def fit_heads(cfg, encoder, n_groups, train, val, make_trainer, logger, seed, stage=""):
    """Builds the ``head`` config's recipe and trains the grouped heads with it."""
    recipe = build(cfg)
    return recipe.fit(encoder, n_groups, train, val, make_trainer, logger, seed, stage or "heads")


def without_factor(samples: Samples) -> Samples:
    """The same samples with no market-factor channel (for the built-in ablation)."""
    return {**samples, "factor": samples["factor"][:, :0]}
