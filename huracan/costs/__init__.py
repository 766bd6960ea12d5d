"""Trading costs: the cost model, its calibration from candles or ticks, per-symbol metrics.

Units, everywhere in this module:

- Spreads are full quoted (or effective) spreads in basis points of the mid: a round trip
  crosses the spread once in total, half on the way in and half on the way out.
- Volatility is per bar, as a fraction (0.005 for 0.5 % per bar); ``100 * volatility`` is
  that in percent, the unit ``slippage_bps_per_sigma`` is quoted against.
- ``slippage_bps_per_sigma`` is per side: a round trip slips
  ``2 * slippage_bps_per_sigma * 100 * volatility`` bps.

So a calibration fits the effective spread a round trip pays on top of its fees,
``spread_bps = base_spread_bps + 2 * slippage_bps_per_sigma * (100 * sigma)``, and
``CostModel(fee, base_spread_bps, slippage_bps_per_sigma).round_trip_bps(None, sigma)``
is then ``2 * fee`` plus that fitted line.

Spread estimators from candles (both vectorised over (T, N) bars; row t reads bars t - 1
and t, so it is known at the close of bar t):

- Corwin and Schultz (2012): the high-low range of two bars holds twice the variance of
  one bar's range but the spread only once. Known biases: it reads the range of trades,
  so with few trades per bar the ranges understate the true ones and the spread comes out
  too low, more so as volatility grows (on simulated bars with 100 trades each and a
  spread of 40 % of the bar's volatility it recovers about 75 % of the spread, on bars
  with twice that volatility about 65 %); setting the negative two-bar estimates to 0
  biases averages up, in proportion to volatility; it assumes constant volatility over
  the two bars.
- Abdi and Ranaldo (2017): the close is a trade at the bid or the ask, the mid-range of
  the bar (and of the next) proxies the mid, so
  ``s^2 = 4 E[(c_t - eta_t)(c_t - eta_{t+1})]`` in logs. Nearly unbiased on the same
  simulated bars once the moment is averaged before the square root, but noisier than
  Corwin-Schultz; the square root of a single two-bar moment, with negatives set to 0,
  is biased up, again in proportion to volatility.

EDGE (Ardia, Guidotti and Kroencke 2024, the ``bidask`` package) combines open, high, low
and close in two moment conditions weighted by their variances; it is unbiased where the
others are and has the smallest variance of the three. ``huracan.costs.estimate`` applies
any of the three over a window with a jackknife standard error, and falls back to a
per-liquidity-tier default where the estimate is not significantly above 0 (the per-coin
pipeline's calibration).

Abdi-Ranaldo and Corwin-Schultz need the spread to be large against the bar's range. On
real Binance 1h bars (``bench/bench_costs.py``, 30 days to 2024-05-08) their volatility
regressions read base spreads of 0 to 22 bps and slopes of 0 to 14 bps per 1 %, mostly
with R^2 below 0.5, for coins whose ticks show effective half-spreads under 0.3 bp (BTC
0.08, ETH 0.24 on 2024-08-09): hourly reversals and changes of volatility within the bars,
not the spread, dominate them. Quoted spreads
(a ``spread_bps`` column) or ticks are far better where available.
"""

from huracan.costs.calibration import SlippageFit, calibrate_slippage_from_candles
from huracan.costs.estimate import (
    WINDOW_ESTIMATORS,
    SpreadTier,
    cost_arrays,
    estimate_spreads,
    jackknife_spread,
    tier_spread,
)
from huracan.costs.model import CostModel
from huracan.costs.spreads import ESTIMATORS, abdi_ranaldo_spread, corwin_schultz_spread
from huracan.costs.symbol_metrics import SYMBOL_COLUMNS, symbol_metrics
from huracan.costs.ticks import (
    calibrate_slippage_from_ticks,
    effective_spreads,
    spread_from_ticks,
)

__all__ = [
    "ESTIMATORS",
    "SYMBOL_COLUMNS",
    "WINDOW_ESTIMATORS",
    "CostModel",
    "SlippageFit",
    "SpreadTier",
    "abdi_ranaldo_spread",
    "calibrate_slippage_from_candles",
    "calibrate_slippage_from_ticks",
    "corwin_schultz_spread",
    "cost_arrays",
    "effective_spreads",
    "estimate_spreads",
    "jackknife_spread",
    "spread_from_ticks",
    "symbol_metrics",
    "tier_spread",
]
