"""A per-symbol job queue: one job per coin, run in-process or on Dask.

The per-coin pipeline runs one job per symbol (gate -> calibrate costs -> train -> validate
-> export). This module knows nothing about those steps: it runs a module-level function
``fn(job) -> dict`` over jobs that each carry a ``symbol`` (attribute or mapping key) and
reports one `JobResult` per job. One failing or crashing symbol never stops the others.

Conventions:

* A job whose ``skip_reason`` (attribute or key) is set is reported ``skipped`` and never
  runs, e.g. a symbol that failed its data gate.
* ``fn`` skips a job by raising `JobSkipped(reason)`; any other exception fails the job
  with ``"<ExceptionType>: <message>"`` and the traceback goes to the symbol's log file.
  Exceptions are not retried: they are deterministic, only worker crashes are.
* ``run(..., done=...)`` reports jobs whose artifacts already exist as ``completed`` with
  reason ``"cached"`` without running them, so an interrupted fleet run can resume.
"""

from huracan.queue.jobs import CACHED, WORKER_CRASHED, JobResult, JobSkipped, JobStatus, QueueReport
from huracan.queue.runner import DaskQueue, JobQueue

__all__ = [
    "CACHED",
    "DaskQueue",
    "WORKER_CRASHED",
    "JobQueue",
    "JobResult",
    "JobSkipped",
    "JobStatus",
    "QueueReport",
]
