"""The malformed-folder corpus: every kind of bad input file, under ``raise`` and ``skip``.

Each case is a folder with good BTC, ETH and SOL files plus one bad file (XRP). The folder
is loaded as ``data=csv`` under ``data.on_error=raise`` and ``=skip``, through the run's
own data stage (``huracan.run.load_and_gate``, which writes ``gates.json``). One line per
case says what happened; the target is 0 raw tracebacks, every case a clear error naming
the file (and the row, where one row is at fault) or a skip recorded in the gate report.

Run: .venv/bin/python bench/bad_data_corpus.py
"""

from __future__ import annotations

import gzip
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from huracan.errors import HuracanError  # noqa: E402

GOOD = ("BTC", "ETH", "SOL")
N_BARS = 200


def bars(n: int = N_BARS, start: str = "2024-01-01", freq: str = "1h", seed: int = 0):
    """A clean OHLCV frame with ISO timestamps in UTC."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
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


def spoil(column: str, row: int, value: object, **kw) -> Callable[[], pd.DataFrame]:
    """A frame with one cell replaced (``row`` 0-based), as text so CSV keeps it as written."""

    def make() -> pd.DataFrame:
        frame = bars(**kw).astype({column: object})
        frame.loc[row, column] = value
        return frame

    return make


def csv_text(frame_fn: Callable[[], pd.DataFrame], name: str = "XRP.csv"):
    def write(folder: Path) -> None:
        frame_fn().to_csv(folder / name, index=False)

    return write


def raw_bytes(data: bytes, name: str = "XRP.csv"):
    def write(folder: Path) -> None:
        (folder / name).write_bytes(data)

    return write


def parquet(frame_fn: Callable[[], pd.DataFrame], name: str = "XRP.parquet"):
    def write(folder: Path) -> None:
        frame_fn().to_parquet(folder / name, index=False)

    return write


def bad_tick(factor: float, row: int = 50) -> Callable[[], pd.DataFrame]:
    def make() -> pd.DataFrame:
        frame = bars(seed=9)
        for col in ("high", "close"):
            frame.loc[row, col] *= factor
        frame.loc[row, "low"] = min(frame.loc[row, "low"] * factor, frame.loc[row, "low"])
        frame.loc[row, "high"] = max(frame.loc[row, ["open", "high", "close"]])
        return frame

    return make


def whole_bar(column: str, value: Callable[[pd.DataFrame], float], row: int = 60):
    """The audit's ticks: one open, high or low spoiled while the close stays as it was."""

    def make() -> pd.DataFrame:
        frame = bars(seed=9)
        frame.loc[row, column] = value(frame.loc[row])
        return frame

    return make


def mixed_zones() -> pd.DataFrame:
    frame = bars(seed=9)
    local = pd.to_datetime(frame["timestamp"]).dt.tz_convert("Asia/Singapore")
    aware = local.dt.strftime("%Y-%m-%dT%H:%M:%S+08:00")
    naive = local.dt.strftime("%Y-%m-%dT%H:%M:%S")  # the same clock times, zone forgotten
    frame["timestamp"] = np.where(np.arange(len(frame)) < 100, aware, naive)
    return frame


def bool_volume() -> pd.DataFrame:
    frame = bars(seed=9)
    frame["volume"] = frame["volume"] > 15
    return frame


def epoch_ms(offset_rows: dict[int, float] | None = None) -> Callable[[], pd.DataFrame]:
    def make() -> pd.DataFrame:
        frame = bars(seed=9)
        ms = pd.to_datetime(frame["timestamp"]).dt.as_unit("ms").astype("int64").astype(float)
        for row, value in (offset_rows or {}).items():
            ms.iloc[row] = value
        frame["timestamp"] = ms
        return frame

    return make


def symlink(target: str, name: str = "XRP.csv"):
    def write(folder: Path) -> None:
        (folder / name).symlink_to(target)

    return write


def symlink_outside(folder: Path) -> None:
    outside = folder.parent / f"{folder.name}-elsewhere"
    outside.mkdir()
    bars(seed=9).to_csv(outside / "XRP.csv", index=False)
    (folder / "XRP.csv").symlink_to(outside / "XRP.csv")


def directory(folder: Path) -> None:
    (folder / "XRP.csv").mkdir()


def symlink_loop(folder: Path) -> None:
    (folder / "XRP.csv").symlink_to(folder / "XRP.csv")


def two_files(folder: Path) -> None:
    bars(seed=9).to_csv(folder / "XRP.csv", index=False)
    bars(seed=9).to_csv(folder / "XRPUSDT.csv", index=False)


def header_only() -> bytes:
    return b"timestamp,open,high,low,close,volume\n"


def truncated_gzip() -> bytes:
    data = gzip.compress(bars(n=2000, seed=9).to_csv(index=False).encode())
    return data[: len(data) // 2]


def shifted(freq: str = "1h", offset: str = "30min") -> Callable[[], pd.DataFrame]:
    def make() -> pd.DataFrame:
        frame = bars(seed=9, freq=freq)
        stamps = pd.to_datetime(frame["timestamp"]) + pd.Timedelta(offset)
        frame["timestamp"] = stamps.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        return frame

    return make


def duplicated_column() -> pd.DataFrame:
    frame = bars(seed=9)
    frame.insert(5, "Close", frame["close"])
    return frame


def all_rows_bad() -> pd.DataFrame:
    frame = bars(seed=9)
    frame["close"] = -1.0
    return frame


@dataclass
class Case:
    """One malformed folder: the bad file's writer, and the 1-based row at fault, if any."""

    name: str
    write: Callable[[Path], None]
    row: int | None = None
    file: str = "XRP"  # part of the name the error must hold
    accepted: bool = False  # a valid input that must load (the bad symbol kept)


CASES = [
    Case("inf in high", csv_text(spoil("high", 10, "inf")), 11),
    Case("-inf in low", csv_text(spoil("low", 10, "-inf")), 11),
    Case("inf in volume", csv_text(spoil("volume", 10, "inf")), 11),
    Case("1e309 in open (overflows)", csv_text(spoil("open", 12, "1e309")), 13),
    Case("1e309 in close", csv_text(spoil("close", 12, "1e309")), 13),
    Case("1e309 in volume", csv_text(spoil("volume", 12, "1e309")), 13),
    Case("1e308 in high", csv_text(spoil("high", 14, "1e308")), 15),
    Case("1e308 in close", csv_text(spoil("close", 14, "1e308")), 15),
    Case("1e308 in volume", csv_text(spoil("volume", 14, "1e308")), 15),
    Case("nan in close", csv_text(spoil("close", 7, "nan")), 8),
    Case("bad tick x1000", csv_text(bad_tick(1000.0)), 51),
    Case("bad tick /1000", csv_text(bad_tick(0.001)), 51),
    Case("high x1000, close unchanged", csv_text(whole_bar("high", lambda b: b.high * 1000)), 61),
    Case("low = 1e-8", csv_text(whole_bar("low", lambda b: 1e-8)), 61),
    Case("open /1000", csv_text(whole_bar("open", lambda b: b.open / 1000)), 61),
    Case(
        "high below open and close",
        csv_text(whole_bar("high", lambda b: min(b.open, b.close) * 0.999)),
        61,
    ),
    Case(
        "low above open and close",
        csv_text(whole_bar("low", lambda b: max(b.open, b.close) * 1.001)),
        61,
    ),
    Case("boolean volume (parquet)", parquet(bool_volume)),
    Case("text in volume", csv_text(spoil("volume", 3, "abc")), 4),
    Case("zero price", csv_text(spoil("low", 3, 0.0)), 4),
    Case("negative price", csv_text(spoil("close", 3, -1.0)), 4),
    Case("high < low", csv_text(spoil("high", 4, 1.0)), 5),
    Case("negative volume", csv_text(spoil("volume", 6, -5.0)), 7),
    Case("empty cell", csv_text(spoil("open", 9, None)), 10),
    Case("every row bad", csv_text(all_rows_bad), 1),
    Case("row in 2100 (ISO)", csv_text(spoil("timestamp", 150, "2100-01-01T00:00:00Z")), 151),
    Case("row in 9999 (ISO)", csv_text(spoil("timestamp", 150, "9999-01-01T00:00:00Z")), 151),
    Case("row in 1970 (ISO)", csv_text(spoil("timestamp", 0, "1970-01-01T00:00:00Z")), 1),
    Case("epoch ms in 2099", csv_text(epoch_ms({150: 4_070_908_800_000.0})), 151),
    Case("epoch ms of 1e309", csv_text(epoch_ms({150: float("inf")})), 151),
    Case("unparseable timestamp", csv_text(spoil("timestamp", 5, "yesterday")), 6),
    Case("aware then naive (UTC+8)", csv_text(mixed_zones), 101),
    Case(
        "epoch seconds",
        csv_text(lambda: epoch_ms()().assign(timestamp=lambda f: f.timestamp / 1000)),
    ),
    Case(
        "duplicate timestamp",
        csv_text(lambda: pd.concat([bars(seed=9).iloc[:11], bars(seed=9).iloc[10:]])),
        12,
    ),
    Case("unsorted rows", csv_text(lambda: bars(seed=9).iloc[[0, 1, 3, 2, *range(4, N_BARS)]]), 4),
    Case("missing column", csv_text(lambda: bars(seed=9).drop(columns="volume"))),
    Case("misspelled column", csv_text(lambda: bars(seed=9).rename(columns={"close": "clsoe"}))),
    Case("column twice (close, Close)", csv_text(duplicated_column)),
    Case("semicolon separated", raw_bytes(bars(seed=9).to_csv(index=False, sep=";").encode())),
    Case("empty file", raw_bytes(b"")),
    Case("header only", raw_bytes(header_only())),
    Case("binary garbage .csv.gz", raw_bytes(b"not gzip at all", "XRP.csv.gz")),
    Case("truncated gzip", raw_bytes(truncated_gzip(), "XRP.csv.gz")),
    Case("garbage .parquet", raw_bytes(b"PAR1 not really", "XRP.parquet")),
    Case("dangling symlink", symlink("/nonexistent/XRP.csv")),
    Case("symlink loop", symlink_loop),
    Case("directory named XRP.csv", directory),
    Case("unsafe file name X$RP.csv", csv_text(lambda: bars(seed=9), "X$RP.csv"), file="X$RP"),
    Case(
        "file name XRP..X.csv.gz ('..')",
        csv_text(lambda: bars(seed=9), "XRP..X.csv.gz"),
        file="XRP..X",
    ),
    Case("two files for XRP", two_files, file="XRPUSDT"),
    Case("XRP on 4h bars", csv_text(lambda: bars(seed=9, freq="4h"))),
    Case("XRP bars at :30 (off grid)", csv_text(shifted())),
    Case("symlink out of the folder (followed)", symlink_outside, accepted=True),
    Case(
        "consistent +08:00 zone (converted)",
        csv_text(lambda: mixed_zones().iloc[:100]),
        accepted=True,
    ),
]


def build(case: Case, root: Path) -> Path:
    folder = root / case.name.replace(" ", "_").replace("/", "div").replace("$", "S")
    folder.mkdir()
    for k, symbol in enumerate(GOOD):
        bars(seed=k).to_csv(folder / f"{symbol}.csv", index=False)
    case.write(folder)
    return folder


def config(folder: Path, on_error: str):
    from omegaconf import OmegaConf

    from huracan.data import GateThresholds

    gates = dict.fromkeys(GateThresholds.__dataclass_fields__) | {"until": None}
    return OmegaConf.create(
        {
            "data": {
                "_target_": "huracan.data.CsvSource",
                "path": str(folder),
                "on_error": on_error,
            },
            "gates": gates,
            "costs": {"fee_bps": 10.0},
        }
    )


def outcome(case: Case, folder: Path, on_error: str) -> tuple[str, str]:
    """(verdict, text): ``error``, ``skip``, ``loaded``, or a failure of the target."""
    from huracan.pipelines.base import DataPipeline
    from huracan.report import StageTimer
    from huracan.run import load_and_gate

    try:
        panel, report = load_and_gate(config(folder, on_error), DataPipeline(), StageTimer())
    except HuracanError as err:
        text = str(err)
        named = case.file in text
        row_ok = case.row is None or f"row {case.row}" in text
        if case.accepted:
            return "FAIL: error on valid input", text
        if not named:
            return "FAIL: file not named", text
        if not row_ok:
            return f"FAIL: row {case.row} not named", text
        return "error", text
    except Exception as err:  # noqa: BLE001 - the corpus exists to find these
        tb = traceback.format_exception_only(type(err), err)[-1].strip()
        return "FAIL: raw traceback", tb
    bad = sorted(set(report.skip_reasons) - set(GOOD))
    if case.accepted:
        kept = "XRP" in panel.symbols and all(s in panel.symbols for s in GOOD)
        return ("loaded", f"{panel.n_assets} symbols") if kept else ("FAIL: not loaded", "")
    if not bad:
        return "FAIL: accepted", f"{panel.n_assets} symbols {panel.symbols}"
    if any(s in GOOD for s in report.skipped):
        return "FAIL: a good symbol skipped", str(report.skipped)
    symbol = bad[0]
    reasons = report.skip_reasons[symbol]
    if not reasons or symbol in panel.symbols:
        return "FAIL: not skipped", symbol
    text = f"{symbol} [{reasons[0]['code']}] {reasons[0]['message']}"
    if case.file not in reasons[0]["message"]:
        return "FAIL: skip does not name the file", text
    return "skip", text


def case_row(case: Case, root: Path) -> dict:
    """Builds one case's folder and loads it under both policies."""
    folder = build(case, root)
    raise_verdict, raise_text = outcome(case, folder, "raise")
    skip_verdict, skip_text = outcome(case, folder, "skip")
    return {
        "case": case.name,
        "raise": raise_verdict,
        "skip": skip_verdict,
        "raise_text": raise_text.replace(str(folder), "<dir>"),
        "skip_text": skip_text.replace(str(folder), "<dir>"),
    }


def run_corpus(root: Path) -> list[dict]:
    """Builds every case under ``root`` and returns one row per case."""
    import logging

    logger = logging.getLogger("huracan")
    level = logger.level
    logger.setLevel(logging.ERROR)  # the skips' warnings would drown the table
    try:
        rows = [case_row(case, root) for case in CASES]
    finally:
        logger.setLevel(level)
    return rows


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_corpus(Path(tmp))
    width = max(len(r["case"]) for r in rows)
    print(f"{'case':<{width}}  {'raise':<8}{'skip':<8}message (raise | skip)")
    print("-" * (width + 60))
    for r in rows:
        print(
            f"{r['case']:<{width}}  {r['raise']:<8}{r['skip']:<8}"
            f"{r['raise_text'][:110]} | {r['skip_text'][:110]}"
        )
    failures = [r for r in rows if r["raise"].startswith("FAIL") or r["skip"].startswith("FAIL")]
    tracebacks = sum(v == "FAIL: raw traceback" for r in rows for v in (r["raise"], r["skip"]))
    print(
        f"\n{len(rows)} cases: {tracebacks} raw tracebacks, {len(failures)} cases missing the "
        "target (a clear error naming the file and row, or a recorded skip)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
