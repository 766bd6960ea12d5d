"""Training one fold: the shared encoder, the grouped heads, and the decision thresholds."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from omegaconf import DictConfig
from torch import nn

from huracan.errors import ConfigError
from huracan.models import (
    Autoencoder,
    AutoencoderModule,
    FleetModule,
    GroupedMoEHead,
    IdentityEncoder,
    LinearEncoder,
)
from huracan.models.batches import batch_loader

log = logging.getLogger("huracan")
TrainerFactory = Callable[..., pl.Trainer]


def fit_encoder(
    cfg: DictConfig,
    train: dict[str, torch.Tensor],
    val: dict[str, torch.Tensor],
    make_trainer: TrainerFactory,
    logger: object,
    seed: int,
) -> nn.Module:
    """Builds the shared encoder from the training samples of every coin.

    ``autoencoder`` is pretrained on reconstruction with early stopping on the
    validation slice; ``pca`` keeps the leading components; ``none`` passes features on.
    """
    n_features = train["x"].shape[1]
    if cfg.kind == "none":
        return IdentityEncoder(n_features)
    if cfg.kind == "pca":
        return LinearEncoder.fit_pca(train["x"].numpy(), cfg.latent_dim)
    if cfg.kind != "autoencoder":
        raise ValueError(f"encoder.kind must be autoencoder, pca or none, got {cfg.kind!r}")
    pl.seed_everything(seed, workers=True, verbose=False)
    autoencoder = Autoencoder(n_features, cfg.latent_dim, tuple(cfg.hidden), cfg.dropout)
    module = AutoencoderModule(autoencoder, lr=cfg.lr)
    trainer = make_trainer(
        max_epochs=cfg.max_epochs,
        logger=logger,
        callbacks=[EarlyStopping("val/recon", patience=cfg.patience)],
    )
    trainer.fit(
        module,
        batch_loader({"x": train["x"]}, cfg.batch_size, shuffle=True, seed=seed),
        batch_loader({"x": val["x"]}, 65536, shuffle=False),
    )
    return autoencoder.cpu().eval()


def fit_heads(
    cfg: DictConfig,
    encoder: nn.Module,
    n_groups: int,
    train: dict[str, torch.Tensor],
    val: dict[str, torch.Tensor],
    make_trainer: TrainerFactory,
    logger: object,
    seed: int,
) -> FleetModule:
    """Trains the grouped MoE heads (and the encoder too when ``finetune_encoder``)."""
    pl.seed_everything(seed, workers=True, verbose=False)
    if cfg.finetune_encoder:  # fine-tuning changes the encoder: keep the caller's intact
        encoder = copy.deepcopy(encoder)
    n_channels = train["factor"].shape[1]
    head = GroupedMoEHead(
        n_groups, encoder.out_dim + n_channels, cfg.n_experts, cfg.hidden, cfg.top_k
    )
    module = FleetModule(encoder, head, cfg.lr, cfg.finetune_encoder, cfg.balance_weight)
    trainer = make_trainer(
        max_epochs=cfg.max_epochs,
        logger=logger,
        callbacks=[EarlyStopping("val/loss", patience=cfg.patience)],
    )
    by_group = cfg.batches == "by_group" or (cfg.batches == "auto" and n_groups > 16)
    trainer.fit(
        module,
        batch_loader(train, cfg.batch_size, shuffle=True, seed=seed, by_group=by_group),
        batch_loader(val, 65536, shuffle=False),
    )
    return module.cpu().eval()


def without_factor(samples: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same samples with no market-factor channel (for the built-in ablation)."""
    return {**samples, "factor": samples["factor"][:, :0]}


def choose_thresholds(
    prob: np.ndarray,
    net_return: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    min_trades: int,
    z: float = 1.0,
) -> np.ndarray:
    """Per group, the probability cut with the best lower bound on validation profit.

    For each group the validation samples are sorted by probability; trading the top k
    earns the cumulative sum S_k of their net returns. Picking the best of many cuts on
    noise would find profit where there is none, so the cut maximises the lower bound
    ``S_k - z * sigma * sqrt(k)`` (sigma: the group's per-trade standard deviation), over
    k >= ``min_trades``. A group whose best bound is not positive gets +inf: it does not
    trade, which is the honest answer when the model shows no edge after costs.

    Returns:
        (n_groups,) thresholds; a sample trades when its probability is >= its group's.
    """
    if min_trades < 1:
        raise ConfigError(f"thresholds.min_trades must be >= 1, got {min_trades}")
    thresholds = np.full(n_groups, np.inf)
    order = np.lexsort((-prob, group))  # by group, then by falling probability
    group, prob, net = group[order], prob[order], net_return[order]
    starts = np.searchsorted(group, np.arange(n_groups))
    ends = np.searchsorted(group, np.arange(n_groups), side="right")
    for g in range(n_groups):  # one vectorised pass per head
        returns = net[starts[g] : ends[g]]
        if len(returns) < max(min_trades, 2):
            continue
        k = np.arange(1, len(returns) + 1)
        bound = np.cumsum(returns) - z * returns.std() * np.sqrt(k)
        best = int(np.argmax(bound[min_trades - 1 :])) + min_trades - 1
        if bound[best] > 0:
            thresholds[g] = prob[starts[g] + best]
    return thresholds
