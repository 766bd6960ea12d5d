"""Time of ``baseline_signals`` (all four baselines) for 40 and 400 coins.

    .venv/bin/python bench/bench_baselines.py              # 40 and 400 coins
    .venv/bin/python bench/bench_baselines.py --coins 400
    .venv/bin/python bench/bench_baselines.py --rule uncorrected   # without the family gate
    .venv/bin/python bench/bench_baselines.py --coins 400 --workers 1 2 --repeat 3

Two years of 1h bars of independent noise, 5 walk-forward folds (horizon 1), each run in a
fresh process; the logistic baseline's 5 x N fits take nearly all of the time. The cuts
are chosen by the default ``thresholds`` (``huracan/conf/config.yaml``: daily evidence and
the family gate, ``baselines.rule=heads``; ``--rule uncorrected``: the same without the
gate); before the baselines followed the heads' rule they were timed at ``min_trades=20,
z=2`` with trades counted as independent. ``--workers``: the threads sharing the logistic
baseline's per-coin fits (``threads.wide_workers``; default: what the machine gives), each
count a row of its own in the same run; ``--repeat``: the best of that many runs in each
process. Target: 400 coins well under a minute.
"""

from __future__ import annotations

import argparse

from _util import ROOT, measure, print_table, verdict

SETUP = """
import numpy as np, pandas as pd
from omegaconf import OmegaConf
from huracan.baseline_rule import baseline_rules
from huracan.baselines import baseline_signals
from huracan.validation import WalkForward
rng = np.random.default_rng(0)
returns = rng.normal(0, 0.01, ({bars}, {coins}))
returns[0] = np.nan
net = np.full_like(returns, np.nan)
net[:-1] = returns[1:] - 0.001
grid = pd.date_range("2024-01-01", periods={bars}, freq="1h")
folds = WalkForward(n_folds=5, horizon=1).split(grid)
thresholds = OmegaConf.load("{config}").thresholds
rules = baseline_rules(thresholds, "{rule}", grid.as_unit("ns").asi8, 0)
import huracan.threads
huracan.threads._wide = {workers}  # what threads.wide_workers() gives (None: the machine's)
"""
WORK = """
signals = baseline_signals(returns, net, folds, 0, rules=rules)
result = int(signals["logistic"].sum())
"""
BARS = 2 * 8766
LIMIT_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, nargs="+", default=[40, 400])
    parser.add_argument("--rule", choices=["heads", "uncorrected"], default="heads")
    parser.add_argument("--workers", type=int, nargs="+", default=[None], help="fit threads")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs")
    args = parser.parse_args()
    rows = []
    for coins, workers in ((c, w) for c in args.coins for w in args.workers):
        config = ROOT / "huracan/conf/config.yaml"
        setup = SETUP.format(bars=BARS, coins=coins, config=config, rule=args.rule, workers=workers)
        timing = measure(WORK, setup, repeat=args.repeat)
        rows.append(
            {
                "coins": coins,
                "workers": "machine's" if workers is None else workers,
                "bars": BARS,
                "folds": 5,
                f"seconds (best of {args.repeat})": f"{timing['seconds']:.1f}",
                "peak_mb": f"{timing['peak_mb']:.0f}",
                f"< {LIMIT_S:.0f} s": verdict(timing["seconds"] < LIMIT_S),
            }
        )
    title = "baseline_signals (never_trade, always_long, logistic, leader_lead_lag)"
    print_table(f"{title}; baselines.rule={args.rule}", rows)


if __name__ == "__main__":
    main()
