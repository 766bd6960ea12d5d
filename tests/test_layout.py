"""The package's layout: no import circle under ``huracan/`` (the pipelines import the
machinery below them, never the other way round), found from the source with ``ast``.

Every import counts, those under ``if TYPE_CHECKING:`` and inside functions too: a circle
hidden in a function is still a circle in the design."""

from __future__ import annotations

import ast
from pathlib import Path

import huracan

ROOT = Path(huracan.__file__).parent


def module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports(name: str, path: Path, names: dict[str, Path]) -> set[str]:
    """The ``huracan`` modules ``name`` imports (a package's ``__init__`` counts as its name)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return (found & names.keys()) - {name}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_finder_sees_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_no_import_circle_under_huracan():
    names = module_names()
    graph = {name: imports(name, path, names) for name, path in names.items()}
    assert "huracan.pipelines.hierarchical.run" in graph  # the finder reads the real tree
    assert "huracan.training.arrays" in graph["huracan.pipelines.hierarchical.run"]
    assert circles(graph) == []


def test_the_pipelines_are_packages_and_scoring_sits_below_them():
    pipelines = ROOT / "pipelines"
    for name in ("hierarchical", "per_coin", "mechanic", "replay"):
        assert (pipelines / name / "__init__.py").is_file(), name
    names = module_names()
    below = ("huracan.scoring", "huracan.coins", "huracan.training.arrays", "huracan.serve.fleet")
    for name in below:  # the machinery below never reaches up into a pipeline
        assert not any(m.startswith("huracan.pipelines") for m in imports(name, names[name], names))
