"""Data gates: per-symbol quality checks with machine-readable skip reasons.

With ``gates.until=per_fold`` the gates are measured once per walk-forward fold, on the
bars before that fold's first test bar (:func:`apply_fold_gates`): a coin listed during
the run joins the first fold whose gates it passes. The report then says, per symbol and
fold, why it was out (``GateReport.fold_reasons``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from huracan.data.panel import Panel
from huracan.io import atomic_write_text, plain


@dataclass
class GateThresholds:
    """Limits a symbol must meet to be traded on. Set a limit to None to switch it off.

    Attributes:
        min_history_days: listed span, first to last bar.
        max_missing_share: bars missing or forward-filled inside the listed span.
        max_gap_bars: longest run of missing or filled bars.
        min_daily_quote_volume: median traded value per bar times bars per day, in quote
            currency, so the limit does not depend on the timeframe.
        max_median_spread_bps: median quoted spread, where the data has one.
        max_zero_volume_share: share of real bars with zero volume.
    """

    min_history_days: float | None = 60.0
    max_missing_share: float | None = 0.05
    max_gap_bars: int | None = 48
    min_daily_quote_volume: float | None = 250_000.0
    max_median_spread_bps: float | None = 50.0
    max_zero_volume_share: float | None = 0.05


@dataclass
class GateReport:
    """Each symbol's gate metrics, and why it was skipped (empty list: it passed).

    Attributes:
        metrics: per symbol, its gate metrics (per fold: those of the first fold it
            passed, else of the last fold).
        skip_reasons: per symbol, why it is in no fold at all (empty list: it passed).
        fold_starts: the first test bar of each fold, where the gates were measured per
            fold (``gates.until=per_fold``); empty otherwise.
        fold_reasons: per symbol and fold, why it is out of that fold's universe (empty
            list: in it): the gates measured for that fold, then what the pipeline
            requires (:meth:`exclude_from_fold`). Empty until folds are known.
        late: per symbol and fold, how a coin out of the fold only for too few training
            bars was treated (``gates.late_coins``, ``training.late``): admitted late
            with its assigned cluster and correlation, or why not.
    """

    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    skip_reasons: dict[str, list[dict]] = field(default_factory=dict)
    fold_starts: list[str] = field(default_factory=list)
    fold_reasons: dict[str, list[list[dict]]] = field(default_factory=dict)
    late: dict[str, dict[int, dict]] = field(default_factory=dict)

    @property
    def passed(self) -> list[str]:
        return [s for s, reasons in self.skip_reasons.items() if not reasons]

    @property
    def skipped(self) -> list[str]:
        return [s for s, reasons in self.skip_reasons.items() if reasons]

    def add_skip(self, symbol: str, code: str, message: str) -> None:
        """Records a symbol that never reached the gates (unreadable file, bad rows)."""
        self.skip_reasons.setdefault(symbol, []).append({"code": code, "message": message})
        self.metrics.setdefault(symbol, {})

    def fold_members(self, symbols: list[str], n_folds: int) -> np.ndarray:
        """(K, N) bool: symbol n is in fold k's universe so far (every passed symbol in
        every fold where the gates were not measured per fold)."""
        members = np.ones((n_folds, len(symbols)), dtype=bool)
        for j, symbol in enumerate(symbols):
            for k, reasons in enumerate(self.fold_reasons.get(symbol, [])[:n_folds]):
                members[k, j] = not reasons
        return members

    def exclude_from_fold(self, symbol: str, fold: int, n_folds: int, reason: dict) -> None:
        """Records that ``symbol`` is out of fold ``fold``'s universe, and why."""
        per_fold = self.fold_reasons.setdefault(symbol, [[] for _ in range(n_folds)])
        per_fold[fold].append(reason)

    def universe_entry(self, symbol: str) -> dict:
        """Per symbol: the folds it is in, the first it joined, how it was admitted to each
        (``training``: clustered on its training bars, or ``late``: assigned a cluster,
        ``late`` says how), and why it was out of each other fold (``gates.json``'s
        ``universe``)."""
        per_fold, late = self.fold_reasons[symbol], self.late.get(symbol, {})
        admitted = {
            k: "training" if not reasons else late.get(k, {}).get("admitted")
            for k, reasons in enumerate(per_fold)
        }
        folds = [k for k, how in admitted.items() if how]
        out = [
            {"fold": k, "reasons": reasons} | self._start_of(k)
            for k, reasons in enumerate(per_fold)
            if reasons and not admitted[k]
        ]
        entry = {"folds": folds, "first_fold": folds[0] if folds else None, "out": out}
        if late:
            entry["admitted"] = [admitted[k] for k in folds]
            entry["late"] = [{"fold": k} | v for k, v in sorted(late.items())]
        return entry

    def _start_of(self, fold: int) -> dict:
        if fold < len(self.fold_starts):
            return {"gates_measured_before": self.fold_starts[fold]}
        return {}

    def to_dict(self) -> dict:
        return {
            symbol: {
                "passed": not self.skip_reasons[symbol],
                "skip_reasons": self.skip_reasons[symbol],
                "metrics": self.metrics.get(symbol, {}),
            }
            | ({"universe": self.universe_entry(symbol)} if symbol in self.fold_reasons else {})
            for symbol in sorted(self.skip_reasons)
        }

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

    def table(self) -> str:
        """The gate results as a fixed-width text table, skipped symbols first."""
        header = f"{'symbol':<10}{'days':>8}{'missing':>9}{'gap':>6}{'daily qvol':>14}"
        header += f"{'spread':>8}{'zero vol':>9}  result"
        lines = [header, "-" * len(header)]
        order = self.skipped + self.passed
        for symbol in order:
            m = self.metrics.get(symbol, {})
            reasons = self.skip_reasons[symbol]
            result = "pass" if not reasons else "SKIP " + ", ".join(r["code"] for r in reasons)
            per_fold = self.fold_reasons.get(symbol, [])
            entry = self.universe_entry(symbol) if per_fold else {"first_fold": 0, "out": []}
            first = entry["first_fold"]
            if not reasons and first:  # listed (or liquid) only later in the run; as the
                result += f" from fold {first + 1}/{len(per_fold)}"  # console counts folds
            left = [o for o in entry["out"] if first is None or o["fold"] > first]
            if not reasons and left:  # in the run, but out of later folds: say which, why
                codes = dict.fromkeys(r.get("code", "?") for o in left for r in o["reasons"])
                folds = ", ".join(str(o["fold"] + 1) for o in left)
                where = "every fold" if first is None else f"fold {folds}/{len(per_fold)}"
                result += f", out of {where} ({', '.join(codes)})"
            lines.append(
                f"{symbol:<10}{_fmt(m.get('history_days'), '.0f'):>8}"
                f"{_fmt(m.get('missing_share'), '.1%'):>9}"
                f"{_fmt(m.get('longest_gap_bars'), '.0f'):>6}"
                f"{_fmt(m.get('daily_quote_volume'), ',.0f'):>14}"
                f"{_fmt(m.get('median_spread_bps'), '.1f'):>8}"
                f"{_fmt(m.get('zero_volume_share'), '.1%'):>9}  {result}"
            )
        return "\n".join(lines)


def gate_metrics(panel: Panel) -> dict[str, np.ndarray]:
    """The gate metrics of every symbol at once, each an (N,) array."""
    listed = panel.listed
    n_rows = panel.n_bars
    rows = np.arange(n_rows)[:, None]
    has_any = listed.any(0)
    first = np.where(has_any, listed.argmax(0), 0)
    last = np.where(has_any, n_rows - 1 - listed[::-1].argmax(0), -1)
    span = np.maximum(last - first + 1, 0)
    in_life = (rows >= first) & (rows <= last)
    missing = in_life & (~listed | panel.filled)
    real = listed & ~panel.filled
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # symbols without bars give NaN
        qv = np.where(real, panel.quote_volume, np.nan)
        median_qv = np.nanmedian(qv, axis=0)
        spread = panel.spread_bps
        median_spread = (
            np.nanmedian(np.where(real, spread, np.nan), axis=0)
            if spread is not None
            else np.full(panel.n_assets, np.nan)
        )
        zero_share = (real & (panel.volume == 0)).sum(0) / np.maximum(real.sum(0), 1)
    return {
        "history_days": span * panel.bar_seconds / 86400,
        "bars": real.sum(0),
        "missing_share": missing.sum(0) / np.maximum(span, 1),
        "longest_gap_bars": longest_run(missing),
        "daily_quote_volume": median_qv * 86400 / panel.bar_seconds,
        "median_spread_bps": median_spread,
        "zero_volume_share": zero_share,
        # bars from its last bar to the window's end: a coin delisted (or whose file stops)
        # before a fold's first test bar has no gap inside its span to fail on
        "bars_after_last": np.where(has_any, n_rows - 1 - last, 0),
    }


def longest_run(mask: np.ndarray) -> np.ndarray:
    """Length of the longest run of True in each column of a (T, N) bool array."""
    counts = np.cumsum(mask, axis=0)
    reset = np.maximum.accumulate(np.where(~mask, counts, 0), axis=0)
    return (counts - reset).max(axis=0) if len(mask) else np.zeros(mask.shape[1], dtype=int)


def apply_gates(
    panel: Panel,
    limits: GateThresholds,
    report: GateReport | None = None,
    stale: bool = False,
) -> GateReport:
    """Measures every symbol against the limits; symbols are not removed here.

    Args:
        panel: the aligned panel.
        limits: the thresholds.
        report: a report already holding symbols skipped while reading, extended in place.
        stale: also fail a symbol whose last bar is more than ``max_gap_bars`` before the
            panel's end (``delisted``): the panel ends where a fold's test window begins.
    """
    report = report or GateReport()
    metrics = gate_metrics(panel)
    checks = []
    if stale:
        what = "bars after its last bar (delisted, or its file stops)"
        checks.append(("delisted", "bars_after_last", limits.max_gap_bars, np.greater, what))
    checks += [
        ("min_history", "history_days", limits.min_history_days, np.less, "days of history"),
        (
            "coverage",
            "missing_share",
            limits.max_missing_share,
            np.greater,
            "share of bars missing",
        ),
        ("longest_gap", "longest_gap_bars", limits.max_gap_bars, np.greater, "bars in longest gap"),
        (
            "min_volume",
            "daily_quote_volume",
            limits.min_daily_quote_volume,
            np.less,
            "median daily quote volume",
        ),
        (
            "max_spread",
            "median_spread_bps",
            limits.max_median_spread_bps,
            np.greater,
            "median spread (bps)",
        ),
        (
            "zero_volume",
            "zero_volume_share",
            limits.max_zero_volume_share,
            np.greater,
            "share of zero-volume bars",
        ),
    ]
    for j, symbol in enumerate(panel.symbols):
        report.metrics[symbol] = {k: plain(v[j]) for k, v in metrics.items()}
        report.skip_reasons[symbol] = []
    for j in np.flatnonzero(metrics["bars"] == 0):
        report.skip_reasons[panel.symbols[j]].append(
            {"code": "no_bars", "message": "no bar in the selected window"}
        )
    for code, key, limit, fails, what in checks:
        if limit is None:
            continue
        values = metrics[key]
        with np.errstate(invalid="ignore"):
            failed = fails(values, limit) & ~np.isnan(values.astype(float))
        for j in np.flatnonzero(failed):
            report.skip_reasons[panel.symbols[j]].append(
                {
                    "code": code,
                    "value": plain(values[j]),
                    "threshold": limit,
                    "message": f"{what} {float(values[j]):.4g} vs limit {limit}",
                }
            )
    return report


def apply_fold_gates(
    panel: Panel, starts: list[pd.Timestamp], limits: GateThresholds, report: GateReport
) -> GateReport:
    """Measures every symbol once per fold, on the bars before that fold's first test bar.

    A symbol passes (is kept in the panel) where it passes for at least one fold; each
    fold's verdict goes into ``report.fold_reasons``, so that a coin listed during the
    run joins the first fold whose gates it passes, and one that fails later (delisted,
    dried up) leaves. Nothing measured for fold k reads a bar at or after its start.

    Args:
        panel: the aligned panel.
        starts: the first test bar of each fold, in time order.
        limits: the thresholds.
        report: a report already holding symbols skipped while reading, extended in place.
    """
    per_fold = [apply_gates(panel.between(None, start), limits, stale=True) for start in starts]
    report.fold_starts = [str(start) for start in starts]
    for symbol in panel.symbols:
        reasons = [fold.skip_reasons[symbol] for fold in per_fold]
        passing = [k for k, r in enumerate(reasons) if not r]
        chosen = per_fold[passing[0] if passing else -1]
        report.metrics[symbol] = chosen.metrics[symbol]
        report.skip_reasons[symbol] = list(chosen.skip_reasons[symbol])
        report.fold_reasons[symbol] = [list(r) for r in reasons]
    return report


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
