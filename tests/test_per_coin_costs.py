"""The per-coin run's costs: which bars calibrate the prices of which rows."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir

from huracan.config import build
from huracan.pipelines.per_coin import prepare_split
from huracan.report import StageTimer


@pytest.fixture(scope="module")
def setup():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "pipeline=per_coin",
                "debug=fast",
                "data.n_assets=4",
                "pipeline.test_days=20",
                "pipeline.calibration_days=10",
            ],
        )
    panel = build(cfg.data).load()
    split = prepare_split(panel, cfg, StageTimer())
    return cfg, panel, split


def widened(panel, rows: slice):
    """The panel with every bar of ``rows`` quoting 4x its spread and a 2 % wider range;
    closes (hence returns, volatility and labels before costs) unchanged."""
    bars = {name: values.copy() for name, values in panel.bars.items()}
    bars["spread_bps"][rows] *= 4
    bars["high"][rows] *= 1.02
    bars["low"][rows] /= 1.02
    return replace(panel, bars=bars)


def test_training_labels_and_threshold_inputs_ignore_bars_after_the_training_window(setup):
    """Bars between the training window's end and the test window (validation slice,
    purges) never change a training or validation label, net return or cost, which are all
    the threshold is chosen from besides the model's own scores; the test costs do move."""
    cfg, panel, split = setup
    fold = split.fold
    train_end, test_start = int(fold.train[-1]) + 1, int(fold.test[0])
    assert test_start - train_end > 24 * cfg.pipeline.calibration_days  # a real gap
    after = prepare_split(widened(panel, slice(train_end, test_start)), cfg, StageTimer())
    before_test = slice(0, test_start)
    for name in ("label", "net_return", "cost_bps"):
        old, new = getattr(split.arrays, name), getattr(after.arrays, name)
        np.testing.assert_array_equal(new[before_test], old[before_test], err_msg=name)
    assert split.fits.train == after.fits.train
    # the test window is priced on the bars right before it: those moved, so its costs did
    test = split.arrays.cost_bps[test_start:]
    assert np.all(after.arrays.cost_bps[test_start:] > test + 1)
    for symbol, fit in after.fits.test.items():
        assert fit.method == "quoted"
        assert fit.base_spread_bps == pytest.approx(4 * split.fits.test[symbol].base_spread_bps)


def test_no_cost_reads_a_bar_of_the_window_it_prices(setup):
    """Bars from the test window's first on change no cost at all; bars at the end of the
    training window change the training calibration."""
    cfg, panel, split = setup
    fold = split.fold
    train_end, test_start = int(fold.train[-1]) + 1, int(fold.test[0])
    inside = prepare_split(widened(panel, slice(test_start, None)), cfg, StageTimer())
    np.testing.assert_array_equal(inside.arrays.cost_bps, split.arrays.cost_bps)
    assert inside.fits == split.fits
    end_of_training = prepare_split(widened(panel, slice(0, train_end)), cfg, StageTimer())
    assert np.all(end_of_training.arrays.cost_bps[:test_start] > split.arrays.cost_bps[:test_start])
    np.testing.assert_array_equal(
        end_of_training.arrays.cost_bps[test_start:], split.arrays.cost_bps[test_start:]
    )
    window_ends = {f.window_end for f in split.fits.train.values()}
    assert max(window_ends) == str(fold.train_times[-1].isoformat())
