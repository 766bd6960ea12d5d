"""Helpers shared by the benchmark scripts: timing in a fresh process, and tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {bench!r})
setup = compile({setup!r}, "setup", "exec")
work = compile({work!r}, "work", "exec")
scope = {{}}
exec(setup, scope)
times = []
for _ in range({repeat}):
    start = time.perf_counter()
    exec(work, scope)
    times.append(time.perf_counter() - start)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": min(times), "peak_mb": peak, "result": scope.get("result")}}))
"""


def measure(work: str, setup: str = "", repeat: int = 1) -> dict:
    """Runs ``work`` in a fresh Python process: best time of ``repeat`` and peak memory (MB)."""
    code = _CHILD.format(bench=str(ROOT / "bench"), setup=setup, work=work, repeat=repeat)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_table(title: str, rows: list[dict]) -> None:
    """Prints rows (dicts with the same keys) as a fixed-width table."""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print(f"\n{title}")
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# Where each figure comes from: defaults are chosen on the design seeds and window only.
DESIGN_SEEDS = range(0, 5)
HELD_OUT_SEEDS = range(5, 10)
DESIGN_END = "2022-05-31"  # Binance 2020-05 .. 2022-05 is the design window


def seed_label(seed: int) -> str:
    """``design`` (seeds 0-4), ``held out`` (5-9), or ``other`` (any other seed)."""
    if seed in DESIGN_SEEDS:
        return "design"
    return "held out" if seed in HELD_OUT_SEEDS else "other"


def window_label(start: str, end: str) -> str:
    """``design`` for a window inside 2020-05 .. 2022-05; later bars are held out by the
    rule, but earlier defaults (cut_z, the leader channel, head.hidden) were chosen on
    2022-05 .. 2024-05, so they are labelled ``development``."""
    if str(end) <= DESIGN_END:
        return "design"
    return "development (earlier defaults were chosen on 2022-05..2024-05)"
