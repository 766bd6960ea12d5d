"""What every pipeline is: a callable ``run(panel, gates, cfg, out, timer) -> dict``.

The ``pipeline`` config group names one by ``_target_``. ``train(cfg)`` loads and gates
the data, calls the pipeline, and writes what it returns into ``summary.json``; it knows
nothing else of any pipeline.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from huracan.data import GateReport, Panel
from huracan.report import StageTimer


class Pipeline:
    """Base of the pipelines: the run itself, and where its out-of-sample bars start.

    Attributes:
        services: config groups the pipeline builds services from (``queue``, ``store``);
            each one's ``check()`` runs before any data is read.
    """

    services: tuple[str, ...] = ()

    def check(self, cfg: DictConfig) -> None:
        """Raises a ConfigError for options that cannot work together (before any work)."""

    def session(self, cfg: DictConfig) -> AbstractContextManager:
        """What the whole run, from loading the data on, holds (e.g. a lock); none here."""
        return nullcontext()

    def test_start(self, panel: Panel, cfg: DictConfig) -> pd.Timestamp | None:
        """The first out-of-sample bar, before which the data gates look (None: none)."""
        return None

    def fold_starts(self, panel: Panel, cfg: DictConfig) -> list[pd.Timestamp]:
        """The first bar of each out-of-sample window, in time order: where
        ``gates.until=per_fold`` measures the gates (one window: ``test_start``)."""
        start = self.test_start(panel, cfg)
        return [] if start is None else [start]

    def __call__(
        self, panel: Panel, gates: GateReport, cfg: DictConfig, out: Path, timer: StageTimer
    ) -> dict:
        """Runs the pipeline on the gated panel; returns its part of ``summary.json``.

        Objects worth handing to the caller (the fitted run, for tests and notebooks) go
        under the key ``"objects"``, which ``train`` takes out before writing the file.
        """
        raise NotImplementedError


class DataPipeline(Pipeline):
    """``pipeline=data``: load, validate and gate only; the summary is all it writes."""

    def __call__(
        self, panel: Panel, gates: GateReport, cfg: DictConfig, out: Path, timer: StageTimer
    ) -> dict:
        return {}
