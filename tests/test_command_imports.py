"""Commands stand side by side: none imports another (shared code lives in the library)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import packages_loaded

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


#: per-slide and table stages that need no PyTorch, with the modules they import only when
#: they run (issue 13: their start-up must not pay for torch); stain imports it when it runs
#: (torchstain's torch backend is its Macenko estimate), but not to start
NO_TORCH = {
    "tile": (),
    "stain": (),
    "status": (),
    "sof": ("histoprog.plots.sof_figure", "scipy.ndimage"),
    "sof_table": (),
    "mil_table": (),
    "geojson": ("histoprog.qupath", "histoprog.class_grid", "histoprog.thresholds"),
}


@pytest.mark.parametrize("command", sorted(NO_TORCH))
def test_stage_imports_no_torch(command: str) -> None:
    code = (
        "import importlib\n"
        "from histoprog.cli import build_parser\n"
        f"build_parser({command!r})\n"
        f"for name in {NO_TORCH[command]!r}:\n"
        "    importlib.import_module(name)"
    )
    assert packages_loaded(code, {"torch", "torchvision"}) == []


def test_sof_stage_imports_no_matplotlib_or_pandas() -> None:
    """The sof stage's figure is drawn with PIL: its start-up pays for neither."""
    code = (
        "from histoprog.cli import build_parser\n"
        "build_parser('sof')\n"
        "import histoprog.plots.sof_figure"
    )
    assert packages_loaded(code, {"matplotlib", "pandas"}) == []
