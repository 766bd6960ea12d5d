"""Console progress: one labelled bar per training stage, none when output is not a terminal.

Lightning's own bar reads ``Epoch 3: ... v_num=old0``; ours reads ``fold 3/5 heads, epoch
3``. Redirected to a file, a run writes no bar updates at all, only the stage lines.
"""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import TQDMProgressBar


def interactive() -> bool:
    """True when progress bars can be drawn: standard error is a terminal."""
    return sys.stderr.isatty()


class StageProgressBar(TQDMProgressBar):
    """Lightning's progress bar, labelled with the stage and without the version number."""

    def __init__(self, stage: str):
        super().__init__(leave=False)
        self.stage = stage

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"{self.stage}, epoch {trainer.current_epoch}")

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


def stage_trainer(make_trainer, stage: str, **kwargs):
    """A trainer from the config's factory, with a labelled bar on a terminal, else none.

    Args:
        make_trainer: the ``trainer`` config group's ``_partial_`` Trainer factory, or
            any callable taking ``max_epochs``, ``logger`` and ``callbacks``.
        stage: the label, e.g. ``"fold 3/5 heads"``.
        **kwargs: passed on (``max_epochs``, ``logger``, ``callbacks``).
    """
    keywords = getattr(make_trainer, "keywords", None)  # a partial from instantiate
    if keywords is None:
        return make_trainer(**kwargs)
    show = bool(keywords.get("enable_progress_bar", True)) and interactive()
    callbacks = list(kwargs.pop("callbacks", []))
    if show:
        callbacks.append(StageProgressBar(stage))
    return make_trainer(**kwargs, callbacks=callbacks, enable_progress_bar=show)
