"""data=csv: reading, validation of every bad input, symbol names, resampling, alignment."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from conftest import make_bars

from huracan.data import CsvSource
from huracan.data.files import symbol_from_filename
from huracan.errors import ConfigError, DataError


def load(directory, **kwargs):
    return CsvSource(str(directory), **kwargs).load()


def test_reads_clean_files_in_every_format(write_bars, tmp_path):
    write_bars({"BTCUSDT": make_bars(seed=1)}, ".csv.gz")
    write_bars({"eth_usdt": make_bars(seed=2)}, ".parquet")
    write_bars({"SOL": make_bars(seed=3)}, ".csv")
    panel = load(tmp_path)
    assert panel.symbols == ["BTC", "ETH", "SOL"]
    assert panel.timeframe == "1h"
    assert panel.close.shape == (48, 3)
    np.testing.assert_allclose(panel.frame("SOL")["close"].to_numpy(), make_bars(seed=3)["close"])


def test_epoch_millisecond_timestamps(write_bars):
    bars = make_bars()
    bars["timestamp"] = pd.to_datetime(bars["timestamp"]).dt.as_unit("ms").astype("int64")
    panel = load(write_bars({"BTC": bars}))
    assert panel.timestamps[0] == pd.Timestamp("2024-01-01", tz="UTC")


def test_epoch_seconds_get_a_clear_error(write_bars):
    bars = make_bars()
    bars["timestamp"] = pd.to_datetime(bars["timestamp"]).dt.as_unit("s").astype("int64")
    with pytest.raises(DataError, match="epoch seconds"):
        load(write_bars({"BTC": bars}))


@pytest.mark.parametrize(
    ("name", "symbol"),
    [
        ("BTC.csv", "BTC"),
        ("BTCUSDT.csv.gz", "BTC"),
        ("BTC_USDT.parquet", "BTC"),
        ("btc-usdc.csv", "BTC"),
        ("1INCHUSDT.csv", "1INCH"),
        ("USDC.csv", "USDC"),
    ],
)
def test_symbol_from_filename(name, symbol):
    assert symbol_from_filename(name) == symbol


def corrupt(bars: pd.DataFrame, column: str, row: int, value) -> pd.DataFrame:
    bars = bars.astype({column: object}).copy()
    bars.loc[row, column] = value
    return bars


BAD_INPUTS = {
    "unparseable_timestamp": (
        lambda b: corrupt(b, "timestamp", 5, "yesterday"),
        6,
        "unparseable timestamp",
    ),
    "non_numeric_price": (lambda b: corrupt(b, "close", 7, "12,5"), 8, "close is not a number"),
    "missing_price": (lambda b: corrupt(b, "open", 9, None), 10, "open is empty"),
    "zero_price": (lambda b: corrupt(b, "low", 3, 0.0), 4, "price <= 0"),
    "negative_price": (lambda b: corrupt(b, "close", 2, -1.0), 3, "price <= 0"),
    "high_below_low": (lambda b: corrupt(b, "high", 4, 1.0), 5, "high < low"),
    "negative_volume": (lambda b: corrupt(b, "volume", 6, -5.0), 7, "volume < 0"),
    "duplicate": (
        lambda b: pd.concat([b.iloc[:11], b.iloc[10:]]).reset_index(drop=True),
        12,
        "duplicate timestamp",
    ),
    "unsorted": (
        lambda b: b.iloc[[0, 1, 2, 4, 3] + list(range(5, len(b)))].reset_index(drop=True),
        5,
        "not sorted",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_rows_raise_with_file_and_row(case, write_bars):
    spoil, row, message = BAD_INPUTS[case]
    directory = write_bars({"BTC": spoil(make_bars()), "ETH": make_bars(seed=1)})
    with pytest.raises(DataError) as err:
        load(directory)
    assert "BTC.csv" in str(err.value)
    assert f"row {row}:" in str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_rows_skip_the_symbol_with_a_recorded_reason(case, write_bars):
    spoil, _, _ = BAD_INPUTS[case]
    directory = write_bars({"BTC": spoil(make_bars()), "ETH": make_bars(seed=1)})
    panel = load(directory, on_error="skip")
    assert panel.symbols == ["ETH"]
    [record] = [d for d in panel.drops if d.symbol == "BTC"]
    assert record.reason.startswith("bad_rows:")
    assert "BTC.csv" in record.detail


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_rows_dropped_and_counted(case, write_bars):
    spoil, _, _ = BAD_INPUTS[case]
    directory = write_bars({"BTC": spoil(make_bars()), "ETH": make_bars(seed=1)})
    panel = load(directory, on_error="drop_rows")
    assert panel.symbols == ["BTC", "ETH"]
    counted = sum(d.count for d in panel.drops if d.symbol == "BTC" and d.reason.startswith("bad_"))
    assert counted >= 1
    btc = panel.frame("BTC")
    assert btc.index.is_monotonic_increasing and btc.index.is_unique
    assert (btc[["open", "high", "low", "close"]].dropna() > 0).all().all()


def test_missing_and_misspelled_columns(write_bars):
    bars = make_bars().rename(columns={"close": "clsoe"})
    with pytest.raises(DataError, match=r"BTC\.csv.*missing column.*'close'.*'clsoe' -> 'close'"):
        load(write_bars({"BTC": bars}))


def test_column_names_are_case_and_alias_tolerant(write_bars):
    bars = make_bars().rename(columns={"timestamp": "Open_Time", "close": " Close "})
    assert load(write_bars({"BTC": bars})).n_assets == 1


def test_empty_and_unreadable_files(tmp_path):
    (tmp_path / "BTC.csv").write_text("")
    (tmp_path / "ETH.csv").write_text("timestamp,open,high,low,close,volume\n")
    (tmp_path / "SOL.csv.gz").write_bytes(b"not gzip at all")
    make_bars().to_csv(tmp_path / "XRP.csv", index=False)
    for symbol, message in (("BTC", "empty"), ("ETH", "no data rows"), ("SOL", "cannot be read")):
        with pytest.raises(DataError, match=message):
            load(tmp_path, symbols=[symbol])
    panel = load(tmp_path, on_error="skip")
    assert panel.symbols == ["XRP"]
    assert {d.symbol for d in panel.drops if d.reason == "file_error"} == {"BTC", "ETH", "SOL"}


def test_truncated_gzip_is_a_clear_error(tmp_path):
    data = gzip.compress(make_bars(n=500).to_csv(index=False).encode())
    (tmp_path / "BTC.csv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"BTC\.csv\.gz: file cannot be read"):
        load(tmp_path)


def test_unsafe_and_unknown_symbols(write_bars):
    directory = write_bars({"BTC": make_bars()})
    with pytest.raises(ConfigError, match="unsafe"):
        load(directory, symbols=["../x"])
    with pytest.raises(ConfigError, match=r"\['DOGE'\] not found.*available: \['BTC'\]"):
        load(directory, symbols=["DOGE"])


def test_two_files_for_one_symbol(write_bars, tmp_path):
    write_bars({"BTC": make_bars(), "BTCUSDT": make_bars()})
    with pytest.raises(DataError, match="both hold symbol BTC"):
        load(tmp_path)


def test_missing_directory_and_path():
    with pytest.raises(DataError, match="does not exist"):
        load("/nonexistent/dir")
    with pytest.raises(ConfigError, match="data.path"):
        CsvSource("???").load()


def test_alignment_keeps_late_listings_and_bounds_forward_fill(write_bars):
    late = make_bars(n=24, start="2024-01-02", seed=1)
    gappy = make_bars(n=48, seed=2).drop(index=[10, 11, 20, 21, 22, 23, 24]).reset_index(drop=True)
    panel = load(write_bars({"BTC": make_bars(), "NEW": late, "GAP": gappy}), max_ffill=3)
    new = panel.frame("NEW")
    assert new.loc[:"2024-01-01T23:00Z", "close"].isna().all()
    assert new.loc["2024-01-02T00:00Z":, "close"].notna().all()
    gap = panel.frame("GAP")
    assert (gap["close"].iloc[10:12] == gap["close"].iloc[9]).all()  # 2-bar gap: filled, flat
    assert (gap["volume"].iloc[10:12] == 0).all()
    assert gap["close"].iloc[20:25].isna().all()  # 5-bar gap: longer than 3, left empty
    reasons = {(d.symbol, d.reason): d.count for d in panel.drops}
    assert reasons[("GAP", "forward_filled")] == 2
    assert reasons[("GAP", "gap_too_long")] == 5
    assert panel.filled[:, panel.index_of("GAP")].sum() == 2


def test_resample_matches_ohlcv_aggregation(write_bars):
    bars = make_bars(n=96, start="2024-01-01T02:00Z").drop(index=[5]).reset_index(drop=True)
    panel = load(write_bars({"BTC": bars}), timeframe="4h", max_ffill=0)
    stamps = pd.to_datetime(bars["timestamp"]).dt.as_unit("ns")
    frame = bars.assign(timestamp=stamps).set_index("timestamp")
    expected = frame.resample("4h").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    got = panel.frame("BTC").loc[expected.index]
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_freq=False)
    assert panel.timeframe == "4h"
    assert panel.timestamps[0] == pd.Timestamp("2024-01-01T00:00Z")


def test_cannot_upsample_or_mix_timeframes(write_bars, tmp_path):
    write_bars({"BTC": make_bars(freq="1h"), "ETH": make_bars(freq="4h")})
    with pytest.raises(DataError, match=r"ETH\.csv: different bar length: 4h bars.*1h \(BTC\)"):
        load(tmp_path)
    with pytest.raises(DataError, match="whole multiple"):
        load(tmp_path, symbols=["BTC"], timeframe="30min")


def test_start_end_window(write_bars):
    panel = load(write_bars({"BTC": make_bars()}), start="2024-01-01T12:00Z", end="2024-01-02")
    assert panel.timestamps[0] == pd.Timestamp("2024-01-01T12:00Z")
    assert panel.n_bars == 12


def test_real_binance_files(binance_1h):
    panel = load(binance_1h)
    assert panel.n_assets == 46 and panel.timeframe == "1h"
    btc = panel.frame("BTC")
    assert btc.index[0] == pd.Timestamp("2020-05-11", tz="UTC")
    assert btc["close"].notna().sum() >= 34_976
    # Binance outages: short ones forward-filled, those over 3 hours left empty, all counted.
    reasons = {(d.symbol, d.reason) for d in panel.drops}
    assert ("BTC", "forward_filled") in reasons and ("BTC", "gap_too_long") in reasons
    wif = panel.frame("WIF")["close"]
    assert wif.first_valid_index() >= pd.Timestamp("2024-03-01", tz="UTC")
    assert wif.loc[: pd.Timestamp("2024-02-01", tz="UTC")].isna().all()
    pepe = panel.frame("PEPE")["close"].dropna()
    assert (pepe > 0).all() and pepe.min() < 1e-5


def test_resample_partial_bars_missing(write_bars):
    """partial_bars=missing: a 4h bar with any hour missing is a missing bar (then filled
    flat, flagged, where the gap is short); whole bins aggregate as with keep."""
    bars = make_bars(n=96, start="2024-01-01T02:00Z").drop(index=[20]).reset_index(drop=True)
    keep = load(write_bars({"BTC": bars}), timeframe="4h", max_ffill=0)
    strict = load(write_bars({"BTC": bars}), timeframe="4h", max_ffill=0, partial_bars="missing")
    first, holed = pd.Timestamp("2024-01-01T00:00Z"), pd.Timestamp("2024-01-01T20:00Z")
    got, kept = strict.frame("BTC"), keep.frame("BTC")
    assert got.loc[[first, holed]].isna().all().all()  # the listing's first bin, the hole's
    assert kept.loc[[first, holed], "close"].notna().all()
    whole = got.index[got["close"].notna()]
    assert len(whole) == len(kept) - 3  # and the last bin: the hours end mid-bin
    pd.testing.assert_frame_equal(got.loc[whole], kept.loc[whole])
    filled = load(write_bars({"BTC": bars}), timeframe="4h", max_ffill=1, partial_bars="missing")
    row = filled.timestamps.get_loc(holed)
    assert filled.filled[row, 0] and filled.volume[row, 0] == 0.0
    assert filled.close[row, 0] == filled.close[row - 1, 0]
    with pytest.raises(ConfigError, match="partial_bars"):
        load(write_bars({"BTC": bars}), timeframe="4h", partial_bars="drop")


def test_a_window_after_every_file_is_an_error_naming_the_window(write_bars):
    """data.start after the last bar of every file said only 'no symbol left to build a
    panel from'; it names the window and its settings."""
    directory = write_bars({"BTC": make_bars(seed=1)})
    with pytest.raises(DataError, match=r"no file has a bar in the window \[2030-01-01, None\)"):
        load(directory, start="2030-01-01")


def test_a_file_fetched_later_than_the_others_does_not_set_the_panels_end(write_bars):
    """One file running past the others (fetched later, or still updating) would move every
    window taken back from the end onto bars of that one coin: the panel ends where most
    of the recently traded files end, and the bars past it are counted per symbol."""
    frames = {f"C{i}": make_bars(n=48, seed=i) for i in range(5)}
    frames["LATE"] = make_bars(n=60, seed=9)  # 12 bars past the others
    panel = load(write_bars(frames))
    assert panel.n_bars == 48 and panel.timestamps[-1] == pd.Timestamp("2024-01-02T23:00Z")
    ragged = [d for d in panel.drops if d.reason == "ragged_end"]
    assert [(d.symbol, d.count) for d in ragged] == [("LATE", 12)]
    assert "only 1 symbol(s) reach past it (LATE" in ragged[0].detail
    np.testing.assert_allclose(panel.frame("LATE")["close"], make_bars(n=60, seed=9)["close"][:48])
    kept = load(write_bars(frames), ragged_end=None)
    assert kept.n_bars == 60 and not any(d.reason == "ragged_end" for d in kept.drops)
    # a file whose bars all lie past the end is left out, not kept as an empty column
    frames["AFTER"] = make_bars(n=6, start="2024-01-03T02:00Z", seed=8)
    panel = load(write_bars(frames))
    assert panel.n_bars == 48 and "AFTER" not in panel.symbols
    assert ("AFTER", 6) in [(d.symbol, d.count) for d in panel.drops if d.reason == "ragged_end"]


def test_delisted_coins_and_a_two_file_folder_keep_the_latest_bar(write_bars):
    """Coins delisted along the way are not a ragged end: most of those trading near the
    end reach it. Of 2 files, the one that reaches further is half of them."""
    frames = {f"C{i}": make_bars(n=48, seed=i) for i in range(4)}
    frames |= {f"D{i}": make_bars(n=20 + 5 * i, seed=10 + i) for i in range(3)}  # delisted
    panel = load(write_bars(frames))
    assert panel.n_bars == 48 and not any(d.reason == "ragged_end" for d in panel.drops)


def test_two_files_keep_the_longer_ones_bars(write_bars):
    panel = load(write_bars({"BTC": make_bars(n=48), "ETH": make_bars(n=30, seed=2)}))
    assert panel.n_bars == 48


def test_ragged_end_share_is_checked():
    from huracan.data.align import ragged_end_row

    close = np.ones((10, 3))
    with pytest.raises(ConfigError, match=r"data.ragged_end must be in \(0, 1\]"):
        ragged_end_row(close, 3_600 * 10**9, 1.5)
    close[7:, :2] = np.nan  # 2 of 3 end at row 6
    assert ragged_end_row(close, 3_600 * 10**9, 0.5) == 6
    assert ragged_end_row(close, 3_600 * 10**9, 0.3) == 9  # 1 of 3 is enough
    assert ragged_end_row(np.full((4, 2), np.nan), 3_600 * 10**9, 0.5) == 3
