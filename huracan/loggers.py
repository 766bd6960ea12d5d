"""Experiment loggers from the ``logger`` config group: TensorBoard, CSV or MLflow.

Each training stage logs to its own run of the experiment (``fold0``,
``fold0_without_factor``, ``per_coin``, ...) under the experiment ``name`` (by default
the run directory), and every run's hyper-parameters hold the whole resolved config.
"""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from huracan.config import build


def stage_logger(cfg: DictConfig, version: str, hparams: bool = True) -> Logger | bool:
    """The configured logger for one stage, with the resolved config as hyper-parameters.

    Args:
        cfg: the run's config; ``cfg.logger`` is a ``_partial_`` logger factory, or null
            for no logging (then False, which Lightning reads as "no logger": None would
            give its default TensorBoard logger).
        version: the stage's run name, e.g. ``"fold3"``.
        hparams: log the config now; False leaves it to the caller (to pair it with
            metrics, as TensorBoard's hparams table wants).
    """
    if cfg.get("logger") is None:
        return False
    logger = build(cfg.logger)(version=version)
    if hparams:
        logger.log_hyperparams(flat_config(cfg))
    return logger


def log_results(logger: Logger | bool, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """The run's headline metrics; TensorBoard pairs them with the config (hparams tab)."""
    if not logger:
        return
    if isinstance(logger, TensorBoardLogger):
        logger.log_hyperparams(flat_config(cfg), metrics)
    else:
        logger.log_hyperparams(flat_config(cfg))
        logger.log_metrics(metrics)
    logger.finalize("success")


def log_figures(logger: Logger | bool, figures: dict) -> None:
    """Adds the report's figures to the logger's run where it keeps images."""
    if not logger:
        return
    experiment = logger.experiment
    for name, figure in figures.items():
        if hasattr(experiment, "add_figure"):  # TensorBoard
            experiment.add_figure(f"report/{name}", figure)
        elif isinstance(logger, MLFlowLogger):
            experiment.log_figure(logger.run_id, figure, f"report/{name}.png")
        # CSV keeps no images: the PNG files are in the run directory


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as flat ``a/b`` keys with scalar values (hparams tables)."""
    return _flat(OmegaConf.to_container(cfg, resolve=True))


def _flat(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flat(value, f"{name}/")
        else:
            flat[name] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat


class MLFlowRunLogger(MLFlowLogger):
    """Lightning's MLflow logger named like the others: ``name`` is the experiment and
    ``version`` the run (MLflow calls them experiment and run name)."""

    def __init__(
        self,
        name: str | None = None,
        version: str | None = None,
        tracking_uri: str = "file:./mlruns",
        **kwargs: Any,
    ):
        if tracking_uri.startswith("file:"):  # MLflow 3 asks for an opt-in to file stores
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        super().__init__(
            experiment_name=name or "huracan",
            run_name=version,
            tracking_uri=tracking_uri,
            **kwargs,
        )
