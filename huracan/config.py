"""Components from the config: built with ``hydra.utils.instantiate``, checked before work.

Every swappable part (data source, clusterer, market factor, encoder, heads, pipeline,
trainer, logger, queue, store) is a config group whose options name their class with
``_target_``. The types live once, in the constructors' signatures: :func:`validate`
checks every option of every component against its ``_target_``'s signature before
anything is loaded or trained, so ``data.n_assets=abc`` or ``head.granularity=asset``
ends the run with one line naming the key, not a traceback an hour later.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from huracan.baseline_rule import check_rule
from huracan.credentials import refuse_secrets_in
from huracan.ensemble import ensemble_config
from huracan.errors import ConfigError, HuracanError
from huracan.family import FamilyGate
from huracan.features.cross_section import check_config, to_bars
from huracan.features.per_cluster import check_per_cluster
from huracan.training.crossfit import check_cross_fit
from huracan.training.refit import check_refit
from huracan.validation import check_min_val_days

Node = DictConfig | Mapping


def build(node: Node, **kwargs: Any) -> Any:
    """Instantiates a component config with plain Python containers (lists, dicts).

    Raises:
        HuracanError: the constructor's own (e.g. a ConfigError for a value it rejects),
            not Hydra's wrapper around it, so the command still ends with one line.
    """
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, HuracanError):
            raise exc.__cause__ from None
        raise


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
    """Checks the whole config before any work: credentials, missing values, and every
    component's keys.

    Raises:
        ConfigError: naming the first key at fault, its value and what was expected.
    """
    refuse_secrets_in(OmegaConf.to_container(cfg, resolve=False))  # a token in a YAML file
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        key = missing[0]
        raise ConfigError(f"{key} is required and has no value: set it, e.g. {key}=...")
    for name, node in cfg.items():
        if isinstance(node, DictConfig) and "_target_" in node:
            check_component(node, str(name))
        elif name in SECTIONS and isinstance(node, DictConfig):
            schema = get_object(SECTIONS[name])
            check_values(OmegaConf.to_container(node, resolve=True), schema, str(name))
    check_config(cfg.get("features"), str(cfg.get("pipeline", {}).get("_target_", "")))
    if (cfg.get("cluster") or {}).get("refit_every") is not None:
        check_refit(cfg)
    features = cfg.get("features") or {}
    if features.get("fracdiff_max_window") is not None:  # a duration; bars wait for the data
        to_bars(features.fracdiff_max_window, 1.0, "features.fracdiff_max_window")
    if features.get("per_cluster") is not None:
        check_per_cluster(
            OmegaConf.to_container(features, resolve=True)["per_cluster"],
            float(features.get("per_cluster_keep", 0.5)),
            str(cfg.get("head", {}).get("granularity", "cluster")),
            str(cfg.get("pipeline", {}).get("_target_", "")),
        )
    cut_z = cfg.get("thresholds", {}).get("cut_z")
    if cut_z is not None and not cut_z >= 0:
        raise ConfigError(f"thresholds.cut_z must be >= 0 or null, got {cut_z}")
    thresholds = cfg.get("thresholds", {})
    if thresholds.get("gate", "search") != "search":
        # the hierarchical heads and the per-coin models take the family gate (huracan/
        # coin_rule.py); the other pipelines keep z
        target = str(cfg.get("pipeline", {}).get("_target_", "hierarchical"))
        heads = "hierarchical" in target or "per_coin" in target
        if heads and thresholds.get("unit") != "day":
            raise ConfigError("a family-wise thresholds.gate needs thresholds.unit=day")
        FamilyGate(thresholds.family_alpha, thresholds.resamples, method=thresholds.gate)
    check_rule(str((cfg.get("baselines") or {}).get("rule", "heads")))
    validation = cfg.get("validation") or {}
    check_min_val_days(validation.get("min_val_days"), validation.get("val_fraction", 0.2))
    check_cross_fit(cfg)
    check_book(cfg)
    check_target(cfg)
    if ensemble_config(cfg).enabled and (cfg.get("features") or {}).get("per_cluster"):
        raise ConfigError(
            "ensemble=stack with features.per_cluster: the ensemble reads every cluster head "
            "on each coin's inputs, masked for its own cluster only; use one or the other"
        )


def check_target(cfg: DictConfig) -> None:
    """A cross-sectional ``labels.target`` trains the hierarchical heads only: the per-coin
    pipeline re-costs each coin's labels on its own, and the Mechanic fine-tunes on them."""
    target = cfg.get("labels", {}).get("target", "absolute")
    pipeline = str(cfg.get("pipeline", {}).get("_target_", ""))
    if target != "absolute" and "hierarchical" not in pipeline:
        raise ConfigError(
            f"labels.target={target} needs pipeline=hierarchical (got {pipeline}): the other "
            "pipelines learn each coin's own after-cost label (labels.target=absolute)"
        )


def check_book(cfg: DictConfig) -> None:
    """``book.k`` and ``book.rebalance`` (a label horizon) before a hierarchical run trains,
    not in its report an hour later."""
    book, labels = cfg.get("book"), cfg.get("labels", {})
    if not isinstance(book, DictConfig) or "hierarchical" not in str(
        cfg.get("pipeline", {}).get("_target_", "")
    ):
        return
    horizons = labels.get("horizons") or [labels.get("horizon", 1)]
    if all(isinstance(h, int) for h in horizons):  # else label_horizons names the fault
        build(book).horizon(tuple(horizons))


def check_component(node: DictConfig, path: str) -> None:
    """Checks one component config's keys and value types against its target's signature."""
    check_values(OmegaConf.to_container(node, resolve=True), target_of(node, path), path)


def check_values(values: dict, target: Any, path: str) -> None:
    """Checks config values against the signature of the class or function they feed;
    a value whose hint is a dataclass (e.g. ``pipeline.costs``) is checked against it."""
    signature, hints = _signature(target)
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
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
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            check_values(value, hint, f"{path}.{key}")
            continue
        if hint is not None and not _matches(value, hint):
            raise ConfigError(
                f"{path}.{key}: expected {_describe(hint)}, got {value!r} ({_name(target)})"
            )


# the plain sections of conf/config.yaml and the schema each is checked against
SECTIONS = {
    "universe": "huracan.config.Universe",
    "gates": "huracan.config.Gates",
    "features": "huracan.config.Features",
    "labels": "huracan.config.Labels",
    "costs": "huracan.config.Costs",
    "validation": "huracan.config.Validation",
    "thresholds": "huracan.config.Thresholds",
    "report": "huracan.config.Report",
    "baselines": "huracan.strong_baselines.BaselineOptions",
    # only with pipeline=mechanic (conf/pipeline/mechanic.yaml)
    "mechanic": "huracan.pipelines.mechanic.run.MechanicConfig",
    "drift": "huracan.pipelines.mechanic.drift.DriftConfig",
}


@dataclasses.dataclass
class Costs:
    """``costs``: ``fee_bps`` per side (None: the exchange's taker fee where the data
    source knows it, else 7.5; resolved once when the data is loaded, ``run.resolve_fee``),
    the default spread and the slippage per side per 1 % of per-bar volatility."""

    fee_bps: float | None = None
    spread_bps: float = 2.0
    slippage_bps_per_sigma: float = 1.0


@dataclasses.dataclass
class Universe:
    dominant_symbols: list[str]
    require_dominant: bool = True
    min_assets: int = 2


@dataclasses.dataclass
class Gates:
    until: str | None = "per_fold"
    late_coins: Literal["assign", "exclude"] = "assign"  # huracan.training.late
    min_history_days: float | None = None
    max_missing_share: float | None = None
    max_gap_bars: int | None = None
    min_daily_quote_volume: float | None = None
    max_median_spread_bps: float | None = None
    max_zero_volume_share: float | None = None


@dataclasses.dataclass
class Features:
    names: list[str] | None = None
    windows: dict | None = None
    fracdiff: bool = True
    max_d: float = 0.65
    fracdiff_max_window: str | None = "90d"  # huracan.features.fracdiff.for_features
    clip: float | None = 5.0
    cross_section: dict | None = None  # checked by huracan.features.cross_section.resolve
    per_cluster: str | dict | None = None  # checked by huracan.features.per_cluster
    per_cluster_keep: float = 0.5


@dataclasses.dataclass
class Labels:
    horizon: int = 1
    horizons: list[int] | None = None
    vol_window: int = 24
    target: Literal["absolute", "cross_section", "cross_section_rank"] = "absolute"


@dataclasses.dataclass
class Validation:
    n_folds: int = 5
    purge: int | None = None
    embargo: int | None = None
    val_fraction: float = 0.2
    test_size: int | None = None
    min_val_days: float | None = None
    cross_fit: int | Literal["auto"] | None = None
    cross_fit_days: float | None = None


@dataclasses.dataclass
class Thresholds:
    min_trades: int = 20
    z: float = 2.0
    cut_z: float | None = 1.0
    unit: Literal["day", "trade"] = "day"
    gate: Literal["family", "permutation", "bootstrap", "search"] = "family"
    cut_margin: Literal["family", "z"] = "family"
    family_alpha: float = 0.025
    resamples: int = 200


@dataclasses.dataclass
class Report:
    compare_without_factor: bool = True


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
    if hint in (str, Path):  # Hydra reads data.start=2024 as a number
        return isinstance(value, str | int) and not isinstance(value, bool)
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
