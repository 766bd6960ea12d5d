"""Default number of torch CPU threads, chosen so a shared machine does not slow a run down.

With more OpenMP threads than free cores, torch's threads spin while they wait for each
other (OpenMP's active wait policy) and a run gets several times slower as soon as one
other process keeps a core busy. The rule here leaves one core to everything else and
makes waiting threads sleep instead of spin.

One kind of work is the exception: batched products wide enough that every thread has
milliseconds of work per call (the stacked heads of many coins, the per-coin permutation
importance). Under ``threads: auto`` they run inside :func:`wide_threads`, on every core
(1 to 8); the small products of a default run lose more to waking a second thread than
they gain (docs/benchmarks.md has the figures).

The ``threads`` config applies it: ``train.py`` calls :func:`prepare_threads` before torch
is imported (OpenMP reads ``OMP_WAIT_POLICY`` once, when torch loads it) and ``train()``
calls :func:`apply_threads` before any torch work. This module imports torch only inside
:func:`apply_threads`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

from huracan.errors import ConfigError

# Beyond this, the small models here gain little from more intra-op threads.
_MOST_THREADS = 8
# Threads for wide batched work (wide_threads); None leaves the count alone. Set by
# apply_threads: every core under threads=auto, None for an explicit count.
_wide: int | None = None


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(cores: int | None = None) -> int:
    """Torch intra-op threads for ``threads: auto``: every core but one, from 1 to 8.

    Fixed by the core count only (not by the current load), so a run's thread count, and
    with it the order of its floating-point reductions, does not change from run to run.

    Args:
        cores: cores available; None reads :func:`available_cores`.

    Returns:
        ``clamp(cores - 1, 1, 8)``: 1 on a 2-core machine, 3 on 4 cores, 8 from 9 cores on.
    """
    cores = available_cores() if cores is None else cores
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    return max(1, min(cores - 1, _MOST_THREADS))


def passive_wait_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """``environ`` with ``OMP_WAIT_POLICY=PASSIVE`` unless the user set a policy.

    OpenMP reads the variable once, when torch loads it: set it before ``import torch``
    (or in the environment of a worker process).
    """
    environ = dict(os.environ if environ is None else environ)
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return environ


def resolve_threads(value: object, cores: int | None = None) -> int | None:
    """The torch thread count the ``threads`` config asks for.

    Args:
        value: ``"auto"`` (the rule of :func:`default_threads`), an int >= 1, or None
            (torch's own default, one thread per core).
        cores: cores available, for ``auto``; None reads :func:`available_cores`.

    Raises:
        ConfigError: any other value, named.
    """
    if value is None:
        return None
    if value == "auto":
        return default_threads(cores)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(f"threads={value!r}: expected auto, a whole number >= 1, or null")


def prepare_threads(value: object, environ: MutableMapping[str, str] | None = None) -> bool:
    """Before ``import torch``: ``threads=auto`` makes OpenMP's waiting threads sleep.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` (default ``os.environ``, so worker
    processes inherit it) unless the user set a policy.

    Returns:
        Whether torch was still unimported, i.e. whether OpenMP will read the policy.
    """
    resolve_threads(value)  # a bad value is an error before anything else
    if value == "auto":
        environ = os.environ if environ is None else environ
        environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return "torch" not in sys.modules


def apply_threads(value: object) -> dict:
    """Sets torch's intra-op threads as ``threads`` asks; returns what is in effect.

    Returns:
        ``{"setting", "torch_threads", "omp_wait_policy"}``, for ``summary.json``.
    """
    import torch

    global _wide
    threads = resolve_threads(value)
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    _wide = max(1, min(available_cores(), _MOST_THREADS)) if value == "auto" else None
    return {
        "setting": value,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


@contextmanager
def wide_threads() -> Iterator[int]:
    """Every core (1 to 8) for the work inside, under ``threads: auto``; otherwise the
    thread count stays as set. Yields the count in effect inside.

    For batched products wide enough to share among threads (each call milliseconds of
    work); small ones lose more to waking threads than they gain.
    """
    import torch

    before = torch.get_num_threads()
    if _wide is None or _wide == before:
        yield before
        return
    torch.set_num_threads(_wide)
    try:
        yield _wide
    finally:
        torch.set_num_threads(before)


def wide_workers() -> int:
    """Threads for wide work outside torch (numpy's FFT of a whole panel in FFD, the
    logistic baseline's per-coin fits in the hierarchical run and the per-coin parent): the
    count :func:`wide_threads` gives, torch's own count otherwise where torch is loaded
    (an explicit ``threads``), else every core; 1 to 8 in each case."""
    if _wide is not None:
        return _wide
    count = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else available_cores()
    return max(1, min(count, _MOST_THREADS))
