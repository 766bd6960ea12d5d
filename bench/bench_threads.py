"""Torch CPU threads on a shared machine: a tiny default-like run with and without one
competing busy process, for threads=1, 2, torch's default and Huracan's proposed default.

Each case runs ``train.py debug=fast`` in a fresh process (so OpenMP sees the thread count
and wait policy from the start) and prints one table::

    .venv/bin/python bench/bench_threads.py [--repeat 1]
    .venv/bin/python bench/bench_threads.py --run default     # the default run (~40 s each)
    .venv/bin/python bench/bench_threads.py --run per_coin_400  # experiment=per_coin_400

The machine's own load is printed too: figures taken while others use the machine are
not the idle or one-busy-process figures the targets speak of.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from huracan.threads import available_cores, default_threads, passive_wait_env

ROOT = Path(__file__).resolve().parents[1]
MAX_RATIO_TO_BEST = 1.3


def spin(stop: multiprocessing.Event) -> None:
    """Keeps one core busy, as another user's job would."""
    while not stop.is_set():
        sum(range(10_000))


RUNS = {  # what each case runs: train.py's overrides
    "debug_fast": ["debug=fast"],
    "default": [],
    "per_coin_400": ["experiment=per_coin_400", "trainer.enable_progress_bar=false"],
}


def run_once(threads: int | None, passive: bool, run: str = "debug_fast") -> float:
    env = passive_wait_env() if passive else dict(os.environ)
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "train.py", *RUNS[run], f"hydra.run.dir={out}"]
        command += [f"store.root={out}/artifacts", f"logger.save_dir={out}/tb"]
        command.append(f"threads={'null' if threads is None else threads}")
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the min is kept")
    parser.add_argument("--run", choices=sorted(RUNS), default="debug_fast")
    args = parser.parse_args()
    proposed = default_threads()
    cases = [
        ("torch default (threads=null)", None, False),
        ("threads=1", 1, False),
        ("threads=2", 2, False),
        (f"proposed: threads={proposed}, OMP_WAIT_POLICY=PASSIVE", proposed, True),
    ]
    print(f"cores available: {available_cores()}, load average at start: {os.getloadavg()}")
    seconds: dict[tuple[str, bool], float] = {}
    for busy in (False, True):
        stop = multiprocessing.Event()
        spinner = multiprocessing.Process(target=spin, args=(stop,), daemon=True)
        if busy:
            spinner.start()
        try:
            for name, threads, passive in cases:
                times = [run_once(threads, passive, args.run) for _ in range(args.repeat)]
                seconds[name, busy] = min(times)
                print(f"  {name}, busy={busy}: {seconds[name, busy]:.1f} s", flush=True)
        finally:
            stop.set()
            if busy:
                spinner.join()
    best = {busy: min(seconds[name, busy] for name, _, _ in cases) for busy in (False, True)}
    header = ("case", "idle s", "1 busy process s", "busy / best busy")
    lines = [header]
    for name, _, _ in cases:
        ratio = seconds[name, True] / best[True]
        lines.append(
            (name, f"{seconds[name, False]:.1f}", f"{seconds[name, True]:.1f}", f"{ratio:.2f}")
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for k, line in enumerate(lines):
        print(" | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if k == 0:
            print("-+-".join("-" * width for width in widths))
    ratio = seconds[cases[-1][0], True] / best[True]
    verdict = "PASS" if ratio <= MAX_RATIO_TO_BEST else "FAIL"
    print(
        f"proposed default under one busy process: {ratio:.2f}x the best setting "
        f"(target <= {MAX_RATIO_TO_BEST}x): {verdict}"
    )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
