"""The import graph of ``facealign_cli`` has no circle: module-level and function-level
imports alike (an import inside a function still ties the two modules together), apart from
imports under ``if TYPE_CHECKING:``, which never run. Also: nothing in ``batch/`` imports
``cli/`` (the command line sits above the engine), and the bottom of ``batch/`` (layout,
errors, records, the commands) imports nothing above it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "facealign_cli"


def module_name(path: Path) -> str:
    """``facealign_cli.batch.options`` for ``facealign_cli/batch/options.py`` (a package's
    ``__init__.py`` is the package)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node of ``tree``, in functions too, not under TYPE_CHECKING."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the ``facealign_cli`` modules it imports: ``from pkg import mod`` counts as
    an import of ``pkg.mod`` when that is a module, else of ``pkg``; relative imports are
    resolved against the importing module."""
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
                continue
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[:len(anchor) - node.level + (1 if is_pkg else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules else base)
        edges[name] = {t for t in targets if t in modules and t != name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``edges`` (its modules, first repeated at the end), or None."""
    colour: dict[str, int] = {}
    for start in sorted(edges):
        if colour.get(start):
            continue
        path, stack = [], [(start, iter(sorted(edges[start])))]
        colour[start] = 1
        path.append(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not colour.get(child):
                colour[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(edges[child]))))
    return None


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_no_import_cycle_in_facealign_cli():
    assert find_cycle(import_edges(package_modules())) is None


def test_batch_does_not_import_cli():
    edges = import_edges(package_modules())
    bad = sorted(f"{m} -> {t}" for m, ts in edges.items() if m.startswith("facealign_cli.batch")
                 for t in ts if t.startswith("facealign_cli.cli"))
    assert not bad, bad


#: batch module -> the batch modules it may import (the bottom of the engine: the commands sit
#: below the options, the state and the runner, and know a run's settings as a type only).
BATCH_BASE = {
    "layout": set(),
    "errors": set(),
    "record_types": set(),
    "result": {"errors", "record_types"},
    "commands": {"commands", "layout", "errors", "record_types", "result", "run_db"},
}


def test_no_upward_arrow_inside_batch():
    edges = import_edges(package_modules())
    prefix = "facealign_cli.batch."
    bad = []
    for mod, targets in edges.items():
        if not mod.startswith(prefix):
            continue
        short = mod[len(prefix):]
        allowed = BATCH_BASE.get(short.split(".")[0])
        if allowed is None:
            continue
        bad += [f"{short} -> {t[len(prefix):]}" for t in sorted(targets)
                if t.startswith(prefix) and t[len(prefix):].split(".")[0] not in allowed]
    assert not bad, bad


def test_the_check_finds_a_function_level_cycle(tmp_path):
    pkg = tmp_path / "facealign_cli"
    (pkg / "batch").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "batch" / "__init__.py").write_text("")
    (pkg / "batch" / "a.py").write_text("from facealign_cli.batch.b import x\n")
    (pkg / "batch" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\n"
        "def f():\n    from . import a\n")
    (pkg / "batch" / "c.py").write_text("from facealign_cli.batch import b\n")
    mods = {}
    for p in sorted(pkg.rglob("*.py")):
        parts = list(p.relative_to(tmp_path).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = p
    edges = import_edges(mods)
    assert edges["facealign_cli.batch.b"] == {"facealign_cli.batch.a"}  # TYPE_CHECKING skipped
    assert edges["facealign_cli.batch.c"] == {"facealign_cli.batch.b"}
    cycle = find_cycle(edges)
    assert cycle is not None and set(cycle) == {"facealign_cli.batch.a", "facealign_cli.batch.b"}
