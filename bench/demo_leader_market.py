"""A market where the leader is neither a champion nor a factor member, end to end.

The replay issue's layout: BTC, ETH and one other major in one cluster; two alt clusters of
6 and 8 coins that follow BTC one bar late, each with a strong common factor of its own (so
the variance rule makes the 8-coin alt cluster dominant and the factor's members are alts).
The script writes that market as CSV files, trains ``pipeline=per_coin`` on all but its
last 30 days, then calls ``python -m huracan.signal`` and ``pipeline=mechanic`` on all of it,
each through its real command line, and prints what each answered per coin.

    python bench/demo_leader_market.py [--days 240] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _util import ROOT, print_table

from huracan.serve import Fleet, ServeConfig

MAJORS = ["BTC", "ETH", "BNB"]


def write_market(folder: Path, days: int, seed: int = 0) -> list[str]:
    """Writes the 17 coins' hourly bars as <SYMBOL>.csv; returns the symbols."""
    rng = np.random.default_rng(seed)
    n_bars = days * 24
    market = rng.standard_t(4, n_bars) * 0.004
    lagged = np.concatenate([[0.0], market[:-1]])
    alts = {f"A{i}": 0 for i in range(6)} | {f"B{i}": 1 for i in range(8)}
    sector = rng.standard_t(4, (n_bars, 2)) * 0.008  # alts' own common moves, larger
    returns = {s: market + rng.normal(0, 0.0015, n_bars) for s in MAJORS}
    returns["BTC"] = market
    for symbol, cluster in alts.items():
        late = rng.uniform(0.4, 0.6)
        beta = rng.uniform(0.9, 1.3)
        own = rng.normal(0, 0.003, n_bars)
        returns[symbol] = beta * ((1 - late) * market + late * lagged) + sector[:, cluster] + own
    stamps = pd.date_range("2023-01-01", periods=n_bars, freq="1h", tz="UTC")
    for symbol, r in returns.items():
        close = 100.0 * np.exp(np.cumsum(r))
        open_ = np.concatenate([[100.0], close[:-1]])
        wiggle = np.abs(rng.normal(0, 0.001, n_bars))
        pd.DataFrame(
            {
                "timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "open": open_,
                "high": np.maximum(open_, close) * (1 + wiggle),
                "low": np.minimum(open_, close) * (1 - wiggle),
                "close": close,
                "volume": rng.uniform(5e4, 1e5, n_bars),
            }
        ).to_csv(folder / f"{symbol}.csv", index=False)
    return list(returns)


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(args)} exited {out.returncode}:\n{out.stderr[-3000:]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--keep", default=None, help="write into DIR instead of a temp dir")
    options = parser.parse_args()
    work = Path(options.keep or tempfile.mkdtemp(prefix="leader_market_"))
    data = work / "bars"
    data.mkdir(parents=True, exist_ok=True)
    symbols = write_market(data, options.days)
    train_end = str(pd.Timestamp("2023-01-01", tz="UTC") + pd.Timedelta(days=options.days - 30))
    common = [f"data.path={data}", f"store.root={work / 'artifacts'}", "~logger"]
    common += ["trainer.enable_progress_bar=false"]
    run(
        [sys.executable, "train.py", "pipeline=per_coin", "data=csv", f"data.end={train_end}"]
        + common
        + ["cluster.n_clusters=3", "pipeline.run_id=demo", f"hydra.run.dir={work / 'per_coin'}"],
        ROOT,
    )
    signals_json = work / "signals.json"
    run(
        [sys.executable, "-m", "huracan.signal", "--root", str(work / "artifacts")]
        + ["--data", str(data), "--expire-hours", "100000", "--out", str(signals_json)],
        ROOT,
    )
    run(
        [sys.executable, "train.py", "pipeline=mechanic", "data=csv"]
        + common
        + [f"hydra.run.dir={work / 'mechanic'}"],
        ROOT,
    )
    fleet = Fleet.load(work / "artifacts", config=ServeConfig(expire_hours=None))
    factor = next(iter(fleet.models.values())).description["factor"]
    signals = {row["symbol"]: row for row in _rows(signals_json)}
    mechanic = json.loads((work / "mechanic" / "mechanic.json").read_text())["coins"]
    rows = [
        {
            "symbol": s,
            "champion": s in fleet.models,
            "probability": _fmt(signals.get(s, {}).get("probability")),
            "signal reasons": "; ".join(signals.get(s, {}).get("reasons") or [])[:48],
            "mechanic": mechanic.get(s, {}).get("status", "-"),
            "mechanic reason": "; ".join(mechanic.get(s, {}).get("reasons") or [])[:40],
        }
        for s in symbols
    ]
    lead = (factor.get("leader_channel") or {}).get("symbol")
    print(f"\nfactor members: {factor['members']}; leader channel reads {lead}")
    print_table("per coin: signal and Mechanic on the leader-outside market", rows)
    champions = [r for r in rows if r["champion"]]
    scored = sum(r["probability"] != "None" for r in champions)
    print(f"\nchampions {len(champions)}, signals with a probability {scored}")
    print(f"Mechanic statuses: {pd.Series([r['mechanic'] for r in rows]).value_counts().to_dict()}")
    print(f"outputs in {work}")


def _rows(path: Path) -> list[dict]:
    payload = json.loads(path.read_text())
    return payload["signals"] if isinstance(payload, dict) else payload


def _fmt(value: object) -> str:
    return "None" if value is None else f"{float(value):.4f}"


if __name__ == "__main__":
    main()
