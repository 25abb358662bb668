"""The layout is the architecture: the pure core imports no runtime, I/O or concurrency, and
dependencies between the adapters point one way (CLI -> runners -> storage, never back)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "hephaestus"
CORE_FILES = sorted((SRC / "_core").glob("*.py"))
STORAGE_FILES = sorted((SRC / "storage").rglob("*.py"))
RUNNER_FILES = sorted((SRC / "runners").rglob("*.py"))

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
    """Every module ``path`` imports, anywhere in it (``from a import b`` counts a and a.b)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = list(path.relative_to(SRC.parent).parts[:-1])  # what relative imports start from
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if node.module is not None or node.level:
                names.append(module)
            names.extend(f"{module}.{alias.name}" for alias in node.names)
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


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(f"{package}.") for package in packages)


STORAGE_FORBIDDEN = ("hephaestus._cli", "hephaestus.runners", "click", "rich")
"""Storage is used by runners and the CLI, never the reverse; it prints nothing."""

RUNNER_FORBIDDEN = ("hephaestus._cli", "hephaestus.storage.postgres", "hephaestus.storage.sqlite")
"""A runner speaks to the Storage protocol, never to one adapter, and knows no CLI."""


def test_adapter_files_are_found() -> None:
    """The layering rules below really inspect the storage adapters and the runners."""
    storage = {path.relative_to(SRC / "storage").as_posix() for path in STORAGE_FILES}
    assert {"__init__.py", "_memory.py", "postgres/__init__.py", "postgres/_storage.py"} <= storage
    assert {"sqlite/__init__.py", "sqlite/_storage.py"} <= storage
    assert {"__init__.py", "_local.py"} <= {path.name for path in RUNNER_FILES}


@pytest.mark.parametrize(
    "path", STORAGE_FILES, ids=lambda p: p.relative_to(SRC / "storage").as_posix()
)
def test_storage_imports_neither_the_cli_nor_the_runners(path: Path) -> None:
    """A storage module (at any depth, in any function) imports no CLI, runner, click or rich."""
    found = [name for name in _imports(path) if _within(name, STORAGE_FORBIDDEN)]
    assert not found, f"storage/{path.relative_to(SRC / 'storage')} imports {found}"


@pytest.mark.parametrize("path", RUNNER_FILES, ids=lambda p: p.relative_to(SRC).as_posix())
def test_runners_import_no_cli_and_no_concrete_storage(path: Path) -> None:
    """A runner module imports neither the CLI nor a concrete storage adapter such as
    PostgreSQL; the Oban runner, whose jobs commit in the PostgreSQL storage's transactions,
    may import that one storage (and nothing of the CLI)."""
    forbidden: tuple[str, ...] = RUNNER_FORBIDDEN
    if "oban" in path.relative_to(SRC / "runners").parts:
        forbidden = ("hephaestus._cli",)
    found = [name for name in _imports(path) if _within(name, forbidden)]
    assert not found, f"{path.relative_to(SRC)} imports {found}"
