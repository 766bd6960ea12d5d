"""What freezing the heap at a run's start saves (``huracan.memory.frozen_heap``).

Each config runs in a fresh process twice per repeat, with the frozen heap (as ``train``
does) and with it replaced by a no-op (the run before it), alternating; the table gives
each arm's CPU and wall seconds (best of the repeats), the number and CPU of the full
collections in ``train`` (``gc.callbacks``: the folds' ``release_memory``, the collector's
own, and the frozen heap's one on entry), its peak resident memory, and whether both
arms wrote the same ``results.csv`` (md5).

    nice -n 10 .venv/bin/python bench/bench_frozen_heap.py [--repeat 2] [--config default]
        [-- extra overrides]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from _util import ROOT, print_table, verdict

CONFIGS = {
    "default": [],
    "100 coins": ["data.n_assets=100", "data.years=1"],
}

_CHILD = """
import contextlib, hashlib, json, resource, time
from hydra import compose, initialize_config_dir
import huracan.memory, huracan.run
from huracan.run import train
if not {frozen!r}:
    huracan.run.frozen_heap = contextlib.nullcontext
import gc
spent, since = [0.0, 0], [0.0]
def timed(phase, info):  # every full collection: the folds', the collector's own, the freeze's
    if info["generation"] != 2:
        return
    if phase == "start":
        since[0] = time.process_time()
    else:
        spent[0] += time.process_time() - since[0]
        spent[1] += 1
gc.callbacks.append(timed)
with initialize_config_dir({conf!r}, version_base="1.3"):
    cfg = compose("config", overrides={overrides!r})
started, cpu = time.perf_counter(), time.process_time()
train(cfg)
wall, cpu = time.perf_counter() - started, time.process_time() - cpu
digest = hashlib.md5(open({out!r} + "/results.csv", "rb").read()).hexdigest()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"wall": wall, "cpu": cpu, "full": spent[0], "n_full": spent[1], "peak": peak,
                  "md5": digest}}))
"""


def run(frozen: bool, overrides: list[str], where: str) -> dict:
    out = os.path.join(where, "frozen" if frozen else "plain")
    place = [f"+output_dir={out}", f"logger.save_dir={out}/tb", f"store.root={out}/artifacts"]
    code = _CHILD.format(
        frozen=frozen,
        conf=str(ROOT / "huracan" / "conf"),
        overrides=[*place, "trainer.enable_progress_bar=false", *overrides],
        out=out,
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--config", choices=sorted(CONFIGS), nargs="+", default=["default"])
    parser.add_argument("extra", nargs="*", help="more overrides for both arms, after --")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows, same = [], True
    for config in args.config:
        overrides = [*CONFIGS[config], *args.extra]
        arms: dict[bool, list[dict]] = {True: [], False: []}
        with tempfile.TemporaryDirectory() as where:
            for _ in range(args.repeat):
                for frozen in (False, True):
                    arms[frozen].append(run(frozen, overrides, where))
        digests = {r["md5"] for runs in arms.values() for r in runs}
        same &= len(digests) == 1
        for frozen in (False, True):
            runs = arms[frozen]
            rows.append(
                {
                    "config": config,
                    "heap": "frozen" if frozen else "not frozen",
                    "CPU s": f"{min(r['cpu'] for r in runs):.1f}",
                    "wall s": f"{min(r['wall'] for r in runs):.1f}",
                    "full collections": str(runs[0]["n_full"]),
                    "their CPU s": f"{min(r['full'] for r in runs):.2f}",
                    "peak MB": f"{max(r['peak'] for r in runs):.0f}",
                    "results.csv md5": runs[0]["md5"][:8],
                }
            )
    extra = f" with {' '.join(args.extra)}" if args.extra else ""
    print_table(
        f"python train.py{extra}, frozen heap or not: best of {args.repeat} alternated runs "
        f"(load average {load:.1f} before, {os.getloadavg()[0]:.1f} after, on "
        f"{os.cpu_count()} cores)",
        rows,
    )
    print(f"{verdict(same)}  every run of a config wrote the same results.csv")


if __name__ == "__main__":
    main()
