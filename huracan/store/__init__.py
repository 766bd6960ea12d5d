"""Artifact stores: a local directory or a Dropbox folder, behind one small interface.

Keys are relative '/'-separated paths such as ``models/BTC/baseline_20240101/metrics.json``.
Every write is atomic: a reader sees the old file or the whole new one, never half of it.
"""

from __future__ import annotations

import inspect
from typing import Any

from huracan.errors import ConfigError
from huracan.store.base import (
    ArtifactNotFound,
    InvalidArtifactKey,
    LocalStore,
    Store,
    StoreError,
    check_key,
    content_hash,
)
from huracan.store.dropbox_store import DropboxStore

__all__ = [
    "ArtifactNotFound",
    "DropboxStore",
    "InvalidArtifactKey",
    "LocalStore",
    "Store",
    "StoreError",
    "check_key",
    "content_hash",
    "make_store",
]

_STORES: dict[str, type[Store]] = {"local": LocalStore, "dropbox": DropboxStore}


def make_store(kind: str, **options: Any) -> Store:
    """Builds the store a config names (the ``store`` config group).

    Args:
        kind: ``"local"`` or ``"dropbox"``.
        **options: Keyword arguments of that store, such as ``root``.

    Returns:
        The store.

    Raises:
        ConfigError: For an unknown kind or an option the store does not take.
    """
    if kind not in _STORES:
        raise ConfigError(f"store kind {kind!r} is unknown; choose one of {sorted(_STORES)}")
    store_class = _STORES[kind]
    try:
        inspect.signature(store_class).bind(**options)
    except TypeError as exc:
        raise ConfigError(f"store {kind!r}: {exc}") from None
    return store_class(**options)
