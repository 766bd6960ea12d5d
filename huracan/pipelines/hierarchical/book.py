"""What a hierarchical run keeps: each strategy's out-of-sample trades (``Book``) and the
run as a whole (``FleetRun``), read by the report, the tests and the benches."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from huracan.clustering import ClusterResult
from huracan.memory import discard, file_backed, unmapped
from huracan.training.arrays import FleetArrays, labels_of
from huracan.validation import Fold


@dataclass(eq=False)
class Book:
    """One strategy's out-of-sample trades, (T, N) each: where it would enter (``signals``),
    which of ``arrays.horizons`` a trade entered there is held (``index``, -1 where the
    strategy made no prediction), and the probability behind it (models only), with
    every horizon's head's probability in ``scores`` (H, T, N), NaN where none: the score
    of the factor-style evaluation (``huracan.evaluation``).

    The hold, net return after costs and label of each cell (NaN where no prediction)
    are read off the arrays when the report first asks for them, so that a book being
    filled fold by fold holds one byte per cell, not a (T, N) float of each. They are
    cached at that first read: read them only once every fold is written.
    """

    signals: np.ndarray
    index: np.ndarray
    arrays: FleetArrays
    probability: np.ndarray | None = None
    scores: np.ndarray | None = None

    @classmethod
    def empty(
        cls, arrays: FleetArrays, probability: bool = True, stored: Path | None = None
    ) -> Book:
        """A book without trades yet.

        Args:
            probability: with ``probability`` and ``scores`` (a model's book).
            stored: where given, ``probability`` and ``scores`` are the ``.npy`` files
                ``<stored>.probability.npy`` and ``<stored>.scores.npy``, kept out of
                memory between folds (:meth:`unmap`; 400 coins x 2 years: 0.14 GB a book).
        """
        shape = arrays.grid_shape
        book = cls(
            signals=np.zeros(shape, dtype=bool),
            index=np.full(shape, -1, dtype=np.int8),
            arrays=arrays,
        )
        if probability:
            grids = {"probability": shape, "scores": (len(arrays.horizons), *shape)}
            for name, grid in grids.items():
                if stored is None:
                    values = np.full(grid, np.nan, dtype=np.float32)
                else:
                    path = stored.with_name(f"{stored.name}.{name}.npy")
                    values = file_backed(path, grid, np.float32, np.nan)
                setattr(book, name, values)
        return book

    def unmap(self) -> None:
        """Writes out the file-backed ``probability`` and ``scores`` and takes their pages
        out of the process's memory (``huracan.memory.unmapped``): between folds."""
        self.probability, self.scores = unmapped(self.probability), unmapped(self.scores)

    def discard(self) -> None:
        """Removes the files of a stored book (:meth:`empty` with ``stored``): a run that
        fails before every fold is written leaves none behind."""
        discard(self.probability)
        discard(self.scores)

    @classmethod
    def at_horizon(
        cls,
        signals: np.ndarray,
        arrays: FleetArrays,
        horizon: int,
        absent: np.ndarray | None = None,
    ) -> Book:
        """A rule's trades all held ``horizon`` bars (one of ``arrays.horizons``); no
        prediction on the ``absent`` cells (a coin out of a fold's universe)."""
        index = np.full(signals.shape, arrays.horizons.index(horizon), dtype=np.int8)
        return cls(signals, _without(index, absent), arrays)

    @classmethod
    def chosen(
        cls,
        signals: np.ndarray,
        index: np.ndarray,
        arrays: FleetArrays,
        absent: np.ndarray | None = None,
    ) -> Book:
        """A rule's trades, each held the horizon ``arrays.horizons[index]``; a rule has a
        prediction everywhere, so -1 (no trade) reads the shortest horizon's outcome, but
        on the ``absent`` cells (a coin out of a fold's universe), where it has none."""
        return cls(signals, _without(np.maximum(index, 0).astype(np.int8), absent), arrays)

    @cached_property
    def hold(self) -> np.ndarray:
        """(T, N) int32 bars a trade entered at each cell is held (1 where none)."""
        horizons = np.asarray(self.arrays.horizons, dtype=np.int32)
        return np.where(self.index >= 0, horizons[np.maximum(self.index, 0)], 1)

    @cached_property
    def net_return(self) -> np.ndarray:
        """(T, N) net return after costs of a trade entered at each cell."""
        net = np.full(self.index.shape, np.nan)
        for i in range(len(self.arrays.horizons)):  # a horizon's (T, N) at a time
            cells = self.index == i
            net[cells] = self.arrays.net_of(i)[cells]
        return net

    @cached_property
    def label(self) -> np.ndarray:
        """(T, N) float32 1 where that trade nets a profit, 0 where not, NaN where none."""
        return labels_of(self.net_return)  # the labels' own rule: no (T, N, H) label grid

    def forget_outcomes(self) -> None:
        """Drops the cached ``hold``, ``net_return`` and ``label`` (read off the arrays
        again when next asked for): a report that reads one book at a time holds one
        book's (T, N) outcomes, not every baseline's (400 coins x 2 years: 0.1 GB each)."""
        for name in ("hold", "net_return", "label"):
            self.__dict__.pop(name, None)


def _without(index: np.ndarray, absent: np.ndarray | None) -> np.ndarray:
    """``index`` with -1 (no prediction) on the ``absent`` cells."""
    if absent is not None:
        index[absent] = -1
    return index


@dataclass
class FleetRun:
    """Everything a hierarchical run produced, for the report and the tests."""

    arrays: FleetArrays
    folds: list[Fold]
    model: Book
    cluster_ids: np.ndarray  # (T, N) cluster of each asset during each test window, -1 else
    test_rows: np.ndarray
    fold_clusters: list[ClusterResult] = field(default_factory=list)
    fold_factor: list[dict] = field(default_factory=list)
    fold_info: list[dict] = field(default_factory=list)
    without_factor: Book | None = None
    oracle: Book | None = None
    baselines: dict[str, Book] = field(default_factory=dict)
    # per baseline with a continuous score: (H, T, N) on the test rows, NaN elsewhere
    baseline_scores: dict[str, np.ndarray] = field(default_factory=dict)
    universe: np.ndarray | None = None  # (K, N) coin n takes part in fold k
    # ensemble=stack: per baseline with one (LightGBM), each fold's (V, N, H) validation
    # probabilities; each fold's components; the ensemble's and each head component's book
    baseline_validation: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    ensemble_parts: list = field(default_factory=list)
    ensemble: Book | None = None
    components: dict[str, Book] = field(default_factory=dict)
    ensemble_seconds: float = 0.0  # what the ensemble added: its components and meta-models

    @contextmanager
    def discarded_on_failure(self) -> Iterator[None]:
        """Removes the stored books' files (:meth:`Book.discard`) if the block fails: the
        folds not yet written would read as NaN, as if no model had predicted there."""
        try:
            yield
        except BaseException:
            for book in (self.model, self.without_factor):
                if book is not None:
                    book.discard()
            raise
