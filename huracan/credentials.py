"""Credentials: from the environment or a file the config names, never as a config value.

Hydra writes every override to ``.hydra/overrides.yaml``, ``config.yaml`` and
``hydra.yaml`` before the task runs, and a run writes its config into ``summary.json``, so
a token given on the command line would land on disk. :func:`refuse_secrets` scans every
override (Hydra's own ``hydra.*`` ones too, and keys nested in dict values) before Hydra
starts; :func:`refuse_secrets_in` scans a composed config (a token in a YAML file) before
any work. Both name the key, never the value.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from huracan.errors import ConfigError

# Names of keys (and environment variables) that hold credentials.
SECRET_KEY = re.compile(
    r"token|secret|password|passwd|passphrase|api_?key|private_?key|credential|bearer|auth(?!or)",
    re.IGNORECASE,
)
# A key naming where a credential is kept (store.credentials_file) is not one.
FILE_KEY = re.compile(r"_(file|path|dir)$", re.IGNORECASE)
# Prefixes of well-known token formats: Dropbox, GitHub, OpenAI-style, Slack, AWS, JWT.
TOKEN_PREFIX = re.compile(r"^(sl\.|gh[pousr]_|sk-|xox[abposr]-|AKIA|ASIA|ya29\.|eyJ)")
# A value is cut at these before each piece is judged (paths, lists, key: value text).
_PIECES = re.compile(r"[\s/\\,;:=(){}\[\]'\"$]+")
# Hydra's own interpolation of an environment variable: ${oc.env:NAME}.
_ENV_INTERPOLATION = re.compile(r"oc\.env\s*:\s*([A-Za-z_][A-Za-z0-9_]*)")
ADVICE = (
    "credentials are never config values (Hydra would save this one under .hydra/); the "
    "Dropbox store reads DROPBOX_ACCESS_TOKEN, or DROPBOX_REFRESH_TOKEN with DROPBOX_APP_KEY "
    "(and DROPBOX_APP_SECRET), from the environment or from the file store.credentials_file"
)


def is_secret_key(name: str) -> bool:
    """Whether a key's own name says it holds a credential (``*_file`` names a file)."""
    return bool(SECRET_KEY.search(name)) and not FILE_KEY.search(name)


def looks_like_token(value: str) -> bool:
    """Whether a string holds a piece shaped like a credential.

    A piece (the value cut at separators, so paths and lists are judged part by part)
    is token-like when it starts as a known token format does and is long, or when it is
    20 characters or more, mixes upper case, lower case and digits, switches between them
    as random text does (between letters and digits, at 40 % of its characters or more;
    ``MyCryptoData_Binance_2024`` at 24 %) and is as varied (over 3.5 bits of entropy per
    character).
    """
    for piece in _PIECES.split(value):
        if len(piece) < 20:
            continue
        if TOKEN_PREFIX.match(piece):
            return True
        kinds = [_kind(c) for c in piece]
        pairs = zip(kinds, kinds[1:], strict=False)
        switches = sum(a != b and "other" not in (a, b) for a, b in pairs) / len(piece)
        if {"upper", "lower", "digit"} <= set(kinds) and switches >= 0.4 and _entropy(piece) > 3.5:
            return True
    return False


def _kind(char: str) -> str:
    if char.isdigit():
        return "digit"
    return "upper" if char.isupper() else "lower" if char.islower() else "other"


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def refuse_secrets(overrides: Sequence[str]) -> None:
    """Refuses a credential among command-line arguments, before Hydra saves them.

    Every argument is scanned: a key (``hydra.*`` too, and keys nested in a dict value)
    whose name says it holds a credential, a token-like value anywhere in it, and an
    ``${oc.env:NAME}`` of a credential (its value would be written resolved).

    Raises:
        ConfigError: naming the argument's key (never the value) and where credentials go.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for argument in overrides:
        key = argument.partition("=")[0].lstrip("+~") or argument
        try:
            override = parser.parse_override(argument)
        except HydraException:  # a flag or a malformed override: Hydra reports it later
            keys, values = [key], [argument]
        else:
            key = override.key_or_group
            keys = [key, *(k for k, _ in _walk(override.value()))]
            values = [argument, *(v for _, v in _walk(override.value()) if isinstance(v, str))]
        named = next((k for k in keys if is_secret_key(k.split(".")[-1])), None)
        if named is not None and override_has_value(argument):
            raise ConfigError(f"{key}: {named.split('.')[-1]} on the command line: {ADVICE}")
        if any(looks_like_token(v) for v in values):
            raise ConfigError(f"{key}: a value on the command line looks like a token: {ADVICE}")
        env = [n for n in _ENV_INTERPOLATION.findall(argument) if is_secret_key(n)]
        if env:
            raise ConfigError(
                f"{key}: ${{oc.env:{env[0]}}} would write a credential into the run's "
                f"config and summary: {ADVICE}"
            )


def override_has_value(argument: str) -> bool:
    """``~key`` deletes and ``key=`` sets nothing: neither can carry a credential."""
    _, equals, value = argument.partition("=")
    return bool(equals and value.strip() and value.strip() not in ("null", "''", '""'))


def refuse_secrets_in(config: Mapping, path: str = "") -> None:
    """Refuses a composed config holding a credential (a key named like one with a value,
    or a token-like string) anywhere in it.

    Raises:
        ConfigError: naming the key, never the value.
    """
    for key, value in _walk(config, path):
        name = key.split(".")[-1]
        if value is not None and not isinstance(value, Mapping | list) and is_secret_key(name):
            raise ConfigError(f"{key} holds a credential in the config: {ADVICE}")
        if isinstance(value, str) and looks_like_token(value):
            raise ConfigError(f"{key} holds a value that looks like a token: {ADVICE}")


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every entry of nested dicts, lists and Hydra sweeps."""
    items = getattr(value, "list", None)  # a ChoiceSweep: a=x,y
    if isinstance(value, Mapping):
        entries = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list | tuple) or isinstance(items, list):
        entries = ((f"{path}[{i}]", v) for i, v in enumerate(items or value))
    else:
        return
    for key, item in entries:
        yield key, item
        yield from _walk(item, key)


def read_credentials_file(path: str | Path, names: Sequence[str]) -> dict[str, str]:
    """Reads ``NAME=value`` lines (``#`` comments, blank lines) of the allowed ``names``.

    The same names as the environment's (``DROPBOX_ACCESS_TOKEN``, ...), so a file and the
    environment read alike; the file stays out of the config and out of every output.

    Raises:
        ConfigError: a missing or unreadable file, a line that is not ``NAME=value`` or an
            unknown name, naming the file and the line (never a value).
    """
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"store.credentials_file {file}: cannot be read ({err})") from None
    found = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        name = name.strip().removeprefix("export ").strip()
        if not equals or name not in names:
            raise ConfigError(
                f"store.credentials_file {file}, line {number}: expected NAME=value with NAME "
                f"one of {', '.join(names)}"
            )
        found[name] = value.strip().strip("'\"")
    return found
