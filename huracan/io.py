"""Atomic file writes (a reader sees the old file or the whole new one, never half), and the
one conversion of numpy and time values to JSON."""

from __future__ import annotations

import os
import tempfile
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(
    path: str | Path,
    data: bytes,
    guard: AbstractContextManager | None = None,
    fsync: bool = True,
) -> None:
    """Writes ``data`` to a temporary file beside ``path``, fsyncs, then renames it over.

    ``guard`` is entered around the rename alone (a store's fencing check), so the slow
    part, writing the bytes, happens outside it; where it raises, nothing is renamed.
    ``fsync=False`` skips the flush to disk: the rename is still of a whole file, so a
    killed process leaves the old file or the new one, but a crash of the machine may
    leave the new name on an empty or partial file (only for scratch copies, see
    ``LocalStore``'s ``durable``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        with guard or nullcontext():
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def plain(value: object) -> object:
    """A JSON-ready value: numpy scalars and arrays as Python ones, times as ISO strings.

    A non-finite float (NaN, inf: no JSON number) becomes None. Also the ``default`` hook
    of ``json.dumps``, which calls it only for what JSON cannot hold.

    Raises:
        TypeError: for a value with no JSON form.
    """
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value is None or isinstance(value, str | int | bool | list | dict):
        return value
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
