"""In-memory batches: whole tensors sliced by index, no per-sample collation."""

from __future__ import annotations

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler


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

    def __getitem__(self, index: list[int]) -> dict[str, torch.Tensor]:
        rows = torch.as_tensor(index)
        return {k: t[rows] for k, t in self.tensors.items()}


def batch_loader(
    tensors: dict[str, torch.Tensor], batch_size: int, shuffle: bool, seed: int = 0
) -> DataLoader:
    """A DataLoader yielding dicts of tensor slices; shuffling is seeded (reproducible)."""
    data = TensorBatches(tensors)
    if shuffle:
        sampler = RandomSampler(data, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(data)
    batches = BatchSampler(sampler, batch_size=batch_size, drop_last=False)
    return DataLoader(data, sampler=batches, batch_size=None, num_workers=0)
