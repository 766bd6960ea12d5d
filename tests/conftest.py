from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def run_config(tmp: Path, *overrides: str):
    """The project's config for a run writing under ``tmp``: outputs in ``run/``,
    TensorBoard in ``tb/``, the artifact store in ``artifacts/``."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                f"+output_dir={tmp / 'run'}",
                f"logger.save_dir={tmp / 'tb'}",
                f"store.root={tmp / 'artifacts'}",
                *overrides,
            ],
        )


@pytest.fixture(scope="session")
def binance_1h() -> Path:
    path = SHARED_DATA / "binance_spot" / "1h"
    if not path.is_dir():
        pytest.skip(f"real data not found at {path}")
    return path


def make_bars(
    n: int = 48, start: str = "2024-01-01", freq: str = "1h", seed: int = 0, price: float = 100.0
) -> pd.DataFrame:
    """A clean OHLCV frame in the input contract's format (ISO timestamps with zone)."""
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[price], close[:-1]])
    return pd.DataFrame(
        {
            "timestamp": pd.date_range(start, periods=n, freq=freq, tz="UTC").strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "open": open_,
            "high": np.maximum(open_, close) * 1.002,
            "low": np.minimum(open_, close) * 0.998,
            "close": close,
            "volume": rng.uniform(10, 20, n),
        }
    )


@pytest.fixture
def write_bars(tmp_path):
    """Writes frames as <SYMBOL> files into a fresh directory and returns it."""

    def write(frames: dict[str, pd.DataFrame], suffix: str = ".csv") -> Path:
        for name, frame in frames.items():
            path = tmp_path / f"{name}{suffix}"
            if suffix == ".parquet":
                frame.to_parquet(path, index=False)
            else:
                frame.to_csv(path, index=False)
        return tmp_path

    return write


# The end-to-end modules: each trains fleets or runs the command line in subprocesses.
# `make test-fast` (pytest -m "not slow") leaves them out and keeps the unit tests, plus
# one small end-to-end run (test_config.py's per-coin debug=fast run).
SLOW_MODULES = {
    "test_ddp",
    "test_hierarchical",
    "test_live_inputs",
    "test_mechanic",
    "test_multirun",
    "test_per_coin",
    "test_per_coin_baselines",
    "test_per_coin_champion",
    "test_per_coin_costs",
    "test_per_coin_horizons",
    "test_per_coin_resume",
    "test_per_coin_trainer",
    "test_replay",
    "test_serve_hierarchy",
    "test_signal",
    "test_signal_live",
    "test_store_fencing",
    "test_threads",
    "test_wheel",
}
SLOW_TESTS = {  # single long tests in otherwise quick modules
    "test_cli.py::test_train_runs_from_any_directory",
    "test_cli.py::test_ctrl_c_during_a_fold_names_the_stage_and_marks_the_run",
    "test_config.py::test_optuna_sweep_gets_the_objective_from_train",
    "test_config.py::test_unreachable_dask_scheduler_ends_the_command_with_one_line",
    "test_credentials.py::test_train_py_refuses_each_bypass_and_writes_nothing",
    "test_entry.py::test_train_py_command_line",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.nodeid.split("/")[-1]
        if item.module.__name__ in SLOW_MODULES or name.split("[")[0] in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


def changed_after(panel, t: int, seed: int = 0, gone: int = 1):
    """The panel with every bar after row t redrawn, and coin ``gone`` delisted after it
    (the cross-section changes too): what shift tests compare against."""
    rng = np.random.default_rng(seed + t)
    changed = panel.select(panel.symbols)
    changed.bars = {k: v.copy() for k, v in panel.bars.items()}
    later = slice(t + 1, None)
    shape = changed.bars["close"][later].shape
    factor = np.exp(rng.normal(0, 0.05, shape))
    for name in ("open", "high", "low", "close"):
        changed.bars[name][later] *= factor
    changed.bars["volume"][later] *= np.exp(rng.normal(0, 1.0, shape))
    for values in changed.bars.values():
        values[t + 1 :, gone] = np.nan
    return changed
