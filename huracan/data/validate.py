"""Validation of one symbol's raw bars: every problem named with its row, or counted.

Rows are reported 1-based as data rows (the header is not counted), so row 1 is the first
line after the header of a CSV file.

Longer than most modules on purpose: it is the catalogue of every bad-input check (values,
timestamps, moves), each with its own message, and a reader looks for them in one place.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from huracan.errors import ConfigError, DataError

Policy = Literal["raise", "skip", "drop_rows"]
POLICIES = ("raise", "skip", "drop_rows")
REQUIRED = ("timestamp", "open", "high", "low", "close", "volume")
PRICES = ("open", "high", "low", "close")
OPTIONAL = ("spread_bps",)
TIMESTAMP_ALIASES = ("time", "date", "datetime", "open_time", "ts")
# Epoch milliseconds of 2000-01-01 and 2100-01-01: outside this, numbers are not ms.
_MS_LO, _MS_HI = 946_684_800_000, 4_102_444_800_000
EARLIEST = pd.Timestamp("2000-01-01", tz="UTC")  # no crypto market before this
# Above these a value is a corrupt cell, not a market: the dearest asset trades near 1e5
# (quote units per base unit), the largest meme-coin day near 3e14 base units. Anything
# far above would overflow float64 in volume x price, variances and the like downstream.
MAX_PRICE = 1e12
MAX_VOLUME = 1e20
# Default data.max_bar_move: ln(50), a close 50x above or below the previous one. The
# largest real move in the 46 Binance coins' 1h and 1d bars is 2.78 (WLD x16 in its
# listing hour); a decimal slip of two places (x100, 4.61) or more is caught.
MAX_BAR_MOVE = 3.912
# A zone at the end of an ISO-8601 time: Z, +08:00, -0500, +08.
_ZONE = r"\d{2}:\d{2}(?::\d{2}(?:\.\d*)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"


@dataclass
class RowProblem:
    """One kind of bad row found in a file: which rows, and the first offending value."""

    code: str  # e.g. "high_below_low"
    message: str
    rows: np.ndarray  # 0-based positions in the file's data rows
    first_value: object = None

    def error(self, source: str) -> DataError:
        value = "" if self.first_value is None else f" (value {self.first_value!r})"
        more = f"; {len(self.rows)} rows in all" if len(self.rows) > 1 else ""
        return DataError(source, f"{self.message}{value}{more}", row=int(self.rows[0]) + 1)


def _problem(code: str, message: str, mask: np.ndarray, shown: object = None) -> list[RowProblem]:
    """A one-element list with the problem of the rows in ``mask`` (empty if none).

    ``shown`` is the column whose value of the first bad row is reported, or a callable
    giving the text for that row.
    """
    rows = np.flatnonzero(mask)
    if not rows.size:
        return []
    if callable(shown):
        first = shown(rows[0])
    elif shown is None:
        first = None
    else:
        first = shown.iloc[rows[0]] if isinstance(shown, pd.Series) else shown[rows[0]]
        first = first.item() if isinstance(first, np.generic) else first
    return [RowProblem(code, message, rows, first)]


def normalise_columns(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """Lower-case, stripped column names; ``timestamp`` found under its usual aliases.

    Raises:
        DataError: a required column is missing (with the closest existing names).
    """
    df = raw.rename(columns=lambda c: str(c).strip().lower())
    doubled = sorted({c for c in df.columns if (df.columns == c).sum() > 1})
    if doubled:
        raise DataError(source, f"column(s) {doubled} appear more than once (names ignore case)")
    if "timestamp" not in df.columns:
        alias = next((a for a in TIMESTAMP_ALIASES if a in df.columns), None)
        if alias is not None:
            df = df.rename(columns={alias: "timestamp"})
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        hints = []
        for col in missing:
            close = difflib.get_close_matches(col, [str(c) for c in df.columns], n=1)
            if close:
                hints.append(f"{close[0]!r} -> {col!r}?")
        hint = f" (did you mean {', '.join(hints)})" if hints else ""
        raise DataError(
            source,
            f"missing column(s) {missing}; found {list(df.columns)}{hint}. "
            f"Expected columns: {list(REQUIRED)} and optionally {list(OPTIONAL)}",
        )
    return df


def parse_timestamps(values: pd.Series, source: str) -> tuple[pd.DatetimeIndex, list[RowProblem]]:
    """ISO-8601 strings (with zone; naive ones are taken as UTC) or epoch milliseconds.

    Timestamps before 2000 are bad rows; so are ones beyond pandas' nanosecond range
    (after 2262), which are reported rather than raised from deep inside pandas.

    Returns:
        The timestamps in UTC at nanosecond resolution (NaT for bad rows) and the problems.

    Raises:
        DataError: numbers that look like epoch seconds, or a file that mixes zone-aware and
            naive times (a naive row would silently be read as UTC).
    """
    problems: list[RowProblem] = []
    if pd.api.types.is_datetime64_any_dtype(values):  # parquet timestamp columns
        stamps = pd.DatetimeIndex(values)
        stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
        bad = np.asarray(stamps.isna())
        problems += _problem("bad_timestamp", "timestamp is empty", bad)
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        finite = np.isfinite(numbers)
        with np.errstate(invalid="ignore"):
            bad = ~finite | (numbers < _MS_LO) | (numbers > _MS_HI)
        if bad.all() and finite.any() and np.median(numbers[finite]) < _MS_LO / 1000 * 10:
            raise DataError(
                source, "numeric timestamps look like epoch seconds; epoch milliseconds expected"
            )
        stamps = pd.DatetimeIndex(
            pd.to_datetime(np.where(bad, np.nan, numbers), unit="ms", utc=True)
        )
        problems += _problem(
            "bad_timestamp",
            "timestamp is not epoch milliseconds between 2000 and 2100",
            bad,
            values,
        )
    else:
        text = values.astype("string").str.strip()
        stamps = pd.DatetimeIndex(pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce"))
        unparsed = np.asarray(stamps.isna())
        problems += _problem(
            "bad_timestamp",
            "unparseable timestamp (ISO-8601 or epoch milliseconds expected)",
            unparsed,
            values,
        )
        _check_zones(text, unparsed, source)
        bad = unparsed
    # Compared at the parsed resolution: converting a year-9999 stamp to ns would raise.
    unit = stamps.unit
    ticks = stamps.asi8  # NaT is the smallest integer: neither early nor late once masked
    early = ~bad & (ticks < EARLIEST.as_unit(unit).asm8.view("int64"))
    late = ~bad & (ticks > pd.Timestamp.max.as_unit(unit).asm8.view("int64"))
    problems += _problem("early_timestamp", "timestamp before 2000-01-01", early, values)
    problems += _problem(
        "future_timestamp", "timestamp beyond the year 2262 (in the future)", late, values
    )
    stamps = stamps.where(~(early | late))  # NaT: dropped with their rows
    return pd.DatetimeIndex(stamps).as_unit("ns"), problems


def _check_zones(text: pd.Series, unparsed: np.ndarray, source: str) -> None:
    """Raises if some parsed rows carry a zone and others do not."""
    # pyarrow's regex engine runs over the whole column at once (pandas' loops per row)
    strings = pa.array(text, type=pa.string(), from_pandas=True)
    zoned = pc.match_substring_regex(strings, _ZONE).fill_null(False).to_numpy(zero_copy_only=False)
    zoned_rows = np.flatnonzero(zoned & ~unparsed)
    naive_rows = np.flatnonzero(~zoned & ~unparsed)
    if zoned_rows.size and naive_rows.size:
        minority = naive_rows if naive_rows.size <= zoned_rows.size else zoned_rows
        a, n = int(zoned_rows[0]), int(naive_rows[0])
        raise DataError(
            source,
            f"timestamps mix zone-aware rows (row {a + 1}: {text.iloc[a]!r}) and naive rows "
            f"(row {n + 1}: {text.iloc[n]!r}); {minority.size} rows differ from the rest. "
            "Naive times would be read as UTC and shift those bars: write every row with its "
            "zone (or every row in UTC without one)",
            row=int(minority[0]) + 1,
        )


def coerce_numeric(
    df: pd.DataFrame, column: str, source: str = ""
) -> tuple[np.ndarray, list[RowProblem]]:
    """A column as float64 with its non-numeric and missing cells reported.

    Raises:
        DataError: the column's type is not numbers or text (booleans, dates, ...), which
            would otherwise be read as 0/1 or nanoseconds.
    """
    series = df[column]
    dtype = series.dtype
    problems: list[RowProblem] = []
    if pd.api.types.is_bool_dtype(dtype) or not (
        pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    ):
        raise DataError(
            source,
            f"column {column!r} has type {dtype}; numbers expected (0/1 flags or dates are "
            "not prices or volumes)",
        )
    if pd.api.types.is_numeric_dtype(dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
    else:
        values = pd.Series(pd.to_numeric(series, errors="coerce"))
        values = values.to_numpy(dtype="float64", na_value=np.nan)
        not_numeric = np.isnan(values) & series.notna().to_numpy()
        problems += _problem(
            f"non_numeric:{column}", f"{column} is not a number", not_numeric, series
        )
    if column in OPTIONAL:
        return values, problems
    missing = np.isnan(values) & series.isna().to_numpy()
    problems += _problem(f"missing:{column}", f"{column} is empty or NaN", missing)
    return values, problems


def value_problems(columns: dict[str, np.ndarray]) -> list[RowProblem]:
    """Infinite, non-positive or absurdly large prices and volumes; high below low.

    Each problem reports the value of the column at fault (a ``-inf`` low shows the low).
    """
    problems = []
    limits = dict.fromkeys(PRICES, MAX_PRICE) | {"volume": MAX_VOLUME}
    for col, limit in limits.items():
        x = columns[col]
        problems += _problem(f"non_finite:{col}", f"{col} is not finite", np.isinf(x), x)
        with np.errstate(invalid="ignore"):
            if col != "volume":
                problems += _problem(
                    "nonpositive_price", f"price <= 0 in {col}", np.isfinite(x) & (x <= 0), x
                )
            problems += _problem(
                f"implausible_value:{col}",
                f"{col} above {limit:g} (a corrupt cell, not a market value)",
                np.isfinite(x) & (x > limit),
                x,
            )
    if "spread_bps" in columns:
        s = columns["spread_bps"]
        problems += _problem("non_finite:spread_bps", "spread_bps is not finite", np.isinf(s), s)
    h, lo, v = columns["high"], columns["low"], columns["volume"]
    o, c = columns["open"], columns["close"]
    with np.errstate(invalid="ignore"):
        problems += _problem(
            "high_below_low", "high < low", h < lo, lambda r: f"high={h[r]}, low={lo[r]}"
        )
        # a bar's extremes hold its open and close: a high under either is a bad tick
        problems += _problem(
            "high_below_body",
            "high < max(open, close)",
            (h >= lo) & (h < np.fmax(o, c)),
            lambda r: f"high={h[r]}, open={o[r]}, close={c[r]}",
        )
        problems += _problem(
            "low_above_body",
            "low > min(open, close)",
            (h >= lo) & (lo > np.fmin(o, c)),
            lambda r: f"low={lo[r]}, open={o[r]}, close={c[r]}",
        )
        problems += _problem("negative_volume", "volume < 0", v < 0, v)
        if "spread_bps" in columns:
            spread = columns["spread_bps"]
            problems += _problem("negative_spread", "spread_bps < 0", spread < 0, spread)
    return problems


def check_max_bar_move(value: float | None) -> float | None:
    """``data.max_bar_move`` as a positive float, or None (check off)."""
    if value is None:
        return None
    try:
        limit = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"data.max_bar_move must be a number or null, got {value!r}") from None
    if not limit > 0:
        raise ConfigError(f"data.max_bar_move must be > 0 (a log return), got {value!r}")
    return limit


def modal_spacing(stamps: pd.DatetimeIndex, rows: np.ndarray) -> int:
    """The most common spacing (ns) between the sorted distinct timestamps of ``rows``."""
    diffs = np.diff(np.sort(stamps.asi8[rows]))
    diffs = diffs[diffs > 0]
    if not diffs.size:
        return 0
    values, counts = np.unique(diffs, return_counts=True)
    return int(values[counts.argmax()])


def validate_bars(
    raw: pd.DataFrame,
    source: str,
    policy: Policy = "raise",
    max_bar_move: float | None = None,
    now: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, list[RowProblem]]:
    """Checks one symbol's bars and returns them clean, indexed by UTC timestamp.

    Args:
        raw: the file's rows with its original columns.
        source: file name (or symbol) used in messages.
        policy: ``raise`` stops at the first problem; ``drop_rows`` removes bad rows (sorts
            unsorted files, keeps the first of duplicate timestamps) and reports them;
            ``skip`` is handled by the caller, which skips the symbol on any problem.
        max_bar_move: largest ``|log(close / previous close)|`` of a bar, and of its open,
            high and low from that close or its own close; a bar beyond it is a bad row
            (``implausible_move``, ``implausible_move:<column>``). None switches it off.
        now: the present, for timestamps in the future (default: the clock). A bar may
            open at most one bar length (the file's most common spacing) after it.

    Returns:
        The clean frame (float64 OHLCV columns, ``spread_bps`` if present) and the problems
        found; with ``raise`` the list is always empty.

    Raises:
        DataError: with ``raise``, the first problem, naming file, row and value; under any
            policy, a problem of the whole file (missing column, column type, mixed zones).
    """
    if raw.empty:
        raise DataError(source, "file has no data rows")
    df = normalise_columns(raw, source)
    stamps, problems = parse_timestamps(df["timestamp"], source)
    columns = {}
    for col in REQUIRED[1:] + tuple(c for c in OPTIONAL if c in df.columns):
        columns[col], col_problems = coerce_numeric(df, col, source)
        problems += col_problems
    problems += value_problems(columns)

    bad = _rows_of(problems, len(df))
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    now = now.tz_localize("UTC") if now.tzinfo is None else now
    step = modal_spacing(stamps, np.flatnonzero(~bad))
    horizon = now + pd.Timedelta(step, unit="ns")
    future = ~bad & np.asarray(stamps > horizon)
    problems += _problem(
        "future_timestamp",
        f"timestamp in the future (after now + one bar, {horizon:%Y-%m-%d %H:%M} UTC)",
        future,
        df["timestamp"],
    )
    bad |= future
    order_problems = _order_problems(stamps, bad)
    problems += order_problems
    if max_bar_move is not None:
        dup = next((p.rows for p in order_problems if p.code == "duplicate_timestamp"), [])
        usable = ~bad
        usable[dup] = False
        problems += _move_problems(stamps, columns, usable, float(max_bar_move))
        bad = _rows_of(problems, len(df))
    if problems and policy == "raise":
        raise min(problems, key=lambda p: int(p.rows[0])).error(source)

    frame = pd.DataFrame(columns, index=stamps)
    frame.index.name = "timestamp"
    ordering = {id(p) for p in order_problems}  # fixed by sorting and de-duplicating
    frame = frame[~_rows_of([p for p in problems if id(p) not in ordering], len(df))]
    if any(p.code == "unsorted" for p in order_problems):
        frame = frame.sort_index(kind="stable")
    frame = frame[~frame.index.duplicated(keep="first")]
    return frame, problems


def _rows_of(problems: list[RowProblem], n_rows: int) -> np.ndarray:
    bad = np.zeros(n_rows, dtype=bool)
    for problem in problems:
        bad[problem.rows] = True
    return bad


def _move_problems(
    stamps: pd.DatetimeIndex, columns: dict[str, np.ndarray], usable: np.ndarray, limit: float
) -> list[RowProblem]:
    """Bars whose prices moved more than ``limit`` in log terms.

    The close is measured from the previous bar's close; the open, high and low from that
    close and from their own bar's close (a high x1000 under an unchanged close moves ATR
    and range volatilities as much as a bad close). Moves are measured in time order
    between usable rows. A single bad close gives two moves (there and back), so the bar
    after it is marked too; a bad open, high or low marks its own bar.
    """
    rows = np.flatnonzero(usable)
    if not rows.size:
        return []
    rows = rows[np.argsort(stamps.asi8[rows], kind="stable")]
    log_price = {col: np.log(columns[col][rows]) for col in PRICES}
    previous = np.concatenate([[np.nan], log_price["close"][:-1]])  # the first has none
    problems = []
    move = np.abs(np.diff(log_price["close"]))
    jumps = np.flatnonzero(move > limit)
    if jumps.size:
        marked = rows[jumps + 1]
        order = np.argsort(marked, kind="stable")
        first = jumps[order[0]]
        prev_row, row = rows[first], rows[first + 1]
        close = columns["close"]
        shown = (
            f"close={float(close[row])!r} after close={float(close[prev_row])!r} at row "
            f"{prev_row + 1}, "
            f"|log move| {move[first]:.2f}"
        )
        problems.append(
            RowProblem(
                "implausible_move",
                f"close moved more than data.max_bar_move={limit:g} in log terms from the "
                "previous bar (a bad tick?)",
                marked[order],
                shown,
            )
        )
    for col in ("open", "high", "low"):
        own = np.abs(log_price[col] - log_price["close"])
        from_previous = np.abs(log_price[col] - previous)
        worst = np.fmax(own, from_previous)  # the first bar: against its own close only
        jumps = np.flatnonzero(worst > limit)
        if not jumps.size:
            continue
        order = np.argsort(rows[jumps], kind="stable")
        first = jumps[order[0]]
        row = rows[first]
        before = "none" if first == 0 else repr(float(columns["close"][rows[first - 1]]))
        shown = (
            f"{col}={float(columns[col][row])!r}, close={float(columns['close'][row])!r}, "
            f"previous close={before}, |log move| {worst[first]:.2f}"
        )
        problems.append(
            RowProblem(
                f"implausible_move:{col}",
                f"{col} lies more than data.max_bar_move={limit:g} in log terms from the "
                "bar's close or the previous close (a bad tick?)",
                rows[jumps][order],
                shown,
            )
        )
    return problems


def _order_problems(stamps: pd.DatetimeIndex, bad: np.ndarray) -> list[RowProblem]:
    """Duplicate and out-of-order timestamps among the rows that are otherwise good."""
    good_rows = np.flatnonzero(~bad)
    ts = stamps.asi8[good_rows]
    problems = []
    dup = pd.Index(ts).duplicated(keep="first")
    if dup.any():
        rows = good_rows[dup]
        problems.append(
            RowProblem("duplicate_timestamp", "duplicate timestamp", rows, str(stamps[rows[0]]))
        )
    backwards = np.flatnonzero(np.diff(ts) < 0) + 1
    if backwards.size:
        rows = good_rows[backwards]
        problems.append(
            RowProblem(
                "unsorted",
                "rows are not sorted by timestamp (earlier than the row before)",
                rows,
                str(stamps[rows[0]]),
            )
        )
    return problems
