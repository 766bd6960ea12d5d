"""One run at a time on an artifact root: an exclusive lock file with owner and heartbeat.

The run creates ``lock.json`` at the root of the store only if it does not exist (``O_EXCL``
locally, Dropbox's ``add`` mode without renaming), holding who holds it (pid, host, run id,
a token) and when it last said so. A thread rewrites the heartbeat every ``heartbeat_s``
while the run lasts; the run deletes the file when it ends, however it ends. A second run
fails at once with one line naming the holder. A lock is stale, and is taken over with a
warning, when its holder's process is gone (same host) or its heartbeat is older than
``stale_after_s`` (any host). Everything the run writes, the champion challenge's read and
write of each pointer included, happens under the lock.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from huracan.errors import HuracanError
from huracan.store.base import ArtifactNotFound, Store, StoreError

log = logging.getLogger("huracan")

LOCK_KEY = "lock.json"


class StoreLocked(HuracanError):
    """Another live run holds the artifact root's lock."""


@contextmanager
def store_lock(
    store: Store, run_id: str, heartbeat_s: float = 30.0, stale_after_s: float = 600.0
) -> Iterator[dict]:
    """Holds the store's lock for the ``with`` block; yields the lock's content.

    Raises:
        StoreLocked: a live run holds it (the message names pid, host, run id and times).
    """
    owner = acquire(store, run_id, stale_after_s)
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat, args=(store, owner, heartbeat_s, stop), daemon=True, name="lock"
    )
    beat.start()
    try:
        yield owner
    finally:
        stop.set()
        beat.join()
        release(store, owner)


def acquire(store: Store, run_id: str, stale_after_s: float) -> dict:
    """Creates the lock, taking over a stale one; returns what it wrote."""
    now = _now()
    owner = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "run_id": run_id,
        "token": uuid.uuid4().hex,
        "started_at": now,
        "heartbeat_at": now,
    }
    for _ in range(2):  # at most one stale lock to take over
        if store.create_exclusive(LOCK_KEY, _bytes(owner)):
            return owner
        holder = read_lock(store)
        if holder is None:  # released between the two calls
            continue
        if holder.get("token") == owner["token"]:  # our create went through, then a retry
            return owner
        why = stale(holder, stale_after_s)
        if not why:
            raise StoreLocked(_held_message(store, holder))
        log.warning("taking over the stale lock of %s: %s", store.describe(), why)
        store.delete(LOCK_KEY)
    raise StoreLocked(f"{store.describe()}: another run took the lock at the same moment")


def release(store: Store, owner: dict) -> None:
    """Deletes the lock if it is still this run's; a store that fails now leaves it to go
    stale (the run's own error, if any, is the one reported)."""
    try:
        holder = read_lock(store)
        if holder is not None and holder.get("token") == owner["token"]:
            store.delete(LOCK_KEY)
    except (StoreError, OSError) as err:
        log.warning("could not release the lock of %s: %s", store.describe(), err)


def read_lock(store: Store) -> dict | None:
    """The lock's content; None where there is none. Unreadable content counts as stale."""
    try:
        data = store.read_bytes(LOCK_KEY)
    except ArtifactNotFound:
        return None
    try:
        holder = json.loads(data)
    except ValueError:
        return {"unreadable": True}
    return holder if isinstance(holder, dict) else {"unreadable": True}


def stale(holder: dict, stale_after_s: float) -> str:
    """Why the holder's lock is stale; empty where it is live."""
    if holder.get("unreadable"):
        return "its lock file is not a lock (cut short?)"
    age = _age_s(holder.get("heartbeat_at"))
    if holder.get("host") == socket.gethostname() and not _alive(holder.get("pid")):
        return f"process {holder.get('pid')} on this host ({holder['host']}) is gone"
    if age is None or age > stale_after_s:
        return f"no heartbeat for {'ever' if age is None else f'{age:.0f} s'} > {stale_after_s:g} s"
    return ""


def _held_message(store: Store, holder: dict) -> str:
    age = _age_s(holder.get("heartbeat_at"))
    return (
        f"{store.describe()} is locked by run {holder.get('run_id')} (pid {holder.get('pid')} "
        f"on {holder.get('host')}, since {holder.get('started_at')}, last heartbeat "
        f"{'?' if age is None else f'{age:.0f} s'} ago): wait for it to end, or use another "
        f"store.root; delete {LOCK_KEY} there only if that run is gone"
    )


def _heartbeat(store: Store, owner: dict, every_s: float, stop: threading.Event) -> None:
    while not stop.wait(every_s):
        holder = read_lock(store)
        if holder is None or holder.get("token") != owner["token"]:
            log.error("the lock of %s was taken from this run: %s", store.describe(), holder)
            return
        owner["heartbeat_at"] = _now()
        try:
            store.write_bytes(LOCK_KEY, _bytes(owner))
        except (StoreError, OSError) as err:  # the next beat tries again
            log.warning("lock heartbeat of %s failed: %s", store.describe(), err)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _age_s(stamp: object) -> float | None:
    try:
        return time.time() - datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        return None


def _bytes(owner: dict) -> bytes:
    return (json.dumps(owner, indent=2) + "\n").encode()
