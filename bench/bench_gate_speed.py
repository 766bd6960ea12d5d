"""The family gate's CPU time per head, this checkout against another (``--against DIR``).

One head's search at each size: ``n`` validation trades over ``days`` days, 4 horizons,
the default gate (``family``: 200 bootstrap resamples, then 200 shuffles of the ranking),
an edge large enough that neither null stops early (the full cost; a head without an edge
often stops after a few chunks). Each checkout runs in a fresh process, best of
``--repeat``; the critical values are printed and must be equal (the speed-ups are bit
for bit).

    .venv/bin/python bench/bench_gate_speed.py [--against ../other-checkout] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _util import ROOT, print_table

SIZES = ((2_000, 20), (20_000, 40), (80_000, 60))  # trades, days: 12, 100, 400 coins' heads

_CHILD = """
import json, time
import numpy as np
from huracan.family import FamilyGate
from huracan.thresholds import head_searches
out = {}
for n, days in SIZES:
    rng = np.random.default_rng(n)
    day = np.sort(rng.integers(0, days, n))
    searches = []
    for h in range(4):
        prob = rng.random(n)
        net = rng.normal(0.0, 0.01, n) + 0.004 * (prob - 0.5)  # an edge: no early stop
        entry = head_searches(prob, net, np.zeros(n, dtype=int), 1, 20, day)[0]
        searches.append(entry[0])
    gate = FamilyGate(seed=1)
    best, value = float("inf"), None
    for _ in range(REPEAT):
        start = time.process_time()
        value = gate.critical_z(searches)
        best = min(best, time.process_time() - start)
    out[f"{n}"] = {"cpu_s": best, "critical": value}
print(json.dumps(out))
"""


def timed(root: str, repeat: int) -> dict:
    """The gate's CPU seconds and critical value per size, in ``root``'s checkout."""
    code = _CHILD.replace("SIZES", repr(SIZES)).replace("REPEAT", str(repeat))
    env = {**os.environ, "PYTHONPATH": root}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="another checkout of huracan to time beside this one")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    here = timed(str(ROOT), args.repeat)
    there = timed(os.path.abspath(args.against), args.repeat) if args.against else None
    rows = []
    for n, days in SIZES:
        mine = here[str(n)]
        row = {"trades": f"{n:,}", "days": days, "CPU s": f"{mine['cpu_s']:.3f}"}
        row["critical"] = f"{mine['critical']:.6f}"
        if there is not None:
            theirs = there[str(n)]
            row["CPU s against"] = f"{theirs['cpu_s']:.3f}"
            row["speed-up"] = f"{theirs['cpu_s'] / mine['cpu_s']:.2f}x"
            row["same critical"] = "yes" if theirs["critical"] == mine["critical"] else "NO"
        rows.append(row)
    against = f" against {args.against}" if args.against else ""
    title = f"the family gate, one head, 4 horizons, CPU s best of {args.repeat}{against}"
    print_table(title, rows)


if __name__ == "__main__":
    main()
