"""Lightning modules: autoencoder pretraining, and the fleet classifier (encoder + heads).

Epoch losses are logged with ``sync_dist``: under DDP the training loss is the mean over
the processes' shares (one process: no reduction, no cost); every process validates on the
whole slice, so validation values are the same on each.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAUROC, BinaryPrecision, BinaryRecall

from huracan.models.moe import GroupedMoEHead


class AutoencoderModule(pl.LightningModule):
    """Pretrains an autoencoder on all coins' training-window features (reconstruction MSE)."""

    def __init__(self, autoencoder: nn.Module, lr: float = 1e-3):
        super().__init__()
        self.autoencoder = autoencoder
        self.lr = lr
        self.save_hyperparameters(ignore=["autoencoder"])

    def _shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        _, x_hat = self.autoencoder(batch["x"])
        loss = F.mse_loss(x_hat, batch["x"])
        self.log(
            f"{stage}/recon", loss, prog_bar=True, on_epoch=True, on_step=False, sync_dist=True
        )
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class FleetModule(pl.LightningModule):
    """Encoder plus grouped mixture-of-experts heads, trained with energy-weighted BCE.

    A batch is a dict of ``x`` (B, F) scaled features, ``factor`` (B, C) market-factor
    channels, ``group`` (B,) head index, ``y`` (B,) after-cost label, ``w`` (B,) weight;
    with one output per label horizon, ``y`` and ``w`` are (B, O) (weight 0 where a
    horizon has no label).

    Args:
        encoder: any module with ``encode`` and ``out_dim`` (see ``models.encoder``).
        head: the grouped heads; their input is ``encoder.out_dim + C``.
        lr: Adam learning rate.
        finetune_encoder: train the encoder with the heads; else it stays frozen.
        balance_weight: weight of the experts' load-balancing loss.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: GroupedMoEHead,
        lr: float = 1e-3,
        finetune_encoder: bool = False,
        balance_weight: float = 0.01,
    ):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.lr = lr
        self.finetune_encoder = finetune_encoder
        self.balance_weight = balance_weight
        self.encoder.requires_grad_(finetune_encoder)
        self.save_hyperparameters(ignore=["encoder", "head"])
        # classification metrics on the validation slice only: per-step metric updates on
        # the training set would cost throughput and say little about generalisation
        self.val_metrics = MetricCollection(
            {"precision": BinaryPrecision(), "recall": BinaryRecall(), "auroc": BinaryAUROC()},
            prefix="val/",
        )

    def forward(
        self, x: torch.Tensor, factor: torch.Tensor, group: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B,) and gate weights (B, K)."""
        z = self.encoder.encode(x)  # (B, F) -> (B, L)
        return self.head(torch.cat([z, factor], dim=1), group)  # (B, L + C) -> (B,)

    def _shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits, gate = self(batch["x"], batch["factor"], batch["group"])
        w = batch["w"]
        bce = F.binary_cross_entropy_with_logits(logits, batch["y"], reduction="none")
        loss = (w * bce).sum() / w.sum().clamp_min(1e-12)
        balance = self.head.load_balance_loss(gate)
        total = loss + self.balance_weight * balance
        self.log(f"{stage}/loss", loss, prog_bar=True, on_epoch=True, on_step=False, sync_dist=True)
        self.log(f"{stage}/balance", balance, on_epoch=True, on_step=False, sync_dist=True)
        if stage == "val":
            scored = w > 0
            self.val_metrics.update(logits.detach().sigmoid()[scored], batch["y"][scored].int())
        return total

    def on_train_epoch_start(self) -> None:
        if not self.finetune_encoder:
            self.encoder.eval()  # frozen: no dropout noise in the codes

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute())
        self.val_metrics.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.lr)

    @torch.no_grad()
    def predict_proba(
        self, x: torch.Tensor, factor: torch.Tensor, group: torch.Tensor, batch_size: int = 65536
    ) -> torch.Tensor:
        """Probabilities (B,) (or (B, O)) in eval mode, in chunks to bound memory."""
        self.eval()
        out = [
            self(x[i : i + batch_size], factor[i : i + batch_size], group[i : i + batch_size])[0]
            for i in range(0, len(x), batch_size)
        ]
        return torch.cat(out).sigmoid() if out else torch.empty(0)
