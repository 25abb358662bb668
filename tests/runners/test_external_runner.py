"""A runner can be written outside the package: ``SerialRunner`` uses nothing private."""

from __future__ import annotations

import ast
from pathlib import Path

import hephaestus.runners
from hephaestus.runners import Runner
from hephaestus.testing import IdleAware
from tests.runners._serial_runner import SerialRunner

SOURCE = Path(__file__).with_name("_serial_runner.py")


def private_uses(source: str) -> list[str]:
    """Private modules imported, private names imported, private attributes of other objects."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
            found += [alias.name for alias in node.names if alias.name.startswith("_")]
        elif (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id == "self")
        ):
            found.append(f"<expr>.{node.attr}")
            continue
        else:
            continue
        found += [
            module
            for module in modules
            if module != "__future__" and any(p.startswith("_") for p in module.split("."))
        ]
    return found


def test_the_external_runner_imports_nothing_private() -> None:
    """The serial runner uses public modules and names only, and no private attribute."""
    assert private_uses(SOURCE.read_text()) == []


def test_the_private_use_check_sees_private_imports() -> None:
    """The check above reports private modules, private names and private attributes."""
    source = (
        "import hephaestus._core.engine\n"
        "from hephaestus.runners._driver import Driver\n"
        "from hephaestus.runners import _local\n"
        "driver._env\n"
        "self._ok\n"
    )
    assert private_uses(source) == [
        "hephaestus._core.engine",
        "hephaestus.runners._driver",
        "_local",
        "<expr>._env",
    ]


def test_the_external_runner_is_a_runner_the_helpers_watch_through_storage() -> None:
    """It meets the ``Runner`` protocol, and is not ``IdleAware`` (so the fallback is tested)."""
    runner = SerialRunner()
    assert isinstance(runner, Runner)
    assert not isinstance(runner, IdleAware)
    assert isinstance(hephaestus.runners.LocalRunner(), IdleAware)
