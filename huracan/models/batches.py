"""In-memory batches: whole tensors sliced by index, no per-sample collation, and the
fold's samples as a ``LightningDataModule``.

Under DDP (``trainer=ddp_cpu`` or ``trainer=ddp``) every process draws the same global
batches as one process would, and trains on its share of each (``RankShare``): the global
batch, the steps per epoch and the samples seen are those of a one-process run. Each
process validates on the whole validation slice, so early stopping and the kept best epoch
agree across processes without a reduction.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

# Optimizer steps per Lightning training step (see Chunks): Lightning's own cost, about
# 0.21 ms a step, then falls to about 0.05 ms an optimizer step (bench/throughput.py).
STEPS_PER_CALL = 8


def sample_tensors(x, factor, group, y, w) -> dict[str, torch.Tensor]:
    """The model's sample tensors (float32 inputs, labels, weights; int64 groups)."""
    return {
        "x": torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32),
        "factor": torch.as_tensor(np.ascontiguousarray(factor), dtype=torch.float32),
        "group": torch.as_tensor(group, dtype=torch.int64),
        "y": torch.as_tensor(y, dtype=torch.float32),
        "w": torch.as_tensor(w, dtype=torch.float32),
    }


class TensorBatches(Dataset):
    """Named tensors with the same first dimension, indexed a batch at a time."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        sizes = {len(t) for t in tensors.values()}
        if len(sizes) != 1:
            raise ValueError(
                f"tensors differ in length: { {k: len(t) for k, t in tensors.items()} }"
            )
        self.tensors = tensors
        self.size = sizes.pop()

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: list[int] | torch.Tensor | tuple) -> dict | tuple[dict, ...]:
        """One batch for a list or tensor of rows; a tuple of batches for a tuple of them."""
        if isinstance(index, tuple):
            return tuple(self[rows] for rows in index)
        rows = index if isinstance(index, torch.Tensor) else torch.as_tensor(index)
        return {k: t[rows] for k, t in self.tensors.items()}


class IndexBatches(Sampler[torch.Tensor]):
    """Batches of sample indices as tensors: shuffled with ``generator`` every epoch, or in
    order without one. No Python int per sample: torch's ``BatchSampler`` over a
    ``RandomSampler`` cost 0.7 ms a batch of 2,048 in lists alone (``bench/throughput.py``).

    The shuffled batches are the ones ``BatchSampler(RandomSampler(data, generator=g))``
    draws from the same generator, epoch after epoch (it draws a second permutation each
    epoch and uses none of it; so does this), so a run's results do not change with it.
    With ``epoch_samples`` below ``n``, a shuffled epoch is the first ``epoch_samples`` of
    that epoch's permutation: a fresh uniform subset every epoch.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        generator: torch.Generator | None = None,
        epoch_samples: int | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if epoch_samples is not None and epoch_samples < 1:
            raise ValueError(f"epoch_samples must be >= 1 or None, got {epoch_samples}")
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.per_epoch = n if generator is None or epoch_samples is None else min(n, epoch_samples)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.generator is None:
            order = torch.arange(self.n)
        else:
            order = torch.randperm(self.n, generator=self.generator)
            torch.randperm(self.n, generator=self.generator)  # RandomSampler's unused draw
        yield from order[: self.per_epoch].split(self.batch_size)

    def __len__(self) -> int:
        return -(-self.per_epoch // self.batch_size)


class StackedGroupSampler(Sampler[torch.Tensor]):
    """Stacked batches of every group at once: ``(G', b)`` index tensors whose row ``g``
    holds ``b`` samples of one group, for every group that has samples.

    Heads with per-group parameters then train all groups in each step with batched
    matrix products, and every group's weights get a gradient in every step (with one
    group per batch, Adam would move all groups' weights on every other group's batch).
    Each epoch shuffles every group's samples; a group with fewer samples than the largest
    continues with fresh shuffles of its own (wrap-around), so an epoch is the largest
    group's samples each seen once, in ``ceil(largest / b)`` steps.
    """

    def __init__(self, group: torch.Tensor, per_group: int, seed: int = 0):
        if per_group < 1:
            raise ValueError(f"per_group must be >= 1, got {per_group}")
        counts = torch.bincount(group).tolist() if len(group) else []
        order = torch.argsort(group, stable=True)
        self.members = [rows for rows in order.split(counts) if len(rows)]
        self.per_group = per_group
        largest = max(counts, default=0)
        self.n_steps = -(-largest // per_group)
        self.generator = torch.Generator().manual_seed(seed)

    def _cycle(self, rows: torch.Tensor, span: int) -> torch.Tensor:
        """``span`` of ``rows``: consecutive fresh shuffles of them, cut at ``span``."""
        laps = -(-span // len(rows))
        shuffles = torch.rand(laps, len(rows), generator=self.generator).argsort(1)
        return rows[shuffles.flatten()[:span]]

    def __iter__(self) -> Iterator[torch.Tensor]:
        if not self.members:
            return
        span = self.n_steps * self.per_group
        table = torch.stack([self._cycle(rows, span) for rows in self.members])  # (G', span)
        yield from table.split(self.per_group, dim=1)

    def __len__(self) -> int:
        return self.n_steps


class RankShare(Sampler[list[int]]):
    """This process's share of every batch of ``batches``: ``batch[rank::world]``.

    A batch with fewer samples than processes goes whole to each, so every process
    steps on every batch (DDP needs all of them in each gradient reduction).
    """

    def __init__(self, batches: Sampler[list[int]], rank: int, world: int):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in 0..{world - 1}")
        self.batches, self.rank, self.world = batches, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            yield batch if len(batch) < self.world else batch[self.rank :: self.world]

    def __len__(self) -> int:
        return len(self.batches)


class Chunks(Sampler[tuple]):
    """Consecutive batches of ``batches`` in tuples of up to ``size``.

    One Lightning step then trains on each batch of a tuple in turn
    (``HuracanModule.training_step``): the same optimizer steps on the same batches in the
    same order, while Lightning's own cost per step (hooks, profiler contexts, a signature
    check: about 0.21 ms, ``bench/throughput.py``) is paid once per ``size`` of them.
    """

    def __init__(self, batches: Sampler, size: int):
        if size < 1:
            raise ValueError(f"steps per call must be >= 1, got {size}")
        self.batches, self.size = batches, size

    def __iter__(self) -> Iterator[tuple]:
        chunk = []
        for batch in self.batches:
            chunk.append(batch)
            if len(chunk) == self.size:
                yield tuple(chunk)
                chunk = []
        if chunk:
            yield tuple(chunk)

    def __len__(self) -> int:
        return -(-len(self.batches) // self.size)


def batch_loader(
    tensors: dict[str, torch.Tensor],
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    per_group: int | None = None,
    share: tuple[int, int] = (0, 1),
    epoch_samples: int | None = None,
    steps_per_call: int = 1,
) -> DataLoader:
    """A DataLoader yielding dicts of tensor slices; shuffling is seeded (reproducible).

    Args:
        tensors: named tensors of equal length.
        batch_size: samples per batch.
        shuffle: shuffle every epoch (training) or keep the order (evaluation).
        seed: seed of the shuffling.
        per_group: stacked batches of this many samples of every ``group`` each (see
            ``StackedGroupSampler``; ``batch_size`` is then unused); None: flat batches.
        share: ``(rank, world size)``: with more than one process, this one's share of
            each batch (see ``RankShare``).
        epoch_samples: flat shuffled batches: at most this many samples an epoch, a fresh
            uniform subset each epoch (None: all).
        steps_per_call: above 1, tuples of this many consecutive batches (see ``Chunks``).
    """
    data = TensorBatches(tensors)
    if per_group is not None:
        batches = StackedGroupSampler(tensors["group"], per_group, seed)
    else:
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        batches = IndexBatches(len(data), batch_size, generator, epoch_samples)
    if share[1] > 1:
        batches = RankShare(batches, *share)
    if steps_per_call > 1:
        batches = Chunks(batches, steps_per_call)
    return DataLoader(data, sampler=batches, batch_size=None, num_workers=0)


def _counts_steps(trainer: pl.Trainer) -> bool:
    """Whether ``trainer`` counts training steps or batches: it stops after some
    (``max_steps``, ``limit_train_batches`` other than the whole epoch) or validates
    after some (``val_check_interval`` other than once an epoch)."""
    limits = (trainer.limit_train_batches, trainer.val_check_interval)
    every_epoch = all(isinstance(v, float) and v == 1.0 for v in limits)
    by_epoch = trainer.check_val_every_n_epoch is not None
    return trainer.max_steps not in (-1, None) or not (every_epoch and by_epoch)


class FoldSamples(pl.LightningDataModule):
    """A fold's training and validation samples as Lightning's data module.

    Args:
        train: named training tensors (``x``, and for heads ``factor``, ``group``, ``y``,
            ``w``), all of equal length.
        val: the validation slice's tensors, the same names.
        batch_size: training samples per batch (over all DDP processes together);
            validation runs in batches of 65,536.
        seed: seed of the training shuffle (reproducible).
        per_group: stacked training batches of this many samples of every ``group`` (see
            ``StackedGroupSampler``); None: flat batches of ``batch_size``.
        epoch_samples: flat batches: at most this many training samples an epoch, a fresh
            uniform subset each epoch (None: all).
        steps_per_call: optimizer steps in one Lightning training step (see ``Chunks``;
            the progress bar and the loggers' step axis count these calls). Under a
            trainer that counts steps or batches (``max_steps``, ``limit_train_batches``,
            ``val_check_interval``) every call is one step, so those settings count
            optimizer steps and batches as Lightning documents.
    """

    def __init__(
        self,
        train: dict[str, torch.Tensor],
        val: dict[str, torch.Tensor],
        batch_size: int,
        seed: int = 0,
        per_group: int | None = None,
        epoch_samples: int | None = None,
        steps_per_call: int = STEPS_PER_CALL,
    ):
        super().__init__()
        self.train, self.val = train, val
        self.batch_size, self.seed, self.per_group = batch_size, seed, per_group
        self.epoch_samples, self.steps_per_call = epoch_samples, steps_per_call

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        share = (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)
        per_call = self.steps_per_call
        if trainer is not None and _counts_steps(trainer):
            per_call = 1  # each Lightning step one optimizer step, as those limits mean
        return batch_loader(
            self.train,
            self.batch_size,
            True,
            self.seed,
            self.per_group,
            share=share,
            epoch_samples=self.epoch_samples,
            steps_per_call=per_call,
        )

    def val_dataloader(self) -> DataLoader:
        return batch_loader(self.val, 65536, shuffle=False)

    def teardown(self, stage: str) -> None:
        # The trainer and module refer to each other and to this module; without this, the
        # samples would live until the garbage collector breaks that cycle.
        self.train = self.val = None
