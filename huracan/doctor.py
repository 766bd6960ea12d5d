"""What is wrong in an artifact root, and (with ``--fix``) the broken parts moved aside.

python -m huracan.doctor ROOT [--fix]

ROOT is a local directory or dropbox:/PATH. Reported: model versions, runs and champion
pointers whose names are not safe (``..``, separators, control characters: see
``huracan.names``), pointers that are malformed, point at another coin's version or at an
incomplete one, and a roster that is not valid JSON, breaks its schema or lists a coin
twice. With ``--fix``, under the root's lock, each of them is moved to
``quarantine/<UTC time>/<its key>`` (nothing is deleted) and every move is printed; the
next training run writes new pointers and a new roster. Exit 0: nothing wrong (or all of
it moved); 1: something wrong and left as it is; 2: the root cannot be read.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

from huracan.errors import DataError, HuracanError
from huracan.names import SEGMENT, SYMBOL
from huracan.registry.artifacts import is_complete, read_champion
from huracan.registry.champions import pointer_problem
from huracan.registry.roster import ROSTER_KEY, load_roster
from huracan.store import Store, open_root

QUARANTINE = "quarantine"


@dataclass(frozen=True)
class Problem:
    """A broken part of the root: the key (a file or a folder) and what is wrong with it."""

    key: str
    why: str


def diagnose(store: Store) -> list[Problem]:
    """Every broken version, run, pointer and roster of the root, in key order."""
    keys = store.list()
    problems = {}
    for key in keys:
        parts = key.split("/")
        if parts[0] == "models" and len(parts) >= 4:
            folder = "/".join(parts[:3])
            if not (re.fullmatch(SYMBOL, parts[1]) and re.fullmatch(SEGMENT, parts[2])):
                problems[folder] = "model version with an unsafe name"
        elif parts[0] == "runs" and len(parts) >= 3 and not re.fullmatch(SEGMENT, parts[1]):
            problems[f"runs/{parts[1]}"] = "run with an unsafe run id"
    for key in keys:
        symbol = key.removeprefix("champions/").removesuffix(".json")
        if key.count("/") != 1 or not key.startswith("champions/") or key == ROSTER_KEY:
            continue
        why = _pointer_problem(store, symbol) if key.endswith(".json") else "not a pointer"
        if why is not None:
            problems[key] = why
    if store.exists(ROSTER_KEY):
        try:
            load_roster(store)
        except DataError as err:
            problems[ROSTER_KEY] = err.message
    return [Problem(key, why) for key, why in sorted(problems.items())]


def _pointer_problem(store: Store, symbol: str) -> str | None:
    if not re.fullmatch(SYMBOL, symbol):
        return "pointer of an unsafe symbol name"
    try:
        pointer = read_champion(store, symbol)
    except DataError as err:
        return err.message
    problem = pointer_problem(store, symbol, pointer)
    if problem is None and not is_complete(store, pointer["model_path"], verify_hashes=False):
        problem = f"points at {pointer['model_path']}, which is not complete"
    return problem


def move_aside(store: Store, problems: list[Problem], stamp: str) -> list[tuple[str, str]]:
    """Moves each problem's files under ``quarantine/<stamp>/``; returns (from, to) keys."""
    moved = []
    for problem in problems:
        if store.exists(problem.key):
            files = [problem.key]
        else:
            files = store.list(problem.key)
        for key in files:
            target = f"{QUARANTINE}/{stamp}/{key}"
            store.write_bytes(target, store.read_bytes(key))
            store.delete(key)  # after its copy is whole: a cut-short move loses nothing
            moved.append((key, target))
        if files and not store.exists(problem.key):
            store.delete(problem.key)  # the emptied folder
    return moved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m huracan.doctor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("root", help="artifact root: a local directory or dropbox:/PATH")
    parser.add_argument("--fix", action="store_true", help="move the broken parts aside")
    args = parser.parse_args(argv)
    try:
        store = open_root(args.root)
        problems = diagnose(store)
        for problem in problems:
            print(f"broken: {problem.key}: {problem.why}")
        if not problems:
            print(f"{store.describe()}: nothing wrong")
            return 0
        if not args.fix:
            print(f"{len(problems)} problem(s); --fix moves them under {QUARANTINE}/")
            return 1
        from huracan.store.lock import store_lock

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        with store_lock(store, "doctor"):  # no run writes while parts move
            moved = move_aside(store, diagnose(store), stamp)
        for source, target in moved:
            print(f"moved: {source} -> {target}")
        print(f"{len(moved)} file(s) moved under {QUARANTINE}/{stamp}/")
    except (HuracanError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
