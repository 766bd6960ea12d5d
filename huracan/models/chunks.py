"""Inference in row chunks that stay in the CPU's cache.

A head's pass over hundreds of thousands of samples (a validation slice, every head on
every sample) builds activations of (rows, 4 experts x 64) floats: at 65,536 rows a
chunk (64 MB) they spill out of the cache, and the element-wise work (GELU, the gate's
softmax) waits on memory. At ``INFERENCE_CHUNK`` rows (4 MB) the same values come out
bit for bit (each row's products do not depend on the other rows): every head on every
sample in 0.41 to 0.44 of the CPU time; a validation pass of three mixed cluster heads
(about 22,000 rows a head in a batch) in 0.80 to 1.00, no clear gain
(``bench/bench_inference_chunks.py``, 2 cores, AMD EPYC, 300,000 samples;
``tests/test_models.py`` checks the bits). The autoencoder's passes gained nothing
measurable and are not split. Training batches are never split: only a pass without
gradients is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

INFERENCE_CHUNK = 4096


def in_chunks(fn: Callable, x: torch.Tensor, *rest: torch.Tensor, chunk: int | None = None):
    """``fn(x, *rest)``, computed ``chunk`` rows (default ``INFERENCE_CHUNK``) at a time
    where no gradient is needed and ``x`` has more rows; the outputs (a tensor or a tuple
    of tensors, rows first) joined.

    ``rest``: tensors with the same rows as ``x``, split alike."""
    chunk = chunk or INFERENCE_CHUNK
    if torch.is_grad_enabled() or len(x) <= chunk:
        return fn(x, *rest)
    parts = [
        fn(x[i : i + chunk], *(r[i : i + chunk] for r in rest)) for i in range(0, len(x), chunk)
    ]
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))
