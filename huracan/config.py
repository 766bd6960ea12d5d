"""Components from the config: built with ``hydra.utils.instantiate``, checked before work.

Every swappable part (data source, clusterer, market factor, encoder, heads, pipeline,
trainer, logger, queue, store) is a config group whose options name their class with
``_target_``. The types live once, in the constructors' signatures: :func:`validate`
checks every option of every component against its ``_target_``'s signature before
anything is loaded or trained, so ``data.n_assets=abc`` or ``head.granularity=asset``
ends the run with one line naming the key, not a traceback an hour later.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from huracan.errors import ConfigError

Node = DictConfig | Mapping


def build(node: Node, **kwargs: Any) -> Any:
    """Instantiates a component config with plain Python containers (lists, dicts)."""
    return instantiate(node, _convert_="all", **kwargs)


def target_of(node: Node, path: str) -> Any:
    """The class or function a component config names, or a ConfigError saying why not."""
    target = node.get("_target_")
    if not target:
        raise ConfigError(f"{path}: no _target_ (the class or function this option builds)")
    try:
        return get_object(str(target))
    except Exception as exc:
        raise ConfigError(f"{path}._target_: cannot import {target!r} ({exc})") from None


def validate(cfg: DictConfig) -> None:
    """Checks the whole config before any work: missing values, and every component's keys.

    Raises:
        ConfigError: naming the first key at fault, its value and what was expected.
    """
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        key = missing[0]
        raise ConfigError(f"{key} is required and has no value: set it, e.g. {key}=...")
    for name, node in cfg.items():
        if isinstance(node, DictConfig) and "_target_" in node:
            check_component(node, str(name))


def check_component(node: DictConfig, path: str) -> None:
    """Checks one component config's keys and value types against its target's signature."""
    target = target_of(node, path)
    signature, hints = _signature(target)
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    values = OmegaConf.to_container(node, resolve=True)
    for key, value in values.items():
        if key.startswith("_"):
            continue
        if key not in params:
            if takes_any:
                continue
            options = ", ".join(k for k in params if k != "self")
            raise ConfigError(
                f"{path}.{key} is not an option of {_name(target)} (options: {options})"
            )
        hint = hints.get(key)
        if hint is not None and not _matches(value, hint):
            raise ConfigError(
                f"{path}.{key}: expected {_describe(hint)}, got {value!r} ({_name(target)})"
            )


def _signature(target: Any) -> tuple[inspect.Signature, dict]:
    function = target.__init__ if inspect.isclass(target) else target
    signature = inspect.signature(target)
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # annotations a third-party library cannot resolve: keys only
        hints = {}
    return signature, hints


def _matches(value: Any, hint: Any) -> bool:
    """Whether a plain config value (from YAML or the command line) fits a type hint."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint in (str, Path):
        return isinstance(value, str)
    if origin in (list, tuple, Sequence, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        items = [a for a in args if a is not Ellipsis]
        if origin is tuple and len(items) > 1:  # tuple[float, float]: fixed length
            return len(value) == len(items) and all(map(_matches, value, items))
        return not items or all(_matches(v, items[0]) for v in value)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, dict)
    return True  # a class the config cannot spell: left to the component


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint)).replace("NoneType", "null")


def _name(target: Any) -> str:
    return getattr(target, "__qualname__", str(target))
