"""The Dropbox store: the official SDK, verified uploads, retries with backoff.

Slightly over 300 lines: the SDK's error classes, retries and upload sessions each need
their own handling, and they belong to this one store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

import dropbox
import requests
from dropbox import files
from dropbox.exceptions import ApiError, AuthError, HttpError, InternalServerError, RateLimitError

from huracan.credentials import read_credentials_file
from huracan.errors import ConfigError
from huracan.store.base import ArtifactNotFound, Store, StoreError, check_key, content_hash
from huracan.store.fence import LOCK_KEY

log = logging.getLogger(__name__)

T = TypeVar("T")


_TRANSIENT_ERRORS = (
    InternalServerError,
    RateLimitError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
_HASH_MISMATCH_ERRORS = (
    files.UploadError,
    files.UploadSessionStartError,
    files.UploadSessionAppendError,
    files.UploadSessionFinishError,
)
_CREDENTIAL_HINT = (
    "check DROPBOX_ACCESS_TOKEN, or DROPBOX_REFRESH_TOKEN with DROPBOX_APP_KEY "
    "(and DROPBOX_APP_SECRET unless the token was issued with PKCE)"
)


class _CorruptTransfer(Exception):
    """The bytes Dropbox holds or sent differ from the bytes meant; a retry may fix it."""


def _is_missing(exc: ApiError) -> bool:
    """Whether an API error means 'nothing (of that kind) at this path'."""
    error = exc.error
    if isinstance(error, files.DeleteError):
        lookup = error.get_path_lookup() if error.is_path_lookup() else None
    elif isinstance(error, files.DownloadError | files.GetMetadataError | files.ListFolderError):
        lookup = error.get_path() if error.is_path() else None
    else:
        return False
    return lookup is not None and (
        lookup.is_not_found() or lookup.is_not_file() or lookup.is_not_folder()
    )


def _is_conflict(exc: ApiError) -> bool:
    """Whether an upload was refused because of the file already there (``add`` mode) or
    because that file is not at the revision given (``update`` mode)."""
    error = exc.error
    return (
        isinstance(error, files.UploadError)
        and error.is_path()
        and error.get_path().reason.is_conflict()
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, _CorruptTransfer):
        return str(exc)
    if isinstance(exc, RateLimitError):
        return "rate limited (HTTP 429)"
    if isinstance(exc, ApiError):
        return f"API error {exc.error!r}"
    if isinstance(exc, HttpError):
        return f"HTTP {exc.status_code}: {str(exc.body)[:200]}"
    return f"{type(exc).__name__}: {exc}"


CREDENTIALS = (
    "DROPBOX_ACCESS_TOKEN",
    "DROPBOX_REFRESH_TOKEN",
    "DROPBOX_APP_KEY",
    "DROPBOX_APP_SECRET",
)


def _client_from_env(credentials_file: str | None = None) -> dropbox.Dropbox:
    # the file, where one is named, is the only source: never half from each
    source = (
        os.environ
        if credentials_file is None
        else read_credentials_file(credentials_file, CREDENTIALS)
    )
    env = {name: source.get(name) or None for name in CREDENTIALS}
    # The store does its own retries, with backoff it can report and tests can observe.
    no_sdk_retries = {"max_retries_on_error": 0, "max_retries_on_rate_limit": 0}
    # A refresh token outlives the four-hour access token, so it wins for long runs.
    if env["DROPBOX_REFRESH_TOKEN"] and env["DROPBOX_APP_KEY"]:
        return dropbox.Dropbox(
            oauth2_refresh_token=env["DROPBOX_REFRESH_TOKEN"],
            app_key=env["DROPBOX_APP_KEY"],
            app_secret=env["DROPBOX_APP_SECRET"],
            **no_sdk_retries,
        )
    if env["DROPBOX_ACCESS_TOKEN"]:
        return dropbox.Dropbox(oauth2_access_token=env["DROPBOX_ACCESS_TOKEN"], **no_sdk_retries)
    if env["DROPBOX_REFRESH_TOKEN"]:
        raise ConfigError(
            "store=dropbox: DROPBOX_REFRESH_TOKEN is set but DROPBOX_APP_KEY is not; "
            "set DROPBOX_APP_KEY (and DROPBOX_APP_SECRET unless the token came from PKCE)"
        )
    where = "the environment" if credentials_file is None else credentials_file
    raise ConfigError(
        f"store=dropbox needs credentials in {where}: set DROPBOX_ACCESS_TOKEN, "
        "or DROPBOX_REFRESH_TOKEN and DROPBOX_APP_KEY (plus DROPBOX_APP_SECRET unless the "
        "token came from PKCE), in the environment or in the file store.credentials_file; "
        "credentials are never config values"
    )


class DropboxStore(Store):
    """Artifacts in a Dropbox folder, through the official SDK, with retries and verification.

    Every upload is checked against the local content hash; Dropbox commits a file whole,
    so readers never see half of one. Credentials come from the environment only.

    The lock changes hands by compare-and-swap on its revision (``WriteMode.update(rev)``).
    A fenced write downloads the lock and checks it one request before each upload
    attempt; Dropbox has no transaction over two files, so a write that passed its check
    just before a takeover can still land after it (a window of one request, not of a run).

    Args:
        root: The Dropbox folder (inside the app folder for app-folder apps).
        client: A ready client; ``None`` builds one from DROPBOX_ACCESS_TOKEN, or from
            DROPBOX_REFRESH_TOKEN, DROPBOX_APP_KEY and DROPBOX_APP_SECRET. The client's own
            retries are turned off (on a clone) because the store retries.
        max_retries: Further attempts after a transient failure (5xx, rate limit,
            connection error, content hash mismatch).
        backoff_s: Wait before the first retry; it doubles on each further one. A rate
            limit's own ``Retry-After`` takes precedence.
        chunk_size: Files larger than this many bytes go through an upload session in
            chunks of this size (Dropbox takes at most 150 MiB per request).
        sleep: How to wait between attempts.
        fence: The lock a run holds (see ``Store.fence``); set by the run, not by hand.
        lock_heartbeat_s: See ``Store.lock_heartbeat_s``.
        lock_stale_after_s: See ``Store.lock_stale_after_s``.
        credentials_file: A file of ``NAME=value`` lines with the same names as the
            environment's; where given, the credentials come from it alone.

    Raises:
        ConfigError: No usable credentials in the environment, or a setting that cannot work.
    """

    def __init__(
        self,
        root: str = "/huracan",
        *,
        client: dropbox.Dropbox | None = None,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        chunk_size: int = 8 * 2**20,
        sleep: Callable[[float], None] = time.sleep,
        fence: dict | None = None,
        lock_heartbeat_s: float = 30.0,
        lock_stale_after_s: float = 600.0,
        credentials_file: str | None = None,
    ):
        self._set_lock(fence, lock_heartbeat_s, lock_stale_after_s)
        if max_retries < 0:
            raise ConfigError(f"store.max_retries must be >= 0, got {max_retries}")
        if not 0 < chunk_size <= 150 * 2**20:
            raise ConfigError(f"store.chunk_size must be in (0, 150 MiB], got {chunk_size}")
        root = str(root).strip("/")
        self.root = "/" + check_key(root) if root else ""
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.chunk_size = chunk_size
        self._sleep = sleep
        if client is None:
            client = _client_from_env(credentials_file)
        elif isinstance(client, dropbox.Dropbox):
            client = client.clone(max_retries_on_error=0, max_retries_on_rate_limit=0)
        self._client = client

    def describe(self) -> str:
        return f"dropbox:{self.root or '/'}"

    def check(self) -> None:
        """Reaches the root folder once (before any work): raises ConfigError for rejected
        credentials, StoreError where Dropbox cannot be reached (after the retries)."""

        def probe() -> None:
            try:
                self._client.files_list_folder(self.root, limit=1)
            except ApiError as exc:
                if not _is_missing(exc):  # a root not created yet is fine
                    raise

        self._with_retries("listing of", self.root or "/", probe)

    def _path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def _with_retries(self, action: str, path: str, operation: Callable[[], T]) -> T:
        attempt = 0
        while True:
            try:
                return operation()
            except AuthError as exc:
                raise ConfigError(
                    f"Dropbox authentication failed ({exc.error!r}) during {action} {path} in "
                    f"{self.describe()}: {_CREDENTIAL_HINT}"
                ) from exc
            except (*_TRANSIENT_ERRORS, _CorruptTransfer) as exc:
                if attempt >= self.max_retries:
                    raise StoreError(
                        f"Dropbox {action} {path} failed after {attempt + 1} attempts: "
                        f"{_reason(exc)}"
                    ) from exc
                if isinstance(exc, RateLimitError) and exc.backoff is not None:
                    wait = float(exc.backoff)
                else:
                    wait = self.backoff_s * 2**attempt
                log.warning(
                    "Dropbox %s %s: %s; retry %d of %d in %.1f s",
                    action,
                    path,
                    _reason(exc),
                    attempt + 1,
                    self.max_retries,
                    wait,
                )
                self._sleep(wait)
                attempt += 1
            except (ApiError, HttpError) as exc:
                raise StoreError(f"Dropbox {action} {path} failed: {_reason(exc)}") from exc

    def _check_fence(self, key: str) -> None:
        """Raises LockLost where the store is fenced and the lock is no longer its run's."""
        if self.fence is not None:
            current = self.read_versioned(LOCK_KEY)
            self.fence.check(None if current is None else current[0], self.describe(), key)

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        data = bytes(data)  # the SDK sends only bytes, not other buffers
        expected = content_hash(data)

        def upload() -> None:
            self._check_fence(key)  # before every attempt: a retry may come much later
            try:
                metadata = self._upload(path, data)
            except ApiError as exc:
                if isinstance(exc.error, _HASH_MISMATCH_ERRORS) and (
                    exc.error.is_content_hash_mismatch()
                ):
                    raise _CorruptTransfer(
                        "content hash mismatch: Dropbox rejected the bytes it received"
                    ) from exc
                raise
            if metadata.content_hash != expected:
                raise _CorruptTransfer(
                    f"content hash mismatch: Dropbox stored {metadata.content_hash}, "
                    f"the local bytes hash to {expected}"
                )

        self._with_retries("upload of", path, upload)

    def _upload(self, path: str, data: bytes) -> files.FileMetadata:
        mode = files.WriteMode.overwrite
        size = self.chunk_size
        if len(data) <= size:
            return self._client.files_upload(data, path, mode=mode)
        session_id = self._client.files_upload_session_start(data[:size]).session_id
        offset = size
        while len(data) - offset > size:
            cursor = files.UploadSessionCursor(session_id, offset)
            self._client.files_upload_session_append_v2(data[offset : offset + size], cursor)
            offset += size
        cursor = files.UploadSessionCursor(session_id, offset)
        commit = files.CommitInfo(path, mode=mode)
        return self._client.files_upload_session_finish(data[offset:], cursor, commit)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Dropbox's ``add`` mode without renaming: a file already there is a conflict."""
        path = self._path(key)

        def add() -> bool:
            self._check_fence(key)
            try:
                self._client.files_upload(
                    bytes(data), path, mode=files.WriteMode.add, autorename=False
                )
            except ApiError as exc:
                if _is_conflict(exc):
                    return False
                raise
            return True

        return self._with_retries("exclusive upload of", path, add)

    def swap(self, key: str, data: bytes, version: str | None) -> str | None:
        """``add`` mode where ``version`` is None, else ``update(version)``, without
        renaming: another revision there is a conflict. A retry after a lost reply may
        find its own upload there and report a conflict; the lock re-reads to tell."""
        path = self._path(key)
        mode = files.WriteMode.add if version is None else files.WriteMode.update(version)

        def upload() -> str | None:
            try:
                metadata = self._client.files_upload(bytes(data), path, mode=mode, autorename=False)
            except ApiError as exc:
                if _is_conflict(exc):
                    return None
                raise
            return metadata.rev

        return self._with_retries("compare-and-swap upload of", path, upload)

    def read_bytes(self, key: str) -> bytes:
        found = self.read_versioned(key)
        if found is None:
            raise ArtifactNotFound(f"no artifact {key!r} in {self.describe()}")
        return found[0]

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        path = self._path(key)

        def download() -> tuple[bytes, str] | None:
            try:
                metadata, response = self._client.files_download(path)
            except ApiError as exc:
                if _is_missing(exc):
                    return None
                raise
            with contextlib.closing(response):
                data = response.content
            if metadata.content_hash is not None and metadata.content_hash != content_hash(data):
                raise _CorruptTransfer(
                    f"content hash mismatch: the download does not hash to {metadata.content_hash}"
                )
            return data, metadata.rev

        return self._with_retries("download of", path, download)

    def exists(self, key: str) -> bool:
        path = self._path(key)

        def lookup() -> bool:
            try:
                return isinstance(self._client.files_get_metadata(path), files.FileMetadata)
            except ApiError as exc:
                if _is_missing(exc):
                    return False
                raise

        return self._with_retries("lookup of", path, lookup)

    def list(self, prefix: str = "") -> list[str]:
        prefix = check_key(prefix, allow_root=True)
        folder = f"{self.root}/{prefix}" if prefix else self.root

        def list_files() -> list[files.FileMetadata]:
            try:
                page = self._client.files_list_folder(folder, recursive=True)
            except ApiError as exc:
                if _is_missing(exc):
                    return []
                raise
            entries = page.entries
            while page.has_more:
                page = self._client.files_list_folder_continue(page.cursor)
                entries += page.entries
            return [entry for entry in entries if isinstance(entry, files.FileMetadata)]

        root_lower = self.root.lower() + "/"
        return sorted(
            entry.path_display[len(root_lower) :]
            for entry in self._with_retries("listing of", folder or "/", list_files)
            if entry.path_lower.startswith(root_lower)
        )

    def delete(self, key: str) -> None:
        path = self._path(key)

        def remove() -> None:
            self._check_fence(key)
            try:
                self._client.files_delete_v2(path)
            except ApiError as exc:
                if not _is_missing(exc):
                    raise

        self._with_retries("delete of", path, remove)
