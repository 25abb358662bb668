"""``hephaestus graph``: a workflow's DAG as ASCII, Mermaid or DOT, optionally a run's states."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hephaestus._cli._common import (
    CliError,
    CliUsageError,
    connection_config,
    connection_options,
    console,
    import_module,
    load_attr,
    opened_app,
)

if TYPE_CHECKING:
    from rich.text import Text

    from hephaestus._config import Config
    from hephaestus._core.instance import Instance
    from hephaestus._workflow import Workflow
    from hephaestus.graphs import Format, Line

__all__ = ["graph", "rich_graph", "workflows_in"]

STYLES = {
    "title": "bold",
    "layer": "dim",
    "start": "bold",
    "done": "bold",
    "event": "cyan",
    "route": "magenta",
    "note": "dim",
    "taken": "bold green",
    "completed": "green",
    "waiting": "yellow",
    "active": "bold blue",
    "skipped": "dim",
    "failed": "bold red",
    "cancelled": "magenta",
    "unreached": "dim",
    "running": "blue",
    "pending": "blue",
}


def workflows_in(target: str) -> list[type[Workflow]]:
    """The workflow at ``module:Name``, or every workflow a module defines, in source order."""
    from hephaestus._workflow import Workflow

    if ":" in target:
        value = load_attr(target, "the workflow")
        if not (isinstance(value, type) and issubclass(value, Workflow)):
            raise CliUsageError(f"{target} is {value!r}, not a Workflow class")
        if "__hephaestus__" not in value.__dict__:
            raise CliUsageError(f"{target} is an abstract workflow; it has no graph")
        return [value]
    module = _import(target)
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Workflow)
        and value.__module__ == getattr(module, "__name__", None)
        and "__hephaestus__" in value.__dict__
    ]
    if not found:
        raise CliUsageError(f"module {target} defines no workflow")
    return found


def _import(name: str) -> object:
    try:
        return import_module(name)
    except CliError:
        raise
    except Exception as exc:
        raise CliUsageError(f"importing {name} failed: {type(exc).__name__}: {exc}") from exc


def rich_graph(lines: list[Line]) -> Text:
    """An ASCII rendering's styled segments as rich text (colours by role and state)."""
    from rich.text import Text

    text = Text()
    for number, line in enumerate(lines):
        if number:
            text.append("\n")
        for piece, role in line:
            text.append(piece, STYLES.get(role, ""))
    text.rstrip()
    return text


async def _instance(workflow: type[Workflow], instance_id: str, config: Config) -> Instance:
    from hephaestus.errors import HephaestusError

    async with opened_app(config) as app:
        try:
            return await app.get(workflow, instance_id)
        except HephaestusError as exc:
            raise CliError(str(exc)) from exc


def _inject(
    path: Path, workflows: list[type[Workflow]], fmt: Format, version: int | None, check: bool
) -> int:
    from hephaestus import graphs

    try:
        original = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliUsageError(f"cannot read {path}: {exc.strerror}") from exc
    text = original
    names = []
    for workflow in workflows:
        try:
            text = graphs.inject(text, workflow, fmt, version=version)
        except LookupError:
            continue
        names.append(graphs.display_name(workflow))
    if not names:
        start, end = graphs.markers(graphs.display_name(workflows[0]))
        raise CliError(f"{path} has no graph block; add the markers {start} and {end}")
    out = console()
    if text == original:
        out.print(f"{path} is up to date ({', '.join(names)})")
        return 0
    if check:
        out.print(f"{path} is out of date ({', '.join(names)}); run without --check to update")
        return 1
    path.write_text(text, encoding="utf-8")
    out.print(f"updated {path} ({', '.join(names)})")
    return 0


@click.command()
@click.argument("target", metavar="MODULE[:WORKFLOW]")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ascii", "mermaid", "dot"]),
    default=None,
    help="ascii (default; config graph_format), mermaid (flowchart TD) or dot (Graphviz).",
)
@click.option("--version", "version", type=int, default=None, help="Only this version.")
@click.option(
    "--instance",
    "instance_id",
    default=None,
    metavar="ID",
    help="Mark each step with its state in this run (key::value); needs --app or --database.",
)
@click.option(
    "--inject",
    "inject_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Replace the block between <!-- hephaestus:graph:start:NAME --> and "
    "<!-- hephaestus:graph:end:NAME --> in FILE instead of printing.",
)
@click.option("--check", is_flag=True, help="With --inject: exit 1 if FILE is out of date.")
@connection_options
def graph(
    *,
    target: str,
    fmt: Format | None,
    version: int | None,
    instance_id: str | None,
    inject_path: Path | None,
    check: bool,
    app: str | None,
    dsn: str | None,
    schema: str | None,
    imports: tuple[str, ...],
) -> int:
    """Draw a workflow's graph: steps by layer, events on edges, fan-out/fan-in, routes.

    MODULE:WORKFLOW draws one workflow; MODULE alone draws every workflow it defines.
    A versioned workflow draws each version unless --version is given.

    \b
    Examples:
      hephaestus graph myapp.flows:OrderFlow
      hephaestus graph myapp.flows:OrderFlow --format mermaid
      hephaestus graph myapp.flows:OrderFlow --instance order::1001 --dsn postgresql:///app
      hephaestus graph myapp.flows --inject docs/flows.md
    """
    from hephaestus import graphs
    from hephaestus.errors import UnknownVersionError

    config = connection_config(app, dsn, schema, imports)
    chosen: Format = fmt or config.graph_format
    workflows = workflows_in(target)
    if check and inject_path is None:
        raise CliUsageError("--check only applies with --inject FILE")
    if inject_path is not None:
        if instance_id is not None:
            raise CliUsageError("--inject draws definitions; it takes no --instance")
        return _inject(inject_path, workflows, chosen, version, check)
    instance = None
    if instance_id is not None:
        if len(workflows) != 1:
            raise CliUsageError("--instance needs one workflow: MODULE:WORKFLOW")
        instance = asyncio.run(_instance(workflows[0], instance_id, config))
    out = console()
    try:
        for index, workflow in enumerate(workflows):
            if index:
                out.print()
            if chosen != "ascii":
                out.print(graphs.render(workflow, chosen, instance, version=version), markup=False)
                continue
            name = graphs.display_name(workflow)
            for number, definition in enumerate(
                graphs.definitions(workflow, version=version, instance=instance)
            ):
                if number:
                    out.print()
                title = f"{name}  version {definition.version}"
                out.print(rich_graph(graphs.ascii_lines(definition, instance, title=title)))
    except UnknownVersionError as exc:
        raise CliUsageError(str(exc)) from exc
    return 0
