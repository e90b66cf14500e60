"""The shape of the code, checked from its source with ``ast`` (issue 13's done-when): small functions, no import
cycle between packages, and a runtime that imports nothing from the training side. Nothing is imported or run."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "maskwatch"
MAX_FUNCTION_LINES = 80
#: What the runtime (``maskwatch.runtime``) must never import: torch and the packages built on it, the service.
NOT_FOR_THE_RUNTIME = (
    "maskwatch.training",
    "maskwatch.explain",
    "maskwatch.export",
    "maskwatch.serve",
    "maskwatch.data.transforms",
    "torch",
    "torchvision",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imported_names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Absolute names an import statement loads: ``from a import b`` gives ``a`` and ``a.b`` (``b`` may be a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative: resolve against this module's package
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        stem = ".".join(base + ([node.module] if node.module else []))
    else:
        stem = node.module or ""
    return [stem] + [f"{stem}.{alias.name}" for alias in node.names]


def imports_of(path: Path, *, module_level_only: bool = False) -> Iterator[tuple[str, int]]:
    """(imported name, line) of every import in ``path``; with ``module_level_only``, those run when the module is
    imported (not inside functions, not under ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module, is_package = module_name(path), path.name == "__init__.py"

    def walk(node: ast.AST) -> Iterator[ast.AST]:
        for child in ast.iter_child_nodes(node):
            if module_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if module_level_only and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from (n for stmt in child.orelse for n in [stmt, *walk(stmt)])
                continue
            yield child
            yield from walk(child)

    for node in walk(tree):
        for name in imported_names(node, module, is_package):
            yield name, node.lineno


def unit_of(name: str) -> str | None:
    """The package or top-level module of ``maskwatch`` that ``name`` belongs to (``maskwatch.training.train`` ->
    ``maskwatch.training``); None outside maskwatch or for the bare package."""
    parts = name.split(".")
    if parts[0] != "maskwatch" or len(parts) < 2:
        return None
    unit = f"maskwatch.{parts[1]}"
    exists = (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file()
    return unit if exists else None


def package_graph() -> dict[str, dict[str, str]]:
    """unit -> {unit it imports: where (file:line)}, every import counted, lazy ones included."""
    graph: dict[str, dict[str, str]] = {}
    for path in source_files():
        here = unit_of(module_name(path)) or "maskwatch"
        for name, line in imports_of(path):
            there = unit_of(name)
            if there is not None and there != here:
                graph.setdefault(here, {}).setdefault(there, f"{path.relative_to(SRC)}:{line}")
    return graph


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """Strongly connected groups of more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def long_functions(limit: int) -> list[str]:
    """``file:line name (N lines)`` of every function or method, nested ones included, longer than ``limit``."""
    found = []
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_in_src_is_over_80_lines():
    assert long_functions(MAX_FUNCTION_LINES) == []


def test_there_is_no_import_cycle_between_packages():
    graph = package_graph()
    assert "maskwatch.runtime" in graph and "maskwatch.training" in graph  # the graph was really built
    groups = cycles(graph)
    where = [f"{a} -> {b} ({graph[a][b]})" for group in groups for a in group for b in group if b in graph.get(a, {})]
    assert groups == [], where


def test_the_runtime_source_imports_nothing_training_only():
    """Every import in ``maskwatch/runtime/``, lazy ones included, stays clear of torch, training, export, explain
    and serve. ``maskwatch.data``'s torch-free indexers (class folders, manifests) serve ``evaluate`` and the scene
    splits only inside functions: importing the runtime never loads them (test_runtime_install checks the loaded
    modules too)."""
    offenders = []
    for path in sorted((PACKAGE / "runtime").rglob("*.py")):
        for name, line in imports_of(path):
            if any(name == p or name.startswith(p + ".") for p in NOT_FOR_THE_RUNTIME):
                offenders.append(f"{path.relative_to(SRC)}:{line} {name}")
        for name, line in imports_of(path, module_level_only=True):
            if name == "maskwatch.data" or name.startswith("maskwatch.data."):
                offenders.append(f"{path.relative_to(SRC)}:{line} {name} (at import time)")
    assert offenders == []


def test_what_importing_the_runtime_loads_stays_on_the_runtime_side():
    """Follow the import-time imports from every runtime module through maskwatch: none reaches the training side."""
    module_files = {module_name(path): path for path in source_files()}
    seen: set[str] = set()
    todo = [name for name in module_files if name.startswith("maskwatch.runtime")]
    while todo:
        name = todo.pop()
        if name in seen or name not in module_files:
            continue
        seen.add(name)
        todo += [imported for imported, _ in imports_of(module_files[name], module_level_only=True)]
    training_side = [*NOT_FOR_THE_RUNTIME, "maskwatch.data"]
    assert sorted(m for m in seen if any(m == p or m.startswith(p + ".") for p in training_side)) == []


# The checks themselves, on small sources with known answers (so a broken checker cannot pass everything).
@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"a": {"b": ""}, "b": {"a": ""}}, [["a", "b"]]),
        ({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}}, [["a", "b", "c"]]),
        ({"a": {"b": ""}, "b": {"c": ""}}, []),
    ],
)
def test_cycle_finder(graph: dict, expected: list):
    assert cycles(graph) == expected


def test_import_reader_tells_import_time_from_lazy_imports(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    package = tmp_path / "maskwatch" / "runtime"
    package.mkdir(parents=True)
    module = package / "probe.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nfrom . import boxes\nif TYPE_CHECKING:\n    from maskwatch.data import index\n"
        "def f():\n    import torch\n"
    )
    every = {name for name, _ in imports_of(module)}
    at_import = {name for name, _ in imports_of(module, module_level_only=True)}
    assert {"maskwatch.runtime.boxes", "maskwatch.data.index", "torch"} <= every
    assert "maskwatch.runtime.boxes" in at_import and not at_import & {"torch", "maskwatch.data", "maskwatch.data.index"}


def test_the_readme_map_names_every_module_and_package():
    """README's "Where things live" names every top-level module and package of ``src/maskwatch``, and every file it
    names exists (a moved or renamed module shows up here)."""
    readme = (SRC.parent / "README.md").read_text()
    block = readme.split("## Where things live", 1)[1].split("```", 2)[1]
    named = set(re.findall(r"\b([a-z_]+\.py|[a-z_]+/)", block))
    tree = {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    tree |= {f"{p.name}/" for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert sorted(tree - named) == [], "in the tree, missing from the README"
    every_file = {p.name for p in PACKAGE.rglob("*.py")}
    missing = sorted(n for n in named if n.endswith(".py") and not n.startswith("test_") and n not in every_file)
    assert missing == [], "in the README, not in the tree"
