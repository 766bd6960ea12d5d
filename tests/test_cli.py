"""The ``huracan`` command: usage, unknown commands, train from another directory, download."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import ccxt
import pandas as pd
import pytest
from fake_binance import FakeBinance, binance_client

from huracan import cli
from huracan.errors import ConfigError
from huracan.overrides import check_overrides
from huracan.report import INTERRUPTED


def test_usage_lists_every_command(capsys):
    assert cli.main([]) == 2
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for command in [*cli.HYDRA_APPS, *cli.TOOLS]:
        assert f"  {command}" in text


def test_unknown_command_is_one_line_with_a_suggestion(capsys):
    assert cli.main(["trian"]) == 2
    assert "unknown command 'trian' (did you mean 'train'?)" in capsys.readouterr().err


def test_train_runs_from_any_directory(tmp_path):
    """``python -m huracan train`` outside the clone: the shipped config, outputs in cwd."""
    out = subprocess.run(
        [sys.executable, "-m", "huracan", "train", "pipeline=data", "debug=fast"]
        + ["hydra.run.dir=run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"]["n_assets"] == 6
    assert (tmp_path / "run" / "train.log").exists()


def test_mechanic_is_train_with_the_mechanic_pipeline(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "huracan", "mechanic", "--cfg", "job", "mechanic.max_cycles=2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "huracan.pipelines.mechanic.run.MechanicPipeline" in out.stdout
    assert "max_cycles: 2" in out.stdout


def test_download_fetches_then_appends_only_new_bars(tmp_path, monkeypatch, capsys):
    now = {"t": pd.Timestamp("2024-03-01 00:00", tz="UTC")}  # bars before it are closed
    fake = FakeBinance(
        pd.Timestamp("2024-02-27", tz="UTC").value // 10**6,
        lambda: now["t"].value / 1e9,
        books={"BTCUSDT": (100.0, 100.02), "ETHUSDT": (50.0, 50.05)},
        tickers={},
    )
    client = binance_client(fake)  # the real client, its transport the fake exchange
    monkeypatch.setattr(ccxt, "binance", lambda config: client)
    args = ["download", "--symbols", "BTC,ETH", "--start", "2024-02-27"]
    args += ["--cache-dir", str(tmp_path), "--no-quotes"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert "BTC  +72 bars" in first and "ETH  +72 bars" in first
    cached = pd.read_parquet(tmp_path / "binance" / "1h" / "BTC.parquet")
    assert len(cached) == 72
    now["t"] += pd.Timedelta(hours=3)
    assert cli.main(args) == 0
    assert "BTC  +3 bars" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["download", "--symbols", ","], ["download"]])
def test_download_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        sys.exit(cli.main(argv))
    assert stop.value.code == 2


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["cluster=wardd"], "cluster=wardd: no such option; cluster is one of average"),
        (["experiment=fleet_binanc"], "(did you mean fleet_binance?)"),
        (["data.n_asset=5"], "data.n_asset: no such key in data (did you mean data.n_assets?)"),
        (["data.path=DIR"], "it belongs to data=csv: add data=csv to the command"),
        (["-m", "cluster=ward,globl"], "cluster=globl: no such option"),
        (["foo=1"], "foo: no such key in the config (+foo=... adds a new one)"),
        pytest.param(
            ["-m", "hydra/launcher=submitit_slurm"],
            "needs SLURM, and 'srun' is not on PATH",
            marks=pytest.mark.skipif(shutil.which("srun") is not None, reason="SLURM is here"),
        ),
    ],
)
def test_config_mistakes_are_one_line_with_the_closest_spelling(words, message):
    with pytest.raises(ConfigError) as err:
        check_overrides(words, cli.config_dir())
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "words",
    [
        ["data=csv", "data.path=DIR", "data.symbols=[BTC,ETH]"],
        ["+extra=1", "~logger", "hydra/launcher=joblib", "hydra.run.dir=x", "--cfg", "job"],
        ["-m", "cluster=ward,global", "head.patience=choice(2,4)"],
        ["-m", "cluster=glob(*,exclude=ward)", "cluster.n_clusters=4"],
        ["--config-dir=/tmp/my_conf", "data=mine", "data.rows=5"],
        ["hydra.searchpath=[file:///tmp/my_conf]", "data=mine"],
    ],
)
def test_valid_overrides_pass(words):
    check_overrides(words, cli.config_dir())


def test_a_config_mistake_exits_2_with_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "huracan", "train", "cluster=wardd"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "did you mean ward?" in out.stderr
    assert not (tmp_path / "outputs").exists()  # refused before Hydra made a run folder


def _start(tmp_path, *words):
    return subprocess.Popen(
        [sys.executable, "-m", "huracan", "train", *words, "hydra.run.dir=run"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _catches(pid: int, number: int) -> bool:
    """Whether the process has installed a handler for signal ``number`` (Linux)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(
        next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16
    )
    return bool(mask >> (number - 1) & 1)


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_sigterm_at_start_up_exits_130_without_a_traceback(tmp_path):
    run = _start(tmp_path, "debug=fast")
    _wait_for(lambda: run.poll() is not None or _catches(run.pid, signal.SIGTERM))
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].endswith("interrupted")


def test_ctrl_c_during_a_fold_names_the_stage_and_marks_the_run(tmp_path):
    run = _start(tmp_path, "debug=fast")
    log = tmp_path / "run" / "train.log"
    _wait_for(lambda: run.poll() is not None or (log.exists() and "[features]" in log.read_text()))
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, err[-2000:]
    assert "Traceback" not in out + err
    marker = json.loads((tmp_path / "run" / INTERRUPTED).read_text())
    # in a fold, or between two stages when the signal lands there
    assert marker["stopped"].startswith(("at fold ", "after "))
    last = (out + err).strip().splitlines()[-1]  # the run's log goes to stdout
    assert f"interrupted {marker['stopped']}; outputs in" in last
    assert not (tmp_path / "run" / "summary.json").exists()


def test_compare_skips_an_interrupted_run(tmp_path):
    from test_compare import daily, write_run

    from huracan.compare import gather

    for name in ("0", "1"):
        write_run(tmp_path, name, daily(5.0, seed=int(name)))
    (tmp_path / "1" / INTERRUPTED).write_text('{"stopped": "at fold 2/5"}\n')
    assert list(gather(tmp_path).index) == ["0"]


def test_library_info_lines_reach_the_log_file_not_the_console(tmp_path):
    import io
    import logging

    from huracan.run import quiet_libraries

    console, root = io.StringIO(), logging.getLogger()
    handlers = [logging.StreamHandler(console), logging.FileHandler(tmp_path / "train.log")]
    saved = root.handlers[:], root.level
    root.handlers[:] = handlers
    root.setLevel(logging.INFO)
    try:
        quiet_libraries()
        logging.getLogger("distributed.scheduler").info("State start")
        logging.getLogger("distributed.worker").warning("Worker exceeded 95% memory budget")
        logging.getLogger("huracan").info("[data] 0.01 s")
        logging.getLogger("py.warnings").warning("RuntimeWarning: Mean of empty slice")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        handlers[1].close()
    assert "State start" not in console.getvalue()
    assert "95% memory" in console.getvalue() and "[data]" in console.getvalue()
    assert "Mean of empty slice" not in console.getvalue()
    logged = (tmp_path / "train.log").read_text()
    assert "State start" in logged and "Mean of empty slice" in logged


def test_two_signals_keep_the_stage_the_first_one_stopped():
    from huracan.errors import INTERRUPTS, Interrupted
    from huracan.report import StageTimer, where_stopped

    timer = StageTimer()
    try:
        with pytest.raises(Interrupted):
            with timer("outer"):
                with timer("fold 2/5"):
                    INTERRUPTS.extend(["SIGINT", "SIGTERM"])  # a second signal at once
                    raise Interrupted("SIGINT")
        assert where_stopped() == "at fold 2/5"
    finally:
        INTERRUPTS.clear()
        import huracan.report as report

        report._stopped.clear()
