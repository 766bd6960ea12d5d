"""The per-coin pipeline's cost stage: every coin's spread and slippage, before the jobs.

Each coin's spread is calibrated twice, each time on the ``pipeline.calibration_days``
right before the bars it prices, never on one of them or after: once at the end of the
training window, for the training and validation labels and the threshold chosen on the
validation slice (a model must not learn from costs measured after its training data),
and once right before the test window, for the coin's one test cost model: its
evaluation, ``costs.json``, champion challenge and roster entry. The source is ticks where
``pipeline.costs.ticks_dir`` has them, else the quoted spread column, else the candle
estimator (EDGE by default), else the liquidity tier's default. Calibration runs for all
coins at once because the joint heads train on every coin's labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from huracan.costs import SlippageFit, SpreadTier, cost_arrays, estimate_spreads, spread_from_ticks
from huracan.data import Panel
from huracan.errors import ConfigError, DataError
from huracan.pipelines.fold_data import FleetArrays


@dataclass(frozen=True)
class CostCalibration:
    """The options of ``pipeline.costs`` (documented in ``conf/pipeline/per_coin.yaml``)."""

    estimator: Literal["edge", "abdi_ranaldo", "corwin_schultz"] = "edge"
    z: float = 2.0
    jackknife_blocks: int = 10
    min_bars: int = 100
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
    )
    if options.get("ticks_dir"):
        end = panel.timestamps[end_row]
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


@dataclass(frozen=True)
class CoinFits:
    """Each coin's two calibrations (symbol -> fit, in panel order).

    Attributes:
        train: on the bars up to the end of the training window; prices the training and
            validation rows (labels, threshold).
        test: on the bars right before the test window; prices the test rows from
            ``test_start`` on.
        test_start: the first grid row of the test window.
    """

    train: dict[str, SlippageFit]
    test: dict[str, SlippageFit]
    test_start: int


def calibrate_coin_costs(panel: Panel, cfg: DictConfig, train_end: int, test_start: int):
    """Both calibrations: before grid row ``train_end`` (the first row after the training
    window) and before ``test_start`` (the first test row)."""
    return CoinFits(
        calibrate_costs(panel, cfg, train_end), calibrate_costs(panel, cfg, test_start), test_start
    )


def priced_costs(
    fits: CoinFits, fee_bps: float, volatility: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every bar's round trip and slippage part in bps, (T, N) each: rows before the test
    window from the training calibration, test rows from the test one."""
    cost, slip = cost_arrays(fits.train, fee_bps, volatility)
    test_cost, test_slip = cost_arrays(fits.test, fee_bps, volatility)
    test = np.arange(len(volatility))[:, None] >= fits.test_start
    return np.where(test, test_cost, cost), np.where(test, test_slip, slip)


def coin_costs(arrays: FleetArrays, fits: CoinFits, cfg: DictConfig) -> FleetArrays:
    """The arrays with labels, net returns and costs from each coin's calibrated models.

    ``build_fleet_arrays`` labels with the configured costs; the per-coin run trains,
    thresholds and evaluates every coin at its own calibrated round trip instead (see
    ``priced_costs`` for which calibration prices which rows).
    """
    cost, _ = priced_costs(fits, cfg.costs.fee_bps, arrays.volatility)
    net = np.where(np.isnan(arrays.net_return), np.nan, arrays.gross_return - cost / 1e4)
    label = np.where(np.isnan(net), np.nan, (net > 0).astype(np.float64))
    return replace(arrays, label=label, net_return=net, cost_bps=cost)
