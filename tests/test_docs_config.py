"""The docs' configuration reference is generated from conf/ and leaves nothing out."""

from __future__ import annotations

import importlib.util
import sys

import yaml
from conftest import ROOT


def load_hooks():
    """docs/hooks.py as mkdocs loads it (a file, not a package module)."""
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def leaf_keys(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            keys += leaf_keys(value, f"{prefix}{key}.")
        elif f"{prefix}{key}" != "defaults":
            keys.append(f"{prefix}{key}")
    return keys


def test_every_group_option_and_key_of_conf_is_in_the_reference():
    hooks = load_hooks()
    conf = hooks.conf_dir()
    reference = hooks.render(conf)
    groups = sorted(p for p in conf.iterdir() if p.is_dir())
    assert len(groups) >= 10
    for group in groups:
        assert f"## `{group.name}`" in reference
        for path in sorted(group.glob("*.yaml")):
            assert f"### `{group.name}={path.stem}`" in reference, path
            text = path.read_text()
            prefix = "" if "# @package _global_" in text else f"{group.name}."
            for key in leaf_keys(yaml.safe_load(text) or {}):
                assert f"| `{prefix}{key}` |" in reference, f"{path}: {key}"
    for key in leaf_keys(yaml.safe_load((conf / "config.yaml").read_text())):
        assert f"| `{key}` |" in reference, f"config.yaml: {key}"


def test_comments_reach_their_keys_and_the_rest_describes_the_option(tmp_path):
    hooks = load_hooks()
    path = tmp_path / "demo.yaml"
    path.write_text(
        "# @package _global_\n"
        "# What the option does.\n"
        "defaults:\n"
        "  - base    # inherits\n"
        "  - _self_\n"
        "alpha: 1          # the first line\n"
        "                  # and its continuation\n"
        "beta:             # a section\n"
        "  gamma: [1, 2]   # a list | with a pipe\n"
        "  delta: 3\n"
        "# A block above its key.\n"
        "epsilon: '???'\n"
        "tiers:            # a block list\n"
        "  - {low: 0, high: 1}\n"
        "  - {low: 1, high: 2}\n"
        "# A closing note.\n"
    )
    option = hooks.read_option(path, "demo")
    assert option.package == ""
    assert option.description == "What the option does. A closing note."
    assert option.defaults == [("base", "inherits"), ("_self_", "")]
    assert [(k.path, k.value, k.comment) for k in option.keys] == [
        ("alpha", "1", "the first line and its continuation"),
        ("beta", "", "a section"),
        ("beta.gamma", "[1, 2]", "a list | with a pipe"),
        ("beta.delta", "3", ""),
        ("epsilon", "'???'", "A block above its key."),
        ("tiers", "[{high: 1, low: 0}, {high: 2, low: 1}]", "a block list"),
    ]


def test_a_group_option_prefixes_its_keys_with_the_group(tmp_path):
    hooks = load_hooks()
    (tmp_path / "head").mkdir()
    (tmp_path / "config.yaml").write_text("defaults:\n  - head: small\n  - _self_\nseed: 0\n")
    (tmp_path / "head" / "small.yaml").write_text("# A small head.\nhidden: 8  # units\n")
    reference = hooks.render(tmp_path)
    assert "| `head` | [`small`](#head-small) | `small` |" in reference
    assert "| `head.hidden` | `8` | units |" in reference
    assert "A small head." in reference


def test_the_configuration_page_asks_for_the_generated_reference():
    hooks = load_hooks()
    page = (ROOT / "docs" / hooks.PAGE).read_text()
    assert hooks.MARKER in page
