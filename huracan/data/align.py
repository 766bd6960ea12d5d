"""Putting per-symbol bars on one regular grid: resampling and bounded forward fill."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from huracan.data.panel import OHLCV, DropRecord, Panel
from huracan.errors import ConfigError, DataError

PARTIAL_BARS = ("keep", "missing")


def timeframe_ns(timeframe: str) -> int:
    """Bar length in nanoseconds of a pandas or exchange timeframe (``1h``, ``4h``, ``1d``)."""
    try:
        delta = pd.Timedelta(timeframe)
    except ValueError:
        raise ConfigError(
            f"unknown timeframe {timeframe!r}; use e.g. 1m, 15min, 1h, 4h, 1d"
        ) from None
    if delta <= pd.Timedelta(0):
        raise ConfigError(f"timeframe must be positive, got {timeframe!r}")
    return int(delta.value)


def native_timeframe_ns(frames: dict[str, pd.DataFrame]) -> int:
    """The bar length shared by all frames: the most common spacing of each file."""
    spacing = {}
    for symbol, frame in frames.items():
        if len(frame) >= 2:
            diffs = np.diff(frame.index.asi8)
            values, counts = np.unique(diffs, return_counts=True)
            spacing[symbol] = int(values[counts.argmax()])
    if not spacing:
        raise DataError("panel", "no symbol has two bars: cannot tell the timeframe")
    distinct = sorted(set(spacing.values()))
    if len(distinct) > 1:
        by_step = {pd.Timedelta(s): [k for k, v in spacing.items() if v == s][:5] for s in distinct}
        raise DataError("panel", f"symbols have different bar lengths: {by_step}")
    return distinct[0]


def screen_frames(
    frames: dict[str, pd.DataFrame], sources: dict[str, str], policy: str = "raise"
) -> tuple[dict[str, pd.DataFrame], list[DropRecord]]:
    """Leaves out the symbols whose bars cannot go on the panel's grid, naming their files.

    The panel's bar length is the one most symbols have (the finest, on a tie). A symbol
    with another bar length, or with bars that do not open on that grid (anchored at the
    epoch, so hourly bars open on the hour), cannot be aligned.

    Args:
        frames: symbol -> validated frame.
        sources: symbol -> file, for the messages.
        policy: ``raise`` stops at the first such symbol; otherwise it is left out and
            recorded (``file_error`` for the bar length, ``bad_rows:off_grid``).

    Raises:
        DataError: with ``raise``, naming the file and its first bar off the grid.
    """
    spacing = {}
    for symbol, frame in frames.items():
        if len(frame) >= 2:
            values, counts = np.unique(np.diff(frame.index.asi8), return_counts=True)
            spacing[symbol] = int(values[counts.argmax()])
    if not spacing:
        return frames, []
    steps, votes = np.unique(list(spacing.values()), return_counts=True)
    native = int(steps[votes.argmax()])  # np.unique sorts: the finest wins a tie
    others = ", ".join(s for s, v in spacing.items() if v == native)
    problems: list[tuple[str, str, DataError, int]] = []
    grid = _timeframe_name(native)
    for symbol, frame in frames.items():
        where = sources.get(symbol, symbol)
        if spacing.get(symbol, native) != native:
            message = (
                f"different bar length: {_timeframe_name(spacing[symbol])} bars, the other "
                f"symbols have {grid} ({others[:200]})"
            )
            problems.append((symbol, "file_error", DataError(where, message), 0))
            continue
        off_grid = np.flatnonzero(frame.index.asi8 % native)
        if off_grid.size:
            message = (
                f"{off_grid.size} bars are not on the {grid} grid (bars open at whole "
                f"multiples of {grid} from 00:00 UTC), first at {frame.index[off_grid[0]]}"
            )
            problems.append(
                (symbol, "bad_rows:off_grid", DataError(where, message), int(off_grid.size))
            )
    if problems and policy == "raise":
        raise problems[0][2]
    drops = [DropRecord(sym, code, count, str(err)) for sym, code, err, count in problems]
    skipped = {p[0] for p in problems}
    return {s: f for s, f in frames.items() if s not in skipped}, drops


def build_panel(
    frames: dict[str, pd.DataFrame],
    *,
    timeframe: str | None = None,
    max_ffill: int = 3,
    drops: list[DropRecord] | None = None,
    partial_bars: str = "keep",
    ragged_end: float | None = None,
) -> Panel:
    """Aligns validated per-symbol frames on a common grid.

    Args:
        frames: symbol -> frame indexed by sorted unique UTC timestamps, float columns
            ``open, high, low, close, volume`` and optionally ``spread_bps``.
        timeframe: target bar length; None keeps the files' own. A coarser one is built by
            OHLCV aggregation (first open, max high, min low, last close, summed volume).
        max_ffill: gaps of at most this many bars are forward-filled; longer ones stay NaN.
        drops: records collected while reading, carried into the panel.
        partial_bars: when resampling, what a bin with some of its bars missing becomes:
            ``keep`` aggregates the bars it has, ``missing`` makes it a missing bar (then
            forward-filled like any gap of at most ``max_ffill`` bars).
        ragged_end: the panel ends at the latest bar that at least this share of the
            symbols trading in its last ``RAGGED_WINDOW_DAYS`` reach (:func:`ragged_end_row`;
            the bars past it are left out, counted in ``drops``); None keeps every bar.

    Raises:
        DataError: bars off the grid, mixed bar lengths, or a finer target than the data.
    """
    if not frames:
        raise DataError("panel", "no symbol left to build a panel from")
    drops = list(drops or [])
    frames = {s: f.set_axis(f.index.as_unit("ns")) for s, f in frames.items()}
    native = native_timeframe_ns(frames)
    target = native if timeframe is None else timeframe_ns(timeframe)
    if target < native or target % native:
        raise DataError(
            "panel",
            f"cannot build {pd.Timedelta(target)} bars from {pd.Timedelta(native)} bars "
            "(the target must be a whole multiple of the data's bar length)",
        )
    symbols = list(frames)
    fields = list(OHLCV) + (
        ["spread_bps"] if any("spread_bps" in f for f in frames.values()) else []
    )
    first = min(int(f.index.asi8[0]) for f in frames.values())
    last = max(int(f.index.asi8[-1]) for f in frames.values())
    t0 = first - first % target  # grid anchored at the epoch, so 1d bars start at 00:00 UTC
    n_rows = (last - t0) // native + 1
    n_rows += -n_rows % (target // native)
    bars = {k: np.full((n_rows, len(symbols)), np.nan) for k in fields}
    for j, symbol in enumerate(symbols):
        frame = frames[symbol]
        offset = frame.index.asi8 - t0
        off_grid = np.flatnonzero(offset % native)
        if off_grid.size:
            raise DataError(
                symbol,
                f"{off_grid.size} bars are not on the {pd.Timedelta(native)} grid, first at "
                f"{frame.index[off_grid[0]]}",
            )
        rows = offset // native
        for k in fields:
            if k in frame:
                bars[k][rows, j] = frame[k].to_numpy()
    if target != native:
        bars = resample_bars(bars, target // native, partial_bars)
    timestamps = pd.date_range(
        pd.Timestamp(t0, tz="UTC"), periods=len(bars["close"]), freq=pd.Timedelta(target)
    )
    if ragged_end is not None:
        keep = ragged_end_row(bars["close"], target, ragged_end) + 1
        if keep < len(timestamps):
            left_out = np.isfinite(bars["close"][keep:]).sum(0)
            reach = [symbols[j] for j in np.flatnonzero(left_out)]
            for j in np.flatnonzero(left_out):
                drops.append(
                    DropRecord(
                        symbols[j],
                        "ragged_end",
                        int(left_out[j]),
                        f"bars after {timestamps[keep - 1]} left out: only {len(reach)} "
                        f"symbol(s) reach past it ({', '.join(reach[:5])}"
                        f"{', ...' if len(reach) > 5 else ''}; data.ragged_end={ragged_end})",
                    )
                )
            bars = {k: v[:keep] for k, v in bars.items()}
            timestamps = timestamps[:keep]
            # a file whose bars all lie past the end holds none now: out, as a file
            # outside data.start/end is (its bars counted above)
            alive = np.isfinite(bars["close"]).any(0)
            if not alive.all():
                symbols = [s for s, a in zip(symbols, alive, strict=True) if a]
                bars = {k: v[:, alive] for k, v in bars.items()}
    filled = forward_fill(bars, max_ffill, symbols, drops)
    tf = _timeframe_name(target)
    return Panel(timestamps, symbols, bars, tf, filled, drops)


def resample_bars(
    bars: dict[str, np.ndarray], factor: int, partial_bars: str = "keep"
) -> dict[str, np.ndarray]:
    """Aggregates ``factor`` consecutive bars into one, vectorised over all symbols.

    A bin with no bar at all stays NaN. A partial bin (some bars missing) is kept with
    ``partial_bars="keep"``; with ``"missing"`` it is NaN too: its range and volume would
    cover less time than a whole bar's, understating volatility and volume.
    """
    if partial_bars not in PARTIAL_BARS:
        raise ConfigError(f"data.partial_bars must be one of {PARTIAL_BARS}, got {partial_bars!r}")
    out = {}
    n_rows, n_assets = bars["close"].shape
    shaped = {k: v.reshape(n_rows // factor, factor, n_assets) for k, v in bars.items()}
    present = ~np.isnan(shaped["close"])  # (B, factor, N)
    any_bar = present.all(axis=1) if partial_bars == "missing" else present.any(axis=1)
    first = present.argmax(axis=1)  # first bar of each bin
    last = factor - 1 - present[:, ::-1].argmax(axis=1)
    take = np.take_along_axis
    with warnings.catch_warnings():  # all-NaN bins are expected; they are masked below
        warnings.simplefilter("ignore", RuntimeWarning)
        out["open"] = take(shaped["open"], first[:, None], axis=1)[:, 0]
        out["close"] = take(shaped["close"], last[:, None], axis=1)[:, 0]
        out["high"] = np.nanmax(shaped["high"], axis=1)
        out["low"] = np.nanmin(shaped["low"], axis=1)
        out["volume"] = np.nansum(shaped["volume"], axis=1)
        if "spread_bps" in shaped:
            out["spread_bps"] = np.nanmean(shaped["spread_bps"], axis=1)
    for k in out:
        out[k] = np.where(any_bar, out[k], np.nan)
    return out


RAGGED_WINDOW_DAYS = 90


def ragged_end_row(close: np.ndarray, bar_ns: int, share: float) -> int:
    """The last row of a panel whose files end at different times: the latest bar that at
    least ``share`` of the symbols trading in the last ``RAGGED_WINDOW_DAYS`` reach.

    One file fetched later than the others (or a few still updating, in a live folder)
    would otherwise set the end of the grid, and every window taken back from the end
    (the test window, a holdout, the signal's latest bar) would hold bars of those few
    only. A symbol delisted earlier in the window counts too: the end moves back only
    where most of the recently traded symbols stop before it, which a gradual delisting
    never makes (so a folder of 2 files keeps every bar).

    Args:
        close: (T, N) closes, NaN where a symbol has no bar.
        bar_ns: the bar length in nanoseconds.
        share: in (0, 1].
    """
    if not 0 < share <= 1:
        raise ConfigError(f"data.ragged_end must be in (0, 1] or null, got {share}")
    has = np.isfinite(close)
    traded = has.any(0)
    if not traded.any():
        return len(close) - 1
    last = len(close) - 1 - np.argmax(has[::-1], axis=0)  # (N,) each symbol's last row
    last = last[traded]
    window = max(1, (RAGGED_WINDOW_DAYS * 86_400 * 10**9) // bar_ns)
    recent = np.sort(last[last > int(last.max()) - window])[::-1]  # latest first
    return int(recent[math.ceil(share * len(recent)) - 1])


def forward_fill(
    bars: dict[str, np.ndarray], max_ffill: int, symbols: list[str], drops: list[DropRecord]
) -> np.ndarray:
    """Fills gaps of at most ``max_ffill`` bars inside each symbol's life, in place.

    A filled bar is flat at the previous close with zero volume. Gaps longer than
    ``max_ffill`` stay NaN; both are counted per symbol in ``drops``.

    Returns:
        (T, N) bool mask of the filled bars.
    """
    close = bars["close"]
    n_rows = close.shape[0]
    valid = ~np.isnan(close)
    rows = np.arange(n_rows)[:, None]
    prev_valid = np.maximum.accumulate(np.where(valid, rows, -1), axis=0)
    next_valid = np.minimum.accumulate(np.where(valid, rows, n_rows)[::-1], axis=0)[::-1]
    inside = ~valid & (prev_valid >= 0) & (next_valid < n_rows)
    gap_len = next_valid - prev_valid - 1
    fill = inside & (gap_len <= max_ffill)
    too_long = inside & (gap_len > max_ffill)
    source_row = np.where(fill, prev_valid, 0)
    cols = np.broadcast_to(np.arange(close.shape[1]), close.shape)
    last_close = close[source_row, cols]
    for k in ("open", "high", "low", "close"):
        bars[k][fill] = last_close[fill]
    bars["volume"][fill] = 0.0
    if "spread_bps" in bars:
        bars["spread_bps"][fill] = bars["spread_bps"][source_row, cols][fill]
    n_filled, n_long = fill.sum(0), too_long.sum(0)
    for j in np.flatnonzero(n_filled):
        drops.append(
            DropRecord(symbols[j], "forward_filled", int(n_filled[j]), f"gaps <= {max_ffill} bars")
        )
    for j in np.flatnonzero(n_long):
        longest = int(gap_len[too_long[:, j], j].max())
        drops.append(
            DropRecord(
                symbols[j],
                "gap_too_long",
                int(n_long[j]),
                f"left empty: gaps > {max_ffill} bars, longest {longest}",
            )
        )
    return fill


def _timeframe_name(step_ns: int) -> str:
    seconds = step_ns // 10**9
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{step_ns}ns"
