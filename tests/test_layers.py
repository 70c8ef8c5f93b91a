"""The package's layers import in one direction: ``core`` and ``io`` (arrays and files) know
nothing of ``render`` (pictures), ``batch`` or ``cli``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "facealign_cli"

#: layer -> the layers it must not import
FORBIDDEN = {
    "core": ("render", "batch", "cli", "training", "evaluation"),
    "io": ("render", "batch", "cli", "training", "evaluation"),
}


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in ``path`` names (lazy ones too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_higher_ones(layer):
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[0] == "facealign_cli" and len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                bad.append(f"{path.relative_to(PACKAGE)}: {name}")
    assert not bad, bad


def test_the_check_sees_lazy_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from facealign_cli.render.raster import rasterize\n")
    assert "facealign_cli.render.raster" in imported_modules(src)
