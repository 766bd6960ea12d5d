"""Inference in row chunks that stay in the CPU's cache.

A pass over hundreds of thousands of samples (a validation slice, every head on every
sample) builds activations of (rows, 4 experts x 64) floats: at 65,536 rows a chunk
(64 MB) they spill out of the cache, and the element-wise work (GELU, the gate's softmax)
waits on memory. At ``INFERENCE_CHUNK`` rows the same values come out bit for bit (each
row's products do not depend on the other rows) in about half the CPU time of the heads'
passes and 0.6 of the encoder's (2 cores, AMD EPYC, 300,000 to 600,000 samples;
``tests/test_models.py`` checks the bits). Training batches are never split: only a pass
without gradients is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

INFERENCE_CHUNK = 8192


def in_chunks(fn: Callable, x: torch.Tensor, *rest: torch.Tensor, chunk: int = INFERENCE_CHUNK):
    """``fn(x, *rest)``, computed ``chunk`` rows at a time where no gradient is needed and
    ``x`` has more rows; the outputs (a tensor or a tuple of tensors, rows first) joined.

    ``rest``: tensors with the same rows as ``x``, split alike."""
    if torch.is_grad_enabled() or len(x) <= chunk:
        return fn(x, *rest)
    parts = [
        fn(x[i : i + chunk], *(r[i : i + chunk] for r in rest)) for i in range(0, len(x), chunk)
    ]
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))
