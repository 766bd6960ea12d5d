"""Hydra multirun with the joblib launcher, and the comparison table gathered at its end."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
from conftest import ROOT
from test_hierarchical import SMALL


def test_parallel_ablation_sweep_writes_a_comparison(tmp_path):
    sweep = tmp_path / "sweep"
    run = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "factor=pca,none",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "threads=1",
            f"hydra.sweep.dir={sweep}",
            f"logger.save_dir={tmp_path / 'tb'}",
            *SMALL,
            "validation.n_folds=2",
            "data.years=0.3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_csv(sweep / "comparison.csv", index_col="run")
    assert sorted(table["overrides"].str.extract(r"(factor=\w+)")[0]) == [
        "factor=none",
        "factor=pca",
    ]
    assert table["all/n_trades"].notna().all()
    assert (sweep / "0" / "results.csv").exists() and (sweep / "1" / "results.csv").exists()
    from huracan.compare import gather

    assert len(gather(sweep)) == 2
