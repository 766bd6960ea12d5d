"""The round-trip cost model shared by labels, thresholds and metrics (units: see the package)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_FEE_BPS = 7.5  # per side, where neither the config nor the exchange gives one


@dataclass
class CostModel:
    """Round-trip cost of a trade, in basis points, for every asset and bar.

    A round trip pays the fee on each side, crosses the spread once in total (half on the
    way in, half on the way out) and slips on each side by ``slippage_bps_per_sigma`` times
    the bar's volatility in units of 1 % (so calm bars slip less than turbulent ones).

    Attributes:
        fee_bps: exchange fee per side.
        spread_bps: quoted spread used where the data has none.
        slippage_bps_per_sigma: slippage per side per 1 % of per-bar volatility.
    """

    fee_bps: float = DEFAULT_FEE_BPS
    spread_bps: float = 2.0
    slippage_bps_per_sigma: float = 1.0

    def round_trip_bps(
        self, spread_bps: np.ndarray | None = None, volatility: np.ndarray | None = None
    ) -> np.ndarray | float:
        """Cost of one round trip in bps: a scalar, or (T, N) where inputs are arrays.

        Args:
            spread_bps: observed spread per asset and bar (NaN falls back to the default).
            volatility: per-bar volatility as a fraction (e.g. 0.005 for 0.5 %).
        """
        spread = (
            self.spread_bps
            if spread_bps is None
            else np.where(np.isnan(spread_bps), self.spread_bps, spread_bps)
        )
        return 2 * self.fee_bps + spread + self.slippage_bps(volatility)

    def slippage_bps(self, volatility: np.ndarray | None = None) -> np.ndarray | float:
        """The slippage part of one round trip in bps (both sides), 0 where volatility is NaN.

        Args:
            volatility: per-bar volatility as a fraction; None for no slippage.
        """
        slip = 0.0 if volatility is None else self.slippage_bps_per_sigma * 100 * volatility
        return 2 * np.nan_to_num(slip)
