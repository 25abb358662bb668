"""``hephaestus check``: import modules, validate every workflow, report problems with codes."""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hephaestus._cli._common import USAGE, CliError, console, import_module

if TYPE_CHECKING:
    from types import TracebackType

    from hephaestus._core.definition import VersionedDefinition, WorkflowDefinition
    from hephaestus.errors import Issue

__all__ = ["check"]


@dataclass
class _Report:
    """What checking one module found."""

    module: str
    valid: list[WorkflowDefinition | VersionedDefinition] = field(default_factory=list)
    invalid: str | None = None
    """The workflow that failed validation (import stops there)."""
    where: str = ""
    issues: tuple[Issue, ...] = ()
    failure: str | None = None
    """An import that failed for another reason."""
    missing: str | None = None
    """The module does not exist."""


def _origin(tb: TracebackType | None) -> str:
    """``file:line`` of the innermost module-level frame: where the broken class statement is."""
    where = ""
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "<module>":
            where = f"{_relative(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def _relative(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def _defined_in(module: str) -> list[WorkflowDefinition | VersionedDefinition]:
    from hephaestus._core.registry import default_registry

    return [
        definition
        for definition in default_registry
        if isinstance(definition.owner, type) and definition.owner.__module__ == module
    ]


def _check_module(name: str) -> list[_Report]:
    """Import ``name`` (and, for a package, each submodule) and report on each."""
    from hephaestus.errors import WorkflowDefinitionError

    report = _Report(name)
    reports = [report]
    try:
        module = import_module(name)
    except CliError as exc:
        report.missing = exc.message
        return reports
    except WorkflowDefinitionError as exc:
        report.invalid, report.issues = exc.workflow, exc.issues
        report.where = _origin(exc.__traceback__)
        report.valid = _defined_in(name)
        return reports
    except Exception as exc:
        report.failure = f"{type(exc).__name__}: {exc}"
        return reports
    report.valid = _defined_in(name)
    path = getattr(module, "__path__", None)
    if path is not None:
        for info in pkgutil.iter_modules(path, prefix=f"{name}."):
            reports.extend(_check_module(info.name))
    return reports


def _describe(definition: WorkflowDefinition | VersionedDefinition) -> str:
    from hephaestus._core.definition import VersionedDefinition

    if isinstance(definition, VersionedDefinition):
        versions = ", ".join(str(v) for v in sorted(definition.versions))
        return f"versions {versions} (current {definition.current})"
    noun = "step" if len(definition.nodes) == 1 else "steps"
    return f"{len(definition.nodes)} {noun}, version {definition.version}"


@click.command()
@click.argument("modules", nargs=-1, required=True, metavar="MODULE...")
def check(modules: tuple[str, ...]) -> int:
    """Import MODULEs and validate every workflow they define (packages: every submodule).

    Lists each valid workflow, and every problem of an invalid one with its code. Exits 0
    when all are valid, 1 when any has a problem, 2 when a module does not exist.

    \b
    Example:
      hephaestus check myapp.flows myapp.billing
    """
    from rich.markup import escape

    out = console()
    reports = [report for name in modules for report in _check_module(name)]
    valid = problems = missing = 0
    for report in reports:
        if report.missing is not None:
            missing += 1
            out.print(f"[red]✗[/] {escape(report.module)}: {escape(report.missing)}")
            continue
        for definition in report.valid:
            valid += 1
            out.print(f"[green]✓[/] {escape(definition.name)}  [dim]{_describe(definition)}[/]")
        if report.failure is not None:
            problems += 1
            out.print(f"[red]✗[/] {escape(report.module)}: import failed: {escape(report.failure)}")
        if report.invalid is not None:
            problems += 1
            noun = "problem" if len(report.issues) == 1 else "problems"
            out.print(
                f"[red]✗[/] {escape(report.module)}: invalid workflow {escape(report.invalid)}, "
                f"{len(report.issues)} {noun}  [dim]{escape(report.where)}[/]"
            )
            for issue in report.issues:
                step = issue.step
                where = f" {escape(step)}:" if step and not issue.message.startswith(step) else ""
                out.print(f"    [bold]\\[{issue.code}][/]{where} {escape(issue.message)}")
            out.print(
                "    [dim](an import stops at the first invalid workflow; "
                "fix it and check again)[/]"
            )
    summary = f"{valid} valid workflow{'s' if valid != 1 else ''}, {problems} invalid"
    if missing:
        summary += f", {missing} module{'s' if missing != 1 else ''} not found"
    out.print(summary)
    if missing:
        return USAGE
    return 1 if problems else 0
