"""docs/reference.md's signatures are the code's: each table row that opens with a public
name called with parameters lists exactly the parameters ``inspect.signature`` finds."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from tests.unit.test_exports import EXPECTED

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"
SECTION = re.compile(r"^(?=### )", re.M)
SECTION_NAME = re.compile(r"### `([\w.]+)`")
ROW = re.compile(r"^\| `(\w+)\(([^`]*)\)(?:\s*->[^`]*)?`", re.M)


def _split(parameters: str) -> list[str]:
    """Top-level comma-separated parts (commas inside brackets belong to annotations)."""
    parts, depth, current = [], 0, ""
    for char in parameters:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and not depth:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return [part.strip() for part in parts]


def documented(parameters: str) -> list[str]:
    """Parameter names (and ``*``, ``/`` markers) as the reference writes them."""
    return [re.split(r"[:=]", part, maxsplit=1)[0].strip() for part in _split(parameters)]


def actual(target: object) -> list[str]:
    """Parameter names and markers as the code declares them."""
    found: list[str] = []
    starred = False
    parameters = list(inspect.signature(target).parameters.values())  # type: ignore[arg-type]
    for parameter in parameters:
        if parameter.kind is parameter.KEYWORD_ONLY and not starred:
            found.append("*")
            starred = True
        if parameter.kind is parameter.VAR_POSITIONAL:
            found.append(f"*{parameter.name}")
            starred = True
        elif parameter.kind is parameter.VAR_KEYWORD:
            found.append(f"**{parameter.name}")
        else:
            found.append(parameter.name)
    positional_only = [i for i, p in enumerate(parameters) if p.kind is p.POSITIONAL_ONLY]
    if positional_only:
        found.insert(positional_only[-1] + 1, "/")
    return found


def test_documented_signatures_match_the_code() -> None:
    """Every signature row of the reference names the code's parameters, in order."""
    public = {name: getattr(module, name) for module, names in EXPECTED.items() for name in names}
    modules = {module.__name__: module for module in EXPECTED}
    checked, wrong = 0, list[str]()
    for section in SECTION.split(REFERENCE.read_text()):
        # A module's section resolves names in that module (both storages have ``migrate``).
        heading = SECTION_NAME.match(section)
        module = modules.get(heading.group(1)) if heading else None
        for name, parameters in ROW.findall(section):
            target = getattr(module, name, None) if module is not None else public.get(name)
            if target is None or not callable(target):
                continue
            checked += 1
            problem = _mismatch(name, parameters, target)
            if problem is not None:
                wrong.append(problem)
    assert checked >= 50, f"only {checked} signatures found: is the table format still read?"
    assert not wrong, "\n".join(wrong)


def _mismatch(name: str, parameters: str, target: object) -> str | None:
    """What is wrong with one documented row (``None``: it matches, or has no signature)."""
    try:
        expected = actual(target)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to compare
        return None
    if documented(parameters) == expected:
        return None
    return f"{name}({parameters}) documents {documented(parameters)}, code {expected}"
