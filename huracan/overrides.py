"""Command-line overrides checked before Hydra runs: one line and the closest spelling.

Hydra's own messages for a misspelled option (``cluster=wardd``), an unknown key
(``data.n_asset=5``) or a key of another option (``data.path=DIR`` while ``data`` is
``synthetic``) span several lines, end with exit status 1, and for the last one suggest
``+data.path``, which fails again. ``check_overrides`` finds these first and raises a
``ConfigError`` of one line naming the override, what is valid and the closest spelling.
Anything it does not recognise is left to Hydra.
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from huracan.errors import ConfigError


def check_overrides(overrides: list[str], conf: Path) -> None:
    """Raises ConfigError (one line) for an unknown option, an unknown key, or a key that
    belongs to another option of its group.

    Args:
        overrides: the command line's ``key=value`` words (flags such as ``-m`` or
            ``--cfg job`` are skipped).
        conf: the config directory.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException

    own_config = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn")
    if any(w.split("=")[0] in own_config or w.startswith("hydra.searchpath") for w in overrides):
        return  # the user's own configs: only Hydra knows their options and keys
    words = [w for w in overrides if "=" in w and not w.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(words)
    except HydraException as err:
        raise ConfigError(str(err).splitlines()[0]) from None
    groups = _groups(conf)
    chosen: list[str] = []
    keys = []
    for item in parsed:
        name = item.key_or_group
        if name == "hydra/launcher" and "submitit_slurm" in _values(item):
            _check_slurm()
        if item.type == OverrideType.DEL or name.startswith("hydra"):
            continue
        values = _values(item)
        if name in groups:
            for value in values:
                _check_option(name, value, groups[name])
            if not values:  # a sweep only Hydra can expand: the keys are Hydra's to check
                return
            chosen.append(f"{name}={values[0]}")
        elif item.type == OverrideType.CHANGE:
            keys.append(name)
    if keys:
        cfg = _compose(conf, chosen)
        if cfg is not None:
            for key in keys:
                _check_key(key, cfg, conf, groups)


def _check_slurm() -> None:
    """submitit's SLURM launcher fails deep inside the sweep where there is no SLURM."""
    if shutil.which("srun") is None:
        raise ConfigError(
            "hydra/launcher=submitit_slurm needs SLURM, and 'srun' is not on PATH here: run "
            "on a SLURM login node, or sweep with hydra/launcher=submitit_local or joblib"
        )


def _groups(conf: Path) -> dict[str, list[str]]:
    """Config group -> its options (the YAML files' stems), e.g. cluster -> [average, ...]."""
    out: dict[str, list[str]] = {}
    for path in sorted(conf.rglob("*.yaml")):
        if path.parent != conf:
            out.setdefault(path.parent.relative_to(conf).as_posix(), []).append(path.stem)
    return out


def _values(item) -> list[str]:
    from hydra.errors import HydraException

    if item.is_sweep_override():
        try:
            return list(item.sweep_string_iterator())
        except HydraException:  # glob(...) needs Hydra's config loader: Hydra's to check
            return []
    value = item.value()
    return [str(value)] if value is not None else ["null"]


def _check_option(group: str, value: str, options: list[str]) -> None:
    if value == "null" or value in options:
        return
    raise ConfigError(
        f"{group}={value}: no such option; {group} is one of {', '.join(options)}"
        + _closest(value, options)
    )


def _check_key(key: str, cfg: DictConfig, conf: Path, groups: dict[str, list[str]]) -> None:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    if not isinstance(node, DictConfig) or leaf in node.keys():  # keys(): "???" ones too
        return
    if parent in groups:  # a key of another option of the group, e.g. data.path of csv
        owners = [o for o in groups[parent] if leaf in _keys_of(conf / parent / f"{o}.yaml")]
        current = OmegaConf.select(cfg, f"{parent}._target_", default=None)
        if owners:
            add = " or ".join(f"{parent}={o}" for o in owners)
            raise ConfigError(
                f"{key}: not a key of the chosen {parent} ({current}); it belongs to {add}: "
                f"add {parent}={owners[0]} to the command"
            )
    siblings = [f"{parent}.{k}" if parent else str(k) for k in node]
    raise ConfigError(
        f"{key}: no such key in {parent or 'the config'}"
        + (_closest(key, siblings) or f" (+{key}=... adds a new one)")
    )


def _keys_of(path: Path) -> set[str]:
    loaded = OmegaConf.load(path)
    return {str(k) for k in loaded} if isinstance(loaded, DictConfig) else set()


def _compose(conf: Path, chosen: list[str]) -> DictConfig | None:
    """The config with the chosen options; None where Hydra cannot compose it (Hydra then
    reports that itself)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside a running app: leave it to Hydra
        return None
    try:
        with initialize_config_dir(str(conf), version_base="1.3"):
            return compose("config", overrides=chosen)
    except Exception:  # noqa: BLE001 - any composition error is Hydra's to report
        return None


def _closest(word: str, choices: list[str]) -> str:
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {found[0]}?)" if found else ""
