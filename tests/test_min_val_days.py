"""``validation.min_val_days``: a floor on each validation slice's days, inside its fold's
own window; later folds, test windows and the default split unchanged; no leak."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run_config
from hydra.utils import instantiate
from test_hierarchical import shifted_from

import huracan.pipelines.hierarchical.run as hierarchical
from huracan.errors import ConfigError
from huracan.pipelines.hierarchical.run import run_hierarchical
from huracan.report import StageTimer
from huracan.run import train
from huracan.validation import WalkForward

HOUR = pd.Timedelta("1h")


def hours(n_bars: int) -> pd.DatetimeIndex:
    return pd.date_range("2023-01-01", periods=n_bars, freq="1h", tz="UTC")


def test_the_floor_lengthens_early_slices_only_and_keeps_every_gap():
    grid = hours(8760)  # a year of hourly bars, 5 folds: fold 0's 0.2 is 12 days
    plain = WalkForward(n_folds=5, horizon=24).split(grid)
    floored = WalkForward(n_folds=5, horizon=24, min_val_days=30).split(grid)
    # pinned: 0.2 of the usable rows gives 287, 579, 871, 1163 and 1431 validation rows;
    # the floor's 30 days are 720 hourly rows, so folds 0 and 1 take 720, the rest their 0.2
    assert [len(f.val) for f in plain] == [287, 579, 871, 1163, 1431]
    assert [len(f.val) for f in floored] == [720, 720, 871, 1163, 1431]
    for a, b in zip(plain, floored, strict=True):
        np.testing.assert_array_equal(a.test, b.test)  # the test windows never move
        # the floor moves the split inside the fold's own usable rows, purged as before
        assert b.val[-1] == a.val[-1] and b.val[-1] + 24 < b.test[0]
        assert b.train[-1] == b.val[0] - 25  # the last training row: right before the purge
        assert not np.isin(b.val, b.test).any() and not np.isin(b.train, b.val).any()
        if a.index >= 2:  # 0.2 already holds more than 30 days
            np.testing.assert_array_equal(a.train, b.train)
            np.testing.assert_array_equal(a.val, b.val)
    early = floored[0]
    assert early.val_times[-1] - early.val_times[0] == pd.Timedelta(days=30) - HOUR
    assert early.val_times[-1] < early.test_times[0] - 24 * HOUR


def test_the_floor_counts_days_on_the_grid_not_rows():
    """Four-hour bars: 30 days are 180 rows; a missing stretch is not counted as days."""
    grid = pd.date_range("2023-01-01", periods=2190, freq="4h", tz="UTC")
    fold = WalkForward(n_folds=5, horizon=6, min_val_days=30).split(grid)[0]
    assert len(fold.val) == 180
    gappy = grid.delete(np.arange(200, 260))  # ten days missing inside fold 0's window
    fold = WalkForward(n_folds=5, horizon=6, min_val_days=50).split(gappy)[0]
    assert fold.val_times[-1] - fold.val_times[0] < pd.Timedelta(days=50)
    assert len(fold.val) == 50 * 6 - 60  # the missing rows are not made up elsewhere


def test_no_floor_is_the_split_before():
    grid = hours(3000)
    for days in (None, 0):
        for a, b in zip(
            WalkForward(n_folds=3, horizon=4).split(grid),
            WalkForward(n_folds=3, horizon=4, min_val_days=days).split(grid),
            strict=True,
        ):
            for key in ("train", "val", "test"):
                np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


@pytest.mark.parametrize(
    ("days", "val_fraction", "message"),
    [
        (-1, 0.2, "validation.min_val_days must be a number of days >= 0, got -1"),
        ("abc", 0.2, "validation.min_val_days must be a number of days >= 0, got 'abc'"),
        (30, 0.0, r"validation.min_val_days \(30\) needs a validation slice"),
        (400, 0.2, "too few for 5 folds.*validation.min_val_days 400"),
    ],
)
def test_bad_floors_are_clear_config_errors(days, val_fraction, message):
    splitter = WalkForward(n_folds=5, horizon=1, min_val_days=days, val_fraction=val_fraction)
    with pytest.raises(ConfigError, match=message):
        splitter.split(hours(8760))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["validation.min_val_days=-5"], "validation.min_val_days must be a number of days"),
        (["validation.min_val_days=abc"], "validation.min_val_days: expected float or null"),
        (["validation.val_fraction=0", "validation.min_val_days=30"], "needs a validation"),
    ],
)
def test_bad_floors_stop_the_run_before_any_data_is_read(tmp_path, overrides, message):
    cfg = run_config(tmp_path, *overrides)
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not (tmp_path / "run" / "gates.json").exists()


def test_a_bad_floor_ends_the_command_with_exit_2(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "train.py",
            "validation.min_val_days=-1",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 2
    assert "validation.min_val_days must be a number of days >= 0, got -1" in output
    assert "Traceback" not in output


SMALL = [
    "data.n_assets=6",
    "data.n_clusters=2",
    "data.years=0.5",
    "cluster.n_clusters=2",
    "validation.n_folds=2",
    "validation.min_val_days=20",
    "encoder=pca",
    "head.max_epochs=3",
    "head.patience=2",
    "trainer.enable_progress_bar=false",
    "gates.min_history_days=10",
    "labels.horizons=[1,4]",
    "report.compare_without_factor=false",
]


def recorded_run(panel, cfg, out, monkeypatch):
    """The run, and per call of the heads' rule its validation probabilities and net
    returns (what the gate and the cut are chosen on)."""
    calls = []
    choose = hierarchical.choose_by_rule

    def record(thresholds, prob, net_return, *args):
        calls.append((prob.copy(), net_return.copy()))
        return choose(thresholds, prob, net_return, *args)

    monkeypatch.setattr(hierarchical, "choose_by_rule", record)
    return run_hierarchical(panel, cfg, out, StageTimer()), calls


def test_nothing_fold_0_fits_or_chooses_sees_a_bar_of_its_test_window(tmp_path, monkeypatch):
    """With the floor on, every bar from fold 0's first test bar on is redrawn: the
    validation probabilities and net returns its gate and cuts are chosen on, and what it
    chose, stay the same (redrawn from inside the slice, they change: the test can fail)."""
    cfg = run_config(tmp_path, *SMALL)
    panel = instantiate(cfg.data).load()
    base, base_calls = recorded_run(panel, cfg, tmp_path / "a", monkeypatch)
    fold = base.folds[0]
    # the floor is what sets fold 0's slice: 20 days, more than 0.2 of its usable rows
    assert len(fold.val) == 20 * 24 > round(0.2 * (fold.test[0] - 4))
    assert fold.val[-1] + 4 < fold.test[0] and fold.train[-1] + 4 < fold.val[0]
    cuts = ((fold.test[0], True), (fold.val[len(fold.val) // 2], False))
    assert_fold_0_gate_reads_from(panel, cfg, tmp_path, monkeypatch, (base, base_calls), cuts)


def assert_fold_0_gate_reads_from(panel, cfg, out, monkeypatch, base_run, cuts) -> None:
    """For each ``(cut, same)``: with every bar from ``cut`` on redrawn, fold 0's gate
    inputs (its probabilities and net returns) and choices are the same as ``base_run``'s
    where ``same``, its inputs differ where not."""
    base, base_calls = base_run
    for cut, same in cuts:
        changed = shifted_from(panel, cut, volume=3.0)
        other, calls = recorded_run(changed, cfg, out / f"b{cut}", monkeypatch)
        pairs = zip(calls[0], base_calls[0], strict=True)
        seen = [np.array_equal(a, b, equal_nan=True) for a, b in pairs]
        assert seen == [same, same], cut
        for key in ("horizons", "thresholds", "validation_bound_bps"):
            assert not same or other.fold_info[0][key] == base.fold_info[0][key], key


def test_a_floor_that_empties_a_fold_ends_the_command_with_one_line_exit_2(tmp_path):
    """The small market's fold 0 keeps no labelled training sample under a 55-day floor:
    the run stops with the fold, its days and rows, the floor and what to do, no traceback."""
    small = [o for o in SMALL if not o.startswith("validation.min_val_days=")]
    run = subprocess.run(
        [
            sys.executable,
            "train.py",
            *small,
            "validation.min_val_days=55",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 2, output[-2000:]
    assert "Traceback" not in output
    assert "fold 1 (index 0): no usable" in output
    assert "validation.min_val_days 55" in output
    assert "lower validation.min_val_days or use fewer folds" in output
    assert "training days" in output and "validation days" in output
    # the run failed before its books were written: their NaN-filled files are gone
    assert not list((tmp_path / "run").rglob("*.npy"))
