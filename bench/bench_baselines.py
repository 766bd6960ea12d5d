"""Time of ``baseline_signals`` (all four baselines) for 40 and 400 coins.

    .venv/bin/python bench/bench_baselines.py              # 40 and 400 coins
    .venv/bin/python bench/bench_baselines.py --coins 400

Two years of 1h bars of independent noise, 5 walk-forward folds (horizon 1), each run in a
fresh process; the logistic baseline's 5 x N fits take nearly all of the time. Target:
400 coins well under a minute.
"""

from __future__ import annotations

import argparse

from _util import measure, print_table, verdict

SETUP = """
import numpy as np, pandas as pd
from huracan.baselines import baseline_signals
from huracan.validation import WalkForward
rng = np.random.default_rng(0)
returns = rng.normal(0, 0.01, ({bars}, {coins}))
returns[0] = np.nan
net = np.full_like(returns, np.nan)
net[:-1] = returns[1:] - 0.001
grid = pd.date_range("2024-01-01", periods={bars}, freq="1h")
folds = WalkForward(n_folds=5, horizon=1).split(grid)
"""
WORK = """
signals = baseline_signals(returns, net, folds, 0, min_trades=20, z=2.0)
result = int(signals["logistic"].sum())
"""
BARS = 2 * 8766
LIMIT_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, nargs="+", default=[40, 400])
    args = parser.parse_args()
    rows = []
    for coins in args.coins:
        timing = measure(WORK, SETUP.format(bars=BARS, coins=coins))
        rows.append(
            {
                "coins": coins,
                "bars": BARS,
                "folds": 5,
                "seconds": f"{timing['seconds']:.1f}",
                "peak_mb": f"{timing['peak_mb']:.0f}",
                f"< {LIMIT_S:.0f} s": verdict(timing["seconds"] < LIMIT_S),
            }
        )
    print_table("baseline_signals (never_trade, always_long, logistic, leader_lead_lag)", rows)


if __name__ == "__main__":
    main()
