"""The store interface, keys, errors and Dropbox's content hash."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from huracan.errors import ConfigError, HuracanError
from huracan.io import atomic_write_bytes
from huracan.store.fence import LOCK_KEY, Fence

log = logging.getLogger(__name__)

T = TypeVar("T")


_HASH_BLOCK_BYTES = 4 * 2**20


class ArtifactNotFound(HuracanError, FileNotFoundError):
    """No artifact under the key; the message names the key and the store."""


class InvalidArtifactKey(HuracanError, ValueError):
    """A key that is not a safe relative path inside the store."""


class StoreError(HuracanError, OSError):
    """A transfer that failed for good (after retries, where retrying can help)."""


def content_hash(data: bytes) -> str:
    """Dropbox's content hash: SHA-256 over the SHA-256 digests of consecutive 4 MiB blocks.

    Args:
        data: The file's bytes.

    Returns:
        The hash as 64 lowercase hex digits, equal to Dropbox's ``FileMetadata.content_hash``.
    """
    view = memoryview(data)
    block_digests = b"".join(
        hashlib.sha256(view[start : start + _HASH_BLOCK_BYTES]).digest()
        for start in range(0, len(view), _HASH_BLOCK_BYTES)
    )
    return hashlib.sha256(block_digests).hexdigest()


def _is_temp_name(name: str) -> bool:
    # The pattern huracan.io.atomic_write_bytes gives its temporary files.
    return name.startswith(".") and name.endswith(".tmp")


def check_key(key: str, *, allow_root: bool = False) -> str:
    """Validates an artifact key and returns it without a trailing '/'.

    Args:
        key: A relative '/'-separated path.
        allow_root: Accept ``""`` (the whole store), as a listing prefix may.

    Returns:
        The key, with a trailing '/' removed where ``allow_root`` permits one.

    Raises:
        InvalidArtifactKey: For a non-string, absolute, backslashed, empty-part, '.' or '..'
            key, or a name reserved for temporary files.
    """
    if not isinstance(key, str):
        raise InvalidArtifactKey(f"artifact key must be a string, got {type(key).__name__}")
    if allow_root:
        key = key.removesuffix("/")
        if key == "":
            return key
    parts = key.split("/")
    if (
        key.startswith("/")
        or "\\" in key
        or "\0" in key
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise InvalidArtifactKey(
            f"unsafe artifact key {key!r}: use a relative '/'-separated path without "
            "'..', '.', empty parts or backslashes"
        )
    if _is_temp_name(parts[-1]):
        raise InvalidArtifactKey(
            f"artifact key {key!r}: names starting with '.' and ending in '.tmp' are "
            "reserved for temporary files"
        )
    return key


class Store(ABC):
    """Where artifacts live. Subclasses implement the byte operations; JSON comes free.

    Attributes:
        fence: The lock a run holds (``huracan.store.fence``); where set, every write and
            delete is refused with ``LockLost`` once the lock is no longer that run's.
        lock_heartbeat_s: How often a run holding the store's lock says it is alive.
        lock_stale_after_s: A lock without a heartbeat for this long may be taken over.
    """

    fence: Fence | None = None
    lock_heartbeat_s: float = 30.0
    lock_stale_after_s: float = 600.0

    def _set_lock(self, fence: Fence | dict | None, heartbeat_s: float, stale_after_s: float):
        """Takes the constructor's lock arguments (``fence``, ``lock_*``), checked."""
        if not 0 < heartbeat_s < stale_after_s:
            raise ConfigError(
                f"store.lock_heartbeat_s ({heartbeat_s}) must be > 0 and below "
                f"store.lock_stale_after_s ({stale_after_s})"
            )
        self.fence = Fence.from_config(fence)
        self.lock_heartbeat_s = float(heartbeat_s)
        self.lock_stale_after_s = float(stale_after_s)

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Writes ``data`` under ``key`` atomically, replacing any previous content."""

    @abstractmethod
    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Writes ``data`` under ``key`` only if nothing is there, atomically; True if it did.

        Of two callers racing for one key exactly one gets True.
        """

    @abstractmethod
    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        """The content under ``key`` and a version that changes with every write of it;
        None where nothing is stored there. Never fenced (the lock's own read)."""

    @abstractmethod
    def swap(self, key: str, data: bytes, version: str | None) -> str | None:
        """Compare-and-swap: writes ``data`` only where the content under ``key`` is still
        at ``version`` (None: only where nothing is there); returns the new version, or
        None where another write came first. Of two callers swapping from one version
        exactly one succeeds. Never fenced: it is how the lock itself changes hands."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """Returns the content under ``key``; raises ArtifactNotFound naming the key."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a file is stored under ``key`` (a folder does not count)."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys of all files in the folder ``prefix`` and below, relative to the store, sorted.

        ``prefix`` names a folder, so ``"models/BTC"`` does not match ``models/BTCUSD/...``;
        a missing folder lists as empty.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Removes the file, or the whole folder, under ``key``; a missing key is no error."""

    @abstractmethod
    def describe(self) -> str:
        """Where the store points, such as ``local:/abs/path``; never contains a credential."""

    def write_many(self, files: dict[str, bytes]) -> None:
        """Writes every ``key: data`` of ``files``, each atomically, in no set order;
        returns once all have landed, raising the first error after every write ended.

        What a version's files need before its manifest (``registry.artifacts``): a store
        whose writes wait on the disk (``LocalStore``) overlaps them.
        """
        for key, data in files.items():
            self.write_bytes(key, data)

    def clean_temporary(self) -> int:
        """Removes what interrupted writes left behind; returns how many files.

        Only safe while no other process writes to the store (under the run's lock).
        A store whose writes leave nothing behind (Dropbox commits a file whole) has
        nothing to remove.
        """
        return 0

    def write_json(self, key: str, obj: Any) -> None:
        """Writes ``obj`` as indented UTF-8 JSON under ``key``."""
        self.write_bytes(key, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))

    def read_json(self, key: str) -> Any:
        """Reads the JSON under ``key``; raises StoreError naming the key if it is not JSON."""
        data = self.read_bytes(key)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise StoreError(f"{self.describe()}: {key!r} is not valid JSON: {exc}") from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"


class LocalStore(Store):
    """Artifacts in a local directory; writes go to a temporary file, fsync, then rename.

    A fenced write checks the lock and renames its file into place while holding a
    shared OS lock (``flock``) on the root directory; the lock changes hands only under
    the exclusive one. So a write that passed its check lands before any takeover, and
    after one every write of the run that lost the lock is refused. This holds between
    processes of one machine (and of machines whose shared filesystem honours ``flock``).

    ``write_many`` writes its files from a few threads: each is still its own temporary
    file, fsync and rename, but their fsyncs overlap (the filesystem commits them
    together), so a version's files cost about one wait on the disk, not one each.

    ``durable=False`` skips the fsyncs, for a scratch copy only (a replay's dry-run store,
    ``pipelines.replay.state``): every write is still a rename of a whole file, so a
    killed process leaves nothing half-written, but a crash of the machine may leave a
    renamed file empty or cut. A root is a scratch copy when its ``scratch.json``
    (``mark_scratch``) says so and names the machine's current boot; after a restart the
    store refuses it, so a copy that may have been torn is never read as whole.

    Args:
        root: The directory; created on the first write.
        fence: The lock a run holds (see ``Store.fence``); set by the run, not by hand.
        lock_heartbeat_s: See ``Store.lock_heartbeat_s``.
        lock_stale_after_s: See ``Store.lock_stale_after_s``.
        durable: fsync every write (the default); False only on a scratch copy.

    Raises:
        ConfigError: ``durable=False`` on a root that is not a scratch copy of this boot.
    """

    # A lock change waits this long for writes already past their check to land.
    exclusive_wait_s = 10.0
    # write_many's threads: enough to overlap a version's files and its manifest's peers
    write_threads = 8

    def __init__(
        self,
        root: str | Path = "artifacts",
        *,
        fence: dict | None = None,
        lock_heartbeat_s: float = 30.0,
        lock_stale_after_s: float = 600.0,
        durable: bool = True,
    ):
        self.root = Path(root).expanduser().absolute()
        self._set_lock(fence, lock_heartbeat_s, lock_stale_after_s)
        if not durable:
            why = scratch_problem(self.root)
            if why:
                raise ConfigError(f"store.durable=false refused for {self.describe()}: {why}")
        self.durable = bool(durable)

    def _path(self, key: str, *, allow_root: bool = False) -> Path:
        key = check_key(key, allow_root=allow_root)
        return self.root.joinpath(*key.split("/")) if key else self.root

    @contextmanager
    def _root_locked(self, exclusive: bool) -> Iterator[None]:
        """An OS lock on the root directory: shared for fenced writes, exclusive for the
        lock's own changes. Closing the descriptor releases it, also when a process dies."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if not exclusive:
                fcntl.flock(fd, fcntl.LOCK_SH)
            else:
                deadline = time.monotonic() + self.exclusive_wait_s
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise StoreError(
                                f"{self.describe()}: a write has held the root for over "
                                f"{self.exclusive_wait_s:g} s (its process paused?); the "
                                "lock was left as it was"
                            ) from None
                        time.sleep(0.01)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def _fenced(self, key: str) -> Iterator[None]:
        """Holds the shared root lock and checks the fence, where the store has one."""
        if self.fence is None:
            yield
            return
        with self._root_locked(exclusive=False):
            try:
                lock = (self.root / LOCK_KEY).read_bytes()
            except FileNotFoundError:
                lock = None
            self.fence.check(lock, self.describe(), key)
            yield

    def write_bytes(self, key: str, data: bytes) -> None:
        atomic_write_bytes(self._path(key), data, guard=self._fenced(key), fsync=self.durable)

    def write_many(self, files: dict[str, bytes]) -> None:
        if len(files) < 2:
            return super().write_many(files)
        threads = min(len(files), self.write_threads)
        with ThreadPoolExecutor(threads, thread_name_prefix="store-write") as pool:
            writes = [pool.submit(self.write_bytes, key, data) for key, data in files.items()]
        for write in writes:  # the pool has waited for all: the first error, if any
            write.result()

    def create_exclusive(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._fenced(key):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if self.durable:
                    os.fsync(handle.fileno())
        return True

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self.read_bytes(key)
        except ArtifactNotFound:
            return None
        return data, content_hash(data)

    def swap(self, key: str, data: bytes, version: str | None) -> str | None:
        with self._root_locked(exclusive=True):
            current = self.read_versioned(key)
            if (None if current is None else current[1]) != version:
                return None
            atomic_write_bytes(self._path(key), data)
        return content_hash(data)

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ArtifactNotFound(f"no artifact {key!r} in {self.describe()}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        folder = self._path(prefix, allow_root=True)
        keys = []
        for directory, _, names in os.walk(folder):
            relative = Path(directory).relative_to(self.root).as_posix()
            for name in names:
                if not _is_temp_name(name):
                    keys.append(name if relative == "." else f"{relative}/{name}")
        return sorted(keys)

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._fenced(key):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def clean_temporary(self) -> int:
        """Removes the temporary files of atomic writes cut short (``.NAME.*.tmp``)."""
        removed = 0
        with self._fenced("temporary files"):
            for directory, _, names in os.walk(self.root):
                for name in names:
                    if _is_temp_name(name):
                        (Path(directory) / name).unlink(missing_ok=True)
                        removed += 1
        return removed

    def describe(self) -> str:
        return f"local:{self.root}"


SCRATCH_KEY = "scratch.json"


def boot_id() -> str | None:
    """This boot of the machine (Linux's ``boot_id``); None where the system has none."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def mark_scratch(root: str | Path, copy_of: str) -> None:
    """Marks ``root`` a scratch copy of ``copy_of`` made in this boot (``scratch.json``,
    written durably): a ``LocalStore`` may then skip its fsyncs there, until a restart.

    Raises:
        ConfigError: the system has no boot id to tie the mark to.
    """
    booted = boot_id()
    if booted is None:
        raise ConfigError("store.durable=false needs the system's boot id (Linux)")
    mark = {"copy_of": copy_of, "boot_id": booted}
    atomic_write_bytes(Path(root) / SCRATCH_KEY, (json.dumps(mark, indent=2) + "\n").encode())


def scratch_problem(root: Path) -> str | None:
    """Why ``root`` may not be written without fsync (None: a scratch copy of this boot)."""
    try:
        mark = json.loads((root / SCRATCH_KEY).read_bytes())
    except (OSError, ValueError):
        return f"it holds no {SCRATCH_KEY}: only a scratch copy (a replay's dry run) may be"
    booted = boot_id()
    if booted is None or not isinstance(mark, dict) or mark.get("boot_id") != booted:
        return (
            "the machine restarted since this scratch copy was written without fsync, so "
            "it may be torn: replay into a new run directory"
        )
    return None


# Worth another attempt: the server or the network may do better next time.
