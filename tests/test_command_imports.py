"""Commands stand side by side: none imports another (shared code lives in the library)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

COMMANDS = Path(__file__).resolve().parents[1] / "src" / "histoprog" / "commands"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (``from x import y`` counts ``x`` and ``x.y``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("path", sorted(COMMANDS.glob("*.py")), ids=lambda p: p.stem)
def test_no_command_imports_another(path: Path) -> None:
    sideways = {m for m in imported_modules(path) if m.startswith("histoprog.commands")}
    assert not sideways, f"{path.name} imports {sorted(sideways)}"
