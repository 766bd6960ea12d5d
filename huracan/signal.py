"""Signals for the live bot: the roster's champions scored on the newest bars.

python -m huracan.signal --root artifacts --data DIR [--top N --allow A,B --block C]
                         [--expire-hours H] [--out signals.json]

DIR holds one <SYMBOL>.csv | .csv.gz | .parquet file per coin (the input contract of
data=csv), with the latest bars of every roster coin and of the market factor's members:
the probability needs the last W bars (the warm-up of the champions' own preprocessing:
FFD window, longest look-back), the drift score W + drift window - 1 (both printed).
One row per roster coin: probability, threshold, trade (true only when the probability
reaches the threshold and nothing stands in the way), the reasons when it does not, the
horizon in bars, the champion's out-of-sample net return per trade after its costs
(expected_net_bps), its model path and age, and drift (the largest population stability
index of its inputs over the drift window against its training window). --out writes the
same rows as JSON, atomically. Bad input: one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

import pandas as pd

from huracan.errors import HuracanError
from huracan.io import atomic_write_text
from huracan.report import format_table
from huracan.serve import Fleet, ServeConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m huracan.signal",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", default="artifacts", help="artifact root (local directory)")
    parser.add_argument("--data", required=True, help="directory of per-symbol bar files")
    parser.add_argument("--top", type=int, default=None, help="only the best N roster entries")
    parser.add_argument("--allow", default="", help="comma-separated symbols to keep only")
    parser.add_argument("--block", default="", help="comma-separated symbols to leave out")
    parser.add_argument(
        "--expire-hours",
        type=float,
        default=ServeConfig.expire_hours,
        help="a champion whose training data ended longer ago than this does not trade "
        f"(default {ServeConfig.expire_hours:g}; 0: never expires)",
    )
    parser.add_argument(
        "--max-psi", type=float, default=ServeConfig.max_psi, help="drift above this is flagged"
    )
    parser.add_argument(
        "--drift-action",
        choices=["warn", "block"],
        default=ServeConfig.drift_action,
        help="block: a drifted coin does not trade; warn: drift is only reported",
    )
    parser.add_argument("--out", default=None, help="write the signals as JSON to this file")
    args = parser.parse_args(argv)
    try:
        fleet = Fleet.load(
            args.root,
            top=args.top,
            allow=[s for s in args.allow.split(",") if s],
            block=[s for s in args.block.split(",") if s],
            config=ServeConfig(
                expire_hours=args.expire_hours or None,
                max_psi=args.max_psi,
                drift_action=args.drift_action,
            ),
        )
        if not fleet.symbols:
            raise HuracanError(f"{args.root}: the roster has no entry left after the filters")
        signals = fleet.signals(args.data)
    except (HuracanError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    records = [
        {k: None if isinstance(v, float) and v != v else v for k, v in row.items()}  # NaN
        for row in signals.assign(bar_time=signals["bar_time"].map(pd.Timestamp.isoformat)).to_dict(
            "records"
        )
    ]
    if args.out:
        document = {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "run_id": fleet.roster["run_id"],
            "warmup_bars": fleet.warmup_bars,
            "bars_needed": fleet.bars_needed,
            "signals": records,
        }
        atomic_write_text(args.out, json.dumps(document, indent=2) + "\n")
    table = signals.assign(reasons=signals["reasons"].map("; ".join)).set_index("symbol")
    print(format_table(table.drop(columns=["model_path", "bar_time"]), max_rows=400))
    print(
        f"\n{int(signals['trade'].sum())} of {len(signals)} coins trade at "
        f"{signals['bar_time'].iloc[0]} (warm-up {fleet.warmup_bars} bars, with the drift "
        f"window {fleet.bars_needed}; run "
        f"{fleet.roster['run_id']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
