"""The per-coin pipeline's costs: every coin's spread and slippage, calibrated twice.

Each coin's spread is calibrated on the ``pipeline.calibration_days`` right before the
bars it prices, never on one of them or after:

- by the parent, at the end of the training window, for every coin at once
  (``calibrate_costs``): the training and validation labels and the threshold chosen on
  the validation slice (a model must not learn from costs measured after its training
  data), needed before the joint heads train;
- by each coin's job, right before its test window (``price_test``): the coin's one test
  cost model for its evaluation, ``costs.json``, champion challenge and roster entry. The
  job's spec carries only the coin's bars of the calibration days before its test window
  (``calibration_bars``), so it cannot read a test bar.

The source is ticks where ``pipeline.costs.ticks_dir`` has them, else the quoted spread
column, else ccxt quote snapshots taken in the window (``data=ccxt``), else the candle
estimator (EDGE by default), else the liquidity tier's default (``method`` says which).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from huracan.coins import report_rows
from huracan.costs import SlippageFit, SpreadTier, cost_arrays, estimate_spreads, spread_from_ticks
from huracan.costs.model import DEFAULT_FEE_BPS
from huracan.data import Panel
from huracan.errors import ConfigError, DataError
from huracan.io import plain
from huracan.training.arrays import FleetArrays, labels_of

if TYPE_CHECKING:
    from huracan.coins import CoinJob


@dataclass(frozen=True)
class CostCalibration:
    """The options of ``pipeline.costs`` (documented in ``conf/pipeline/per_coin.yaml``)."""

    estimator: Literal["edge", "abdi_ranaldo", "corwin_schultz"] = "edge"
    z: float = 2.0
    jackknife_blocks: int = 10
    min_bars: int = 100
    min_snapshots: int = 1
    ticks_dir: str | None = None
    ticks_pattern: str = "spot_{symbol_lower}usdt_{kind}.csv.gz"
    min_trades: int = 200
    tiers: list[dict] = field(default_factory=list)


def calibrate_costs(panel: Panel, cfg: DictConfig, end_row: int) -> dict[str, SlippageFit]:
    """Every coin's spread on the ``pipeline.calibration_days`` before grid row ``end_row``.

    ``end_row`` is the first bar of the window the costs price (the test window), so the
    calibration reads only the bars right before it (``huracan.costs.estimate``).
    """
    options = cfg.pipeline.costs
    tiers = [
        SpreadTier(float(t.min_daily_quote_volume), float(t.spread_bps)) for t in options.tiers
    ]
    fits = estimate_spreads(
        panel,
        end_row=end_row,
        window_days=cfg.pipeline.calibration_days,
        tiers=tiers,
        slippage_bps_per_sigma=cfg.costs.slippage_bps_per_sigma,
        estimator=options.estimator,
        z=options.z,
        n_blocks=options.jackknife_blocks,
        min_bars=options.min_bars,
        min_snapshots=options.get("min_snapshots", 1),
    )
    if options.get("ticks_dir"):
        end = _row_time(panel, end_row)
        start = end - pd.Timedelta(days=cfg.pipeline.calibration_days)
        for symbol, fit in tick_fits(panel.symbols, options, start, end, cfg).items():
            fits[symbol] = replace(
                fit,
                estimator=fits[symbol].estimator,
                estimator_spread_bps=fits[symbol].estimator_spread_bps,
                estimator_t=fits[symbol].estimator_t,
                liquidity_tier=fits[symbol].liquidity_tier,
                daily_quote_volume=fits[symbol].daily_quote_volume,
            )
    return fits


def tick_fits(
    symbols: list[str],
    options: DictConfig,
    start: pd.Timestamp,
    end: pd.Timestamp,
    cfg: DictConfig,
) -> dict[str, SlippageFit]:
    """Spreads from the tick files of ``pipeline.costs.ticks_dir`` received in [start, end)."""
    directory = Path(options.ticks_dir)
    if not directory.is_dir():
        raise ConfigError(f"pipeline.costs.ticks_dir {directory} is not a directory")
    fits = {}
    for symbol in symbols:
        names = {
            kind: directory
            / options.ticks_pattern.format(symbol=symbol, symbol_lower=symbol.lower(), kind=kind)
            for kind in ("trades", "bbo")
        }
        if not all(path.is_file() for path in names.values()):
            continue
        frames = {}
        for kind, path in names.items():
            try:
                frames[kind] = pd.read_csv(path)
            except (OSError, ValueError) as err:
                raise DataError(str(path), f"unreadable tick file: {err}") from None
        fit = spread_from_ticks(
            frames["trades"],
            frames["bbo"],
            symbol=symbol,
            start=start,
            end=end,
            slippage_bps_per_sigma=cfg.costs.slippage_bps_per_sigma,
            min_trades=options.min_trades,
        )
        if fit is not None:
            fits[symbol] = fit
    return fits


def _row_time(panel: Panel, row: int) -> pd.Timestamp:
    """The open time of grid row ``row``; one bar after the last for ``row == n_bars``."""
    if row < panel.n_bars:
        return panel.timestamps[row]
    return panel.timestamps[-1] + pd.Timedelta(seconds=panel.bar_seconds)


def fee_bps(cfg: DictConfig) -> float:
    """The fee per side: ``costs.fee_bps`` (resolved from the exchange at load where null)."""
    fee = cfg.costs.get("fee_bps")
    return DEFAULT_FEE_BPS if fee is None else float(fee)


def coin_costs(arrays: FleetArrays, fits: dict[str, SlippageFit], cfg: DictConfig) -> FleetArrays:
    """The arrays with labels, net returns and costs from each coin's training-end fit.

    ``build_fleet_arrays`` labels with the configured costs; the per-coin run trains and
    thresholds every coin at its own calibrated round trip instead. The test rows are
    priced here too, but each job prices its own test rows again (``price_test``) with the
    calibration right before its test window, and evaluates on those.
    """
    cost, _ = cost_arrays(fits, fee_bps(cfg), arrays.volatility)
    net = np.where(np.isnan(arrays.net_return), np.nan, arrays.gross_return - cost / 1e4)
    label = np.where(np.isnan(net), np.nan, (net > 0).astype(np.float64))
    net_h = np.empty((*arrays.grid_shape, len(arrays.horizons)))
    for i in range(len(arrays.horizons)):  # a horizon at a time: no (T, N, H) temporaries
        net_h[..., i] = np.where(
            np.isnan(arrays.net_of(i)), np.nan, arrays.gross_of(i) - cost / 1e4
        )
    label_h = labels_of(net_h)
    return arrays.replaced(label=label, net_return=net, cost_bps=cost, label_h=label_h, net_h=net_h)


def calibration_bars(panel: Panel, j: int, end_row: int, days: float) -> dict:
    """Coin ``j``'s bars of the ``days`` before grid row ``end_row`` (exclusive): all its
    job needs to calibrate the costs of the window starting there (plain arrays)."""
    end = _row_time(panel, end_row)
    start = int(panel.timestamps.searchsorted(end - pd.Timedelta(days=days)))
    rows = slice(start, end_row)
    return {
        "symbol": panel.symbols[j],
        "timeframe": panel.timeframe,
        "timestamps_ns": panel.timestamps[rows].as_unit("ns").asi8.copy(),
        "end_ns": int(end.value),
        "bars": {name: values[rows, j].copy() for name, values in panel.bars.items()},
        "filled": panel.filled[rows, j].copy(),
    }


def bars_panel(bars: dict) -> Panel:
    """The one-coin panel of ``calibration_bars``."""
    stamps = pd.DatetimeIndex(pd.to_datetime(bars["timestamps_ns"], utc=True))
    if len(stamps) == 0:
        raise DataError(bars["symbol"], "no bars before the test window to calibrate on")
    if stamps[-1].value >= bars["end_ns"]:
        raise DataError(bars["symbol"], f"calibration bar {stamps[-1]} is inside the window")
    return Panel(
        timestamps=stamps,
        symbols=[bars["symbol"]],
        bars={name: values[:, None] for name, values in bars["bars"].items()},
        timeframe=bars["timeframe"],
        filled=bars["filled"][:, None],
    )


def price_test(job: CoinJob) -> CoinJob:
    """The job with its test rows priced by the calibration right before its test window.

    Run inside the coin's job, from its ``calibration`` bars only. The test part's
    ``cost_bps``, ``slip_bps`` and label ``y`` (net return > 0) are replaced, and
    ``costs`` becomes the coin's ``costs.json``: the test fit, the fee, the training-end
    fit that priced the labels and threshold, and the expected round trip and slippage.
    Those two are means over the bars before the report window only, since they set
    ``trade_ok`` (``cost_above_limit``) and the rank; the report window's own means are
    kept apart (``report_round_trip_bps``, ``report_slip_bps``; None without one).
    """
    # only the parts the calibration reads: a whole run's config takes ~10 ms to create
    cfg = OmegaConf.create({key: job.meta["config"][key] for key in ("pipeline", "costs")})
    panel = bars_panel(job.calibration)
    [fit] = calibrate_costs(panel, cfg, panel.n_bars).values()
    fee = fee_bps(cfg)
    test = job.test
    cost, slip = (a[:, 0] for a in cost_arrays({job.symbol: fit}, fee, test["volatility"][:, None]))
    gross = test["gross"]  # (M, H): one column per label horizon (a chosen one: (M,))
    net = gross - (cost[:, None] if gross.ndim == 2 else cost) / 1e4
    priced = {**test, "cost_bps": cost, "slip_bps": slip, "y": (net > 0).astype(np.float64)}
    report = report_rows(test["timestamps"], job.meta.get("report_window"))
    costs = {
        **fit.to_dict(),
        "fee_bps": fee,
        # what the training and validation labels and the threshold were priced with
        "training_fit": job.costs.get("training_fit"),
        "expected_round_trip_bps": _mean(cost[~report]),
        "expected_slip_bps": _mean(slip[~report]),
        "report_round_trip_bps": _mean(cost[report]),
        "report_slip_bps": _mean(slip[report]),
    }
    return replace(job, test=priced, costs=costs)


def _mean(values: np.ndarray) -> float | None:
    return plain(np.nanmean(values)) if len(values) else None


@dataclass(frozen=True)
class CoinFits:
    """The Mechanic's two calibrations: before its tuning window ends, before its holdout."""

    train: dict[str, SlippageFit]
    test: dict[str, SlippageFit]
    test_start: int


def calibrate_coin_costs(panel: Panel, cfg: DictConfig, train_end: int, test_start: int):
    """Both calibrations: before grid row ``train_end`` and before ``test_start``."""
    return CoinFits(
        calibrate_costs(panel, cfg, train_end), calibrate_costs(panel, cfg, test_start), test_start
    )


def priced_costs(
    fits: CoinFits, fee: float, volatility: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every bar's round trip and slippage part in bps, (T, N) each: rows before
    ``test_start`` from the first calibration, later rows from the second."""
    cost, slip = cost_arrays(fits.train, fee, volatility)
    test_cost, test_slip = cost_arrays(fits.test, fee, volatility)
    test = np.arange(len(volatility))[:, None] >= fits.test_start
    return np.where(test, test_cost, cost), np.where(test, test_slip, slip)
