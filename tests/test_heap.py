"""The run's heap hands freed temporaries back to the system (``huracan.memory``)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Temporaries of 8 MB, each followed by a small allocation that lives on, then freed: what
# validating heads on large batches does while a metric keeps each batch's state.
PATTERN = """
import sys
import numpy as np
import psutil
from huracan.memory import fix_mmap_threshold

if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
np.ones((30 << 20) // 8)  # freed at once: glibc's adaptive threshold rises to its size
before = psutil.Process().memory_info().rss
temporaries, kept = [], []
for _ in range(24):
    temporaries.append(np.ones((8 << 20) // 8))
    kept.append(np.ones(1024))
del temporaries
print((psutil.Process().memory_info().rss - before) / 2**20)
"""


def heap_growth_mb(mode: str) -> float:
    """RSS growth of ``PATTERN`` in a fresh process (``fixed``: after fix_mmap_threshold)."""
    out = subprocess.run(
        [sys.executable, "-c", PATTERN, mode],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")
def test_a_fixed_mmap_threshold_gives_freed_temporaries_back():
    """With glibc's adaptive threshold the 24 freed temporaries stay in the heap (about
    190 MB); with the threshold fixed each goes back to the system when freed."""
    adaptive, fixed = heap_growth_mb("adaptive"), heap_growth_mb("fixed")
    assert adaptive > 100, adaptive  # the pattern does fragment glibc's heap
    assert fixed < 16, fixed
