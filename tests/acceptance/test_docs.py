"""Every Python block of the README and docs/ runs as written.

A ```python block is a program; a ```python continued block is appended to the previous
program of the same file; a ```python fragment block is not run. Each program runs in a fresh
interpreter, with top-level ``await`` allowed as in ``python -m asyncio``. A program that
mentions ``HEPHAESTUS_DATABASE_URL`` gets it pointing at a fresh, installed PostgreSQL database.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._pg import create_installed_database, drop_database, dsn, require_postgres

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```python(?: (\w+))?\n(.*?)^```", re.S | re.M)
DATABASE_VARIABLE = "HEPHAESTUS_DATABASE_URL"

# Runs a program the way `python -m asyncio` runs its input: top-level `await` is allowed.
RUNNER = """\
import ast, asyncio, sys
path = sys.argv[1]
with open(path) as file:
    code = compile(file.read(), path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
namespace = {"__name__": "__main__", "__builtins__": __builtins__}

async def main():
    result = eval(code, namespace)
    if asyncio.iscoroutine(result):
        await result

if code.co_flags & 0x80:  # CO_COROUTINE: the program awaits at top level
    asyncio.run(main())
else:
    exec(code, namespace)
"""


@dataclass(frozen=True)
class Program:
    """One runnable block, with the continued blocks that follow it."""

    file: str
    line: int
    code: str


def programs() -> list[Program]:
    """The runnable programs of README.md and docs/*.md, in file order."""
    found: list[Program] = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        name = path.relative_to(ROOT).as_posix()
        last: int | None = None
        for match in FENCE.finditer(text):
            kind, code = match.group(1), match.group(2)
            line = text.count("\n", 0, match.start()) + 1
            if kind == "fragment":
                continue
            if kind == "continued":
                assert last is not None, f"{name}:{line}: a continued block follows no program"
                previous = found[last]
                found[last] = Program(previous.file, previous.line, previous.code + code)
                continue
            assert kind is None, f"{name}:{line}: unknown fence ```python {kind}"
            found.append(Program(name, line, code))
            last = len(found) - 1
    return found


def test_every_python_fence_is_one_the_extraction_reads() -> None:
    """No Python block escapes the check through an indented or differently spelled fence."""
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in path.read_text().splitlines():
            if re.match(r"\s*```\s*py", line):
                assert re.fullmatch(r"```python(?: (?:fragment|continued))?", line), line


def test_the_docs_have_programs() -> None:
    """The extraction finds the README quickstart and programs in several docs."""
    files = {program.file for program in programs()}
    assert "README.md" in files
    assert len(files) >= 4


def run(code: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a docs program in a fresh interpreter, in ``tmp_path``."""
    script = tmp_path / "block.py"
    script.write_text(code)
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_runner_awaits_at_top_level_and_reports_failures(tmp_path: Path) -> None:
    """Top-level ``await`` runs on an event loop, and an exception exits non-zero."""
    code = "import asyncio\nawait asyncio.sleep(0)\nprint('slept')\nraise SystemExit(3)\n"
    result = run(code, tmp_path, dict(os.environ))
    assert (result.stdout, result.returncode) == ("slept\n", 3)
    assert run("1 / 0\n", tmp_path, dict(os.environ)).returncode == 1


@pytest.mark.parametrize("program", programs(), ids=lambda p: f"{p.file}:{p.line}")
def test_block_runs(program: Program, tmp_path: Path) -> None:
    """The program exits with status 0 in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(DATABASE_VARIABLE, None)
    database = None
    if DATABASE_VARIABLE in program.code:
        require_postgres()
        database = create_installed_database("hx_docs")
        env[DATABASE_VARIABLE] = dsn(database)
    try:
        result = run(program.code, tmp_path, env)
    finally:
        if database is not None:
            drop_database(database)
    assert result.returncode == 0, f"{program.file}:{program.line}\n{result.stderr}"
