"""An in-memory Dropbox behind a requests transport adapter, for the real SDK client.

Mount it on a ``requests.Session`` and hand that session to ``dropbox.Dropbox``: the SDK
serialises, sends and parses exactly as it would against dropboxapi.com, and the adapter
answers the routes the artifact store uses, with Dropbox's status codes, headers, error
bodies and real content hashes. Each file keeps its revision until it is written again,
and uploads honour the write modes as Dropbox documents them (``add``, ``overwrite``,
``update(rev)``; identical content is no conflict and makes no new revision); requests are
answered one at a time, as the server orders concurrent writes to one path.
"""

from __future__ import annotations

import io
import itertools
import json
import threading
from collections import deque
from urllib.parse import parse_qs, urlsplit

import requests
from dropbox.content_hash import content_hash
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

API = "api.dropboxapi.com"
CONTENT = "content.dropboxapi.com"
TIMESTAMP = "2024-01-01T00:00:00Z"


class RouteError(Exception):
    """A route's error reply: HTTP 409 with Dropbox's JSON error body."""

    def __init__(self, error: dict, summary: str):
        super().__init__(summary)
        self.error = error
        self.summary = summary


def _not_found(tag: str = "path") -> RouteError:
    return RouteError({".tag": tag, tag: {".tag": "not_found"}}, f"{tag}/not_found/..")


def _tag(value: object) -> object:
    return value.get(".tag") if isinstance(value, dict) else value


class FakeDropboxAdapter(BaseAdapter):
    """Answers the Dropbox API v2 routes of the artifact store from ``self.files``.

    Args:
        token: The only access token accepted; any other gets HTTP 401.
        refresh_token: The refresh token that /oauth2/token exchanges for ``token``.
        page_size: Entries per list_folder page, small to force paging.
    """

    def __init__(
        self, token: str = "test-token", refresh_token: str | None = None, page_size: int = 1000
    ):
        super().__init__()
        self.token = token
        self.refresh_token = refresh_token
        self.page_size = page_size
        self.files: dict[str, bytes] = {}  # display path -> content
        self.revs: dict[str, str] = {}  # display path -> revision of its content
        self.calls: list[str] = []  # route of every request, faults included
        self._faults: deque[tuple[int, int | None] | Exception | None] = deque()
        self._corrupt_stored = 0
        self._garbled_in_transit = 0
        self._sessions: dict[str, bytearray] = {}
        self._cursors: dict[str, list[dict]] = {}
        self._ids = itertools.count(1)
        self._serial = threading.Lock()

    # Fault injection -------------------------------------------------------------------
    def fail_next(
        self, times: int, status: int = 500, retry_after: int | None = None, after: int = 0
    ) -> None:
        """After ``after`` good requests, the next ``times`` get HTTP ``status``; a 429 with
        ``retry_after`` carries it as Dropbox's JSON rate-limit error."""
        self._faults.extend([None] * after + [(status, retry_after)] * times)

    def drop_next(self, times: int) -> None:
        """The next ``times`` requests fail with a connection error."""
        self._faults.extend(
            requests.ConnectionError("connection reset by peer") for _ in range(times)
        )

    def corrupt_next(self, times: int) -> None:
        """The next ``times`` commits store altered bytes and report their hash."""
        self._corrupt_stored += times

    def garble_next(self, times: int) -> None:
        """The next ``times`` uploaded bodies arrive altered, so Dropbox's hash check fails."""
        self._garbled_in_transit += times

    # Transport ---------------------------------------------------------------------------
    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        with self._serial:
            return self._answer(request)

    def _answer(self, request):
        url = urlsplit(request.url)
        route = url.path.removeprefix("/2/")
        self.calls.append(route)
        fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            if isinstance(fault, Exception):
                raise fault
            status, retry_after = fault
            if status == 429 and retry_after is not None:
                reason = {".tag": "too_many_requests"}
                error = {"reason": reason, "retry_after": retry_after}
                return self._json(request, 429, {"error": error})
            return self._reply(request, status, b"server error", "text/plain")
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        if url.path == "/oauth2/token":
            return self._refresh(request, body)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            error = {
                "error_summary": "invalid_access_token/..",
                "error": {".tag": "invalid_access_token"},
            }
            return self._json(request, 401, error)
        handler = self._routes().get((url.hostname, route))
        if handler is None:
            return self._reply(
                request, 400, f"unknown route {url.hostname}{url.path}".encode(), "text/plain"
            )
        if url.hostname == CONTENT:
            arg = json.loads(request.headers["Dropbox-API-Arg"])
        else:
            arg = json.loads(body) if body else None
        try:
            return handler(request, arg, body)
        except RouteError as exc:
            return self._json(request, 409, {"error_summary": exc.summary, "error": exc.error})

    def close(self) -> None:
        pass

    def _routes(self):
        return {
            (API, "files/get_metadata"): self._get_metadata,
            (API, "files/list_folder"): self._list_folder,
            (API, "files/list_folder/continue"): self._list_folder_continue,
            (API, "files/delete_v2"): self._delete,
            (CONTENT, "files/upload"): self._upload,
            (CONTENT, "files/upload_session/start"): self._session_start,
            (CONTENT, "files/upload_session/append_v2"): self._session_append,
            (CONTENT, "files/upload_session/finish"): self._session_finish,
            (CONTENT, "files/download"): self._download,
        }

    # Replies -----------------------------------------------------------------------------
    def _reply(self, request, status: int, content: bytes, content_type: str, headers=None):
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict({"Content-Type": content_type, **(headers or {})})
        response.raw = io.BytesIO(content)
        response.url = request.url
        response.request = request
        response.connection = self
        response.reason = "OK" if status == 200 else "Error"
        response.encoding = "utf-8"
        return response

    def _json(self, request, status: int, obj: object):
        return self._reply(request, status, json.dumps(obj).encode(), "application/json")

    def _refresh(self, request, body: bytes):
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        if self.refresh_token is None or form.get("refresh_token") != self.refresh_token:
            return self._json(request, 400, {"error": "invalid_grant"})
        return self._json(
            request, 200, {"access_token": self.token, "expires_in": 14400, "token_type": "bearer"}
        )

    # State -------------------------------------------------------------------------------
    def _find(self, path: str) -> str | None:
        lower = path.lower()
        return next((name for name in self.files if name.lower() == lower), None)

    def _is_folder(self, path: str) -> bool:
        lower = path.lower().rstrip("/") + "/"
        return any(name.lower().startswith(lower) for name in self.files)

    def _file_metadata(self, path: str) -> dict:
        data = self.files[path]
        return {
            ".tag": "file",
            "name": path.rsplit("/", 1)[-1],
            "id": f"id:{abs(hash(path.lower()))}",
            "client_modified": TIMESTAMP,
            "server_modified": TIMESTAMP,
            "rev": self._rev(path),
            "size": len(data),
            "path_lower": path.lower(),
            "path_display": path,
            "is_downloadable": True,
            "content_hash": content_hash(data),
        }

    def _rev(self, path: str, new: bool = False) -> str:
        """The revision of the content at ``path``; ``new``: a fresh one (a write)."""
        if new or path not in self.revs:
            self.revs[path] = f"{next(self._ids):016x}"
        return self.revs[path]

    @staticmethod
    def _folder_metadata(path: str) -> dict:
        name = path.rsplit("/", 1)[-1]
        return {
            ".tag": "folder",
            "name": name,
            "id": f"id:{abs(hash(path.lower()))}",
            "path_lower": path.lower(),
            "path_display": path,
        }

    def _received(self, arg: dict, body: bytes) -> bytes:
        """The uploaded body as Dropbox gets it, checked against the hash the SDK sent."""
        if self._garbled_in_transit:
            self._garbled_in_transit -= 1
            body = bytes([body[0] ^ 0xFF]) + body[1:] if body else b"\x00"
        if arg.get("content_hash") is not None and arg["content_hash"] != content_hash(body):
            raise RouteError({".tag": "content_hash_mismatch"}, "content_hash_mismatch/")
        return body

    def _commit(self, path: str, mode: object, data: bytes) -> dict:
        existing = self._find(path)
        if existing is not None and self.files[existing] == data and not self._corrupt_stored:
            return self._file_metadata(existing)  # identical content: nothing is written
        stale_rev = _tag(mode) == "update" and mode["update"] != self.revs.get(existing)
        if existing is not None and (_tag(mode) == "add" or stale_rev):
            reason = {".tag": "conflict", "conflict": {".tag": "file"}}
            raise RouteError(
                {".tag": "path", "reason": reason, "upload_session_id": "none"},
                "path/conflict/file/..",
            )
        if self._corrupt_stored:
            self._corrupt_stored -= 1
            data = data[:-1] + bytes([data[-1] ^ 0xFF]) if data else b"\x00"
        if existing is not None:
            del self.files[existing]
            self.revs.pop(existing, None)
        self.files[path] = data
        self._rev(path, new=True)
        return self._file_metadata(path)

    # Routes ------------------------------------------------------------------------------
    def _get_metadata(self, request, arg, body):
        path = self._find(arg["path"])
        if path is not None:
            return self._json(request, 200, self._file_metadata(path))
        if self._is_folder(arg["path"]):
            return self._json(request, 200, self._folder_metadata(arg["path"]))
        raise _not_found()

    def _list_folder(self, request, arg, body):
        folder = arg["path"].rstrip("/")
        if self._find(folder) is not None:
            raise RouteError({".tag": "path", "path": {".tag": "not_folder"}}, "path/not_folder/")
        if folder and not self._is_folder(folder):
            raise _not_found()
        below = [name for name in self.files if name.lower().startswith(folder.lower() + "/")]
        folders = sorted(  # every folder between the listed one and its files
            {
                name[:end]
                for name in below
                for end in range(len(folder) + 1, len(name))
                if name[end] == "/"
            }
        )
        # Folders first, then files in reverse order: Dropbox promises no sorting.
        entries = [self._folder_metadata(name) for name in ([folder] if folder else []) + folders]
        entries += [self._file_metadata(name) for name in sorted(below, reverse=True)]
        return self._page(request, entries)

    def _list_folder_continue(self, request, arg, body):
        entries = self._cursors.pop(arg["cursor"], None)
        if entries is None:
            raise RouteError({".tag": "reset"}, "reset/")
        return self._page(request, entries)

    def _page(self, request, entries: list[dict]):
        page, rest = entries[: self.page_size], entries[self.page_size :]
        cursor = f"cursor-{next(self._ids)}"
        if rest:
            self._cursors[cursor] = rest
        return self._json(request, 200, {"entries": page, "cursor": cursor, "has_more": bool(rest)})

    def _delete(self, request, arg, body):
        path = self._find(arg["path"])
        if path is not None:
            metadata = self._file_metadata(path)
            del self.files[path]
            self.revs.pop(path, None)
            return self._json(request, 200, {"metadata": metadata})
        if self._is_folder(arg["path"]):
            prefix = arg["path"].lower().rstrip("/") + "/"
            for name in [name for name in self.files if name.lower().startswith(prefix)]:
                del self.files[name]
                self.revs.pop(name, None)
            return self._json(request, 200, {"metadata": self._folder_metadata(arg["path"])})
        raise _not_found("path_lookup")

    def _upload(self, request, arg, body):
        data = self._received(arg, body)
        return self._json(request, 200, self._commit(arg["path"], arg.get("mode", "add"), data))

    def _session_start(self, request, arg, body):
        session_id = f"session-{next(self._ids)}"
        self._sessions[session_id] = bytearray(self._received(arg, body))
        return self._json(request, 200, {"session_id": session_id})

    def _session_buffer(self, cursor: dict, wrapper: str | None) -> bytearray:
        """The session's bytes so far; append errors carry the lookup tag itself, finish
        errors nest it under ``wrapper``."""
        buffer = self._sessions.get(cursor["session_id"])
        if buffer is None:
            lookup = {".tag": "not_found"}
        elif cursor["offset"] != len(buffer):
            lookup = {".tag": "incorrect_offset", "correct_offset": len(buffer)}
        else:
            return buffer
        error = lookup if wrapper is None else {".tag": wrapper, wrapper: lookup}
        raise RouteError(error, f"{wrapper or lookup['.tag']}/..")

    def _session_append(self, request, arg, body):
        self._session_buffer(arg["cursor"], None).extend(self._received(arg, body))
        return self._json(request, 200, None)

    def _session_finish(self, request, arg, body):
        buffer = self._session_buffer(arg["cursor"], "lookup_failed")
        buffer.extend(self._received(arg, body))
        del self._sessions[arg["cursor"]["session_id"]]
        commit = arg["commit"]
        return self._json(
            request, 200, self._commit(commit["path"], commit.get("mode", "add"), bytes(buffer))
        )

    def _download(self, request, arg, body):
        path = self._find(arg["path"])
        if path is None:
            raise _not_found()
        headers = {"Dropbox-API-Result": json.dumps(self._file_metadata(path))}
        return self._reply(request, 200, self.files[path], "application/octet-stream", headers)
