"""One run at a time on an artifact root: a lock file that changes hands by compare-and-swap,
and a generation that fences the writes of a run that lost it.

``lock.json`` at the root of the store names its holder (pid, host, run id, a random
token), its ``generation`` and when the holder last said it was alive. Every change of the
file is a compare-and-swap on the version read just before (``Store.swap``: an OS lock
around the check and the rename locally, Dropbox's ``WriteMode.update(rev)``), never a
check-then-delete: of two runs taking over the same stale lock, exactly one succeeds, and
the other reads the winner and is refused. Taking the lock writes generation + 1; a
heartbeat thread swaps in a fresh ``heartbeat_at`` every ``heartbeat_s``; the run marks the
file released when it ends, however it ends (the file stays, so generations only grow).

A lock is stale, and is taken over with a warning, when its holder's process is gone (same
host) or its heartbeat is older than ``stale_after_s`` (any host): a paused or sleeping
run can lose its lock that way. The run's stores carry its :class:`Fence` (``run_lock``
puts it in ``store.fence``, so stores built in workers carry it too), and refuse every
write once the lock is another's: the run stops with ``LockLost`` (exit 3).
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
from dataclasses import dataclass
from datetime import UTC, datetime

from omegaconf import DictConfig, open_dict

from huracan.config import build
from huracan.errors import HuracanError, LockLost
from huracan.store.base import ArtifactNotFound, Store, StoreError
from huracan.store.fence import LOCK_KEY, Fence, parse_lock

log = logging.getLogger("huracan")

__all__ = ["LOCK_KEY", "Lease", "StoreLocked", "acquire", "read_lock", "run_lock", "store_lock"]

# A lost compare-and-swap reads the lock again; a third loss in a row gives up.
_ATTEMPTS = 3


class StoreLocked(HuracanError):
    """Another live run holds the artifact root's lock."""


@dataclass
class Lease:
    """A lock this process took: what it wrote, the version of the file it last wrote,
    and whether it has seen the lock taken from it."""

    owner: dict
    version: str
    lost: bool = False

    @property
    def fence(self) -> Fence:
        return Fence.of(self.owner)


@contextmanager
def store_lock(
    store: Store,
    run_id: str,
    heartbeat_s: float | None = None,
    stale_after_s: float | None = None,
) -> Iterator[dict]:
    """Holds the store's lock for the ``with`` block and fences ``store`` meanwhile;
    yields the lock's content. Timings default to the store's ``lock_*`` settings.

    Raises:
        StoreLocked: a live run holds it (the message names pid, host, run id and times).
        LockLost: at the end of a block that raised nothing, where the lock was taken
            from this run meanwhile.
    """
    heartbeat_s = store.lock_heartbeat_s if heartbeat_s is None else heartbeat_s
    stale_after_s = store.lock_stale_after_s if stale_after_s is None else stale_after_s
    lease = acquire(store, run_id, stale_after_s)
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat, args=(store, lease, heartbeat_s, stop), daemon=True, name="lock"
    )
    beat.start()
    fence, store.fence = store.fence, lease.fence
    ended = False
    try:
        yield lease.owner
        ended = True
    finally:
        store.fence = fence
        stop.set()
        beat.join()
        still_held = release(store, lease)
    if ended and not still_held:
        holder = read_lock(store)
        raise LockLost(
            f"{store.describe()}: this run's lock (generation {lease.owner['generation']}) "
            f"was taken over after its last write, by run {(holder or {}).get('run_id')}: "
            "what this run wrote stands only until that run overwrites it"
        )


@contextmanager
def run_lock(store_cfg: DictConfig, run_id: str) -> Iterator[dict]:
    """A run's session: the lock of the store ``store_cfg`` builds, with ``store_cfg.fence``
    set while it is held, so every store the run builds from it, in this process or in a
    worker, carries the fence."""
    store = build(store_cfg)
    with store_lock(store, run_id) as owner:
        with open_dict(store_cfg):
            store_cfg.fence = Fence.of(owner).as_config()
        try:
            yield owner
        finally:
            with open_dict(store_cfg):
                store_cfg.pop("fence")


def acquire(store: Store, run_id: str, stale_after_s: float) -> Lease:
    """Takes the lock where it is free, released or stale, by compare-and-swap.

    Raises:
        StoreLocked: a live run holds it, or took it at the same moment.
    """
    now = _now()
    owner = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "run_id": run_id,
        "token": uuid.uuid4().hex,
        "generation": 1,
        "started_at": now,
        "heartbeat_at": now,
    }
    for _ in range(_ATTEMPTS):
        current = store.read_versioned(LOCK_KEY)
        version = None
        if current is not None:
            data, version = current
            holder = parse_lock(data)
            if holder.get("token") == owner["token"]:  # our swap landed, its reply was lost
                return Lease(owner, version)
            if not holder.get("released_at"):
                why = stale(holder, stale_after_s)
                if not why:
                    raise StoreLocked(_held_message(store, holder))
                log.warning("taking over the stale lock of %s: %s", store.describe(), why)
            owner["generation"] = _generation(holder) + 1
        taken = store.swap(LOCK_KEY, _bytes(owner), version)
        if taken is not None:
            return Lease(owner, taken)
    raise StoreLocked(f"{store.describe()}: other runs kept changing the lock; try again")


def release(store: Store, lease: Lease) -> bool:
    """Marks the lock released where it is still this run's; returns whether it was.

    A store that fails now leaves the lock to go stale (the run's own error, if any, is
    the one reported).
    """
    if lease.lost:
        return False
    released = {**lease.owner, "released_at": _now()}
    try:
        if store.swap(LOCK_KEY, _bytes(released), lease.version) is not None:
            return True
        version = _own_version(store, lease)
        return version is not None and store.swap(LOCK_KEY, _bytes(released), version) is not None
    except (StoreError, OSError) as err:
        log.warning("could not release the lock of %s: %s", store.describe(), err)
        return True


def read_lock(store: Store) -> dict | None:
    """The lock's content; None where there is none. Unreadable content counts as stale."""
    try:
        data = store.read_bytes(LOCK_KEY)
    except ArtifactNotFound:
        return None
    return parse_lock(data)


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


def _heartbeat(store: Store, lease: Lease, every_s: float, stop: threading.Event) -> None:
    """Swaps a fresh heartbeat in; stops for good once the lock is another's (the fenced
    stores then refuse the run's next write)."""
    while not stop.wait(every_s):
        beat = {**lease.owner, "heartbeat_at": _now()}
        try:
            version = store.swap(LOCK_KEY, _bytes(beat), lease.version)
            if version is None:
                version = _own_version(store, lease)
                if version is not None:  # a retried swap had landed: beat again from it
                    version = store.swap(LOCK_KEY, _bytes(beat), version)
        except (StoreError, OSError) as err:  # the next beat tries again
            log.warning("lock heartbeat of %s failed: %s", store.describe(), err)
            continue
        if version is None:
            lease.lost = True
            return
        lease.owner.update(beat)
        lease.version = version


def _own_version(store: Store, lease: Lease) -> str | None:
    """The lock file's version where it still holds this lease's token, unreleased."""
    current = store.read_versioned(LOCK_KEY)
    if current is None:
        return None
    holder = parse_lock(current[0])
    if holder.get("token") != lease.owner["token"] or holder.get("released_at"):
        return None
    return current[1]


def _generation(holder: dict) -> int:
    generation = holder.get("generation")
    return generation if isinstance(generation, int) and generation > 0 else 0


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
