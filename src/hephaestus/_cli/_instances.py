"""``hephaestus instances``: list, show, resume and cancel runs in a configured storage."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

import click

from hephaestus._cli._common import (
    CliError,
    CliUsageError,
    connection_config,
    connection_options,
    console,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from rich.console import Console

    from hephaestus._app import Hephaestus
    from hephaestus._config import Config
    from hephaestus._core.instance import Instance

__all__ = ["instances", "to_json"]

_STATUSES = ("pending", "running", "waiting", "completed", "failed", "cancelled")
_STYLE = {
    "completed": "green",
    "waiting": "yellow",
    "running": "blue",
    "pending": "blue",
    "active": "blue",
    "failed": "red",
    "cancelled": "magenta",
    "skipped": "dim",
}


def to_json(value: object) -> Any:
    """Plain JSON data for a record, an instance or anything they hold."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return sorted(to_json(v) for v in value)
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def _time(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _status(status: str) -> str:
    style = _STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status


def _run[T](config: Config, action: Callable[[Hephaestus], Awaitable[T]]) -> T:
    """Open the configured app, run ``action`` on it, close it; errors become one-line reports."""
    from hephaestus._cli._common import opened_app
    from hephaestus.errors import HephaestusError, StorageError, UnknownWorkflowError

    async def go() -> T:
        async with opened_app(config) as app:
            try:
                return await action(app)
            except UnknownWorkflowError as exc:
                raise CliError(f"{exc} (pass --import MODULE)") from exc
            except StorageError as exc:
                message = str(exc).strip().splitlines()[0]
                if type(exc.__cause__).__name__ == "UndefinedTable":
                    hint = f"hephaestus db install --schema {config.schema}"
                    message += f" (is the schema installed? {hint})"
                raise CliError(message) from exc
            except HephaestusError as exc:
                raise CliError(str(exc)) from exc

    return asyncio.run(go())


def _workflow_names(app: Hephaestus, name: str) -> frozenset[str]:
    """Stored names matching ``name``: a full name, a class name, or an umbrella's versions."""
    from hephaestus._core.definition import VersionedDefinition

    found: set[str] = set()
    for definition in app.registry:
        owner = definition.owner
        aliases = {definition.name, definition.name.rsplit(".", 1)[-1]}
        if isinstance(owner, type):
            aliases.add(owner.__qualname__)
        if name in aliases:
            if isinstance(definition, VersionedDefinition):
                found.update(version.name for version in definition.versions.values())
            else:
                found.add(definition.name)
    return frozenset(found) or frozenset({name})


@click.group()
def instances() -> None:
    """List, show, resume and cancel runs stored in PostgreSQL (--dsn) or an app's storage.

    Runs are addressed by their id (key::value). The app is opened without recovering other
    runs: only the run you resume executes here, until it waits or ends.
    """


@instances.command("list")
@click.option(
    "--status",
    "statuses",
    type=click.Choice(_STATUSES),
    multiple=True,
    help="Only runs in this status (repeatable).",
)
@click.option("--workflow", default=None, help="Only runs of this workflow (name or class name).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--oldest-first", is_flag=True, help="Oldest first (default: newest first).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@connection_options
def list_instances(
    *,
    statuses: tuple[str, ...],
    workflow: str | None,
    limit: int,
    offset: int,
    oldest_first: bool,
    as_json: bool,
    app: str | None,
    dsn: str | None,
    schema: str | None,
    imports: tuple[str, ...],
) -> int:
    """List runs as a table: id, workflow, version, status, waiting steps, times.

    \b
    Example:
      hephaestus instances list --dsn postgresql:///app --status waiting --limit 20
    """
    from hephaestus._core.instance import Status
    from hephaestus.storage import InstanceQuery

    config = connection_config(app, dsn, schema, imports)

    async def query(opened: Hephaestus) -> list[Instance]:
        names = None if workflow is None else _workflow_names(opened, workflow)
        return await opened.storage.query(
            InstanceQuery(
                status_in=frozenset(Status(s) for s in statuses) if statuses else None,
                workflow=names,
                limit=limit,
                offset=offset,
                newest_first=not oldest_first,
            )
        )

    rows = _run(config, query)
    if as_json:
        click.echo(json.dumps([_summary(row) for row in rows], indent=2))
        return 0
    _print_table(console(), rows, limit=limit, offset=offset)
    return 0


def _summary(row: Instance) -> dict[str, Any]:
    return {
        "id": row.id,
        "run_id": row.run_id,
        "workflow": row.workflow,
        "version": row.workflow_version,
        "status": str(row.status),
        "waiting_steps": list(row.waiting_steps),
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def _print_table(out: Console, rows: list[Instance], *, limit: int, offset: int) -> None:
    from rich.table import Table

    table = Table("id", "workflow", "version", "status", "waiting", "created", "updated")
    table.columns[2].justify = "right"
    for row in rows:
        table.add_row(
            row.id,
            row.workflow.rsplit(".", 1)[-1],  # the class name; `show` and --json give it all
            str(row.workflow_version),
            _status(row.status),
            ", ".join(row.waiting_steps),
            _time(row.created_at),
            _time(row.updated_at),
        )
    out.print(table)
    shown = f"{len(rows)} run{'s' if len(rows) != 1 else ''}"
    if offset:
        shown += f" from offset {offset}"
    if len(rows) == limit:
        shown += f"; more may follow: --offset {offset + limit}"
    out.print(shown)


@instances.command("show")
@click.argument("instance_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the whole run as JSON.")
@connection_options
def show(
    *,
    instance_id: str,
    as_json: bool,
    app: str | None,
    dsn: str | None,
    schema: str | None,
    imports: tuple[str, ...],
) -> int:
    """Show a run: its steps, waiting steps, context, history and graph (newest run of ID).

    \b
    Example:
      hephaestus instances show order::1001 --dsn postgresql:///app --import myapp.flows
    """
    config = connection_config(app, dsn, schema, imports)

    async def fetch(opened: Hephaestus) -> tuple[Instance, object]:
        instance = await opened.get_instance(instance_id)
        return instance, opened.registry.get(instance.workflow)

    instance, definition = _run(config, fetch)
    if as_json:
        click.echo(json.dumps(to_json(instance), indent=2))
        return 0
    out = console()
    _print_problems(out, instance, definition)
    _print_instance(out, instance, definition)
    return 0


def _print_waiting(out: Console, instance: Instance, definition: object) -> None:
    """What the run waits for: each waiting step's routable events, and scheduled resumes."""
    from rich.markup import escape

    from hephaestus._core.definition import WorkflowDefinition

    if instance.waiting_steps:
        out.print("[bold]Waiting[/]")
        for key in instance.waiting_steps:
            state = instance.steps[key]
            line = f"  {key}"
            if isinstance(definition, WorkflowDefinition) and key in definition.nodes:
                line += f": resume with {', '.join(sorted(definition.nodes[key].routed_events))}"
            if state.timer_at is not None:
                line += f" (timer {_time(state.timer_at)} -> {state.timer_event or 'timeout'})"
            out.print(escape(line))
    if instance.scheduled:
        out.print("[bold]Scheduled[/]")
        for item in instance.scheduled:
            out.print(escape(f"  {item.step}: {item.event} at {_time(item.at)} (id {item.id})"))


def _print_problems(out: Console, instance: Instance, definition: object) -> None:
    """How a run no longer fits its definition (a step renamed by a deploy, say), if it does not."""
    from rich.markup import escape

    from hephaestus._core.compat import instance_problems
    from hephaestus._core.definition import WorkflowDefinition

    if not isinstance(definition, WorkflowDefinition):
        return
    problems = instance_problems(definition, instance)
    if problems:
        out.print("[bold yellow]Does not fit the current definition[/] (it cannot be continued)")
        for problem in problems:
            out.print(f"  {escape(problem)}")


def _print_instance(out: Console, instance: Instance, definition: object) -> None:
    from rich.markup import escape
    from rich.table import Table

    from hephaestus._cli._graph import rich_graph
    from hephaestus._core.definition import WorkflowDefinition
    from hephaestus.graphs import ascii_lines

    header = Table.grid(padding=(0, 2))
    header.add_row("id", escape(instance.id))
    header.add_row("run", instance.run_id)
    header.add_row("workflow", f"{escape(instance.workflow)} (version {instance.workflow_version})")
    header.add_row("status", _status(instance.status))
    header.add_row("created", _time(instance.created_at))
    header.add_row("updated", _time(instance.updated_at))
    if instance.error is not None:
        header.add_row(
            "error", f"[red]{escape(instance.error.kind)}: {escape(instance.error.message)}[/]"
        )
    if instance.metadata:
        header.add_row("metadata", escape(json.dumps(to_json(instance.metadata))))
    out.print(header)

    steps = Table(
        "step", "status", "attempt", "event", "detail", title="Steps", title_justify="left"
    )
    for key, state in instance.steps.items():
        detail = ""
        if state.error is not None:
            detail = f"{state.error.kind}: {state.error.message}"
        elif state.timer_at is not None:
            detail = f"timer {_time(state.timer_at)} -> {state.timer_event or 'timeout'}"
        elif state.run_after is not None:
            detail = f"runs after {_time(state.run_after)}"
        steps.add_row(
            key, _status(state.status), str(state.attempt), state.event or "", escape(detail)
        )
    out.print(steps)

    _print_waiting(out, instance, definition)
    out.print("[bold]Context[/]")
    context = {"initial": instance.context.initial, "steps": instance.context.steps}
    out.print(escape(json.dumps(to_json(context), indent=2)), soft_wrap=True)

    history = Table(
        "at", "kind", "step", "event", "attempt", "detail", title="History", title_justify="left"
    )
    for entry in instance.history:
        detail = entry.source or ""
        if entry.error is not None:
            detail = f"{entry.error.kind}: {entry.error.message}"
        history.add_row(
            _time(entry.at),
            str(entry.kind),
            entry.step or "",
            entry.event or "",
            "" if entry.attempt is None else str(entry.attempt),
            escape(detail),
        )
    out.print(history)

    out.print("[bold]Graph[/]")
    if isinstance(definition, WorkflowDefinition):
        out.print(rich_graph(ascii_lines(definition, instance)))
    else:
        out.print(
            f"  (not available: --import the module that defines {escape(instance.workflow)})"
        )


def _payload(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CliUsageError(f"--payload is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CliUsageError(f"--payload must be a JSON object, got {raw}")
    return value


def _after(opened: Hephaestus, before: Instance) -> Awaitable[Instance]:
    async def settle() -> Instance:
        await opened.run_until_idle()
        return await opened.storage.get(before.run_id)

    return settle()


def _report(what: str, before: Instance, after: Instance) -> None:
    out = console()
    waiting = f"; waiting: {', '.join(after.waiting_steps)}" if after.waiting_steps else ""
    out.print(f"{after.id}: {what}; {_status(before.status)} -> {_status(after.status)}{waiting}")


@instances.command()
@click.argument("instance_id", metavar="ID")
@click.argument("event")
@click.option("--payload", default=None, metavar="JSON", help="A JSON object: the step's result.")
@click.option("--step", default=None, help="The waiting step, when several could take EVENT.")
@connection_options
def resume(
    *,
    instance_id: str,
    event: str,
    payload: str | None,
    step: str | None,
    app: str | None,
    dsn: str | None,
    schema: str | None,
    imports: tuple[str, ...],
) -> int:
    """Deliver EVENT to the run's waiting step, run it until it waits or ends, print the status.

    \b
    Example:
      hephaestus instances resume order::1001 delivered --payload '{"by": "courier"}'
    """
    data = _payload(payload)
    config = connection_config(app, dsn, schema, imports)

    async def deliver(opened: Hephaestus) -> tuple[Instance, Instance]:
        before = await opened.resume_instance(instance_id, event, data, step=step)
        return before, await _after(opened, before)

    with console(stderr=True).status(f"resuming {instance_id}: running until it waits or ends"):
        before, after = _run(config, deliver)
    _report(f"resumed with {event}", before, after)
    return 0


@instances.command()
@click.argument("instance_id", metavar="ID")
@click.option("--reason", default=None, help="Recorded in the run's history.")
@connection_options
def cancel(
    *,
    instance_id: str,
    reason: str | None,
    app: str | None,
    dsn: str | None,
    schema: str | None,
    imports: tuple[str, ...],
) -> int:
    """Cancel the active run: its steps and timers stop; cancelled is final.

    \b
    Example:
      hephaestus instances cancel order::1001 --reason "customer request"
    """
    config = connection_config(app, dsn, schema, imports)

    async def stop(opened: Hephaestus) -> tuple[Instance, Instance]:
        before = await opened.cancel_instance(instance_id, reason=reason)
        return before, await _after(opened, before)

    with console(stderr=True).status(f"cancelling {instance_id}"):
        before, after = _run(config, stop)
    _report("cancelled", before, after)
    return 0
