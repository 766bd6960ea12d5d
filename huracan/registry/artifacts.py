"""Model versions in the store: every file hashed in a manifest written last.

A version lives at ``models/<SYMBOL>/baseline_<YYYYMMDD>/``. Its files are written first,
each atomically; ``manifest.json``, which lists every file with its size and content hash,
is written last. A version is complete exactly when its manifest exists and every file it
lists is there with the same hash, so a run killed mid-way leaves a version that readers
and reruns recognise as incomplete, never a half-written one that looks whole.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from huracan.errors import DataError
from huracan.io import plain
from huracan.names import SEGMENT, check_segment
from huracan.store import ArtifactNotFound, Store, content_hash

MANIFEST = "manifest.json"
VERSION_PATH = rf"models/{SEGMENT}/{SEGMENT}"
REPAIR = " (python -m huracan.doctor ROOT --fix moves it aside)"


def model_prefix(symbol: str, run_id: str) -> str:
    """``models/<SYMBOL>/baseline_<run_id>``, each segment a safe name (``check_segment``).

    Raises:
        ConfigError: the symbol or the version id cannot name a store folder.
    """
    version = check_segment(f"baseline_{run_id}", "model version id")
    return f"models/{check_segment(symbol, 'symbol')}/{version}"


def write_version(store: Store, prefix: str, files: dict[str, bytes], meta: dict) -> dict:
    """Writes the files of one model version, then its manifest; returns the manifest.

    ``meta`` names the version's ``symbol``, which a pointer to it must match (a version
    proves its coin by its path and its manifest).
    """
    if meta.get("symbol") != prefix.split("/")[1]:
        raise ValueError(f"{prefix}: its manifest must name its symbol, got {meta.get('symbol')}")
    # every file landed (overlapped, Store.write_many) before the manifest names them
    store.write_many({f"{prefix}/{name}": data for name, data in files.items()})
    manifest = {
        "files": {
            name: {"bytes": len(data), "content_hash": content_hash(data)}
            for name, data in files.items()
        },
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **meta,
    }
    store.write_bytes(f"{prefix}/{MANIFEST}", json.dumps(manifest, indent=2).encode())
    return manifest


def read_manifest(store: Store, prefix: str) -> dict | None:
    try:
        return json.loads(store.read_bytes(f"{prefix}/{MANIFEST}"))
    except ArtifactNotFound:
        return None


def is_complete(store: Store, prefix: str, verify_hashes: bool = True) -> bool:
    """True when the version's manifest exists and all its files match it."""
    manifest = read_manifest(store, prefix)
    if manifest is None:
        return False
    for name, entry in manifest["files"].items():
        key = f"{prefix}/{name}"
        if not verify_hashes:
            if not store.exists(key):
                return False
            continue
        try:
            data = store.read_bytes(key)
        except ArtifactNotFound:
            return False
        if content_hash(data) != entry["content_hash"]:
            return False
    return True


def json_bytes(obj: object) -> bytes:
    return json.dumps(obj, indent=2, default=plain).encode()


def versions(store: Store, symbol: str) -> list[str]:
    """The symbol's complete-looking versions (a manifest), oldest first by its time."""
    found = []
    for key in store.list(f"models/{symbol}"):
        prefix, _, name = key.rpartition("/")
        if name == MANIFEST:
            manifest = read_manifest(store, prefix) or {}
            found.append((str(manifest.get("written_at", "")), prefix))
    return [prefix for _, prefix in sorted(found)]


def purge_versions(store: Store, symbols: list[str], keep: int | None) -> list[str]:
    """Deletes each symbol's versions beyond its newest ``keep``, never its champion's.

    A version's manifest goes first, so one cut short reads as incomplete, never whole.
    Returns the prefixes deleted (none when ``keep`` is None).
    """
    if keep is None:
        return []
    purged = []
    for symbol in symbols:
        champion = read_champion(store, symbol)
        protected = None if champion is None else champion["model_path"]
        for prefix in versions(store, symbol)[: -int(keep) or None]:
            if prefix == protected:
                continue
            store.delete(f"{prefix}/{MANIFEST}")
            store.delete(prefix)
            purged.append(prefix)
    return purged


def champion_key(symbol: str) -> str:
    return f"champions/{symbol}.json"


def read_champion(store: Store, symbol: str) -> dict | None:
    """The symbol's pointer, None where it has none.

    Raises:
        DataError: the pointer is not JSON, not an object, or has no model version path
            (``models/<SYMBOL>/<version>``, each a safe name) as its ``model_path``.
    """
    key = champion_key(symbol)
    try:
        data = store.read_bytes(key)
    except ArtifactNotFound:
        return None
    source = f"{store.describe()}/{key}"
    try:
        pointer = json.loads(data)
    except ValueError as err:  # binary, truncated, empty
        why = f"not a JSON pointer ({type(err).__name__}: {err})"
        raise DataError(source, why + REPAIR) from None
    if not isinstance(pointer, dict):
        raise DataError(source, f"a JSON {type(pointer).__name__}, not a pointer object{REPAIR}")
    path = pointer.get("model_path")
    if not isinstance(path, str) or not re.fullmatch(VERSION_PATH, path):
        why = f"model_path {path!r} is not models/<SYMBOL>/<version> of safe names"
        raise DataError(source, why + REPAIR)
    return pointer
