"""``data=csv``: a directory with one ``<SYMBOL>.csv | .csv.gz | .parquet`` file per symbol."""

from __future__ import annotations

import errno
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd

from huracan.data.align import build_panel, screen_frames
from huracan.data.panel import DropRecord, Panel, to_utc
from huracan.data.validate import (
    MAX_BAR_MOVE,
    POLICIES,
    Policy,
    check_max_bar_move,
    validate_bars,
)
from huracan.errors import ConfigError, DataError
from huracan.names import SYMBOL, check_segment

log = logging.getLogger(__name__)

SUFFIXES = (".csv.gz", ".csv", ".parquet")
DEFAULT_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD")


def check_symbol(symbol: str, where: str = "symbol") -> str:
    """The symbol upper-cased, or a ConfigError if it could escape a directory or a key."""
    name = check_segment(str(symbol).strip().upper(), f"{where} {symbol!r} ->")
    if not re.fullmatch(SYMBOL, name):
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


def skip_label(name: str) -> str:
    """A key-safe stand-in symbol for a file whose name gives no valid symbol.

    Real symbols never hold ``_``, so the label cannot collide with one; it is only used
    to record the skip (``gates.json``), never to read or write anything.
    """
    return "_" + re.sub(r"[^A-Z0-9]", "_", name.upper())[:40]


def scan_directory(
    directory: Path, quotes: Sequence[str] = DEFAULT_QUOTES
) -> tuple[dict[str, Path], dict[str, DataError]]:
    """Every entry of ``directory`` named like a data file, sorted into usable and not.

    Symbolic links are followed wherever they point, also out of the directory: a data
    folder of links into a shared store is the usual way to pick a subset without copying.
    Entries without a data suffix (``README.md``) are not data files and are ignored.

    Returns:
        symbol -> file for the usable files, and symbol -> the error of each entry that
        cannot be used: an unsafe name (keyed by :func:`skip_label`), a dangling or looping
        link, a directory or other non-file, or two files giving one symbol (neither is
        used).

    Raises:
        DataError: the directory is missing, or holds no entry named like a data file.
    """
    if not directory.is_dir():
        raise DataError(str(directory), "data directory does not exist")
    found: dict[str, Path] = {}
    problems: dict[str, DataError] = {}
    entries = [p for p in sorted(directory.iterdir()) if p.name.lower().endswith(SUFFIXES)]
    for path in entries:
        try:
            symbol = symbol_from_filename(path.name, quotes)
        except ConfigError as err:
            problems[skip_label(path.name)] = DataError(
                str(path), f"unsafe file name, no symbol read from it ({err})"
            )
            continue
        problem = _entry_problem(path)
        if symbol in found or symbol in problems:
            first = found.pop(symbol, None)
            first_name = first.name if first is not None else problems[symbol].source
            problems[symbol] = DataError(
                str(path),
                f"files {Path(first_name).name!r} and {path.name!r} both hold symbol {symbol}; "
                "keep one",
            )
        elif problem is not None:
            problems[symbol] = DataError(str(path), problem)
        else:
            found[symbol] = path
    if not entries:
        raise DataError(str(directory), f"no data files ({', '.join(SUFFIXES)}) in directory")
    return dict(sorted(found.items())), dict(sorted(problems.items()))


def _entry_problem(path: Path) -> str | None:
    """Why a directory entry named like a data file cannot be read (None: it can)."""
    try:
        if path.is_file():
            return None
        if path.is_symlink():
            target = path.readlink()
            try:
                os.stat(path)
            except OSError as err:
                if err.errno == errno.ELOOP:
                    return f"symbolic link to {str(target)!r} loops back on itself"
            if not path.exists():
                return f"symbolic link to {str(target)!r}, which does not exist"
            return f"symbolic link to {str(target)!r}, which is not a regular file"
        if path.is_dir():
            return "is a directory, not a data file"
        return "is not a regular file (a pipe, socket or device?)"
    except OSError as err:  # a link loop, or no permission
        return f"cannot be resolved: {err.strerror or err}"


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
    files: dict[str, Path], policy: Policy, max_bar_move: float | None = None
) -> tuple[dict[str, pd.DataFrame], list[DropRecord]]:
    """Reads and validates each file under the error policy.

    Args:
        files: symbol -> file.
        policy: ``raise``, ``skip`` or ``drop_rows``.
        max_bar_move: see :func:`huracan.data.validate.validate_bars` (None: no check).

    Returns:
        symbol -> clean frame, and the records of skipped symbols and dropped rows.
    """
    check_policy(policy)
    frames, drops = {}, []
    for symbol, path in files.items():
        try:
            raw = read_raw(path)
            frame, problems = validate_bars(
                raw, str(path), "drop_rows" if policy != "raise" else policy, max_bar_move
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


def check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ConfigError(f"data.on_error must be one of {POLICIES}, got {policy!r}")


class CsvSource:
    """Reads a directory of per-symbol OHLCV files into a Panel.

    Args:
        path: directory holding ``<SYMBOL>.csv | .csv.gz | .parquet`` files (symbolic links
            are followed, also out of the directory).
        symbols: subset of symbols to read (all files if None).
        start: first timestamp kept (inclusive), e.g. ``2022-01-01``.
        end: last timestamp kept (exclusive).
        timeframe: bar length of the panel; None keeps the files' own.
        max_ffill: longest gap, in bars, that is forward-filled.
        on_error: ``raise`` (default), ``skip`` the symbol, or ``drop_rows`` (and count them).
            Problems of a whole file (unreadable, unsafe name, two files for one symbol,
            another bar length, bars off the grid) skip the symbol under ``drop_rows`` too.
        quotes: quote currencies stripped from file names.
        max_bar_move: largest ``|log(close / previous close)|`` of a file's bar; a bar
            beyond it is a bad row. None switches the check off.
        partial_bars: with a coarser ``timeframe``, what a bar with some of the files'
            bars missing becomes: ``keep`` (aggregated from the bars it has) or ``missing``
            (a missing bar, forward-filled like any short gap).
        ragged_end: the panel ends at the latest bar that at least this share of the
            symbols trading in its last 90 days reach (files that end at different times;
            ``build_panel``); None keeps every bar.
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
        max_bar_move: float | None = MAX_BAR_MOVE,
        partial_bars: Literal["keep", "missing"] = "keep",
        ragged_end: float | None = 0.5,
    ):
        self.path = path
        self.symbols = symbols
        self.start = start
        self.end = end
        self.timeframe = timeframe
        self.max_ffill = max_ffill
        self.on_error = on_error
        self.quotes = quotes
        self.max_bar_move = check_max_bar_move(max_bar_move)
        self.partial_bars = partial_bars
        self.ragged_end = ragged_end

    def load(self) -> Panel:
        if self.path in (None, "", "???"):
            raise ConfigError("data=csv needs data.path=DIR (a directory of per-symbol files)")
        check_policy(self.on_error)
        files, problems = scan_directory(Path(self.path).expanduser(), self.quotes)
        if self.symbols:
            wanted = [check_symbol(s, "data.symbols entry") for s in self.symbols]
            missing = [s for s in wanted if s not in files and s not in problems]
            if missing:
                raise ConfigError(
                    f"data.symbols {missing} not found in {self.path}; available: {sorted(files)}"
                )
            files = {s: files[s] for s in wanted if s in files}
            problems = {s: problems[s] for s in wanted if s in problems}
        if problems and self.on_error == "raise":
            raise next(iter(problems.values()))
        drops = []
        for symbol, err in problems.items():
            drops.append(DropRecord(symbol, "file_error", 0, str(err)))
            log.warning("skipping %s: %s", symbol, err)
        frames, read_drops = read_symbols(files, self.on_error, self.max_bar_move)
        drops += read_drops
        frames = {s: _clip(f, self.start, self.end) for s, f in frames.items()}
        for symbol in [s for s, f in frames.items() if f.empty]:
            drops.append(
                DropRecord(symbol, "outside_window", 0, f"no bar in [{self.start}, {self.end})")
            )
            del frames[symbol]
        if files and not frames and any(d.reason == "outside_window" for d in drops):
            raise DataError(
                str(self.path),
                f"no file has a bar in the window [{self.start}, {self.end}) "
                "(data.start, data.end)",
            )
        sources = {s: str(files[s]) for s in frames}
        frames, grid_drops = screen_frames(frames, sources, self.on_error)
        drops += grid_drops
        return build_panel(
            frames,
            timeframe=self.timeframe,
            max_ffill=self.max_ffill,
            drops=drops,
            partial_bars=self.partial_bars,
            ragged_end=self.ragged_end,
        )


def _clip(frame: pd.DataFrame, start: str | None, end: str | None) -> pd.DataFrame:
    if start is not None:
        frame = frame[frame.index >= to_utc(start)]
    if end is not None:
        frame = frame[frame.index < to_utc(end)]
    return frame
