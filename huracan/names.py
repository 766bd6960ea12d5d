"""Names that become path segments of the store: one rule for run ids, symbols, versions.

A run id, a symbol and a version id each name a folder or a file of the artifact root
(``runs/<run_id>/``, ``models/<SYMBOL>/baseline_<run_id>/``, ``champions/<SYMBOL>.json``).
One that holds ``..``, a separator or a control character could leave its folder, or be
written by one run and refused by the next reader (the roster's schema), breaking the
root for every later run; so every such name passes :func:`check_segment` before any
training, and the roster's schema holds the same pattern.
"""

from __future__ import annotations

import re

from huracan.errors import ConfigError

MAX_SEGMENT = 100
# A letter, digit, '_' or '-', then up to MAX_SEGMENT - 1 of those or single dots: no '..',
# no separator, no control character, never '.' or '..' itself, never a hidden name.
SEGMENT = rf"[A-Za-z0-9_-](?:[A-Za-z0-9_-]|\.(?!\.)){{0,{MAX_SEGMENT - 1}}}"
_SEGMENT = re.compile(SEGMENT)
# a symbol: upper-case letters and digits, single dots between them (a subset of SEGMENT)
SYMBOL = r"[A-Z0-9](?:[A-Z0-9]|\.(?!\.)){0,31}"


def check_segment(name: object, what: str) -> str:
    """The name as a string, or a ConfigError saying why it cannot name a store folder.

    Args:
        name: a run id, symbol or version id.
        what: where it comes from, for the message (``pipeline.run_id``, a file name).

    Raises:
        ConfigError: the name is empty, too long, or holds ``..``, ``/``, ``\\``, a
            control or other character outside letters, digits, ``_``, ``-`` and ``.``.
    """
    text = str(name)
    if _SEGMENT.fullmatch(text):
        return text
    if len(text) > MAX_SEGMENT:
        why = f"longer than {MAX_SEGMENT} characters"
    elif ".." in text:
        why = "holds '..'"
    elif any(c in text for c in "/\\"):
        why = "holds a path separator"
    elif any(ord(c) < 32 or ord(c) == 127 for c in text):
        why = "holds a control character"
    else:
        why = "is not 1 or more letters, digits, '_', '-' or single '.' (not first)"
    raise ConfigError(f"{what} {text!r} is not a safe name: it {why} (unsafe as a store folder)")
