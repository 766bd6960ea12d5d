"""Artifact stores: a local directory or a Dropbox folder, behind one small interface.

Keys are relative '/'-separated paths such as ``models/BTC/baseline_20240101/metrics.json``.
Every write is atomic: a reader sees the old file or the whole new one, never half of it.
A store built with a ``Fence`` (the lock a run holds, ``huracan.store.lock``) refuses to
write once that lock is another run's.
The ``store`` config group names the class with ``_target_``; the Dropbox store lives in
``huracan.store.dropbox_store`` so that only a run that uses it imports the SDK.
"""

from __future__ import annotations

from huracan.store.base import (
    ArtifactNotFound,
    InvalidArtifactKey,
    LocalStore,
    Store,
    StoreError,
    check_key,
    content_hash,
    mark_scratch,
)
from huracan.store.fence import Fence


def open_root(root: str) -> Store:
    """The artifact store: ``dropbox:/PATH`` (or ``dropbox://PATH``), else a local folder."""
    if root.startswith("dropbox:"):
        from huracan.store.dropbox_store import DropboxStore  # the SDK only when asked for

        return DropboxStore("/" + root.removeprefix("dropbox:").lstrip("/"))
    return LocalStore(root)


__all__ = [
    "ArtifactNotFound",
    "Fence",
    "InvalidArtifactKey",
    "LocalStore",
    "Store",
    "StoreError",
    "check_key",
    "content_hash",
    "mark_scratch",
    "open_root",
]
