"""The queue itself: in-process, or on a Dask cluster (local or remote).

Longer than most modules on purpose: the board of job states, the in-process loop and the
Dask loop share the same bookkeeping, and splitting them would spread one state machine.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from huracan.errors import ConfigError, Interrupted, LockLost
from huracan.queue.jobs import (
    CACHED,
    WORKER_CRASHED,
    JobResult,
    JobStatus,
    QueueReport,
    format_counts,
    job_field,
    log_name,
    run_job,
    symbol_of,
)

_log = logging.getLogger(__name__)


class _Board:
    """The parent's table of job states; only the parent process ever mutates it."""

    def __init__(self, symbols: list[str], log_paths: list[Path | None], progress: bool):
        self.symbols = symbols
        self.log_paths = log_paths
        self.status = [JobStatus.PENDING] * len(symbols)
        self.results: list[JobResult | None] = [None] * len(symbols)
        self.attempts = [0] * len(symbols)
        self.started = [0.0] * len(symbols)
        self.bar = tqdm(total=len(symbols), unit="job", desc="jobs", disable=not progress)

    def start(self, index: int) -> None:
        self.status[index] = JobStatus.RUNNING
        self.attempts[index] += 1
        self.started[index] = time.perf_counter()
        self._refresh()
        self.bar.refresh()

    def requeue(self, index: int) -> None:
        self.status[index] = JobStatus.PENDING
        self._refresh()
        self.bar.refresh()

    def finish(self, index: int, result: JobResult) -> None:
        result = replace(result, attempts=self.attempts[index])
        self.status[index] = result.status
        self.results[index] = result
        if result.status is JobStatus.FAILED:
            _log.warning("%s failed: %s", result.symbol, result.reason)
        elif result.attempts:
            _log.info("%s %s in %.1f s", result.symbol, result.status, result.seconds)
        self._refresh()
        self.bar.update(1)

    def note(self, index: int, text: str) -> None:
        """Appends what the parent saw to the job's log, e.g. that its worker died."""
        path = self.log_paths[index]
        if path is not None:
            with path.open("a", encoding="utf-8") as log:
                log.write(f"attempt {self.attempts[index]}: {text}\n")

    def fail(self, index: int, reason: str) -> None:
        """Fails a job whose worker could not report back (crash, lost result)."""
        self.note(index, reason)
        result = JobResult(
            self.symbols[index],
            JobStatus.FAILED,
            reason,
            time.perf_counter() - self.started[index],
            self.attempts[index],
            {},
            self.log_paths[index],
        )
        self.finish(index, result)

    def report(self) -> QueueReport:
        """All results; jobs cut short by an interrupt appear as pending or running."""
        return QueueReport(
            tuple(
                result or JobResult(symbol, status, "interrupted", 0.0, attempts)
                for symbol, status, result, attempts in zip(
                    self.symbols, self.status, self.results, self.attempts, strict=True
                )
            )
        )

    def _refresh(self) -> None:
        counts = Counter(self.status)
        # No redraw here: the caller's update or refresh draws it, once.
        self.bar.set_postfix_str(format_counts(counts), refresh=False)


class JobQueue:
    """Runs one job per symbol and reports every outcome; one failure never stops the rest.

    With one worker the jobs run in this process, one after the other (the mode for
    debugging). With more, they run on a Dask ``LocalCluster`` of that many worker
    processes on 127.0.0.1; :class:`DaskQueue` runs them on any Dask cluster. Dask is the
    one retry engine: a worker that dies (segfault, out of memory, ``os._exit``) is
    replaced and its job rerun until it has been started ``max_attempts`` times; then it
    fails with reason ``"worker crashed"``.

    Args:
        workers: Jobs run at once.
        log_dir: Where ``<SYMBOL>.log`` files go: each holds the job's own log records
            and, if it failed, the traceback. It must be visible to remote Dask workers.
            None writes no files.
        max_attempts: Starts allowed per job when workers crash. Exceptions raised by the
            job are not retried.
        progress: Show a progress bar with counts per status.

    Raises:
        ConfigError: If a setting cannot work.
    """

    address: str | None = None

    def __init__(
        self,
        workers: int = 1,
        log_dir: str | Path | None = None,
        max_attempts: int = 2,
        progress: bool = True,
    ):
        if workers < 1:
            raise ConfigError(f"queue workers must be at least 1, got {workers}")
        if max_attempts < 1:
            raise ConfigError(f"queue max_attempts must be at least 1, got {max_attempts}")
        self.workers = workers
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.max_attempts = max_attempts
        self.progress = progress

    def check(self) -> None:
        """Raises a ConfigError when the queue cannot run (checked before any training)."""

    def run(
        self,
        fn: Callable[[Any], Mapping[str, Any] | None],
        jobs: Sequence[Any],
        done: Callable[[Any], bool] | None = None,
    ) -> QueueReport:
        """Runs ``fn(job)`` for every job that is neither skipped nor already done.

        Args:
            fn: A module-level function (worker processes import it by name) taking one
                job and returning a dict of plain data, or None. It raises `JobSkipped`
                to skip its symbol.
            jobs: Picklable jobs, each with a unique ``symbol`` attribute or key and an
                optional ``skip_reason`` that skips it without running.
            done: Called in this process for each job that is not skipped; True marks it
                completed with reason ``"cached"`` without running it.

        Returns:
            One result per job, in the order of ``jobs``.

        Raises:
            ValueError: If a job has no symbol or two jobs share one.
            TypeError: If ``fn`` cannot be sent to worker processes.
            KeyboardInterrupt, Interrupted: Re-raised after cancelling the jobs not yet finished.
            LockLost: A job found the run's store lock taken over; the jobs not yet
                finished are cancelled (none of them may write).
        """
        jobs = list(jobs)
        symbols = [symbol_of(job, position) for position, job in enumerate(jobs)]
        repeated = sorted({s for s, n in Counter(symbols).items() if n > 1})
        if repeated:
            raise ValueError(f"each symbol needs exactly one job; repeated: {repeated}")

        log_dir = None if self.log_dir is None else self.log_dir.resolve()
        log_paths = [None if log_dir is None else log_dir / log_name(s) for s in symbols]
        board = _Board(symbols, log_paths, self.progress)
        try:
            todo = []
            for index, job in enumerate(jobs):
                skip_reason = job_field(job, "skip_reason")
                if skip_reason:
                    skipped = JobResult(symbols[index], JobStatus.SKIPPED, str(skip_reason))
                    board.finish(index, skipped)
                elif done is not None and done(job):
                    board.finish(index, JobResult(symbols[index], JobStatus.COMPLETED, CACHED))
                else:
                    todo.append(index)
                    if log_dir is not None:
                        log_dir.mkdir(parents=True, exist_ok=True)
                        log_paths[index].write_text("", encoding="utf-8")
            with logging_redirect_tqdm() if self.progress else nullcontext():
                self._execute(fn, jobs, todo, board)
        except (KeyboardInterrupt, Interrupted):
            report = board.report()
            _log.warning(
                "job queue interrupted: %s\n%s", format_counts(report.counts()), report.table()
            )
            raise
        finally:
            board.bar.close()
        report = board.report()
        _log.info("job queue finished: %s\n%s", format_counts(report.counts()), report.table())
        return report

    def _execute(self, fn: Callable, jobs: list, todo: list[int], board: _Board) -> None:
        if self.workers > 1 or self.address is not None:
            _run_on_dask(fn, jobs, todo, board, self.workers, self.address, self.max_attempts)
            return
        for index in todo:
            board.start(index)
            board.finish(
                index, run_job(fn, jobs[index], board.symbols[index], board.log_paths[index])
            )


class DaskQueue(JobQueue):
    """The same jobs on a Dask distributed cluster (``queue=dask``).

    Args:
        workers: With no address, the worker processes of a local cluster on 127.0.0.1.
        address: Dask scheduler address, e.g. ``"tcp://127.0.0.1:8786"``; None starts a
            local cluster for the run.
        max_attempts: As :class:`JobQueue`; on an existing cluster its own
            ``distributed.scheduler.allowed-failures`` setting applies instead.
        log_dir, progress: As :class:`JobQueue`.
    """

    def __init__(
        self,
        workers: int = 2,
        address: str | None = None,
        log_dir: str | Path | None = None,
        max_attempts: int = 2,
        progress: bool = True,
    ):
        super().__init__(workers, log_dir, max_attempts, progress)
        self.address = address

    def check(self, timeout_s: float = 5.0) -> None:
        """Raises a ConfigError when the scheduler at ``address`` does not answer."""
        if self.address is None:
            return
        host, _, port = self.address.rpartition("://")[2].rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
                pass
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"queue.address {self.address!r}: no Dask scheduler answers there ({exc})"
            ) from None

    def _execute(self, fn: Callable, jobs: list, todo: list[int], board: _Board) -> None:
        _run_on_dask(fn, jobs, todo, board, self.workers, self.address, self.max_attempts)


def _run_on_dask(
    fn: Callable,
    jobs: list,
    todo: list[int],
    board: _Board,
    workers: int,
    address: str | None,
    max_attempts: int,
) -> None:
    """Runs the jobs on the cluster at ``address``, or on a local one of ``workers``."""
    # Imported here: only a queue with more than one worker needs Dask.
    import dask
    from distributed import Client, KilledWorker, LocalCluster, as_completed

    with ExitStack() as stack:
        if address is None:
            settings = {
                # Dask reruns a task whose worker died until it has killed this many.
                "distributed.scheduler.allowed-failures": max_attempts - 1,
                # Dask's workers start with MALLOC_TRIM_THRESHOLD_=65536, which also fixes
                # glibc's mmap threshold at 128 KB: every larger array is then mapped and
                # its pages faulted anew, and a per-coin job's torch work took 2.3x as
                # long. None leaves glibc's own adaptive thresholds.
                "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
            }
            with dask.config.set(settings):
                cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                )
            stack.enter_context(cluster)
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(Client(address))

        pending = deque(todo)
        in_flight: dict[Any, int] = {}
        completed = as_completed()

        def submit() -> None:
            # As many jobs as the cluster has threads, so "running" means running, and
            # a worker that crashes takes no queued job down with it (with twice as
            # many, innocent jobs failed as "worker crashed"); at least one, so a
            # cluster whose workers have yet to join gets work.
            capacity = max(1, sum(client.nthreads().values()))
            while pending and len(in_flight) < capacity:
                index = pending.popleft()
                symbol = board.symbols[index]
                future = client.submit(
                    run_job,
                    fn,
                    jobs[index],
                    symbol,
                    board.log_paths[index],
                    pure=False,
                    key=f"{symbol}-{uuid.uuid4().hex}",
                )
                board.start(index)
                in_flight[future] = index
                completed.add(future)

        try:
            submit()
            for future in completed:
                index = in_flight.pop(future)
                try:
                    board.finish(index, future.result())
                except KilledWorker as exc:
                    board.attempts[index] = exc.allowed_failures + 1
                    board.fail(index, WORKER_CRASHED)
                except LockLost:
                    client.cancel(list(in_flight))
                    raise
                except Exception as exc:  # e.g. a job or result that cannot be pickled
                    board.fail(index, f"{type(exc).__name__}: {exc}")
                submit()
        except (KeyboardInterrupt, Interrupted):
            client.cancel(list(in_flight))
            raise
