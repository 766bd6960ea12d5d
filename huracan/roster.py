"""Bot-side reader of ``champions/roster.json``.

python -m huracan.roster top 10 --allow BTC,ETH,SOL --block DOGE --root artifacts
python -m huracan.roster schema          # the JSON Schema of roster.json

Every bad input (a missing root or roster, a truncated or non-JSON file, a schema
violation, a ``model_path`` leaving the artifact root) is one line on stderr naming the
file, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jsonschema

from huracan.config import build
from huracan.errors import DataError, HuracanError
from huracan.registry.roster import (
    ENTRY_FIELDS,
    ROSTER_KEY,
    ROSTER_SCHEMA,
    check_roster,
    format_table,
    select,
)
from huracan.store import ArtifactNotFound, check_key

# the options of the ``store`` config group, by name
STORES = {
    "local": "huracan.store.base.LocalStore",
    "dropbox": "huracan.store.dropbox_store.DropboxStore",
}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"N must be >= 1, got {value}")
    return value


def read_roster(kind: str, root: str) -> dict:
    """The validated roster under ``root``; a ``RosterError`` names the file otherwise."""
    store = build({"_target_": STORES[kind], "root": root})
    where = f"{store.describe()}/{ROSTER_KEY}"
    if kind == "local" and not Path(root).expanduser().is_dir():
        raise RosterError(f"{where}: the artifact root {root} does not exist")
    try:
        raw = store.read_bytes(ROSTER_KEY)
    except ArtifactNotFound:
        raise RosterError(f"{where}: no roster (is --root the artifact root?)") from None
    try:
        roster = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RosterError(f"{where}: not valid JSON (truncated?): {err}") from None
    try:
        jsonschema.validate(roster, ROSTER_SCHEMA)
    except jsonschema.ValidationError as err:
        path = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise RosterError(f"{where}: schema violation at {path}: {err.message}") from None
    for i, entry in enumerate(roster["entries"]):
        if entry["model_path"] is None:
            continue
        try:
            check_key(entry["model_path"])
        except HuracanError as err:
            raise RosterError(f"{where}: entries/{i}/model_path leaves the root: {err}") from None
    try:
        check_roster(roster, where)  # what the schema cannot say: each coin listed once
    except DataError as err:
        raise RosterError(str(err)) from None
    return roster


class RosterError(HuracanError):
    """A roster the reader cannot use; the message names the file."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m huracan.roster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    top = commands.add_parser("top", help="the best N tradable models")
    top.add_argument("n", type=positive_int, nargs="?", default=None, help="how many (>= 1)")
    top.add_argument("--allow", default="", help="comma-separated symbols to keep only")
    top.add_argument("--block", default="", help="comma-separated symbols to leave out")
    top.add_argument("--all", action="store_true", help="include entries with trade_ok false")
    top.add_argument("--json", action="store_true", help="print JSON instead of a table")
    top.add_argument("--store", default="local", choices=sorted(STORES))
    top.add_argument("--root", default="artifacts", help="store root (directory or path)")
    commands.add_parser("schema", help="print the roster's JSON Schema")
    args = parser.parse_args(argv)
    if args.command == "schema":
        print(json.dumps(ROSTER_SCHEMA, indent=2))
        return 0
    try:
        roster = read_roster(args.store, args.root)
    except HuracanError as err:
        print(f"huracan.roster: {err}", file=sys.stderr)
        return 2
    chosen = select(
        roster,
        args.n,
        [s for s in args.allow.split(",") if s],
        [s for s in args.block.split(",") if s],
        include_not_ok=args.all,
    )
    if args.json:
        print(json.dumps(chosen, indent=2))
        return 0
    print(format_table(chosen, ENTRY_FIELDS))
    print(f"\n{len(chosen)} of {len(roster['entries'])} entries (run {roster['run_id']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
