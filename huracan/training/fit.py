"""Training one fold: the shared encoder, the grouped heads, and the decision thresholds.

The ``encoder`` and ``head`` config groups name one of the recipes below by ``_target_``;
each recipe holds its hyper-parameters and fits its part of the model on the fold's
sample tensors with the trainer factory of the ``trainer`` group.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal

import lightning.pytorch as pl
import torch
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
from huracan.models.callbacks import stopping
from huracan.progress import stage_trainer
from huracan.threads import wide_threads

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
        # [:] gathers inputs read lazily (training.folds.LazyInputs); a tensor's is a view
        samples = FoldSamples({"x": x_train[:]}, {"x": x_val[:]}, self.batch_size, seed)
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
        batch_size: flat batches: samples per step, at least.
        epoch_samples: flat batches: at most this many training samples an epoch, a fresh
            uniform subset each epoch (None: all); millions of samples do not need to be
            seen between two validations of heads this small.
        max_epoch_steps: flat batches: at most this many steps an epoch; a larger epoch
            takes larger batches (None: ``batch_size`` always). Per sample, a batch of
            2,048 trains about 5x as fast as one of 256 (``bench/bench_fleet.py``).
    """

    granularity: Granularity = "cluster"
    n_experts: int = 4
    hidden: int = 32
    top_k: int | None = None
    balance_weight: float = 0.01
    finetune_encoder: bool = False
    lr: float = 2e-3
    batch_size: int = 2048
    epoch_samples: int | None = None
    max_epoch_steps: int | None = None
    stack_above: int | None = 16
    group_batch_size: int = 128
    max_epochs: int = 30
    patience: int = 4

    def __post_init__(self) -> None:
        for name in ("epoch_samples", "max_epoch_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"head.{name} must be >= 1 or null, got {value}")

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
        codes: tuple[Samples, Samples] | None = None,
    ) -> FleetModule:
        """Trains the grouped heads (and the encoder too when ``finetune_encoder``).

        Args:
            codes: ``train`` and ``val`` already encoded by ``encoder`` (``encode``), so
                that several trainings on one frozen encoder share one encoding; ignored
                when the encoder is fine-tuned.
        """
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
        learner = encoder
        if not self.finetune_encoder:
            learner = IdentityEncoder(encoder.out_dim)
            train, val = codes or self.encode(encoder, train, val)
        module = FleetModule(learner, head, self.lr, self.finetune_encoder, self.balance_weight)
        trainer = stage_trainer(
            make_trainer,
            stage,
            max_epochs=self.max_epochs,
            logger=logger,
            callbacks=stopping("val/loss", self.patience),
        )
        with wide_threads() if self.stacked(n_groups) else nullcontext():  # wide products
            trainer.fit(module, datamodule=self.samples(train, val, n_groups, seed))
        module = module.cpu()
        if learner is not encoder:  # the trained heads behind the real encoder
            module = FleetModule(
                encoder, module.head, self.lr, self.finetune_encoder, self.balance_weight
            )
        return module.eval()

    def stacked(self, n_groups: int) -> bool:
        """Whether ``n_groups`` heads train on stacked batches."""
        return self.stack_above is not None and n_groups > self.stack_above

    def samples(self, train: Samples, val: Samples, n_groups: int, seed: int) -> FoldSamples:
        """The heads' datamodule: stacked batches above ``stack_above`` heads, else flat."""
        return FoldSamples(
            train,
            val,
            self.flat_batch_size(len(train["group"])),
            seed,
            self.group_batch_size if self.stacked(n_groups) else None,
            self.epoch_samples,
        )

    def encode(self, encoder: nn.Module, *parts: Samples) -> tuple[Samples, ...] | None:
        """The samples with ``x`` replaced by the frozen encoder's codes; None when the
        encoder is fine-tuned (it has no fixed codes)."""
        if self.finetune_encoder:
            return None
        return tuple(encoded(encoder, part) for part in parts)

    def flat_batch_size(self, n_train: int) -> int:
        """Samples per flat step: ``batch_size``, or more where an epoch of ``n_train``
        samples (at most ``epoch_samples``) would take over ``max_epoch_steps`` steps."""
        per_epoch = min(n_train, self.epoch_samples or n_train)
        if not self.max_epoch_steps:
            return self.batch_size
        return max(self.batch_size, -(-per_epoch // self.max_epoch_steps))


@torch.no_grad()
def encoded(encoder: nn.Module, samples: Samples, chunk: int = 65536) -> Samples:
    """The samples with ``x`` replaced by the frozen encoder's codes (in eval mode)."""
    encoder = encoder.eval()
    x = samples["x"]
    codes = torch.empty(len(x), encoder.out_dim, dtype=x.dtype)  # no list of chunks to join
    for start in range(0, len(x), chunk):
        codes[start : start + chunk] = encoder.encode(x[start : start + chunk])
    return {**samples, "x": codes}


def fit_encoder(cfg, train: Samples, val: Samples, make_trainer, logger, seed: int, stage=""):
    """Builds the ``encoder`` config's recipe and fits the shared encoder with it.

    ``stage`` labels the progress bar, e.g. ``"fold 3/5 encoder"``.
    """
    return build(cfg).fit(train, val, make_trainer, logger, seed, stage or "encoder")


def fit_heads(cfg, encoder, n_groups, train, val, make_trainer, logger, seed, stage="", codes=None):
    """Builds the ``head`` config's recipe and trains the grouped heads with it (``codes``:
    see ``MoEHeads.fit``)."""
    recipe = build(cfg)
    return recipe.fit(
        encoder, n_groups, train, val, make_trainer, logger, seed, stage or "heads", codes
    )


def without_factor(samples: Samples) -> Samples:
    """The same samples with no market-factor channel (for the built-in ablation)."""
    return {**samples, "factor": samples["factor"][:, :0]}
