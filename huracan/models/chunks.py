"""Inference in row chunks that stay in the CPU's cache.

A head's pass over hundreds of thousands of samples (a validation slice, every head on
every sample) builds activations of (rows, 4 experts x 64) floats: at 65,536 rows a
chunk (64 MB) they spill out of the cache, and the element-wise work (GELU, the gate's
softmax) waits on memory. At ``INFERENCE_CHUNK`` rows (4 MB) every head on every sample
takes 0.42 to 0.45 of the CPU time, a validation pass of 3 mixed cluster heads 0.80 to
0.87 and one of 400 coin heads (a padded stack, split by coins) 0.58 to 0.67
(``bench/bench_inference_chunks.py``, two sittings, 2 cores, AMD EPYC, 300,000 samples).

The values are the same to float32 rounding, and in the runs measured the same bits
(``results.csv`` identical at 12 and 100 coins). A matrix product's last bit can depend
on how many rows it is given (MKL picks other kernels for a few rows), so the last chunk
takes the remainder instead of being a short one: every chunk holds at least
``INFERENCE_CHUNK`` rows. Only CPU passes without gradients are split; training batches
and GPU passes never are.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

INFERENCE_CHUNK = 4096


def in_chunks(fn: Callable, x: torch.Tensor, *rest: torch.Tensor, rows_each: int = 1):
    """``fn(x, *rest)``, computed a chunk of ``INFERENCE_CHUNK`` rows at a time where no
    gradient is needed, ``x`` is on the CPU and holds at least two chunks; the last chunk
    takes the remainder (up to twice as many rows). The outputs (a tensor or a tuple of
    tensors, rows first) are joined.

    ``rest``: tensors with the same rows as ``x``, split alike. ``rows_each``: the samples
    in each row of ``x`` (a stacked head's rows: a chunk holds ``INFERENCE_CHUNK //
    rows_each`` of them, at least one)."""
    chunk = max(1, INFERENCE_CHUNK // max(rows_each, 1))
    if torch.is_grad_enabled() or x.device.type != "cpu" or len(x) < 2 * chunk:
        return fn(x, *rest)
    starts = range(0, len(x) // chunk * chunk, chunk)
    ends = [*starts[1:], len(x)]
    parts = [fn(x[a:b], *(r[a:b] for r in rest)) for a, b in zip(starts, ends, strict=True)]
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))
