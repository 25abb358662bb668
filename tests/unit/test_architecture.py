"""The layout is the architecture: the pure core imports no runtime, I/O or concurrency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "hephaestus"
CORE_FILES = sorted((SRC / "_core").glob("*.py"))

FORBIDDEN_STDLIB = {
    "asyncio",
    "threading",
    "concurrent",
    "multiprocessing",
    "socket",
    "subprocess",
    "selectors",
    "time",
    "random",
    "secrets",
    "uuid",
    "os",
    "sqlite3",
}
ALLOWED_INTERNAL = ("hephaestus._core", "hephaestus.errors")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.append(node.module)
    return names


def test_core_files_are_found() -> None:
    """The rule below really inspects the engine, validation and instance modules."""
    names = {path.name for path in CORE_FILES}
    assert {"engine.py", "validation.py", "instance.py", "definition.py"} <= names


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_imports_only_pure_modules(path: Path) -> None:
    """A core module imports neither runtime packages, drivers nor clocks, threads or I/O."""
    for name in _imports(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN_STDLIB, f"{path.name} imports {name}"
        assert top not in {"psycopg", "psycopg_pool", "oban"}, f"{path.name} imports {name}"
        if top == "hephaestus":
            assert name.startswith(ALLOWED_INTERNAL), f"{path.name} imports {name}"


def test_errors_module_is_a_leaf() -> None:
    """errors.py imports nothing from hephaestus, so every layer may raise its exceptions."""
    assert not [n for n in _imports(SRC / "errors.py") if n.startswith("hephaestus")]
