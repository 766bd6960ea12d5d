"""mkdocs hooks: the configuration reference is generated from ``conf/`` at every build.

``reference/configuration.md`` holds the line ``<!-- conf/ reference -->``; this hook replaces
it with every config group, option and key of ``conf/``, each with its default and the
comment its YAML file gives it. Nothing of the reference is kept by hand.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import yaml

MARKER = "<!-- conf/ reference -->"
PAGE = "reference/configuration.md"
ROOT = Path(__file__).resolve().parents[1]
COMMENT = re.compile(r"^\s*#\s?(.*)$")
INLINE = re.compile(r"(?:^|\s)#\s?(.*)$")
PACKAGE = re.compile(r"^@package\s+(\S+)")


@dataclass
class Key:
    """One key of an option: its dotted path in the composed config."""

    path: str
    value: str
    comment: str


@dataclass
class Option:
    """One YAML file of ``conf/``: ``group=name`` (the root config has group ``""``)."""

    group: str
    name: str
    description: str = ""
    package: str = ""
    defaults: list[tuple[str, str]] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)


def conf_dir(root: Path = ROOT) -> Path:
    """The config the package ships (``huracan/conf``), else the source tree's ``conf/``."""
    inside = root / "huracan" / "conf"
    return inside if inside.is_dir() else root / "conf"


def read_conf(conf: Path) -> list[Option]:
    """Every option of ``conf``: the root config first, then each group's options by name."""
    options = [read_option(conf / "config.yaml", "")]
    for group in sorted(p for p in conf.iterdir() if p.is_dir()):
        for path in sorted(group.glob("*.yaml")):
            options.append(read_option(path, group.name))
    return options


def read_option(path: Path, group: str) -> Option:
    """Parses one YAML file: keys from the YAML parser, comments from the lines they sit on.

    A key's comment is the one on its line, the comment lines right below it indented
    deeper than the key, and a block of comment lines right above it. The comments at the
    top of the file, and any not attached to a key, describe the option.
    """
    text = path.read_text()
    lines = text.splitlines()
    option = Option(group=group, name=path.stem, package=group)
    used: set[int] = set()
    first = next((i for i, line in enumerate(lines) if line.strip() and not _comment(line)), None)
    header = range(len(lines) if first is None else first)
    used.update(header)
    node = yaml.compose(text)
    if isinstance(node, yaml.MappingNode):
        _walk(node, "", lines, used, option)
    notes = [_comment(lines[i]) for i in header]
    notes += [_comment(line) for i, line in enumerate(lines) if i not in used and _comment(line)]
    described = []
    for note in notes:
        package = PACKAGE.match(note or "")
        if package:
            option.package = "" if package.group(1) == "_global_" else package.group(1)
        elif note is not None:
            described.append(note)
    option.description = " ".join(n for n in described if n).strip()
    if not group:
        option.package = ""
    option.keys = [
        Key(f"{option.package}.{k.path}" if option.package else k.path, k.value, k.comment)
        for k in option.keys
    ]
    return option


def _walk(node: yaml.MappingNode, prefix: str, lines, used: set[int], option: Option) -> None:
    for key_node, value in node.value:
        name = f"{prefix}{key_node.value}"
        line, column = key_node.start_mark.line, key_node.start_mark.column
        leading = _leading(line, lines, used)
        if name == "defaults" and isinstance(value, yaml.SequenceNode):
            option.defaults = [_default_entry(item, lines, used) for item in value.value]
            continue
        nested = isinstance(value, yaml.MappingNode) and not value.flow_style and value.value
        on_line = value.end_mark.line == line and not nested
        after = value.end_mark.column if on_line else key_node.end_mark.column
        comment = [*leading, _inline(lines[line][after:])]
        used.add(line)
        if nested:
            if any(comment):
                option.keys.append(Key(name, "", _join(comment)))
            _walk(value, f"{name}.", lines, used, option)
            continue
        last = _last_line(value, lines)
        used.update(range(line, last + 1))
        for i in range(last + 1, len(lines)):
            text = _comment(lines[i])
            if text is None or len(lines[i]) - len(lines[i].lstrip()) <= column or i in used:
                break
            comment.append(text)
            used.add(i)
        option.keys.append(Key(name, _value(value, lines), _join(comment)))


def _last_line(node: yaml.Node, lines) -> int:
    """The value's last line with YAML on it (a block's end mark lies past its comments)."""
    end = min(node.end_mark.line, len(lines) - 1)
    while end > node.start_mark.line and (not lines[end].strip() or _comment(lines[end])):
        end -= 1
    return end


def _leading(line: int, lines, used: set[int]) -> list[str]:
    """The unclaimed block of comment lines right above ``line``."""
    block = []
    i = line - 1
    while i >= 0 and i not in used and _comment(lines[i]) is not None:
        block.insert(0, _comment(lines[i]))
        i -= 1
    used.update(range(i + 1, line))
    return block


def _default_entry(item: yaml.Node, lines, used: set[int]) -> tuple[str, str]:
    line = item.start_mark.line
    used.add(line)
    if isinstance(item, yaml.MappingNode):
        (key, value), *_ = item.value
        entry = f"{key.value}: {value.value if value.value else 'null'}"
    else:
        entry = item.value
    return entry, _inline(lines[line][item.end_mark.column :])


def _value(node: yaml.Node, lines) -> str:
    """The default as written; a value over several lines in YAML's flow style."""
    start, end = node.start_mark, node.end_mark
    if isinstance(node, yaml.ScalarNode) and not node.value and not node.style:
        return "null"
    if start.line == end.line:
        return lines[start.line][start.column : end.column]
    source = " " * start.column + node.start_mark.buffer[start.index : end.index]
    loaded = yaml.safe_load(textwrap.dedent(source))
    return yaml.safe_dump(loaded, default_flow_style=True, width=10_000).strip()


def _comment(line: str) -> str | None:
    """The text of a comment-only line, else None."""
    match = COMMENT.match(line)
    return match.group(1).rstrip() if match else None


def _inline(rest: str) -> str:
    match = INLINE.search(rest)
    return match.group(1).strip() if match else ""


def _join(parts: list[str]) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())


def render(conf: Path) -> str:
    """The reference as Markdown: a table of the groups, then every option and its keys."""
    options = read_conf(conf)
    root, grouped = options[0], options[1:]
    defaults = dict(_split_default(entry) for entry, _ in root.defaults)
    groups = sorted({o.group for o in grouped})
    out = ["## Groups", "", "| group | options | default |", "|---|---|---|"]
    for group in groups:
        names = ", ".join(f"[`{o.name}`](#{_anchor(o)})" for o in grouped if o.group == group)
        chosen = defaults.get(group)
        shown = f"`{chosen}`" if chosen and chosen != "null" else "none"
        out.append(f"| `{group}` | {names} | {shown} |")
    out += ["", f"## The root config (`{conf.name}/config.yaml`)", ""]
    out += _render_option(root)
    for group in groups:
        out += ["", f"## `{group}`", ""]
        for option in (o for o in grouped if o.group == group):
            heading = f"### `{group}={option.name}` {{ #{_anchor(option)} }}"
            out += [heading, ""] + _render_option(option)
    return "\n".join(out) + "\n"


def _render_option(option: Option) -> list[str]:
    out = [_escape(option.description), ""] if option.description else []
    if option.package and option.group and option.package != option.group:
        out += [f"Package: `{option.package}`.", ""]
    if not option.package and option.group:
        out += ["Keys are global (`# @package _global_`).", ""]
    if option.defaults:
        out += ["Defaults list:", ""]
        out += [f"- `{e}`" + (f": {_escape(c)}" if c else "") for e, c in option.defaults]
        out.append("")
    if option.keys:
        out += ["| key | default | what |", "|---|---|---|"]
        out += [
            f"| `{k.path}` | {f'`{k.value}`' if k.value else ''} | {_escape(k.comment)} |"
            for k in option.keys
        ]
        out.append("")
    return out


def _split_default(entry: str) -> tuple[str, str]:
    group, _, choice = entry.partition(":")
    return group.strip(), choice.strip()


def _anchor(option: Option) -> str:
    return f"{option.group}-{option.name}".replace("_", "-")


def _escape(text: str) -> str:
    """Markdown-safe prose; code spans (between backticks) are left as they are."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        escaped = re.sub(r"([\\*_\[\]|>])", r"\\\1", parts[i])
        parts[i] = escaped.replace("<", "&lt;")
    return "`".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """mkdocs hook: fills the configuration reference page from ``conf/``."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE}: the line {MARKER} is missing")
    return markdown.replace(MARKER, render(conf_dir()))


def on_serve(server, config, builder):
    """mkdocs hook: ``mkdocs serve`` rebuilds when a file of ``conf/`` changes."""
    server.watch(str(conf_dir()))
    return server
