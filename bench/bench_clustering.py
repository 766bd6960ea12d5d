"""Benchmark: clustering a 400-asset fleet and extracting its market factor, and the
clusters of real Binance coins over the walk-forward's growing training windows.

Run: ``PYTHONPATH=. python bench/bench_clustering.py``. Prints two tables; each target's
PASS/FAIL is decided from the measured value.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd
from _util import SHARED_DATA, print_table
from sklearn.metrics import adjusted_rand_score

from huracan.clustering import AssetClusterer, align_cluster_ids, fold_agreement
from huracan.data import CsvSource
from huracan.data.synthetic import SyntheticMarket
from huracan.factor import PCAFactor, inject_market_factor
from huracan.report import format_table
from huracan.validation import WalkForward

N_ASSETS, YEARS, N_CLUSTERS = 400, 2, 8
CLUSTER_SECONDS_TARGET = 5.0
BINANCE = SHARED_DATA / "binance_spot" / "1h"
REAL_START, REAL_END, REAL_FOLDS = "2022-05-08", "2024-05-08", 5
LEADER = "BTC"


def timed(work):
    start = time.perf_counter()
    out = work()
    return out, time.perf_counter() - start


def main() -> None:
    panel, load_s = timed(
        SyntheticMarket(n_assets=N_ASSETS, years=YEARS, n_clusters=N_CLUSTERS).load
    )
    returns = np.diff(np.log(panel.close), axis=0)
    volume = panel.quote_volume[1:]
    half = len(returns) // 2
    rows = [("synthetic market load (not a target)", load_s, "s", "", "")]

    for method in ("ward", "average", "complete"):
        clusterer = AssetClusterer(method=method, n_clusters=N_CLUSTERS)
        _, seconds = timed(lambda c=clusterer: c.fit(returns, panel.symbols, volume))
        ari = adjusted_rand_score(panel.truth.cluster_labels, clusterer.labels_)
        rows.append((f"cluster {method}: correlation + linkage", seconds, "s", "< 5", seconds < 5))
        rows.append((f"cluster {method}: ARI vs planted", ari, "", "= 1", ari == 1.0))

    spearman = AssetClusterer(correlation="spearman", n_clusters=N_CLUSTERS)
    _, seconds = timed(lambda: spearman.fit(returns, panel.symbols, volume))
    rows.append(("cluster ward, spearman", seconds, "s", "< 5", seconds < 5))

    gappy = SyntheticMarket(
        n_assets=N_ASSETS, years=YEARS, n_clusters=N_CLUSTERS, late_listing_share=0.3
    ).load()
    gappy_returns = np.diff(np.log(gappy.close), axis=0)
    clusterer = AssetClusterer(n_clusters=N_CLUSTERS)
    _, seconds = timed(lambda: clusterer.fit(gappy_returns, gappy.symbols))
    ari = adjusted_rand_score(gappy.truth.cluster_labels, clusterer.labels_)
    rows.append(("cluster ward, 30% of alts listed late", seconds, "s", "< 5", seconds < 5))
    rows.append(("cluster ward, late listings: ARI", ari, "", "= 1", ari == 1.0))

    members = AssetClusterer(n_clusters=N_CLUSTERS).fit(returns[:half], panel.symbols)
    members = members.result_.cluster_members[0]
    extractor = PCAFactor()
    _, fit_s = timed(lambda: extractor.fit(returns[:half], members, panel.symbols))
    factor, transform_s = timed(lambda: extractor.transform(returns))
    planted = panel.truth.market_factor[1:]
    corr = np.corrcoef(factor[half:, 0], planted[half:])[0, 1]
    channels, inject_s = timed(lambda: inject_market_factor(factor, panel.listed[1:]))
    rows += [
        (f"pca factor fit ({len(members)} members, {half} bars)", fit_s, "s", "", ""),
        (f"pca factor transform ({len(returns)} bars)", transform_s, "s", "", ""),
        ("pca factor explained variance ratio", extractor.explained_variance_ratio_, "", "", ""),
        ("pca factor corr vs planted, out of sample", corr, "", "", ""),
        (f"inject factor -> {channels.values.shape}", inject_s, "s", "", ""),
    ]
    table = pd.DataFrame(rows, columns=["measure", "value", "unit", "target", "result"])
    table["result"] = table["result"].map({True: "PASS", False: "FAIL", "": ""})
    print(f"{N_ASSETS} assets x {len(returns)} bars ({YEARS} years), {N_CLUSTERS} clusters")
    print(format_table(table.set_index("measure"), floatfmt=".3f"))
    real_data()


def real_data() -> None:
    """Cluster sizes per fold and fold-to-fold ARI on Binance 1h, per clustering option."""
    if not BINANCE.is_dir():
        print(f"\nreal data not found at {BINANCE}: skipped")
        return
    panel = CsvSource(str(BINANCE), start=REAL_START, end=REAL_END).load()
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.diff(np.log(panel.close), axis=0, prepend=np.nan)
    folds = WalkForward(n_folds=REAL_FOLDS, horizon=1).split(panel)
    rows = []
    for series, k, min_size in itertools.product(("returns", "residual"), (3, 4, "auto"), (1, 2)):
        clusterer = AssetClusterer(n_clusters=k, series=series, min_size=min_size)
        results, seconds = [], 0.0
        for fold in folds:
            start = time.perf_counter()
            fit = clusterer.fit(returns[fold.train], panel.symbols, panel.quote_volume[fold.train])
            seconds += time.perf_counter() - start
            result = fit.result_
            results.append(align_cluster_ids(result, results[-1]) if results else result)
        rows.append(real_row(series, k, min_size, results, seconds))
    print_table(
        f"Binance 1h, {panel.n_assets} coins, {REAL_START}..{REAL_END}: ward clusters of "
        f"the {REAL_FOLDS} walk-forward training windows (sizes: dominant first)",
        rows,
    )


def real_row(series: str, k, min_size: int, results: list, seconds: float) -> dict:
    sizes = [
        "/".join(str(len(r.cluster_members[c])) for c in sorted(r.cluster_members)) for r in results
    ]
    leader_dominant = sum(r.cluster_map.get(LEADER) == r.dominant_cluster_id for r in results)
    last = results[-1]
    with_leader = last.cluster_members[last.cluster_map[LEADER]]
    return {
        "series": series,
        "k": k,
        "min_size": min_size,
        "chosen k": "/".join(str(r.chosen_k) for r in results),
        "cluster sizes per fold": "  ".join(sizes),
        "mean ARI": f"{np.mean(fold_agreement(results)):.2f}",
        "dominance of 0": "/".join(f"{r.dominance[0]:.2f}" for r in results),
        f"{LEADER} in 0": f"{leader_dominant}/{len(results)}",
        f"{LEADER}'s cluster, last fold": ",".join(with_leader)
        if len(with_leader) <= 6
        else f"{len(with_leader)} coins",
        "s": f"{seconds:.1f}",
    }


if __name__ == "__main__":
    main()
