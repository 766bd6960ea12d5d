"""Validation of one symbol's raw bars: every problem named with its row, or counted.

Rows are reported 1-based as data rows (the header is not counted), so row 1 is the first
line after the header of a CSV file.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from huracan.errors import DataError

Policy = Literal["raise", "skip", "drop_rows"]
POLICIES = ("raise", "skip", "drop_rows")
REQUIRED = ("timestamp", "open", "high", "low", "close", "volume")
OPTIONAL = ("spread_bps",)
TIMESTAMP_ALIASES = ("time", "date", "datetime", "open_time", "ts")
# Epoch milliseconds of 2000-01-01 and 2100-01-01: outside this, numbers are not ms.
_MS_LO, _MS_HI = 946_684_800_000, 4_102_444_800_000


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


def normalise_columns(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """Lower-case, stripped column names; ``timestamp`` found under its usual aliases.

    Raises:
        DataError: a required column is missing (with the closest existing names).
    """
    df = raw.rename(columns=lambda c: str(c).strip().lower())
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


def parse_timestamps(values: pd.Series, source: str) -> tuple[pd.DatetimeIndex, RowProblem | None]:
    """ISO-8601 strings (with zone; naive ones are taken as UTC) or epoch milliseconds."""
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype="float64")
        bad = np.isnan(numbers) | (numbers < _MS_LO) | (numbers > _MS_HI)
        if bad.all() and np.nanmedian(numbers) < _MS_LO / 1000 * 10:
            raise DataError(
                source, "numeric timestamps look like epoch seconds; epoch milliseconds expected"
            )
        stamps = pd.to_datetime(np.where(bad, np.nan, numbers), unit="ms", utc=True)
        problem_message = "timestamp is not epoch milliseconds between 2000 and 2100"
    else:
        text = values.astype("string")
        stamps = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
        bad = stamps.isna().to_numpy()
        problem_message = "unparseable timestamp (ISO-8601 or epoch milliseconds expected)"
    stamps = pd.DatetimeIndex(stamps).as_unit("ns")
    if bad.any():
        rows = np.flatnonzero(bad)
        return stamps, RowProblem("bad_timestamp", problem_message, rows, values.iloc[rows[0]])
    return stamps, None


def coerce_numeric(df: pd.DataFrame, column: str) -> tuple[np.ndarray, list[RowProblem]]:
    """A column as float64 with its non-numeric and missing cells reported."""
    series = df[column]
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.to_numpy(dtype="float64")
        problems = []
    else:
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64")
        not_numeric = np.isnan(values) & series.notna().to_numpy()
        problems = []
        if not_numeric.any():
            rows = np.flatnonzero(not_numeric)
            problems.append(
                RowProblem(
                    f"non_numeric:{column}", f"{column} is not a number", rows, series.iloc[rows[0]]
                )
            )
    if column in OPTIONAL:
        return values, problems
    missing = np.isnan(values) & series.isna().to_numpy()
    if missing.any():
        problems.append(
            RowProblem(f"missing:{column}", f"{column} is empty", np.flatnonzero(missing))
        )
    return values, problems


def validate_bars(
    raw: pd.DataFrame, source: str, policy: Policy = "raise"
) -> tuple[pd.DataFrame, list[RowProblem]]:
    """Checks one symbol's bars and returns them clean, indexed by UTC timestamp.

    Args:
        raw: the file's rows with its original columns.
        source: file name (or symbol) used in messages.
        policy: ``raise`` stops at the first problem; ``drop_rows`` removes bad rows (sorts
            unsorted files, keeps the first of duplicate timestamps) and reports them;
            ``skip`` is handled by the caller, which skips the symbol on any problem.

    Returns:
        The clean frame (float64 OHLCV columns, ``spread_bps`` if present) and the problems
        found; with ``raise`` the list is always empty.

    Raises:
        DataError: with ``raise``, the first problem, naming file, row and value.
    """
    if raw.empty:
        raise DataError(source, "file has no data rows")
    df = normalise_columns(raw, source)
    stamps, ts_problem = parse_timestamps(df["timestamp"], source)
    problems = [ts_problem] if ts_problem else []
    columns = {}
    for col in REQUIRED[1:] + tuple(c for c in OPTIONAL if c in df.columns):
        columns[col], col_problems = coerce_numeric(df, col)
        problems += col_problems
    o, h, lo, c, v = (columns[k] for k in REQUIRED[1:])
    checks = [
        ("nonpositive_price", "price <= 0", (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0), c),
        ("high_below_low", "high < low", h < lo, h),
        ("negative_volume", "volume < 0", v < 0, v),
    ]
    if "spread_bps" in columns:
        checks.append(("negative_spread", "spread_bps < 0", columns["spread_bps"] < 0, None))
    for code, message, mask, shown in checks:
        if mask.any():
            rows = np.flatnonzero(mask)
            first = None if shown is None else float(shown[rows[0]])
            if code == "high_below_low":
                first = f"high={h[rows[0]]}, low={lo[rows[0]]}"
            problems.append(RowProblem(code, message, rows, first))

    bad = np.zeros(len(df), dtype=bool)
    for problem in problems:
        bad[problem.rows] = True
    order_problems = _order_problems(stamps, bad)
    problems += order_problems
    if problems and policy == "raise":
        raise min(problems, key=lambda p: int(p.rows[0])).error(source)

    frame = pd.DataFrame(columns, index=stamps)
    frame.index.name = "timestamp"
    keep = ~bad
    frame = frame[keep]
    if any(p.code == "unsorted" for p in order_problems):
        frame = frame.sort_index(kind="stable")
    frame = frame[~frame.index.duplicated(keep="first")]
    return frame, problems


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
