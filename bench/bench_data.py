"""Data layer benchmark: the 46 Binance 1h coins, and a 400-coin synthetic market.

Run: .venv/bin/python bench/bench_data.py
"""

from __future__ import annotations

from _util import SHARED_DATA, measure, print_table, verdict

BINANCE = SHARED_DATA / "binance_spot" / "1h"


def main() -> None:
    read = measure(
        "result = len([pd.read_csv(f) for f in files])",
        setup=f"import glob, pandas as pd; files = sorted(glob.glob('{BINANCE}/*.csv.gz'))",
        repeat=3,
    )
    load = measure(
        "panel = CsvSource(path).load(); report = apply_gates(panel, GateThresholds()); "
        "result = [panel.n_assets, panel.n_bars, len(report.passed)]",
        setup="from huracan.data import CsvSource, GateThresholds, apply_gates; "
        f"path = '{BINANCE}'",
        repeat=3,
    )
    synth = measure(
        "panel = SyntheticMarket(n_assets=400, years=2.0, n_clusters=8).load(); "
        "result = [panel.n_assets, panel.n_bars]",
        setup="from huracan.data import SyntheticMarket",
    )
    n_assets, n_bars, n_passed = load["result"]
    rows = [
        {
            "task": "pandas.read_csv, 46 files (peer)",
            "size": "46 files",
            "seconds": f"{read['seconds']:.2f}",
            "peak MB": f"{read['peak_mb']:.0f}",
            "target": "-",
            "result": "-",
        },
        {
            "task": "load+validate+align+gate Binance 1h",
            "size": f"{n_assets} x {n_bars:,} ({n_passed} pass)",
            "seconds": f"{load['seconds']:.2f}",
            "peak MB": f"{load['peak_mb']:.0f}",
            "target": "< 3 s",
            "result": verdict(load["seconds"] < 3),
        },
        {
            "task": "synthetic market 400 coins x 2 years",
            "size": "{} x {:,}".format(*synth["result"]),
            "seconds": f"{synth['seconds']:.2f}",
            "peak MB": f"{synth['peak_mb']:.0f}",
            "target": "< 15 s, < 3 GB",
            "result": verdict(synth["seconds"] < 15 and synth["peak_mb"] < 3072),
        },
    ]
    print_table("Data layer (2-core reference machine; best of 3 for the Binance rows)", rows)
    print(f"\noverhead over plain reading: {load['seconds'] / read['seconds']:.2f}x")


if __name__ == "__main__":
    main()
