from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

import pytest

from huracan.errors import ConfigError
from huracan.queue import DaskQueue, JobQueue, JobResult, JobSkipped, JobStatus, QueueReport

# Worker processes are spawned: they import this module by name to find `behave`, which
# works because pytest puts tests/ on sys.path and spawn hands sys.path to its children.


@dataclass(frozen=True)
class CoinJob:
    symbol: str
    x: int
    action: str = "square"
    skip_reason: str | None = None


def behave(job: CoinJob | dict) -> dict:
    """A stand-in for the per-coin pipeline: does what the job's action says."""
    symbol = job["symbol"] if isinstance(job, dict) else job.symbol
    action = job.get("action", "square") if isinstance(job, dict) else job.action
    x = job["x"] if isinstance(job, dict) else job.x
    logging.getLogger("huracan.test_job").info("fitting %s", symbol)
    if action == "raise":
        raise ValueError(f"no bars for {symbol}")
    if action == "skip":
        raise JobSkipped("too little history after costs")
    if action == "crash":
        os._exit(1)
    if action == "interrupt":
        raise KeyboardInterrupt
    if action == "not a dict":
        return [x]
    return {"square": x * x, "pid": os.getpid(), "trim": os.environ.get("MALLOC_TRIM_THRESHOLD_")}


def coins(*actions: str) -> list[CoinJob]:
    return [CoinJob(f"C{i}", i, action) for i, action in enumerate(actions)]


def assert_all_completed(report: QueueReport, jobs: list[CoinJob]) -> None:
    assert [r.symbol for r in report] == [job.symbol for job in jobs]
    for result, job in zip(report, jobs, strict=True):
        assert result.status is JobStatus.COMPLETED, result
        assert result.result["square"] == job.x**2
        assert result.attempts == 1
        assert result.seconds >= 0


def test_in_process_runs_every_job_here_and_logs_each_to_its_file(tmp_path):
    jobs = coins("square", "square", "square")
    root_handlers = list(logging.getLogger().handlers)
    report = JobQueue(log_dir=tmp_path, progress=False).run(behave, jobs)
    assert logging.getLogger().handlers == root_handlers
    assert_all_completed(report, jobs)
    assert {r.result["pid"] for r in report} == {os.getpid()}
    for result in report:
        assert result.log_path == tmp_path.resolve() / f"{result.symbol}.log"
        assert f"fitting {result.symbol}" in result.log_path.read_text()
    # The handler lives only for its job: C0's file holds nothing of C1.
    assert "C1" not in (tmp_path / "C0.log").read_text()


def test_two_workers_run_every_job_on_a_local_dask_cluster(tmp_path):
    jobs = coins(*["square"] * 6)
    report = JobQueue(workers=2, log_dir=tmp_path, progress=False).run(behave, jobs)
    assert_all_completed(report, jobs)
    assert os.getpid() not in {r.result["pid"] for r in report}
    assert "fitting C5" in (tmp_path / "C5.log").read_text()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_fails_alone_with_its_traceback_in_its_log(tmp_path, workers):
    jobs = coins("square", "raise", "square", "not a dict")
    report = JobQueue(workers=workers, log_dir=tmp_path, progress=False).run(behave, jobs)
    assert [r.status for r in report] == ["completed", "failed", "completed", "failed"]
    assert report["C1"].reason == "ValueError: no bars for C1"
    assert report["C1"].attempts == 1  # exceptions are not retried
    log = report["C1"].log_path.read_text()
    assert "Traceback (most recent call last)" in log
    assert "ValueError: no bars for C1" in log
    assert report["C3"].reason.startswith("TypeError: the job function returned list for C3")
    assert report["C2"].result["square"] == 4


def test_skips_given_or_raised_and_cached_jobs_never_run(tmp_path):
    jobs = [
        CoinJob("GATED", 1, action="raise", skip_reason="failed data gate: 12 bars"),
        CoinJob("CACHED", 2, action="raise"),
        CoinJob("THIN", 3, action="skip"),
        CoinJob("BTC", 4),
    ]
    report = JobQueue(log_dir=tmp_path, progress=False).run(
        behave, jobs, done=lambda job: job.symbol == "CACHED"
    )
    gated, cached, thin, btc = report
    assert (gated.status, gated.reason, gated.attempts) == (
        "skipped",
        "failed data gate: 12 bars",
        0,
    )
    assert (cached.status, cached.reason, cached.attempts) == ("completed", "cached", 0)
    assert gated.log_path is None and cached.log_path is None
    assert not (tmp_path / "GATED.log").exists()
    assert (thin.status, thin.reason, thin.attempts) == (
        "skipped",
        "too little history after costs",
        1,
    )
    assert btc.status is JobStatus.COMPLETED
    assert report.counts() == {
        "pending": 0,
        "running": 0,
        "completed": 2,
        "failed": 0,
        "skipped": 2,
    }


def test_dict_jobs_are_accepted():
    jobs = [{"symbol": "BTC", "x": 3}, {"symbol": "ETH", "x": 2, "skip_reason": "no data"}]
    report = JobQueue(progress=False).run(behave, jobs)
    assert report["BTC"].result["square"] == 9
    assert report["ETH"].status is JobStatus.SKIPPED


def test_a_worker_crash_fails_only_its_job_after_max_attempts(tmp_path):
    jobs = coins("square", "square", "crash", "square", "square", "square")
    report = JobQueue(workers=2, log_dir=tmp_path, max_attempts=2, progress=False).run(behave, jobs)
    crashed = report["C2"]
    assert (crashed.status, crashed.reason, crashed.attempts) == ("failed", "worker crashed", 2)
    assert "worker crashed" in crashed.log_path.read_text()
    others = [r for r in report if r.symbol != "C2"]
    assert all(r.status is JobStatus.COMPLETED for r in others), report.table()
    assert [r.result["square"] for r in others] == [0, 1, 9, 16, 25]


def test_local_workers_keep_glibcs_adaptive_malloc_thresholds(monkeypatch):
    """Dask's default MALLOC_TRIM_THRESHOLD_ made every array over 128 KB fault its pages
    anew: a per-coin job's torch work took 2.3x as long in a worker as in the run."""
    # A cluster started earlier in this process leaves the variable in its environment.
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    report = JobQueue(workers=2, progress=False).run(behave, coins("square", "square"))
    assert [r.result["trim"] for r in report] == [None, None]


def test_table_lists_every_job_in_order_with_counts():
    jobs = coins("square", "raise", "skip")
    report = JobQueue(progress=False).run(behave, jobs)
    lines = report.table().splitlines()
    assert lines[0].split() == ["symbol", "status", "seconds", "attempts", "reason"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["C0", "completed"],
        ["C1", "failed"],
        ["C2", "skipped"],
    ]
    assert lines[2].endswith("ValueError: no bars for C1")
    assert lines[3].split()[3] == "1"
    assert isinstance(report.results[0], JobResult)


def test_progress_bar_shows_counts_per_status(capsys):
    JobQueue(progress=True).run(behave, coins("square", "raise", "skip"))
    bar = capsys.readouterr().err
    assert "completed=0 failed=0 skipped=0 running=1 pending=2" in bar
    assert "completed=1 failed=1 skipped=1" in bar


def test_an_interrupt_stops_the_run_and_logs_what_finished(caplog):
    jobs = coins("square", "interrupt", "square")
    with caplog.at_level(logging.WARNING, logger="huracan.queue"):
        with pytest.raises(KeyboardInterrupt):
            JobQueue(progress=False).run(behave, jobs)
    assert (
        "job queue interrupted: completed=1 failed=0 skipped=0 running=1 pending=1" in caplog.text
    )


def test_bad_jobs_and_settings_raise_clear_errors():
    queue = JobQueue(progress=False)
    with pytest.raises(ValueError, match="repeated: \\['BTC'\\]"):
        queue.run(behave, [CoinJob("BTC", 1), CoinJob("BTC", 2)])
    with pytest.raises(ValueError, match="job 1 .* has no symbol"):
        queue.run(behave, [{"symbol": "BTC"}, {"x": 1}])
    with pytest.raises(ConfigError, match="workers"):
        JobQueue(workers=0)
    with pytest.raises(TypeError, match="address"):  # only the Dask queue has one
        JobQueue(address="tcp://127.0.0.1:8786")


def test_an_unreachable_dask_scheduler_is_found_before_any_job():
    with socket.socket() as free:  # a port nobody listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(ConfigError, match="no Dask scheduler answers"):
        DaskQueue(address=f"tcp://127.0.0.1:{port}").check(timeout_s=1)


def test_dask_local_cluster_runs_the_same_jobs(tmp_path):
    pytest.importorskip("distributed")
    jobs = coins("square", "raise", "skip", "square", "crash", "square")
    report = DaskQueue(workers=2, log_dir=tmp_path, progress=False).run(behave, jobs)
    assert [r.status for r in report] == [
        "completed",
        "failed",
        "skipped",
        "completed",
        "failed",
        "completed",
    ]
    assert report["C1"].reason == "ValueError: no bars for C1"
    assert "Traceback (most recent call last)" in report["C1"].log_path.read_text()
    assert (report["C4"].reason, report["C4"].attempts) == ("worker crashed", 2)
    assert report["C5"].result["square"] == 25
    assert os.getpid() not in {report["C0"].result["pid"], report["C3"].result["pid"]}
