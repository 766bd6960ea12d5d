"""Lightning modules: autoencoder pretraining, and the fleet classifier (encoder + heads).

Training losses are summed in the step and logged once per epoch (``EpochMeans``), not with
``self.log`` in every step: Lightning's per-step logging cost about as much as a training
step of these small models (see ``bench/throughput.py``). Epoch values are logged with
``sync_dist``: under DDP the training loss is the mean over the processes' shares (one
process: no reduction, no cost); every process validates on the whole slice, so validation
values are the same on each.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAUROC, BinaryPrecision, BinaryRecall

from huracan.models.moe import GroupedMoEHead


class EpochMeans:
    """Sample-weighted means of a training epoch's step losses, as Lightning's
    ``on_epoch=True`` logging computes them (weighted by each batch's size)."""

    def __init__(self):
        self.values: dict[str, list[torch.Tensor]] = {}
        self.counts: list[int] = []

    def add(self, n: int, **values: torch.Tensor) -> None:
        for name, value in values.items():  # kept, not summed: no tensor op per step
            self.values.setdefault(name, []).append(value.detach())
        self.counts.append(n)

    def pop(self) -> dict[str, torch.Tensor]:
        """The means since the last call (none after an epoch without steps)."""
        means = {}
        if self.counts:
            weights = torch.tensor(self.counts, dtype=torch.float32)
            weights /= weights.sum()
            means = {
                k: torch.stack(v).float() @ weights.to(v[0].device) for k, v in self.values.items()
            }
        self.values, self.counts = {}, []
        return means


class HuracanModule(pl.LightningModule):
    """What the training stages share: a training step that optimises the module's own
    ``training_loss``, and hook bookkeeping that skips ``nn.Module.__setattr__``.

    The step is Lightning's manual optimization (zero the gradients, backward, step: the
    same updates as automatic optimization, which runs the forward pass inside a closure):
    with small models a step is a few milliseconds, and the closure and the hooks around
    it were about 0.1 ms of them. Lightning sets the plain string ``_current_fx_name``
    around every hook it calls, about 44 times a step; ``nn.Module.__setattr__`` checks
    parameters, buffers and submodules each time, which cost 0.2 ms a step. Both measured
    against a plain PyTorch loop in ``bench/throughput.py``. What is left of Lightning's
    own cost per step is shared by several optimizer steps: a training batch may be a
    list of batches, each stepped on in turn.
    """

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def __setattr__(self, name: str, value: object) -> None:
        if name == "_current_fx_name":  # never a parameter, buffer or module
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch: dict | list[dict], batch_idx: int) -> torch.Tensor:
        """One optimizer step on a batch, or one on each batch of a list in turn (see
        ``models.batches.Chunks``); returns the last step's loss."""
        optimizer = self.optimizers()
        for part in batch if isinstance(batch, list) else (batch,):
            optimizer.zero_grad()
            loss = self.training_loss(part)
            self.manual_backward(loss)
            optimizer.step()
        return loss.detach()


class AutoencoderModule(HuracanModule):
    """Pretrains an autoencoder on all coins' training-window features (reconstruction MSE)."""

    def __init__(self, autoencoder: nn.Module, lr: float = 1e-3):
        super().__init__()
        self.autoencoder = autoencoder
        self.lr = lr
        self.save_hyperparameters(ignore=["autoencoder"])
        self.train_means = EpochMeans()

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        _, x_hat = self.autoencoder(batch["x"])
        return F.mse_loss(x_hat, batch["x"])

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = self._loss(batch)
        self.train_means.add(len(batch["x"]), recon=loss)
        return loss

    def on_train_epoch_end(self) -> None:
        means = self.train_means.pop()
        if means:
            self.log("train/recon", means["recon"], prog_bar=True, sync_dist=True)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = self._loss(batch)
        self.log("val/recon", loss, prog_bar=True, on_epoch=True, on_step=False, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class FleetModule(HuracanModule):
    """Encoder plus grouped mixture-of-experts heads, trained with energy-weighted BCE.

    A batch is a dict of ``x`` (B, F) scaled features, ``factor`` (B, C) market-factor
    channels, ``group`` (B,) head index, ``y`` (B,) after-cost label, ``w`` (B,) weight;
    with one output per label horizon, ``y`` and ``w`` are (B, O) (weight 0 where a
    horizon has no label). A stacked batch (see ``StackedGroupSampler``) has a leading
    axis of groups, (G', b, ...) for every tensor; its loss is the mean over the groups of
    each group's weighted BCE, so every head learns as if it trained alone.

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
        self.train_means = EpochMeans()

    def forward(
        self, x: torch.Tensor, factor: torch.Tensor, group: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B,) and gate weights (B, K) (stacked: (G', b) and (G', b, K))."""
        z = self.encoder.encode(x)  # (..., F) -> (..., L)
        return self.head(torch.cat([z, factor], dim=-1), group)  # (..., L + C) -> (...)

    def _losses(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The weighted BCE, the experts' balance loss, and the logits."""
        logits, gate = self(batch["x"], batch["factor"], batch["group"])
        w = batch["w"]
        bce = F.binary_cross_entropy_with_logits(logits, batch["y"], reduction="none")
        if batch["group"].ndim == 2:  # stacked: each group's weighted mean, then their mean
            dims = tuple(range(1, w.ndim))
            loss = ((w * bce).sum(dims) / w.sum(dims).clamp_min(1e-12)).mean()
        else:
            loss = (w * bce).sum() / w.sum().clamp_min(1e-12)
        return loss, self.head.load_balance_loss(gate), logits

    def on_train_epoch_start(self) -> None:
        if not self.finetune_encoder:
            self.encoder.eval()  # frozen: no dropout noise in the codes

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss, balance, _ = self._losses(batch)
        self.train_means.add(batch["group"].numel(), loss=loss, balance=balance)
        return loss + self.balance_weight * balance

    def on_train_epoch_end(self) -> None:
        means = self.train_means.pop()
        if means:
            self.log("train/loss", means["loss"], prog_bar=True, sync_dist=True)
            self.log("train/balance", means["balance"], sync_dist=True)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, balance, logits = self._losses(batch)
        self.log("val/loss", loss, prog_bar=True, on_epoch=True, on_step=False, sync_dist=True)
        self.log("val/balance", balance, on_epoch=True, on_step=False, sync_dist=True)
        scored = batch["w"] > 0
        # a soft label (labels.target=cross_section_rank) counts as its nearer class
        self.val_metrics.update(logits.sigmoid()[scored], (batch["y"][scored] > 0.5).int())

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
