"""Issue 12, data layer: bad values, timestamps and files give a named error or a recorded skip."""

from __future__ import annotations

import importlib.util
import logging
import math
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, make_bars
from omegaconf import OmegaConf

from huracan.data import CsvSource, GateThresholds, SyntheticMarket
from huracan.data.validate import MAX_BAR_MOVE, validate_bars
from huracan.errors import ConfigError, DataError
from huracan.pipelines.base import DataPipeline
from huracan.report import StageTimer
from huracan.run import load_and_gate


def load(directory, **kwargs):
    return CsvSource(str(directory), **kwargs).load()


def gate_report(directory, on_error="skip", **data):
    """The run's own data stage (what becomes gates.json), with every gate limit off."""
    gates = dict.fromkeys(GateThresholds.__dataclass_fields__) | {"until": None}
    cfg = OmegaConf.create(
        {
            "data": {
                "_target_": "huracan.data.CsvSource",
                "path": str(directory),
                "on_error": on_error,
                **data,
            },
            "gates": gates,
            "costs": {"fee_bps": 10.0},
        }
    )
    return load_and_gate(cfg, DataPipeline(), StageTimer())


def write_text_csv(path, frame, row, column, text):
    """Writes ``frame`` as CSV with one cell replaced by ``text`` exactly as written."""
    frame = frame.astype({column: object})
    frame.loc[row, column] = text
    frame.to_csv(path, index=False)


def good_folder(tmp_path, symbols=("BTC", "ETH")):
    for k, symbol in enumerate(symbols):
        make_bars(seed=k).to_csv(tmp_path / f"{symbol}.csv", index=False)
    return tmp_path


# --- values --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("column", "text", "code", "shown"),
    [
        ("high", "inf", "non_finite:high", "inf"),
        ("low", "-inf", "non_finite:low", "-inf"),
        ("close", "1e309", "non_finite:close", "inf"),  # overflows to inf when parsed
        ("volume", "1e309", "non_finite:volume", "inf"),
        ("open", "1e308", "implausible_value:open", "1e+308"),
        ("volume", "1e308", "implausible_value:volume", "1e+308"),
    ],
)
def test_non_finite_and_absurd_values_name_file_row_and_column(tmp_path, column, text, code, shown):
    good_folder(tmp_path)
    write_text_csv(tmp_path / "SOL.csv", make_bars(seed=5), 9, column, text)
    with pytest.raises(DataError) as err:
        load(tmp_path)
    message = str(err.value)
    assert "SOL.csv, row 10:" in message and column in message
    assert f"(value {shown})" in message  # the column's own value, not the close's
    panel, report = gate_report(tmp_path)
    assert panel.symbols == ["BTC", "ETH"]
    [reason] = report.skip_reasons["SOL"]
    assert reason["code"] == f"bad_rows:{code}" and "SOL.csv, row 10" in reason["message"]
    dropped = load(tmp_path, on_error="drop_rows")
    assert dropped.filled[:, dropped.index_of("SOL")].sum() == 1  # the dropped bar, filled
    assert sum(d.count for d in dropped.drops if d.reason == f"bad_rows:{code}") == 1
    assert np.isfinite(dropped.frame("SOL").dropna().to_numpy()).all()


def test_minus_inf_low_is_not_reported_with_the_close(tmp_path):
    bars = make_bars(seed=5)
    write_text_csv(tmp_path / "SOL.csv", bars, 3, "low", "-inf")
    with pytest.raises(DataError, match=r"row 4: low is not finite \(value -inf\)"):
        load(tmp_path)


def test_boolean_volume_column_is_a_type_error(tmp_path):
    good_folder(tmp_path)
    bars = make_bars(seed=5)
    bars["volume"] = bars["volume"] > 15
    bars.to_parquet(tmp_path / "SOL.parquet", index=False)
    with pytest.raises(DataError, match=r"SOL\.parquet: column 'volume' has type bool"):
        load(tmp_path)
    _, report = gate_report(tmp_path)
    assert report.skip_reasons["SOL"][0]["code"] == "file_error"
    assert "SOL.parquet" in report.skip_reasons["SOL"][0]["message"]


def test_nullable_numbers_in_parquet_are_read(tmp_path):
    bars = make_bars(seed=5).astype({"volume": "Float64"})
    bars.loc[3, "volume"] = pd.NA
    bars.to_parquet(tmp_path / "SOL.parquet", index=False)
    with pytest.raises(DataError, match=r"row 4: volume is empty"):
        load(tmp_path)


# --- implausible moves -------------------------------------------------------------------
def tick(factor: float, row: int = 20) -> pd.DataFrame:
    bars = make_bars(seed=5)
    bars.loc[row, ["close", "high"]] *= factor
    bars.loc[row, "low"] = min(bars.loc[row, "low"] * factor, bars.loc[row, "low"])
    bars.loc[row, "high"] = bars.loc[row, ["open", "high", "close"]].max()
    return bars


@pytest.mark.parametrize("factor", [1000.0, 0.001])
def test_a_bad_tick_is_a_bad_row(tmp_path, factor):
    good_folder(tmp_path)
    tick(factor).to_csv(tmp_path / "SOL.csv", index=False)
    with pytest.raises(DataError, match=r"SOL\.csv, row 21: close moved more than") as err:
        load(tmp_path)
    bars = tick(factor)
    move = abs(math.log(bars.loc[20, "close"] / bars.loc[19, "close"]))
    assert f"close={float(bars.loc[20, 'close'])!r} after close=" in str(err.value)
    assert f"at row 20, |log move| {move:.2f}" in str(err.value)
    _, report = gate_report(tmp_path)
    assert report.skip_reasons["SOL"][0]["code"] == "bad_rows:implausible_move"
    # drop_rows: the tick and the bar moving back from it are dropped and counted
    panel = load(tmp_path, on_error="drop_rows")
    [drop] = [d for d in panel.drops if d.reason == "bad_rows:implausible_move"]
    assert drop.symbol == "SOL" and drop.count == 2
    close = panel.frame("SOL")["close"].dropna()
    assert np.abs(np.diff(np.log(close))).max() < 0.1


# the audit's ticks: a high x1000 under an unchanged close, a low of 1e-8, a high below the body
WHOLE_BAR_TICKS = {
    "high x1000": ("high", lambda bars: bars.loc[20, "high"] * 1000, "implausible_move:high"),
    "low 1e-8": ("low", lambda bars: 1e-8, "implausible_move:low"),
    "high below body": (
        "high",
        lambda bars: bars.loc[20, ["open", "close"]].min() * 0.999,
        "high_below_body",
    ),
    "low above body": (
        "low",
        lambda bars: bars.loc[20, ["open", "close"]].max() * 1.001,
        "low_above_body",
    ),
}


@pytest.mark.parametrize("case", list(WHOLE_BAR_TICKS))
def test_open_high_and_low_are_checked_as_the_close_is(tmp_path, case):
    column, value, code = WHOLE_BAR_TICKS[case]
    good_folder(tmp_path)
    bars = make_bars(seed=5)
    bars.loc[20, column] = value(bars)
    bars.to_csv(tmp_path / "SOL.csv", index=False)
    with pytest.raises(DataError, match=rf"SOL\.csv, row 21: {column}") as err:
        load(tmp_path)
    assert f"{column}={float(bars.loc[20, column])!r}" in str(err.value)
    _, report = gate_report(tmp_path)
    assert report.skip_reasons["SOL"][0]["code"] == f"bad_rows:{code}"
    # drop_rows: only the bar holding the bad tick goes; the close never moved
    panel = load(tmp_path, on_error="drop_rows")
    dropped = [(d.symbol, d.reason, d.count) for d in panel.drops if d.reason != "forward_filled"]
    assert dropped == [("SOL", f"bad_rows:{code}", 1)]
    sol = panel.frame("SOL").dropna()
    assert (sol["high"] >= sol[["open", "close"]].max(axis=1)).all()
    assert (sol["low"] <= sol[["open", "close"]].min(axis=1)).all()
    assert (np.log(sol["high"] / sol["low"]) < 0.1).all()


def test_a_bad_open_is_measured_from_the_previous_close(tmp_path):
    bars = make_bars(seed=5)
    bars.loc[30, ["open", "low"]] = bars.loc[30, "close"] * 0.5, bars.loc[30, "close"] * 0.5
    bars.to_csv(tmp_path / "SOL.csv", index=False)
    assert load(tmp_path).n_assets == 1  # ln 2 is a move the default limit allows
    with pytest.raises(DataError, match=r"row 31: open lies more than data.max_bar_move=0.5"):
        load(tmp_path, max_bar_move=0.5)


def test_max_bar_move_is_configurable_and_switches_off(tmp_path):
    tick(5.0).to_csv(tmp_path / "SOL.csv", index=False)  # ln 5 = 1.61
    assert load(tmp_path).n_assets == 1  # under the default ln(50)
    with pytest.raises(DataError, match="max_bar_move=1"):
        load(tmp_path, max_bar_move=1.0)
    tick(1000.0).to_csv(tmp_path / "SOL.csv", index=False)
    assert load(tmp_path, max_bar_move=None).n_assets == 1
    with pytest.raises(ConfigError, match="max_bar_move"):
        CsvSource(str(tmp_path), max_bar_move=-1)
    with pytest.raises(ConfigError, match="max_bar_move"):
        CsvSource(str(tmp_path), max_bar_move="big")


def test_move_is_measured_in_time_order_and_unsorted_files_too(tmp_path):
    bars = make_bars(seed=5)
    bars = bars.iloc[[0, 1, 3, 2, *range(4, len(bars))]].reset_index(drop=True)
    bars.to_csv(tmp_path / "SOL.csv", index=False)
    panel = load(tmp_path, on_error="drop_rows")  # a move back and forth is no big move
    assert [d.reason for d in panel.drops] == ["bad_rows:unsorted"]


def test_default_move_limit_passes_the_synthetic_market():
    panel = SyntheticMarket(n_assets=12, years=1.0, seed=0).load()
    moves = np.abs(np.diff(np.log(panel.close), axis=0))
    assert np.nanmax(moves) < MAX_BAR_MOVE / 10
    assert SyntheticMarket(max_bar_move=2.0).max_bar_move == 2.0


# --- timestamps ----------------------------------------------------------------------------
def test_a_row_in_2100_is_a_bad_row_and_does_not_stretch_the_panel(tmp_path):
    good_folder(tmp_path)
    write_text_csv(tmp_path / "SOL.csv", make_bars(seed=5), 30, "timestamp", "2100-01-01T00:00Z")
    with pytest.raises(DataError, match=r"SOL\.csv, row 31: timestamp in the future"):
        load(tmp_path)
    panel = load(tmp_path, on_error="drop_rows")
    assert panel.n_bars == 48
    _, report = gate_report(tmp_path)
    assert report.skip_reasons["SOL"][0]["code"] == "bad_rows:future_timestamp"


def test_future_means_beyond_now_plus_one_bar():
    bars = make_bars(n=10, start="2024-01-01T00:00Z")
    now = pd.Timestamp("2024-01-01T08:30Z")  # bar 9 opens at 09:00, within one bar of now
    frame, problems = validate_bars(bars, "X.csv", "drop_rows", now=now)
    assert problems == [] and len(frame) == 10
    _, problems = validate_bars(bars, "X.csv", "drop_rows", now=now - pd.Timedelta("1h"))
    assert [(p.code, list(p.rows)) for p in problems] == [("future_timestamp", [9])]


def test_epoch_milliseconds_in_the_future_are_bad_rows(tmp_path):
    bars = make_bars(seed=5)
    ms = pd.to_datetime(bars["timestamp"]).dt.as_unit("ms").astype("int64")
    bars["timestamp"] = ms.where(ms.index != 40, 4_070_908_800_000)  # 2099
    bars.to_csv(tmp_path / "SOL.csv", index=False)
    with pytest.raises(DataError, match=r"SOL\.csv, row 41: timestamp in the future"):
        load(tmp_path)


@pytest.mark.parametrize("on_error", ["raise", "skip", "drop_rows"])
def test_year_9999_is_a_named_bad_row_not_a_pandas_traceback(tmp_path, on_error):
    good_folder(tmp_path)
    write_text_csv(tmp_path / "SOL.csv", make_bars(seed=5), 7, "timestamp", "9999-12-31T00:00Z")
    if on_error == "raise":
        with pytest.raises(DataError, match=r"SOL\.csv, row 8: timestamp beyond the year 2262"):
            load(tmp_path)
        return
    panel, report = gate_report(tmp_path, on_error)
    if on_error == "skip":
        assert report.skip_reasons["SOL"][0]["code"] == "bad_rows:future_timestamp"
        assert "SOL.csv, row 8" in report.skip_reasons["SOL"][0]["message"]
    else:
        assert "SOL" in panel.symbols and panel.n_bars == 48


def test_timestamps_before_2000_are_bad_rows(tmp_path):
    write_text_csv(tmp_path / "SOL.csv", make_bars(seed=5), 0, "timestamp", "1970-01-01T00:00Z")
    with pytest.raises(DataError, match=r"SOL\.csv, row 1: timestamp before 2000"):
        load(tmp_path)


def zoned(bars: pd.DataFrame, naive_from: int | None) -> pd.DataFrame:
    local = pd.to_datetime(bars["timestamp"]).dt.tz_convert("Asia/Singapore")
    text = local.dt.strftime("%Y-%m-%dT%H:%M:%S+08:00")
    if naive_from is not None:
        naive = local.dt.strftime("%Y-%m-%dT%H:%M:%S")
        text = text.where(np.arange(len(bars)) < naive_from, naive)
    return bars.assign(timestamp=text)


def test_mixed_zone_aware_and_naive_rows_are_an_error(tmp_path):
    good_folder(tmp_path)
    zoned(make_bars(seed=5), naive_from=40).to_csv(tmp_path / "SOL.csv", index=False)
    with pytest.raises(DataError, match=r"SOL\.csv, row 41: timestamps mix zone-aware"):
        load(tmp_path)
    for policy in ("skip", "drop_rows"):
        _, report = gate_report(tmp_path, policy)
        assert report.skip_reasons["SOL"][0]["code"] == "file_error"


def test_one_zone_throughout_is_converted_to_utc(tmp_path):
    bars = make_bars(seed=5)
    zoned(bars, naive_from=None).to_csv(tmp_path / "SOL.csv", index=False)
    panel = load(tmp_path)
    assert panel.timestamps[0] == pd.Timestamp("2024-01-01T00:00Z")
    np.testing.assert_allclose(panel.close[:, 0], bars["close"])


def test_parquet_timestamp_columns_are_read(tmp_path):
    bars = make_bars(seed=5)
    bars["timestamp"] = pd.to_datetime(bars["timestamp"]).dt.tz_localize(None)  # naive = UTC
    bars.to_parquet(tmp_path / "SOL.parquet", index=False)
    assert load(tmp_path).timestamps[0] == pd.Timestamp("2024-01-01T00:00Z")


# --- files ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["dangling", "loop", "directory"])
def test_unusable_entries_are_an_error_or_a_recorded_skip(tmp_path, kind):
    good_folder(tmp_path)
    entry = tmp_path / "XRP.csv"
    if kind == "dangling":
        entry.symlink_to(tmp_path / "gone.csv")
    elif kind == "loop":
        entry.symlink_to(entry)
    else:
        entry.mkdir()
    message = {"dangling": "does not exist", "loop": "loops", "directory": "is a directory"}
    with pytest.raises(DataError, match=rf"XRP\.csv: .*{message[kind]}"):
        load(tmp_path)
    with pytest.raises(DataError, match=message[kind]):
        load(tmp_path, symbols=["XRP"])
    assert load(tmp_path, symbols=["BTC"]).symbols == ["BTC"]  # not asked for: not read
    panel, report = gate_report(tmp_path)
    assert panel.symbols == ["BTC", "ETH"]
    [reason] = report.skip_reasons["XRP"]
    assert reason["code"] == "file_error" and "XRP.csv" in reason["message"]


def test_symlinks_out_of_the_folder_are_followed(tmp_path):
    store = tmp_path / "store"
    (tmp_path / "data").mkdir()
    folder = good_folder(tmp_path / "data")
    store.mkdir()
    make_bars(seed=7).to_csv(store / "SOL.csv", index=False)
    (folder / "SOL.csv").symlink_to(store / "SOL.csv")
    panel = load(folder)
    assert panel.symbols == ["BTC", "ETH", "SOL"]
    np.testing.assert_allclose(panel.frame("SOL")["close"], make_bars(seed=7)["close"])


def test_unsafe_file_name_is_named_and_skipped_under_a_safe_label(tmp_path):
    good_folder(tmp_path)
    make_bars(seed=5).to_csv(tmp_path / "SO$L.csv", index=False)
    with pytest.raises(DataError, match=r"SO\$L\.csv: unsafe file name"):
        load(tmp_path)
    panel, report = gate_report(tmp_path)
    assert panel.symbols == ["BTC", "ETH"]
    [label] = report.skipped
    assert label == "_SO_L_CSV"  # a key-safe stand-in, never a real symbol
    assert "SO$L.csv" in report.skip_reasons[label][0]["message"]


def test_two_files_for_one_symbol_skip_it_naming_both(tmp_path):
    good_folder(tmp_path)
    make_bars(seed=5).to_csv(tmp_path / "SOL.csv", index=False)
    make_bars(seed=6).to_csv(tmp_path / "SOLUSDT.csv.gz", index=False)
    with pytest.raises(DataError, match=r"SOLUSDT\.csv\.gz: files 'SOL\.csv' and 'SOLUSDT"):
        load(tmp_path)
    panel, report = gate_report(tmp_path)
    assert panel.symbols == ["BTC", "ETH"]
    message = report.skip_reasons["SOL"][0]["message"]
    assert "'SOL.csv'" in message and "'SOLUSDT.csv.gz'" in message


def test_a_coin_on_another_timeframe_is_skipped_naming_its_file(tmp_path):
    good_folder(tmp_path, ("BTC", "ETH", "BNB"))
    make_bars(freq="4h", seed=5).to_csv(tmp_path / "SOL.csv", index=False)
    with pytest.raises(DataError, match=r"SOL\.csv: different bar length: 4h bars"):
        load(tmp_path)
    panel, report = gate_report(tmp_path)
    assert panel.symbols == ["BNB", "BTC", "ETH"] and panel.timeframe == "1h"
    assert "SOL.csv" in report.skip_reasons["SOL"][0]["message"]


def test_bars_off_the_grid_skip_the_symbol_naming_its_file(tmp_path):
    good_folder(tmp_path)
    bars = make_bars(seed=5)
    stamps = pd.to_datetime(bars["timestamp"]) + pd.Timedelta("30min")
    bars.assign(timestamp=stamps.dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(
        tmp_path / "SOL.csv", index=False
    )
    with pytest.raises(DataError, match=r"SOL\.csv: 48 bars are not on the 1h grid"):
        load(tmp_path)
    panel, report = gate_report(tmp_path)
    assert panel.symbols == ["BTC", "ETH"]
    reason = report.skip_reasons["SOL"][0]
    assert reason["code"] == "bad_rows:off_grid" and "SOL.csv" in reason["message"]


def test_repeated_column_names_are_an_error(tmp_path):
    make_bars(seed=5).assign(Close=1.0).to_csv(tmp_path / "SOL.csv", index=False)
    with pytest.raises(DataError, match=r"SOL\.csv: column\(s\) \['close'\] appear more"):
        load(tmp_path)


# --- the corpus ----------------------------------------------------------------------------
def test_the_whole_bad_data_corpus_meets_the_target(tmp_path):
    spec = importlib.util.spec_from_file_location("corpus", ROOT / "bench" / "bad_data_corpus.py")
    corpus = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = corpus  # dataclasses look their module up there
    spec.loader.exec_module(corpus)
    rows = corpus.run_corpus(tmp_path)
    assert len(rows) == len(corpus.CASES) >= 45
    missed = [r for r in rows if "FAIL" in r["raise"] + r["skip"]]
    assert missed == []
    assert sum(r["skip"] == "skip" for r in rows) == len(rows) - 2  # two valid inputs load


def test_rows_dropped_and_a_ragged_end_are_named_on_the_console(tmp_path, caplog):
    """data.on_error=drop_rows keeps the coin and drops its bad rows, and a file running
    past the others is cut at the panel's end: both are said on the console at the data
    stage, not only counted in summary.json."""
    from conftest import run_config

    data = tmp_path / "bars"
    data.mkdir()
    for i, name in enumerate(["BTC", "ETH", "SOL"]):
        bars = make_bars(n=48 + (12 if name == "SOL" else 0), seed=i)
        if name == "ETH":
            bars = pd.concat([bars.iloc[:10], bars.iloc[9:10], bars.iloc[10:]])  # a duplicate
        bars.to_csv(data / f"{name}.csv", index=False)
    cfg = run_config(
        tmp_path, "data=csv", f"data.path={data}", "data.on_error=drop_rows", "gates.until=null"
    )
    with caplog.at_level(logging.WARNING, logger="huracan"):
        load_and_gate(cfg, DataPipeline(), StageTimer())  # 2 days: the gates skip them all
    text = caplog.text
    assert "1 bad row(s) dropped (data.on_error=drop_rows): ETH: 1 duplicate_timestamp" in text
    assert "left out: only 1 symbol(s) reach past it (SOL" in text
