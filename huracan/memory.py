"""A run's memory: freed memory handed back to the system (glibc's allocator, on Linux),
and results kept in files rather than in memory.

glibc serves an allocation above its *mmap threshold* with a mapping of its own, returned
to the system the moment it is freed; smaller ones come from the heap, whose free space it
keeps. The threshold starts at 128 KB and, by default, rises to the size of every mapped
block freed (up to 32 MB): after the first 30 MB temporary is freed, every temporary up to
30 MB is carved from the heap. Validating heads on batches of 65,536 samples makes
temporaries of that size, each batch, between small allocations that live on (a metric's
state, Lightning's logs): the freed temporaries sit below those and cannot be trimmed until
the fold ends. Heads on 2 million training and 500,000 validation samples grew the heap by
300 MB in their first epoch; with the threshold fixed at 4 MB, by 140 MB. At 4 MB the small
tensors of a training step (a batch of 2,048 samples: 2 MB at most) still come from the
heap: mapping them anew would fault their pages in every step.

A run's objects alive when it starts (the imported libraries, the config: about half a
million Python objects) are frozen out of the cyclic collector's view for the run
(:func:`frozen_heap`): the full collections that hand a fold's memory back, and the
collector's own, then scan only what the run made (``bench/bench_frozen_heap.py``).

A run's results written fold by fold (a model book's per-horizon probabilities: 0.14 GB
at 400 coins x 2 years) go to ``.npy`` files of the run dir instead (:func:`file_backed`),
out of the process's memory between folds (:func:`unmapped`) and read back by the report.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

MMAP_THRESHOLD_BYTES = 4 << 20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def _libc() -> ctypes.CDLL | None:
    """glibc, where this process runs on it; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL("libc.so.6")
        if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
            return libc
    return None


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """For the block, every object alive on entry (after a full collection) is left out of
    the cyclic garbage collector's scans (``gc.freeze``); they are handed back to it on
    exit (``gc.unfreeze``). Cycles made inside the block are collected as always; garbage
    reachable only through a frozen object (a cycle through an object older than the
    block) waits for the exit. Where the caller has frozen objects already (its own
    freeze, or an enclosing block), the block changes nothing and unfreezes nothing."""
    if gc.get_freeze_count():
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def fix_mmap_threshold(nbytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Maps every allocation of ``nbytes`` or more on its own, from now on in this process
    (and stops glibc from raising the threshold as blocks are freed).

    Returns:
        Whether the threshold was set (False off glibc, or where glibc refused it).
    """
    libc = _libc()
    return libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, int(nbytes)))


def release_memory() -> None:
    """Frees what a finished stage left and hands the memory back to the system.

    Exceptions caught inside OmegaConf and Lightning keep their frames (and so the fold's
    arrays, gigabytes for 400 coins) in reference cycles until the collector runs; and
    glibc keeps freed heap memory for reuse unless told to trim it.
    """
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def file_backed(path: Path, shape: tuple[int, ...], dtype, fill: float) -> np.memmap:
    """A new array stored in the ``.npy`` file ``path`` (its folder made), every value
    ``fill``: a run's results written fold by fold, which :func:`unmapped` keeps out of the
    process's resident memory between folds and which outlive the run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # a new file, not the old one truncated: a live mapping of it (an earlier run in the
    # same run dir, same process) keeps its own inode instead of being rewritten or SIGBUS
    path.unlink(missing_ok=True)
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    array[...] = fill
    return unmapped(array)


def unmapped(array: np.ndarray) -> np.ndarray:
    """A file-backed array written out and mapped anew: the pages it touched leave this
    process's resident memory (they stay in the page cache, which the system may reclaim)
    and are read back when next read. Any other array is returned as it is.

    The old mapping closes when its last reference goes: hold no view of it.
    """
    if not isinstance(array, np.memmap) or array.filename is None:
        return array
    array.flush()
    return np.lib.format.open_memmap(array.filename, mode="r+")


def discard(array: np.ndarray | None) -> None:
    """Removes the file behind a file-backed array (one of :func:`file_backed`): a run that
    fails before writing it in full leaves no NaN-filled results behind. Any other array
    (or None) is left as it is; the mapping itself stays readable until it closes."""
    if isinstance(array, np.memmap) and array.filename is not None:
        Path(array.filename).unlink(missing_ok=True)
