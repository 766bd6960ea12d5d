"""Benchmark: clustering a 400-asset fleet and extracting its market factor.

Run: ``python bench/bench_clustering.py``. Prints one table; each target's PASS/FAIL is
decided from the measured value.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from huracan.clustering import AssetClusterer
from huracan.data.synthetic import SyntheticMarket
from huracan.factor import PCAFactor, inject_market_factor
from huracan.report import format_table

N_ASSETS, YEARS, N_CLUSTERS = 400, 2, 8
CLUSTER_SECONDS_TARGET = 5.0


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


if __name__ == "__main__":
    main()
