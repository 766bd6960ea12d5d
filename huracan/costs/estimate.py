"""A coin's spread over one window, with its standard error, and the fallback when unsure.

``estimate_spreads`` is the per-coin pipeline's cost calibration. For every symbol it uses
the best source it has, in this order, and records which in ``method``:

1. ``"quoted"``: the data's ``spread_bps`` column (mean over the window's real bars),
   where it has ``min_bars`` values in the window.
2. ``"ccxt_snapshot"``: the mean of the bid/ask snapshots ``data=ccxt`` took during the
   window's bars (``bars["quote_snapshot_bps"]``, ``huracan.data.exchange``), where there
   are at least ``min_snapshots``; the standard error is theirs over sqrt(n) (none for one).
3. The candle ``estimator`` (default ``"edge"``, Ardia, Guidotti & Kroencke 2024, from the
   ``bidask`` package; or ``"abdi_ranaldo"``, ``"corwin_schultz"``) where its estimate is
   significantly above 0: ``s^2 / se(s^2) > z``.
4. ``"tier_default"``: the spread of the symbol's liquidity tier (by daily quote volume)
   where the estimate is not significant, or there are too few bars. Never a clipped value.

The standard error is a delete-one-block jackknife of the signed squared spread: the
window is cut into ``n_blocks`` contiguous blocks, each is blanked (NaN) in turn and the
estimator rerun, so serial dependence within a block is kept. The spread's own standard
error is the delta-method ``se(s^2) / (2 s)``.

Only bars in ``[end - window_days, end)`` are read: the calibration of a test window never
sees a bar at or after the window's start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from huracan.costs.calibration import SlippageFit
from huracan.costs.edge import edge_columns
from huracan.costs.spreads import ar_pair_moment, cs_pair_spread
from huracan.errors import ConfigError

if TYPE_CHECKING:
    from huracan.data.panel import Panel

WINDOW_ESTIMATORS = ("edge", "abdi_ranaldo", "corwin_schultz")


@dataclass
class SpreadTier:
    """Default spread of the coins trading at least ``min_daily_quote_volume`` a day."""

    min_daily_quote_volume: float
    spread_bps: float


def signed_squared_spread(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, estimator: str
) -> np.ndarray:
    """Each column's window estimate of ``sign(s) s^2`` (fraction^2), NaN-aware; shape (N,).

    Args:
        open_, high, low, close: (T, N) bars; NaN bars are left out.
        estimator: one of ``WINDOW_ESTIMATORS``.
    """
    with np.errstate(invalid="ignore"):
        if estimator == "edge":  # bidask.edge of every column, bit for bit (costs.edge)
            signed = edge_columns(open_, high, low, close)
            return np.sign(signed) * signed**2
        if estimator == "abdi_ranaldo":
            return _nanmean(ar_pair_moment(high, low, close))
        if estimator == "corwin_schultz":
            mean = _nanmean(cs_pair_spread(high, low, close))
            return np.sign(mean) * mean**2
    raise ConfigError(f"estimator must be one of {WINDOW_ESTIMATORS}, got {estimator!r}")


def jackknife_spread(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    estimator: str = "edge",
    n_blocks: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Signed squared spread and its delete-one-block jackknife standard error, each (N,).

    Args:
        open_, high, low, close: (T, N) bars of the window.
        estimator: one of ``WINDOW_ESTIMATORS``.
        n_blocks: contiguous blocks of the jackknife.
    """
    if int(n_blocks) != n_blocks or n_blocks < 2:
        raise ConfigError(f"n_blocks must be a whole number >= 2, got {n_blocks}")
    full = signed_squared_spread(open_, high, low, close, estimator)
    block = np.arange(len(open_)) * n_blocks // max(len(open_), 1)
    leave_out = []
    for b in range(n_blocks):
        keep = (block != b)[:, None]
        bars = [np.where(keep, a, np.nan) for a in (open_, high, low, close)]
        leave_out.append(signed_squared_spread(*bars, estimator))
    leave_out = np.array(leave_out)  # (B, N)
    with np.errstate(invalid="ignore"):
        spread_mean = np.nanmean(leave_out, 0) if np.isfinite(leave_out).any() else full
        variance = (n_blocks - 1) / n_blocks * np.sum((leave_out - spread_mean) ** 2, 0)
    return full, np.sqrt(variance)


def tier_spread(
    daily_quote_volume: np.ndarray, tiers: Sequence[SpreadTier]
) -> tuple[np.ndarray, np.ndarray]:
    """Each symbol's tier default spread and tier index (0 = most liquid), from its volume.

    Tiers are matched from the most liquid down; a volume below every tier (or NaN) gets the
    least liquid one.
    """
    if not tiers:
        raise ConfigError("costs tiers: need at least one tier")
    ordered = sorted(tiers, key=lambda t: -t.min_daily_quote_volume)
    limits = np.array([t.min_daily_quote_volume for t in ordered])
    volume = np.nan_to_num(np.asarray(daily_quote_volume, float), nan=-np.inf)
    index = np.minimum((volume[:, None] < limits[None]).sum(1), len(ordered) - 1)
    return np.array([t.spread_bps for t in ordered])[index], index


def estimate_spreads(
    panel: Panel,
    *,
    end_row: int,
    window_days: float,
    tiers: Sequence[SpreadTier],
    slippage_bps_per_sigma: float,
    estimator: str = "edge",
    z: float = 2.0,
    n_blocks: int = 10,
    min_bars: int = 100,
    min_snapshots: int = 1,
) -> dict[str, SlippageFit]:
    """Every symbol's spread on the ``window_days`` before grid row ``end_row`` (exclusive).

    Args:
        panel: the fleet's bars.
        end_row: first row the estimate prices (e.g. the first test bar); never read.
        window_days: days before ``end_row`` the estimate reads.
        tiers: the per-liquidity-tier default spreads of the fallback.
        slippage_bps_per_sigma: slippage per side per 1 % of per-bar volatility (from the
            configuration: candles cannot tell impact from volatility reliably).
        estimator: candle estimator, one of ``WINDOW_ESTIMATORS``.
        z: how many standard errors above 0 the squared spread must be to be used.
        n_blocks: jackknife blocks.
        min_bars: real bars a symbol needs in the window for its own estimate (and
            quoted bars for ``"quoted"``).
        min_snapshots: ccxt snapshots a symbol needs in the window for ``"ccxt_snapshot"``.

    Returns:
        Symbol -> its fit (``base_spread_bps`` the spread, ``r2`` NaN), in panel order.
    """
    if estimator not in WINDOW_ESTIMATORS:
        raise ConfigError(f"estimator must be one of {WINDOW_ESTIMATORS}, got {estimator!r}")
    if not window_days > 0 or not z >= 0:
        raise ConfigError(f"need window_days > 0 and z >= 0, got {window_days}, {z}")
    if not 0 < end_row <= panel.n_bars:
        raise ConfigError(f"end_row must be in 1..{panel.n_bars}, got {end_row}")
    end_ts = panel.timestamps[end_row] if end_row < panel.n_bars else panel.timestamps[-1]
    if end_row == panel.n_bars:
        end_ts = end_ts + pd.Timedelta(seconds=panel.bar_seconds)
    start = int(panel.timestamps.searchsorted(end_ts - pd.Timedelta(days=window_days)))
    rows = slice(start, end_row)  # nothing at or after end_row is read from here on
    real = ~panel.filled[rows]
    bars = [np.where(real, a[rows], np.nan) for a in (panel.open, panel.high, panel.low)]
    close = np.where(real, panel.close[rows], np.nan)
    n_real = real.sum(0)
    with np.errstate(invalid="ignore"):
        quote_volume = np.where(real, panel.quote_volume[rows], np.nan)
        daily_volume = np.nanmedian(quote_volume, 0) * 86400 / panel.bar_seconds
    default_bps, tier = tier_spread(daily_volume, tiers)
    s2, se2 = jackknife_spread(*bars, close, estimator, n_blocks)
    s2_bps, se2_bps = s2 * 1e8, se2 * 1e8  # bps^2
    with np.errstate(invalid="ignore", divide="ignore"):
        t_stat = s2_bps / se2_bps
        spread = np.sqrt(np.maximum(s2_bps, 0.0))
        spread_se = se2_bps / (2 * spread)
    quoted_mean = quoted_se = n_quoted = None
    if panel.spread_bps is not None:
        quoted = np.where(real, panel.spread_bps[rows], np.nan)
        n_quoted = np.isfinite(quoted).sum(0)
        quoted_mean = _nanmean(quoted)
        with np.errstate(invalid="ignore", divide="ignore"):
            quoted_se = np.sqrt(_nanmean((quoted - quoted_mean) ** 2) / n_quoted)
    snapshots = _window_snapshots(panel, rows)
    times = panel.timestamps[rows]
    fits = {}
    for j, symbol in enumerate(panel.symbols):
        fields = {"method": estimator, "spread": spread[j], "se": spread_se[j], "note": ""}
        if quoted_mean is not None and n_quoted[j] >= min_bars:
            fields = {"method": "quoted", "spread": quoted_mean[j], "se": quoted_se[j]}
            fields["note"] = f"mean quoted spread over {n_quoted[j]} bars"
        elif snapshots is not None and snapshots[2][j] >= max(min_snapshots, 1):
            mean, se, count = (a[j] for a in snapshots)
            fields = {"method": "ccxt_snapshot", "spread": mean, "se": se}
            fields["note"] = f"mean of {count} ccxt bid/ask snapshots"
        elif n_real[j] < min_bars:
            fields = {"method": "tier_default", "spread": default_bps[j], "se": np.nan}
            fields["note"] = f"{n_real[j]} bars < {min_bars}; tier {tier[j]} default"
        elif not t_stat[j] > z:
            fields = {"method": "tier_default", "spread": default_bps[j], "se": np.nan}
            fields["note"] = (
                f"{estimator} s^2 = {s2_bps[j]:.3g} bps^2, se {se2_bps[j]:.3g} "
                f"(t = {t_stat[j]:.2f} <= {z:g}): not significantly above 0; "
                f"tier {tier[j]} default"
            )
        used = times[real[:, j]]
        fits[symbol] = SlippageFit(
            symbol=symbol,
            slippage_bps_per_sigma=float(slippage_bps_per_sigma),
            base_spread_bps=float(fields["spread"]),
            fit_date=pd.Timestamp(end_ts).isoformat(),
            window_start=used[0].isoformat() if len(used) else None,
            window_end=used[-1].isoformat() if len(used) else None,
            n_bars=int(n_real[j]),
            r2=np.nan,
            method=fields["method"],
            note=fields["note"],
            spread_se_bps=_finite(fields["se"]),
            estimator=estimator,
            estimator_spread_bps=_finite(np.sign(s2_bps[j]) * np.sqrt(abs(s2_bps[j]))),
            estimator_t=_finite(t_stat[j]),
            liquidity_tier=int(tier[j]),
            daily_quote_volume=_finite(daily_volume[j]),
        )
    return fits


def _window_snapshots(panel: Panel, rows: slice):
    """Mean, standard error and count per symbol of the window's ccxt quote snapshots;
    None where the panel has none."""
    values = panel.bars.get("quote_snapshot_bps")
    if values is None:
        return None
    window = values[rows]
    count = np.isfinite(window).sum(0)
    mean = _nanmean(window)
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = np.nansum((window - mean) ** 2, 0) / np.maximum(count - 1, 1)
        se = np.where(count > 1, np.sqrt(variance / count), np.nan)
    return mean, se, count


def _nanmean(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        count = np.isfinite(values).sum(0)
        total = np.nansum(values, 0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def cost_arrays(
    fits: dict[str, SlippageFit], fee_bps: float, volatility: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every symbol's round trip and its slippage part, in bps, for every bar: (T, N) each.

    The one cost model per symbol that labels, thresholds, evaluation and the roster share
    (``SlippageFit.cost_model``): fee on both sides, the fitted spread once, slippage on
    both sides. The bars' own quoted spreads are not charged on top of the fitted spread.

    Args:
        fits: symbol -> fit, in the column order of ``volatility``.
        fee_bps: exchange fee per side.
        volatility: (T, N) per-bar volatility as a fraction.
    """
    models = [fit.cost_model(fee_bps) for fit in fits.values()]
    spread = np.array([m.spread_bps for m in models])
    slip_per_sigma = np.array([m.slippage_bps_per_sigma for m in models])
    slip = 2 * slip_per_sigma * 100 * np.nan_to_num(volatility)  # both sides, as CostModel
    return 2 * fee_bps + spread + slip, slip
