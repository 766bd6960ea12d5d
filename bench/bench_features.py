"""Times features, labels, weights, scaling and folds on the 46 Binance 1h coins.

Usage: ``python bench/bench_features.py [DATA_DIR]`` (default: ../shared/data/binance_spot/1h
next to the repository). Target: everything but loading in under 30 s on 2 cores.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from huracan.costs import CostModel
from huracan.data import CsvSource
from huracan.features.labels import (
    after_cost_labels,
    energy_weights,
    forward_return,
    triple_barrier_labels,
)
from huracan.features.scaling import PanelScaler
from huracan.features.technical import compute_features, realized_volatility
from huracan.validation import WalkForward

TARGET_SECONDS = 30.0
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared/data/binance_spot/1h"


def main() -> int:
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA.resolve()
    timings: list[tuple[str, float]] = []

    def timed(stage: str, work):
        start = time.perf_counter()
        result = work()
        timings.append((stage, time.perf_counter() - start))
        return result

    panel = timed("load panel (not counted)", lambda: CsvSource(str(data_dir)).load())
    features, columns = timed("technical features (all)", lambda: compute_features(panel))
    horizon = 4
    costs = CostModel()
    label, net = timed("after-cost labels h=1", lambda: after_cost_labels(panel, 1, costs))
    timed("after-cost labels h=4", lambda: after_cost_labels(panel, horizon, costs))
    timed("triple-barrier labels h=24", lambda: triple_barrier_labels(panel, 24, 2.0, 2.0, costs))
    volatility = realized_volatility(panel.close, 24)
    weights = timed(
        "energy weights h=1",
        lambda: energy_weights(forward_return(panel.close, 1), volatility),
    )
    folds = timed("walk-forward folds (5)", lambda: WalkForward(5, horizon=horizon).split(panel))
    scaled = timed(
        "scaler fit (fold 0) + transform",
        lambda: PanelScaler(clip=5.0).fit(features[folds[0].train]).transform(features),
    )

    counted = sum(seconds for stage, seconds in timings[1:])
    t, n = panel.close.shape
    print(f"panel: {t} bars x {n} assets, {len(columns)} feature columns: {', '.join(columns)}")
    print(
        f"labels: {np.nanmean(label):.3f} positive; weights mean {weights[weights > 0].mean():.3f}"
    )
    print(f"scaled features: {np.isfinite(scaled).mean():.3f} finite\n")
    print(f"{'stage':<36}{'seconds':>10}")
    print("-" * 46)
    for stage, seconds in timings:
        print(f"{stage:<36}{seconds:>10.3f}")
    print("-" * 46)
    verdict = "PASS" if counted < TARGET_SECONDS else "FAIL"
    total = f"{'total (without loading)':<36}{counted:>10.3f}"
    print(f"{total}  target < {TARGET_SECONDS:.0f} s: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
