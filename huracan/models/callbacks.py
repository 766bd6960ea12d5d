"""Lightning callbacks of every training stage: early stopping that keeps the best epoch."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping


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
