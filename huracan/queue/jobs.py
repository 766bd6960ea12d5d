"""Jobs and their results: statuses, the worker-side wrapper, the per-symbol log."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from huracan.errors import LockLost

_log = logging.getLogger(__name__)


WORKER_CRASHED = "worker crashed"
CACHED = "cached"
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JobStatus(StrEnum):
    """Where a job stands; a finished run holds only completed, failed and skipped."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class JobSkipped(Exception):
    """Raised by a job function to skip its symbol, e.g. too little history after costs.

    Args:
        reason: Why the symbol is skipped; reported as the job's reason.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class JobResult:
    """The outcome of one job: plain picklable data.

    Attributes:
        symbol: The job's symbol.
        status: Completed, failed or skipped (pending or running after an interrupt).
        reason: Why it failed or was skipped, ``"cached"`` for a job ``done`` says is
            complete, empty otherwise.
        seconds: Wall time of the last attempt.
        attempts: How many times the job was started (0 if it never ran).
        result: The dict the job function returned (empty unless completed by it).
        log_path: The symbol's log file, or None without a log directory or attempt.
    """

    symbol: str
    status: JobStatus
    reason: str = ""
    seconds: float = 0.0
    attempts: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    log_path: Path | None = None


@dataclass(frozen=True)
class QueueReport:
    """The results of a run, in the order the jobs were given.

    Attributes:
        results: One `JobResult` per job.
    """

    results: tuple[JobResult, ...]

    def __iter__(self) -> Iterator[JobResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, symbol: str) -> JobResult:
        for result in self.results:
            if result.symbol == symbol:
                return result
        raise KeyError(f"no job for symbol {symbol!r} in this report")

    def counts(self) -> dict[str, int]:
        """Number of jobs per status, every status present (zero where none)."""
        counts = dict.fromkeys((status.value for status in JobStatus), 0)
        for result in self.results:
            counts[result.status.value] += 1
        return counts

    def table(self) -> str:
        """A plain-text table: symbol, status, seconds, attempts, reason."""
        header = ("symbol", "status", "seconds", "attempts", "reason")
        rows = [
            (
                r.symbol,
                r.status.value,
                f"{r.seconds:.1f}",
                str(r.attempts),
                r.reason.splitlines()[0] if r.reason else "",
            )
            for r in self.results
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
        right = {2, 3}  # numbers align right

        def line(row: tuple[str, ...]) -> str:
            cells = [
                cell.rjust(width) if i in right else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=False))
            ]
            return "  ".join([*cells, row[-1]]).rstrip()

        return "\n".join(line(row) for row in [header, *rows])


def format_counts(counts: Mapping[str, int]) -> str:
    shown = [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.SKIPPED]
    shown += [s for s in (JobStatus.RUNNING, JobStatus.PENDING) if counts[s]]
    return " ".join(f"{status}={counts[status]}" for status in shown)


def job_field(job: Any, name: str) -> Any:
    if isinstance(job, Mapping):
        return job.get(name)
    return getattr(job, name, None)


def symbol_of(job: Any, position: int) -> str:
    symbol = job_field(job, "symbol")
    if not isinstance(symbol, str) or not symbol:
        raise ValueError(
            f"job {position} ({job!r}) has no symbol: give each job a non-empty string "
            "`symbol` attribute or key"
        )
    return symbol


def log_name(symbol: str) -> str:
    # "BTC/USDT" must not open a subdirectory.
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in symbol) + ".log"


@contextmanager
def _capture_log(path: Path | None) -> Iterator[None]:
    """Appends every log record of the job to its file (the parent empties it first)."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    # A fresh worker's root logger drops INFO; the job's own progress belongs in its log.
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def run_job(
    fn: Callable[[Any], Mapping[str, Any] | None],
    job: Any,
    symbol: str,
    log_path: Path | None,
) -> JobResult:
    """Runs one job where it lands (worker or parent) and turns any outcome into data.

    The attempt count is left at 1: only the parent knows it and stamps it.
    """
    status, reason, result = JobStatus.COMPLETED, "", {}
    started = time.perf_counter()
    with _capture_log(log_path):
        _log.info("%s started in process %d", symbol, os.getpid())
        try:
            output = fn(job)
            if output is not None and not isinstance(output, Mapping):
                raise TypeError(
                    f"the job function returned {type(output).__name__} for {symbol}, "
                    "expected a dict (or None)"
                )
            result = dict(output or {})
        except JobSkipped as skip:
            status, reason = JobStatus.SKIPPED, skip.reason
            _log.info("%s skipped: %s", symbol, reason)
        except LockLost:  # the run has lost its store: no job of it may write again
            raise
        # SystemExit too: a job calling sys.exit() fails alone, it does not end the run.
        except (Exception, SystemExit) as exc:
            status, reason = JobStatus.FAILED, f"{type(exc).__name__}: {exc}"
            _log.exception("%s failed", symbol)
        else:
            _log.info("%s completed", symbol)
    seconds = time.perf_counter() - started
    return JobResult(symbol, status, reason, seconds, 1, result, log_path)
