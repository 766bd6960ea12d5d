"""``data.end: now``: the synthetic market up to the present, for the live walk-through.

A market cut at "now" must keep its past when "now" moves on: the Mechanic's next cycle
and the next hour's signal read the bars the champions were trained on, and only the new
bars may be new. The simulator draws all bars at once from its seed, so a market keeps its
past only while its span stays fixed. The span is therefore anchored to the calendar
month: ``years`` of bars ending where the next UTC month begins, cut before the bar in
progress. Within a month every call sees the same bars and one more each bar; on the 1st
of a month the market is drawn anew over the new span (a fresh demo, not a continuation).
"""

from __future__ import annotations

import pandas as pd

NOW = "now"


def now_span(
    years: float, timeframe_ns: int, now: pd.Timestamp | None = None
) -> tuple[str, pd.Timestamp]:
    """The ``start`` and ``end`` of a synthetic market that reaches the present.

    Args:
        years: the market's length (``data.years``): it ends where the next UTC month
            begins, so the bars before ``now`` span ``years`` less the rest of the month.
        timeframe_ns: the bar length in nanoseconds.
        now: the present (default: the clock).

    Returns:
        The first bar's open time (an ISO string in UTC, as ``data.start`` takes it) and
        the open time of the bar in progress at ``now``: the market keeps the bars before
        it, which are all closed.
    """
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now).tz_convert("UTC")
    step = pd.Timedelta(timeframe_ns)
    next_month = now.normalize().replace(day=1) + pd.offsets.MonthBegin(1)
    n_bars = int(round(years * 365 * 86400e9 / timeframe_ns))
    start = next_month - n_bars * step
    end = start + ((now - start) // step) * step  # on the market's own grid of bars
    return start.tz_convert(None).isoformat(), end
