"""The factor-style report of a hierarchical run (``pipelines.hierarchical.factor_report``) on a
constructed run: IC of the model and the baselines' scores, both books, results.csv rows."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from huracan.pipelines.hierarchical.factor_report import (
    books_section,
    ic_section,
    log_factor_lines,
    with_long_short_rows,
)
from huracan.pipelines.hierarchical.run import Book, FleetRun
from huracan.validation import Fold

HORIZONS = (1, 4)
BOOK = {"_target_": "huracan.evaluation.BookConfig", "k": 2, "rebalance": 4}


def constructed_run(with_baselines: bool = True) -> FleetRun:
    """Eight coins over 40 hourly days; the model's score knows each horizon's return a
    little, the 'oracle' baseline's knows it well, the 'noise' baseline's not at all."""
    rng = np.random.default_rng(0)
    t_len, n = 24 * 40, 8
    gross = rng.normal(0, 0.01, (t_len, n, len(HORIZONS)))
    cost = np.full((t_len, n), 20.0)  # bps, round trip
    net = gross - cost[..., None] / 1e4
    arrays = SimpleNamespace(
        symbols=[f"C{j}" for j in range(n)],
        timestamps_ns=(np.arange(t_len) * 3_600 * 10**9).astype(np.int64),
        horizons=HORIZONS,
        grid_shape=(t_len, n),
        net_of=lambda i: net[..., i],
        cost_bps=cost,
    )
    test = np.arange(t_len // 2, t_len)
    model = Book.empty(arrays)
    planted = np.moveaxis(gross, -1, 0) / 0.01  # (H, T, N)
    model.scores[:, test] = (planted + rng.normal(0, 3, planted.shape))[:, test]
    stamps = arrays.timestamps_ns
    train, val = np.arange(t_len // 2), np.arange(0)
    fold = Fold(0, train, val, test, stamps[train], stamps[val], stamps[test])
    run = FleetRun(arrays, [fold], model, np.zeros((t_len, n), np.int16), test)
    if with_baselines:
        run.baseline_scores = {
            "oracle": np.where(np.isin(np.arange(t_len), test)[:, None], planted, np.nan),
            "noise": rng.normal(size=planted.shape),
        }
    return run


def test_ic_section_scores_the_model_and_every_baseline_with_a_score():
    section = ic_section(constructed_run())
    assert {"model", "baseline_oracle", "baseline_noise"} <= section.keys()
    for name in ("model", "baseline_oracle", "baseline_noise"):
        assert set(section[name]) == {"1", "4"}
    assert section["model"]["1"]["ic_t"] > 2
    assert section["baseline_oracle"]["4"]["ic_mean"] > section["model"]["4"]["ic_mean"] > 0
    assert abs(section["baseline_noise"]["1"]["ic_t"]) < 3
    assert section["model"]["1"]["n_bars"] == 24 * 20  # test rows only
    assert section["model"]["4"]["spread_bps"] > 0


def test_a_run_without_baseline_scores_reports_the_model_alone():
    section = ic_section(constructed_run(with_baselines=False))
    assert not any(k.startswith("baseline_") for k in section)
    assert "model" in section


def test_books_hold_both_books_with_t_and_interval_and_the_daily_difference():
    run = constructed_run()
    figures = {"net_bps": 12.0, "n_trades": 3, "sharpe": 0.5, "t_stat": 0.4}
    figures |= {"ci_low": -0.001, "ci_high": 0.002}
    daily = np.random.default_rng(1).normal(0, 0.001, 20)
    books = books_section(run, OmegaConf.create({"book": BOOK}), figures, daily, 24 * 365.25)
    long_only = books["long_only"]
    assert long_only["net_bps"] == 12.0 and long_only["ci_low_bps"] == pytest.approx(-10.0)
    assert long_only["sharpe_daily"] == pytest.approx(
        daily.mean() / daily.std(ddof=1) * np.sqrt(365)
    )
    short = books["long_short"]
    assert short["k"] == 2 and short["rebalance"] == 4
    for name in ("model", "baseline_oracle", "baseline_noise"):
        book = short[name]
        assert book["n_entries"] == 24 * 20 // 4
        assert book["ci_low_bps"] <= book["mean_bps"] <= book["ci_high_bps"]
        assert book["cost_bps"] <= 20.0 * book["n_entries"] + 1e-9  # at most a trip each
        saved = book["net_bps"] - book["net_bps_every_round_trip"]
        assert book["cost_bps"] + saved == pytest.approx(20.0 * book["n_entries"])
    assert short["baseline_oracle"]["t_stat"] > 2
    assert short["baseline_oracle"]["t_model_minus_this"] < -2
    assert "t_model_minus_this" not in short["model"]


def test_the_console_line_says_when_the_book_held_fewer_than_k_a_side(caplog):
    run = constructed_run()  # 8 coins
    figures = {"net_bps": 1.0, "n_trades": 1, "sharpe": 0.1, "t_stat": 0.1}
    figures |= {"ci_low": -0.001, "ci_high": 0.002}
    cfg = OmegaConf.create({"book": BOOK | {"k": 6}})
    books = books_section(run, cfg, figures, np.zeros(20), 24 * 365.25)
    assert books["long_short"]["model"]["side_mean"] == 4  # half the 8 coins
    with caplog.at_level("INFO"):
        log_factor_lines({"books": books})
    assert "long-short k=6 (4.0 held) every 4 bars" in caplog.text
    caplog.clear()
    books = books_section(run, OmegaConf.create({"book": BOOK}), figures, np.zeros(20), 24 * 365.25)
    with caplog.at_level("INFO"):
        log_factor_lines({"books": books})
    assert "long-short k=2 every 4 bars" in caplog.text


def test_results_gain_the_long_short_rows_only_with_book_long_short():
    run = constructed_run()
    results = pd.DataFrame({"asset": run.arrays.symbols, "cluster": 0, "net_bps": 0.0})
    clusters = np.zeros(8, dtype=int)
    default = OmegaConf.create({"book": {**BOOK, "kind": "long_only"}})
    assert with_long_short_rows(results, run, default, clusters, 8766.0) is results
    assert with_long_short_rows(results, run, OmegaConf.create({}), clusters, 8766.0) is results
    chosen = OmegaConf.create({"book": {**BOOK, "kind": "long_short"}})
    table = with_long_short_rows(results, run, chosen, clusters, 8766.0)
    assert list(table.columns) == ["book", "asset", "cluster", "net_bps"]
    assert table["book"].tolist() == ["long_only"] * 8 + ["long_short"] * 8
    short = table[table["book"] == "long_short"]
    assert short["asset"].tolist() == run.arrays.symbols
    books = books_section(
        run,
        chosen,
        {k: 0 for k in ("net_bps", "n_trades", "sharpe")}
        | {"t_stat": 0, "ci_low": 0, "ci_high": 0},
        np.zeros(20),
        8766.0,
    )
    # a position per asset-rebalance, every position one unit: the book is their mean / (2k)
    assert short["net_bps"].sum() / 4 == pytest.approx(books["long_short"]["model"]["net_bps"])


def test_a_rebalance_that_is_no_label_horizon_stops_the_run_before_training():
    from conftest import ROOT
    from hydra import compose, initialize_config_dir

    from huracan.config import validate
    from huracan.errors import ConfigError

    with initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"):
        good = compose("config", overrides=["book=long_short", "book.rebalance=4"])
        bad = compose("config", overrides=["book=long_short", "book.rebalance=5"])
        kind = compose("config", overrides=["book.kind=both"])
    validate(good)
    assert good.book.kind == "long_short" and good.book.k == 5
    with pytest.raises(ConfigError, match=r"book.rebalance=5 is not one of labels.horizons"):
        validate(bad)
    with pytest.raises(ConfigError, match="book.kind"):
        validate(kind)
