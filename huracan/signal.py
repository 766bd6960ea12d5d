"""Signals for the live bot: the roster's champions scored on the newest bars.

python -m huracan.signal --root artifacts --data DIR [--top N --allow A,B --block C]
                         [--expire-hours H] [--positions positions.json] [--out signals.json]
python -m huracan.signal --root dropbox:/huracan --exchange binance [--quote USDT]
                         [--since TIME] [--cache-dir data_cache] ...
python -m huracan.signal --root artifacts/demo --synthetic ...

--root is a local directory, or dropbox:/PATH (the Dropbox store; credentials from the
environment only: DROPBOX_ACCESS_TOKEN, or DROPBOX_REFRESH_TOKEN with DROPBOX_APP_KEY).
--exchange NAME reads the bars from a ccxt exchange instead of --data: the roster coins
and the factor's members against --quote, at the champions' bar length, from --since
(default: as many bars before now as the signal needs, and a margin), cached in
--cache-dir like data=ccxt. --synthetic draws the champions' own synthetic market again
from their config: trained with data.end=now, its bars up to the last closed one (the
live walk-through's demo).

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

Each row's ``position`` (flat / open, entry time, exit due) and ``trade`` follow the
backtest's rule: ``trade`` means a new long entered at the bar's close, held ``horizon``
bars, and is never true while the coin's position is open. --positions FILE keeps that
state between calls: the open positions are read from FILE (none if it does not exist)
and the positions after this bar written back to it, atomically. The bot that does not
fill an entry edits FILE (or passes none: every coin flat).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import NoReturn

import pandas as pd

from huracan.data import Panel
from huracan.errors import ConfigError, HuracanError
from huracan.io import atomic_write_text
from huracan.report import format_table
from huracan.serve import Fleet, ServeConfig
from huracan.serve.positions import TRADE_MEANS, open_positions, read_positions, write_positions
from huracan.store import open_root


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit 2, as every other bad input here."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m huracan.signal",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--root", default="artifacts", help="artifact root: a local directory or dropbox:/PATH"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="directory of per-symbol bar files")
    source.add_argument("--exchange", help="a ccxt exchange id: read the latest bars from it")
    source.add_argument(
        "--synthetic",
        action="store_true",
        help="the champions' own synthetic market, drawn again (data.end=now: up to now)",
    )
    parser.add_argument("--quote", default="USDT", help="quote currency on the exchange")
    parser.add_argument("--since", default=None, help="first bar to fetch from the exchange")
    parser.add_argument("--cache-dir", default="data_cache", help="the exchange bars' cache")
    parser.add_argument("--top", type=int, default=None, help="only the best N (>= 1) entries")
    parser.add_argument("--allow", default="", help="comma-separated symbols to keep only")
    parser.add_argument("--block", default="", help="comma-separated symbols to leave out")
    parser.add_argument(
        "--expire-hours",
        type=float,
        default=ServeConfig.expire_hours,
        help="a champion last vouched for longer ago than this does not trade: its last "
        "out-of-sample window (per-coin test, Mechanic holdout) or its training data's end "
        f"(default {ServeConfig.expire_hours:g}; 0: never expires)",
    )
    parser.add_argument(
        "--max-psi",
        type=float,
        default=ServeConfig.max_psi,
        help="drift above this is flagged (finite, > 0)",
    )
    parser.add_argument(
        "--drift-action",
        choices=["warn", "block"],
        default=ServeConfig.drift_action,
        help="block: a drifted coin does not trade; warn: drift is only reported",
    )
    parser.add_argument(
        "--positions", default=None, help="open positions: read before, written after (JSON)"
    )
    parser.add_argument("--out", default=None, help="write the signals as JSON to this file")
    args = parser.parse_args(argv)
    try:
        fleet = Fleet.load(
            open_root(args.root),
            top=args.top,
            allow=[s for s in args.allow.split(",") if s],
            block=[s for s in args.block.split(",") if s],
            config=ServeConfig(
                expire_hours=None if args.expire_hours == 0 else args.expire_hours,
                max_psi=args.max_psi,
                drift_action=args.drift_action,
            ),
        )
        if not fleet.symbols:
            raise HuracanError(f"{args.root}: the roster has no entry left after the filters")
        held = read_positions(args.positions) if args.positions else None
        signals = fleet.signals(latest_bars(fleet, args), held)
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
            "trade_means": TRADE_MEANS,
            "signals": records,
        }
        atomic_write_text(args.out, json.dumps(document, indent=2) + "\n")
    if args.positions:
        write_positions(args.positions, open_positions(signals), signals["bar_time"].iloc[0])
    table = signals.assign(
        reasons=signals["reasons"].map("; ".join),
        position=signals["position"].map(lambda p: p["state"]),
    ).set_index("symbol")
    print(format_table(table.drop(columns=["model_path", "bar_time"]), max_rows=400))
    print(
        f"\n{int(signals['trade'].sum())} of {len(signals)} coins trade at "
        f"{signals['bar_time'].iloc[0]} (warm-up {fleet.warmup_bars} bars, with the drift "
        f"window {fleet.bars_needed}; run "
        f"{fleet.roster['run_id']})"
    )
    return 0


def latest_bars(fleet: Fleet, args: argparse.Namespace) -> Panel | str:
    """The bars to score: the --data directory, the synthetic market or the exchange's."""
    if args.data:
        return args.data
    if args.synthetic:
        return synthetic_bars(fleet)
    return exchange_bars(fleet, args)


def synthetic_bars(fleet: Fleet) -> Panel:
    """The champions' own synthetic market, drawn again from their config: with
    ``data.end=now`` the bars up to the last closed one, those they trained on unchanged
    (``huracan.data.now``)."""
    from huracan.config import build

    markets = {json.dumps(m.config["data"], sort_keys=True) for m in fleet.models.values()}
    if len(markets) != 1:
        raise ConfigError(f"--synthetic: the champions name {len(markets)} markets, need one")
    data = json.loads(markets.pop())
    if data.get("_target_") != "huracan.data.SyntheticMarket":
        raise ConfigError(f"--synthetic: the champions were trained on {data.get('_target_')}")
    return build(data).load()


def exchange_bars(fleet: Fleet, args: argparse.Namespace) -> Panel:
    """The fleet's latest bars from a ccxt exchange (``data=ccxt``'s source and cache)."""
    from huracan.data.exchange import CcxtSource  # ccxt only when asked for

    timeframes = {m.description.get("timeframe") for m in fleet.models.values()}
    if len(timeframes) != 1 or None in timeframes:
        raise ConfigError(f"the champions' bar lengths {sorted(map(str, timeframes))}: need one")
    [timeframe] = timeframes
    step = pd.Timedelta(timeframe)
    since = args.since
    if since is None:  # the bars the signal reads, a margin for gaps, up to the last closed
        since = pd.Timestamp.now(tz="UTC").floor(step) - step * (fleet.bars_needed * 1.25 + 24)
    source = CcxtSource(
        exchange=args.exchange,
        symbols=fleet.data_symbols,
        quote=args.quote,
        timeframe=ccxt_timeframe(step),
        start=str(since),
        cache_dir=args.cache_dir,
        on_error="skip",  # a coin the exchange lacks gets its reason, not the whole fleet
    )
    return source.load()


def ccxt_timeframe(step: pd.Timedelta) -> str:
    """A bar length in ccxt's spelling: ``1h``, ``15m``, ``1d``."""
    seconds = int(step.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise ConfigError(f"bar length {step} has no ccxt timeframe")


if __name__ == "__main__":
    sys.exit(main())
