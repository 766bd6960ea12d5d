"""Artifact stores: a local directory or a Dropbox folder, behind one small interface.

Keys are relative '/'-separated paths such as ``models/BTC/baseline_20240101/metrics.json``.
Every write is atomic: a reader sees the old file or the whole new one, never half of it.
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
)

__all__ = [
    "ArtifactNotFound",
    "InvalidArtifactKey",
    "LocalStore",
    "Store",
    "StoreError",
    "check_key",
    "content_hash",
]
