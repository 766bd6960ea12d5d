"""Hierarchical fleet training speed: ``python train.py`` wall time, and Lightning against a
plain PyTorch loop on the same model and data (samples/s).

    .venv/bin/python bench/bench_fleet.py
    .venv/bin/python bench/bench_fleet.py speed --accelerator gpu

Quality (the model beside the oracle and the baselines) is measured by bench/bench_edge.py.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _util import ROOT, print_table, verdict
from hydra import compose, initialize_config_dir

ABLATIONS = {
    "factor=pca": [],
    "factor=none": ["factor=none"],
    "cluster=global": ["cluster=global"],
    "cluster=isolated": ["cluster=isolated"],
}
QUIET = ["trainer.enable_progress_bar=false", "report.compare_without_factor=false"]


def config(out: Path, *overrides: str):
    with initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                f"+output_dir={out}",
                f"logger.save_dir={out / 'tb'}",
                "logger.name=bench",
                *QUIET,
                *overrides,
            ],
        )


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or not np.isfinite(value) else format(value, spec)


def metrics_row(name: str, m: dict, seconds: float | None = None) -> dict:
    return {
        "variant": name,
        "expectancy": fmt(m["expectancy"], ".6f"),
        "net bps": fmt(m["net_bps"], ",.0f"),
        "trades": m["n_trades"],
        "precision": fmt(m["precision"], ".3f"),
        "sharpe": fmt(m["sharpe"], ".2f"),
        "wall s": fmt(seconds, ".0f"),
    }


def speed(accelerator: str) -> list[dict]:
    checks = []
    if accelerator == "cpu":
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "train.py",
                    f"hydra.run.dir={tmp}",
                    f"logger.save_dir={tmp}/tb",
                    "trainer.enable_progress_bar=false",
                ],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            wall = time.perf_counter() - start
        checks.append(
            {
                "check": "python train.py (default run) wall time",
                "value": f"{wall:.0f} s",
                "target": "< 300 s",
                "result": verdict(wall < 300),
            }
        )
    from throughput import compare_throughput

    lightning_rate, plain_rate, n = compare_throughput(accelerator)
    ratio = lightning_rate / plain_rate
    print_table(
        f"Training throughput on {accelerator}, same model and data ({n:,} samples)",
        [
            {"loop": "plain PyTorch", "samples/s": f"{plain_rate:,.0f}"},
            {"loop": "Lightning FleetModule", "samples/s": f"{lightning_rate:,.0f}"},
        ],
    )
    checks.append(
        {
            "check": f"Lightning / plain loop throughput ({accelerator})",
            "value": f"{ratio:.2f}",
            "target": ">= 0.95 (issue 13)",
            "result": verdict(ratio >= 0.95),
        }
    )
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", default=["speed"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    args = parser.parse_args()
    checks = []
    for section in args.sections:
        if section == "speed":
            checks += speed(args.accelerator)
        else:
            parser.error(f"unknown section {section!r}")
    print_table("Targets", checks)


if __name__ == "__main__":
    main()
