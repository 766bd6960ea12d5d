"""Bot-side reader of ``champions/roster.json``.

python -m huracan.roster top 10 --allow BTC,ETH,SOL --block DOGE --root artifacts
python -m huracan.roster schema          # the JSON Schema of roster.json
"""

from __future__ import annotations

import argparse
import json
import sys

from huracan.config import build
from huracan.registry.roster import ENTRY_FIELDS, ROSTER_SCHEMA, load_roster, select

# the options of the ``store`` config group, by name
STORES = {
    "local": "huracan.store.base.LocalStore",
    "dropbox": "huracan.store.dropbox_store.DropboxStore",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m huracan.roster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    top = commands.add_parser("top", help="the best N tradable models")
    top.add_argument("n", type=int, nargs="?", default=None, help="how many (default: all)")
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
    roster = load_roster(build({"_target_": STORES[args.store], "root": args.root}))
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
    widths = {
        f: max(len(f), *(len(str(e[f])) for e in chosen)) if chosen else len(f)
        for f in ENTRY_FIELDS
    }
    print("  ".join(f.ljust(widths[f]) for f in ENTRY_FIELDS))
    for entry in chosen:
        print("  ".join(str(entry[f]).ljust(widths[f]) for f in ENTRY_FIELDS))
    print(f"\n{len(chosen)} of {len(roster['entries'])} entries (run {roster['run_id']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
