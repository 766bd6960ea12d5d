"""Fetch and cache candles from a ccxt exchange, standalone (``huracan download``).

huracan download --exchange binance --symbols BTC,ETH,SOL --timeframe 1h --start 2024-01-01

Candles go to ``<cache-dir>/<exchange>/<timeframe>/<SYMBOL>.parquet`` (the cache that
``data=ccxt`` and ``huracan signal --exchange`` read), and a later call only appends the
bars that are new. Prints one line per symbol: the bars added, or why it failed. Bad
input: one line, exit 2.
"""

from __future__ import annotations

import argparse
import sys

from huracan.errors import HuracanError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="huracan download",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--exchange", default="binance", help="a ccxt exchange id")
    parser.add_argument("--symbols", required=True, help="comma-separated base assets: BTC,ETH")
    parser.add_argument("--quote", default="USDT", help="quote currency")
    parser.add_argument("--timeframe", default="1h", help="candle length in ccxt's spelling")
    parser.add_argument("--start", default="2024-01-01", help="first bar when nothing is cached")
    parser.add_argument("--cache-dir", default="data_cache", help="root of the cache")
    parser.add_argument("--no-quotes", action="store_true", help="skip the bid/ask snapshot")
    args = parser.parse_args(argv)
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    if not symbols:
        print("huracan download: --symbols names no symbol", file=sys.stderr)
        return 2
    from huracan.data.exchange import CcxtSource  # ccxt only when asked for

    source = CcxtSource(
        exchange=args.exchange,
        symbols=symbols,
        quote=args.quote,
        timeframe=args.timeframe,
        start=args.start,
        cache_dir=args.cache_dir,
        on_error="skip",  # one refused symbol is reported, the rest are fetched
        quotes=not args.no_quotes,
    )
    try:
        directory, status = source.download()
    except HuracanError as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 2
    width = max(map(len, status))
    for symbol, how in status.items():
        print(f"{symbol.ljust(width)}  {how}")
    print(f"cache: {directory}")
    failed = [s for s, how in status.items() if not how.startswith("+")]
    return 1 if len(failed) == len(status) else 0


if __name__ == "__main__":
    sys.exit(main())
