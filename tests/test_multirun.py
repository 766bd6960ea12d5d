"""Hydra multirun with the joblib and submitit launchers, and the comparison table gathered
at its end."""

from __future__ import annotations

import json
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


def test_submitit_local_sweep_runs_each_job_as_a_submitit_job(tmp_path):
    """The path of a SLURM sweep (hydra/launcher=submitit_slurm), on this machine."""
    sweep = tmp_path / "sweep"
    run = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "seed=0,1",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",
            "debug=fast",
            "threads=1",
            f"hydra.sweep.dir={sweep}",
            f"logger.save_dir={tmp_path / 'tb'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summaries = [json.loads((sweep / str(k) / "summary.json").read_text()) for k in (0, 1)]
    assert [summary["config"]["seed"] for summary in summaries] == [0, 1]
    results = sorted((sweep / ".submitit").glob("*/*_result.pkl"))
    assert len(results) == 2  # two submitit jobs, each with its own result and logs
    assert len({path.parent for path in results}) == 2
    assert (sweep / "comparison.csv").exists()
