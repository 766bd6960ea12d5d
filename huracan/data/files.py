"""``data=csv``: a directory with one ``<SYMBOL>.csv | .csv.gz | .parquet`` file per symbol."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from huracan.data.align import build_panel
from huracan.data.panel import DropRecord, Panel, to_utc
from huracan.data.validate import POLICIES, Policy, validate_bars
from huracan.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SUFFIXES = (".csv.gz", ".csv", ".parquet")
DEFAULT_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD")
_SAFE_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.]{0,31}$")


def check_symbol(symbol: str, where: str = "symbol") -> str:
    """The symbol upper-cased, or a ConfigError if it could escape a directory or a key."""
    name = str(symbol).strip().upper()
    if not _SAFE_SYMBOL.match(name):
        raise ConfigError(
            f"unsafe or invalid {where} {symbol!r}: use letters and digits only (e.g. BTC, 1INCH)"
        )
    return name


def symbol_from_filename(name: str, quotes: Sequence[str] = DEFAULT_QUOTES) -> str:
    """``BTC.csv``, ``BTCUSDT.csv.gz`` and ``btc_usdt.parquet`` all give ``BTC``."""
    stem = name
    for suffix in SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    stem = stem.upper()
    parts = re.split(r"[_\-/]", stem)
    if len(parts) == 2 and parts[1] in quotes:
        stem = parts[0]
    else:
        for quote in sorted(quotes, key=len, reverse=True):
            if stem.endswith(quote) and len(stem) > len(quote):
                stem = stem[: -len(quote)]
                break
    return check_symbol(stem, f"symbol from file name {name!r}")


def list_symbol_files(directory: Path, quotes: Sequence[str] = DEFAULT_QUOTES) -> dict[str, Path]:
    """symbol -> file for every data file in ``directory``.

    Raises:
        DataError: the directory is missing or empty, or two files give the same symbol.
    """
    if not directory.is_dir():
        raise DataError(str(directory), "data directory does not exist")
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or not path.name.lower().endswith(SUFFIXES):
            continue
        symbol = symbol_from_filename(path.name, quotes)
        if symbol in found:
            raise DataError(
                str(directory),
                f"files {found[symbol].name!r} and {path.name!r} both hold symbol {symbol}",
            )
        found[symbol] = path
    if not found:
        raise DataError(str(directory), f"no data files ({', '.join(SUFFIXES)}) in directory")
    return dict(sorted(found.items()))


def read_raw(path: Path) -> pd.DataFrame:
    """A data file's rows, as written, without any validation."""
    try:
        if path.name.lower().endswith(".parquet"):
            return pd.read_parquet(path)
        return pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataError(str(path), "file is empty") from None
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as err:
        raise DataError(str(path), f"file cannot be read: {type(err).__name__}: {err}") from err


def read_symbols(
    files: dict[str, Path], policy: Policy
) -> tuple[dict[str, pd.DataFrame], list[DropRecord]]:
    """Reads and validates each file under the error policy.

    Returns:
        symbol -> clean frame, and the records of skipped symbols and dropped rows.
    """
    if policy not in POLICIES:
        raise ConfigError(f"data.on_error must be one of {POLICIES}, got {policy!r}")
    frames, drops = {}, []
    for symbol, path in files.items():
        try:
            raw = read_raw(path)
            frame, problems = validate_bars(
                raw, str(path), "drop_rows" if policy != "raise" else policy
            )
        except DataError as err:
            if policy == "raise":
                raise
            drops.append(DropRecord(symbol, "file_error", 0, str(err)))
            log.warning("skipping %s: %s", symbol, err)
            continue
        if problems and policy == "skip":
            first = min(problems, key=lambda p: int(p.rows[0]))
            drops.append(
                DropRecord(
                    symbol, f"bad_rows:{first.code}", len(first.rows), str(first.error(str(path)))
                )
            )
            log.warning("skipping %s: %s", symbol, first.error(str(path)))
            continue
        for problem in problems:
            drops.append(
                DropRecord(
                    symbol,
                    f"bad_rows:{problem.code}",
                    len(problem.rows),
                    str(problem.error(str(path))),
                )
            )
        if frame.empty:
            drops.append(DropRecord(symbol, "file_error", 0, f"{path}: no valid rows"))
            continue
        frames[symbol] = frame
    return frames, drops


class CsvSource:
    """Reads a directory of per-symbol OHLCV files into a Panel.

    Args:
        path: directory holding ``<SYMBOL>.csv | .csv.gz | .parquet`` files.
        symbols: subset of symbols to read (all files if None).
        start: first timestamp kept (inclusive), e.g. ``2022-01-01``.
        end: last timestamp kept (exclusive).
        timeframe: bar length of the panel; None keeps the files' own.
        max_ffill: longest gap, in bars, that is forward-filled.
        on_error: ``raise`` (default), ``skip`` the symbol, or ``drop_rows`` (and count them).
        quotes: quote currencies stripped from file names.
    """

    def __init__(
        self,
        path: str,
        symbols: Sequence[str] | None = None,
        start: str | None = None,
        end: str | None = None,
        timeframe: str | None = None,
        max_ffill: int = 3,
        on_error: Policy = "raise",
        quotes: Sequence[str] = DEFAULT_QUOTES,
    ):
        self.path = path
        self.symbols = symbols
        self.start = start
        self.end = end
        self.timeframe = timeframe
        self.max_ffill = max_ffill
        self.on_error = on_error
        self.quotes = quotes

    def load(self) -> Panel:
        if self.path in (None, "", "???"):
            raise ConfigError("data=csv needs data.path=DIR (a directory of per-symbol files)")
        files = list_symbol_files(Path(self.path).expanduser(), self.quotes)
        if self.symbols:
            wanted = [check_symbol(s, "data.symbols entry") for s in self.symbols]
            missing = [s for s in wanted if s not in files]
            if missing:
                raise ConfigError(
                    f"data.symbols {missing} not found in {self.path}; available: {sorted(files)}"
                )
            files = {s: files[s] for s in wanted}
        frames, drops = read_symbols(files, self.on_error)
        frames = {s: _clip(f, self.start, self.end) for s, f in frames.items()}
        for symbol in [s for s, f in frames.items() if f.empty]:
            drops.append(
                DropRecord(symbol, "outside_window", 0, f"no bar in [{self.start}, {self.end})")
            )
            del frames[symbol]
        return build_panel(frames, timeframe=self.timeframe, max_ffill=self.max_ffill, drops=drops)


def _clip(frame: pd.DataFrame, start: str | None, end: str | None) -> pd.DataFrame:
    if start is not None:
        frame = frame[frame.index >= to_utc(start)]
    if end is not None:
        frame = frame[frame.index < to_utc(end)]
    return frame
