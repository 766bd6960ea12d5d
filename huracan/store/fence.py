"""The lock's generation, which every write of a locked run carries (its fencing token).

The lock file (``lock.json`` at the store's root, ``huracan.store.lock``) names its holder,
a random ``token`` of that holder and a ``generation`` that grows by one at each taking.
A store built with a :class:`Fence` checks, before each write or delete, that the lock
still holds that generation and token, and refuses the write with :class:`LockLost`
otherwise; how the check and the write are kept together is each store's business
(``LocalStore``: an OS lock on the root; ``DropboxStore``: a check one request before).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from huracan.errors import LockLost

LOCK_KEY = "lock.json"


def parse_lock(data: bytes) -> dict:
    """The lock's content; content that is not a JSON object reads as ``{"unreadable": True}``."""
    try:
        holder = json.loads(data)
    except ValueError:
        return {"unreadable": True}
    return holder if isinstance(holder, dict) else {"unreadable": True}


@dataclass(frozen=True)
class Fence:
    """The lock a run holds: its generation and its holder's token.

    The token makes a fence unique even where ``lock.json`` was deleted by hand and the
    generations started again at 1.
    """

    generation: int
    lock_id: str

    @classmethod
    def of(cls, owner: dict) -> Fence:
        """The fence of a lock's content (``owner``: what ``huracan.store.lock`` wrote)."""
        return cls(int(owner["generation"]), str(owner["token"]))

    @classmethod
    def from_config(cls, value: Fence | dict | None) -> Fence | None:
        """A store's ``fence`` argument: a Fence, its ``as_config()`` dict, or None."""
        if value is None or isinstance(value, Fence):
            return value
        return cls(int(value["generation"]), str(value["lock_id"]))

    def as_config(self) -> dict:
        """The fence as config values (``store.fence``), for stores built in workers."""
        return {"generation": self.generation, "lock_id": self.lock_id}

    def check(self, lock: bytes | None, where: str, key: str) -> None:
        """Passes where ``lock`` (the lock file's bytes, None where there is none) is this
        fence's lock, still held.

        Raises:
            LockLost: naming the store, the generation this run held and who holds the
                lock now, in one line.
        """
        holder = None if lock is None else parse_lock(lock)
        if (
            holder is not None
            and holder.get("generation") == self.generation
            and holder.get("token") == self.lock_id
            and not holder.get("released_at")
        ):
            return
        if holder is None:
            now = f"{LOCK_KEY} is gone"
        elif holder.get("unreadable"):
            now = f"{LOCK_KEY} is not a lock"
        elif holder.get("token") == self.lock_id:
            now = "this run's lock was released"
        else:
            now = (
                f"run {holder.get('run_id')} holds generation {holder.get('generation')} "
                f"(pid {holder.get('pid')} on {holder.get('host')}, since "
                f"{holder.get('started_at')})"
            )
        raise LockLost(
            f"{where}: this run's lock (generation {self.generation}) was taken over: {now}; "
            f"this run stops without writing {key!r}"
        )
