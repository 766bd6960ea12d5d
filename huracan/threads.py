"""Default number of torch CPU threads, chosen so a shared machine does not slow a run down.

With more OpenMP threads than free cores, torch's threads spin while they wait for each
other (OpenMP's active wait policy) and a run gets several times slower as soon as one
other process keeps a core busy. The rule here leaves one core to everything else and
makes waiting threads sleep instead of spin.
"""

from __future__ import annotations

import os

# Beyond this, the small models here gain little from more intra-op threads.
_MOST_THREADS = 8


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(cores: int | None = None) -> int:
    """Torch intra-op threads for ``threads: null``: every core but one, from 1 to 8.

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
