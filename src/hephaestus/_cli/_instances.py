"""``hephaestus instances``: list, show, resume and cancel runs in a configured storage."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from enum import Enum
from typing import TYPE_CHECKING, Any, cast

import click

from hephaestus._cli._common import (
    CliError,
    CliUsageError,
    connection_config,
    connection_options,
    console,
)
from hephaestus._core.registry import script_name_hint

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from rich.console import Console

    from hephaestus._app import Hephaestus
    from hephaestus._config import Config
    from hephaestus._core.instance import HistoryEntry, Instance
    from hephaestus.storage import CountKey, InstanceQuery, Page

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


def _time(value: datetime | None, zone: tzinfo = UTC) -> str:
    """A stored time in ``zone``, to the second (the zone is named where times are shown)."""
    return "" if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _zone(name: str) -> tzinfo:
    """``--tz``: ``UTC``, ``local`` (this machine's zone) or an IANA name (``Europe/Paris``)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name.upper() == "UTC":
        return UTC
    if name == "local":
        local = datetime.now().astimezone().tzinfo
        return UTC if local is None else local
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CliUsageError(
            f"--tz {name!r} is not a time zone: UTC, local, or an IANA name (Europe/Paris)"
        ) from exc


def _zone_name(zone: tzinfo) -> str:
    """How a zone is named next to the times it applies to: ``UTC``, ``Europe/Paris``, ``CET``."""
    key = getattr(zone, "key", None)
    if isinstance(key, str):
        return key
    return zone.tzname(datetime.now(zone)) or str(zone)


def tz_option[F: Callable[..., Any]](command: F) -> F:
    """``--tz``: the zone times are shown in (stored times are UTC)."""
    return click.option(
        "--tz",
        "tz",
        default="UTC",
        show_default=True,
        metavar="ZONE",
        help="Show times in ZONE: UTC, local, or an IANA name such as Europe/Paris.",
    )(command)


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
                if "(python script.py, module __main__)" in str(exc):
                    raise CliError(str(exc)) from exc  # --import cannot help: say why
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


def _registered_names(app: Hephaestus, name: str) -> frozenset[str]:
    """Names ``name`` gives among defined workflows: full, class name, or an umbrella's versions."""
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
    return frozenset(found)


async def _workflow_names(app: Hephaestus, name: str) -> frozenset[str]:
    """Stored names matching ``name``: through the defined workflows, else the stored names.

    Without ``--import`` nothing is defined here, so a class name (``OrderFlow``) is matched
    against the names runs carry (``shop.OrderFlow``); a name matching neither is an error
    naming ``--import``, never a silent empty answer.
    """
    from hephaestus.storage import InstanceQuery

    found = _registered_names(app, name)
    if found:
        return found
    counts = await app.storage.count(InstanceQuery(), by=("workflow",))
    stored = sorted({key[0] for key in counts})
    matches = frozenset(s for s in stored if s == name or s.endswith(f".{name}"))
    if matches:
        return matches
    shown = ", ".join(stored[:10]) + (", ..." if len(stored) > 10 else "")
    raise CliUsageError(
        f"--workflow {name}: no workflow of that name is defined here and no stored run has it "
        f"(stored workflows: {shown or 'none'}); pass --import MODULE (the module that "
        "defines it) or a full stored name"
    )


@click.group()
def instances() -> None:
    """List, show, resume and cancel runs stored in a database (--database) or an app's storage.

    The database is PostgreSQL (postgresql://...) or a SQLite file (sqlite:///runs.db).

    Runs are addressed by their id (key::value). The app is opened without recovering other
    runs: only the run you resume executes here, until it waits or ends.
    """


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
"""Seconds per unit of a relative time (``2h`` ago)."""


def _when(value: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC if it has no offset) or a duration ago: ``90s``, ``15m``, ``2h``."""
    match = re.fullmatch(r"(\d+)([smhdw])", value.strip())
    if match:
        amount, unit = int(match[1]), match[2]
        return now - timedelta(seconds=amount * _UNIT_SECONDS[unit])
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError(
            f"{value!r} is neither an ISO 8601 time (2026-12-01T09:00) "
            "nor a duration ago (90s, 15m, 2h, 3d, 1w)"
        ) from exc
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _metadata(pairs: tuple[str, ...]) -> dict[str, Any] | None:
    """``KEY=VALUE`` pairs as a containment pattern; a VALUE that is JSON is decoded."""
    if not pairs:
        return None
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CliUsageError(f"--metadata takes KEY=VALUE, got {pair!r}")
        try:
            found[key] = json.loads(raw)
        except json.JSONDecodeError:
            found[key] = raw  # a bare word is a string: --metadata tenant=acme
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class _Filters:
    """The filter flags shared by ``list`` and ``count``, before the app resolves names."""

    statuses: tuple[str, ...]
    workflow: str | None
    version: int | None
    id_prefix: str | None
    value_prefix: str | None
    tags: tuple[str, ...]
    metadata: dict[str, Any] | None
    created_after: datetime | None
    created_before: datetime | None
    updated_after: datetime | None
    updated_before: datetime | None

    @classmethod
    def parse(cls, options: dict[str, Any]) -> _Filters:
        """The filters of a command's flags; a bad time or pair is a usage error (exit 2)."""
        now = datetime.now(UTC)
        times: dict[str, datetime | None] = {}
        for name in ("created_after", "created_before", "updated_after", "updated_before"):
            raw = options.pop(name)
            try:
                times[name] = None if raw is None else _when(raw, now)
            except ValueError as exc:
                raise CliUsageError(f"--{name.replace('_', '-')}: {exc}") from exc
        value_prefix = options.pop("value_prefix")
        if value_prefix is not None and options["workflow"] is None:
            raise CliUsageError("--value-prefix needs --workflow (whose key starts the ids)")
        return cls(
            statuses=options.pop("statuses"),
            workflow=options.pop("workflow"),
            version=options.pop("version"),
            id_prefix=options.pop("id_prefix"),
            value_prefix=value_prefix,
            tags=options.pop("tags"),
            metadata=_metadata(options.pop("metadata")),
            **times,
        )

    async def query(self, app: Hephaestus, **paging: Any) -> InstanceQuery:
        """The storage query these filters make, names and tags resolved through ``app``."""
        from hephaestus._core.instance import Status
        from hephaestus.storage import InstanceQuery

        names = None if self.workflow is None else await _workflow_names(app, self.workflow)
        _check_tags(app, self.tags)
        id_prefix = self.id_prefix
        if self.value_prefix is not None and self.workflow is not None:
            key_prefix = f"{_unique_key(app, self.workflow)}::{self.value_prefix}"
            if id_prefix is not None and not key_prefix.startswith(id_prefix):
                raise CliUsageError(f"--id-prefix {id_prefix} and --value-prefix contradict")
            id_prefix = key_prefix
        return InstanceQuery(
            status_in=frozenset(Status(s) for s in self.statuses) if self.statuses else None,
            workflow=names,
            workflow_version=self.version,
            id_prefix=id_prefix,
            tags=self.tags or None,
            metadata=self.metadata,
            created_after=self.created_after,
            created_before=self.created_before,
            updated_after=self.updated_after,
            updated_before=self.updated_before,
            **paging,
        ).resolve_tags(app.registry)


def _check_tags(app: Hephaestus, tags: tuple[str, ...]) -> None:
    """Refuse a tag no defined workflow has: tags live on definitions, so it would match none.

    Without ``--import`` no workflow is defined here and every tag would silently list nothing.
    """
    from hephaestus.storage._query import tagged_workflows

    for tag in tags:
        if not tagged_workflows(app.registry, (tag,)):
            raise CliUsageError(
                f"--tag {tag}: no workflow defined here is tagged {tag!r}; tags live on "
                "workflow definitions, so pass --import MODULE (the module that defines them)"
            )


def _unique_key(app: Hephaestus, name: str) -> str:
    """The unique key (``order`` in ``order::1001``) of the workflow ``name`` names."""
    names = _registered_names(app, name)
    keys = set()
    for definition in app.registry:
        if _definition_names(definition) & names:
            umbrella = app.registry.umbrella_of(definition.name)  # a version uses its ids
            keys.add((definition if umbrella is None else umbrella).unique.key)
    if len(keys) != 1:
        found = "no workflow" if not keys else f"{len(keys)} workflows"
        raise CliUsageError(
            f"--value-prefix: {found} named {name!r} here to take the key from "
            "(pass --import MODULE, or use --id-prefix KEY::VALUE)"
        )
    return keys.pop()


def _definition_names(definition: object) -> set[str]:
    from hephaestus._core.definition import VersionedDefinition, WorkflowDefinition

    if isinstance(definition, VersionedDefinition):
        return {version.name for version in definition.versions.values()}
    return {definition.name} if isinstance(definition, WorkflowDefinition) else set()


def filter_options[F: Callable[..., Any]](command: F) -> F:
    """The filters of ``list`` and ``count`` (every given filter must hold)."""
    options = [
        click.option(
            "--updated-before", default=None, metavar="WHEN", help="Last written before WHEN."
        ),
        click.option(
            "--updated-after", default=None, metavar="WHEN", help="Last written at or after WHEN."
        ),
        click.option("--created-before", default=None, metavar="WHEN", help="Created before WHEN."),
        click.option(
            "--created-after",
            default=None,
            metavar="WHEN",
            help="Created at or after WHEN: ISO 8601 (UTC unless it has an offset) or a "
            "duration ago: 90s, 15m, 2h, 3d, 1w.",
        ),
        click.option(
            "--metadata",
            multiple=True,
            metavar="KEY=VALUE",
            help="Runs whose metadata has KEY equal to (containing) VALUE, a JSON value or a "
            "bare string (repeatable).",
        ),
        click.option(
            "--tag",
            "tags",
            multiple=True,
            metavar="TAG",
            help="Runs of workflows tagged TAG (repeatable: all of them; needs --import).",
        ),
        click.option(
            "--value-prefix",
            default=None,
            metavar="PREFIX",
            help="Business values starting with PREFIX, of the --workflow (needs --import).",
        ),
        click.option(
            "--id-prefix", default=None, metavar="PREFIX", help="Ids starting with PREFIX."
        ),
        click.option(
            "--version", type=click.IntRange(min=1), default=None, help="Only this version."
        ),
        click.option(
            "--workflow", default=None, help="Only runs of this workflow (name or class name)."
        ),
        click.option(
            "--status",
            "statuses",
            type=click.Choice(_STATUSES),
            multiple=True,
            help="Only runs in this status (repeatable: any of them).",
        ),
    ]
    for option in options:
        command = option(command)
    return command


@instances.command("list")
@filter_options
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option(
    "--after", default=None, metavar="CURSOR", help="The page after CURSOR (printed by list)."
)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--oldest-first", is_flag=True, help="Oldest first (default: newest first).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@tz_option
@connection_options
def list_instances(
    *,
    limit: int,
    after: str | None,
    offset: int,
    oldest_first: bool,
    as_json: bool,
    tz: str,
    app: str | None,
    dsn: str | None,
    schema: str | None,
    imports: tuple[str, ...],
    **options: Any,
) -> int:
    """List runs as a table: id, workflow, version, status, waiting steps, times, errors.

    Pages go by cursor: the last line gives the --after CURSOR of the next page (same filters).

    \b
    Examples:
      hephaestus instances list --dsn postgresql:///app --status waiting --limit 20
      hephaestus instances list --database sqlite:///runs.db --status failed
      hephaestus instances list --workflow OrderFlow --created-after 2h --metadata tenant=acme
    """
    from hephaestus.storage._query import decode_cursor

    filters = _Filters.parse(options)
    zone = _zone(tz)
    if after is not None:
        try:
            decode_cursor(after)
        except ValueError as exc:
            raise CliUsageError(f"--after: {exc} (pass the cursor list printed)") from exc
    config = connection_config(app, dsn, schema, imports)

    async def query(opened: Hephaestus) -> Page:
        paging = {
            "limit": limit,
            "offset": offset,
            "after": after,
            "newest_first": not oldest_first,
        }
        return await opened.storage.page(await filters.query(opened, **paging))

    page = _run(config, query)
    if as_json:
        runs = [_summary(row) for row in page.runs]
        click.echo(json.dumps({"runs": runs, "next_cursor": page.next_cursor}, indent=2))
        return 0
    _print_table(console(), page, zone)
    return 0


def _error_text(row: Instance, width: int = 60) -> str:
    """Why a failed run failed, in one line of at most ``width`` characters."""
    error = row.error
    if error is None:
        return ""
    where = f" at {error.step}" if error.step else ""
    text = " ".join(f"{error.kind}{where}: {error.message}".split())
    return text if len(text) <= width else text[: width - 1] + "…"


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
        "error": None if row.error is None else to_json(row.error),
    }


def _print_table(out: Console, page: Page, zone: tzinfo = UTC) -> None:
    from rich.markup import escape
    from rich.table import Table

    named = _zone_name(zone)
    columns = ["id", "workflow", "version", "status", "waiting", f"created ({named})"]
    columns.append(f"updated ({named})")
    errors = any(row.error is not None for row in page.runs)
    if errors:
        columns.append("error")  # only when a run of the page failed: no empty column
    table = Table(*columns)
    table.columns[2].justify = "right"
    for row in page.runs:
        cells = [
            escape(row.id),
            row.workflow.rsplit(".", 1)[-1],  # the class name; `show` and --json give it all
            str(row.workflow_version),
            _status(row.status),
            ", ".join(row.waiting_steps),
            _time(row.created_at, zone),
            _time(row.updated_at, zone),
        ]
        if errors:
            cells.append(f"[red]{escape(_error_text(row))}[/]" if row.error else "")
        table.add_row(*cells)
    out.print(table)
    shown = f"{len(page.runs)} run{'s' if len(page.runs) != 1 else ''}"
    if page.next_cursor is not None:
        shown += f"; next page: --after {page.next_cursor}"
    out.print(shown, soft_wrap=True)


@instances.command("count")
@filter_options
@click.option(
    "--by",
    type=click.Choice(["status", "workflow"]),
    multiple=True,
    help="Group by status and/or workflow (repeatable; default both; in the order given).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@connection_options
def count_instances(
    *,
    by: tuple[str, ...],
    as_json: bool,
    app: str | None,
    dsn: str | None,
    schema: str | None,
    imports: tuple[str, ...],
    **options: Any,
) -> int:
    """Count runs matching the filters of list, grouped by status and/or workflow.

    \b
    Examples:
      hephaestus instances count --dsn postgresql:///app
      hephaestus instances count --by status --workflow OrderFlow --updated-after 1d
    """
    filters = _Filters.parse(options)
    config = connection_config(app, dsn, schema, imports)
    keys = cast("tuple[CountKey, ...]", tuple(dict.fromkeys(by)) or ("status", "workflow"))

    async def count(opened: Hephaestus) -> dict[tuple[str, ...], int]:
        return await opened.storage.count(await filters.query(opened), by=keys)

    counts = sorted(_run(config, count).items())
    if as_json:
        groups = [{**dict(zip(keys, key, strict=True)), "count": n} for key, n in counts]
        click.echo(json.dumps({"groups": groups, "total": sum(n for _, n in counts)}, indent=2))
        return 0
    from rich.table import Table

    table = Table(*keys, "runs", show_footer=len(counts) > 1)
    table.columns[-1].justify = "right"
    table.columns[-1].footer = str(sum(n for _, n in counts))
    table.columns[0].footer = "total"
    for key, n in counts:
        cells = [_status(v) if k == "status" else v for k, v in zip(keys, key, strict=True)]
        table.add_row(*cells, str(n))
    console().print(table)
    return 0


@instances.command("show")
@click.argument("instance_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the whole run as JSON.")
@click.option(
    "--history",
    "history_limit",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Show only the last N history entries (default: all).",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Then follow the run live: print each new history entry until the run ends.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="With --watch: how often to read the run.",
)
@tz_option
@connection_options
def show(
    *,
    instance_id: str,
    as_json: bool,
    history_limit: int | None,
    watch: bool,
    interval: float,
    tz: str,
    app: str | None,
    dsn: str | None,
    schema: str | None,
    imports: tuple[str, ...],
) -> int:
    """Show a run: its steps, waiting steps, context, history and graph (newest run of ID).

    With --watch, then print each new history entry as the run goes on, and exit when it
    ends (0) or on Ctrl-C.

    \b
    Examples:
      hephaestus instances show order::1001 --dsn postgresql:///app --import myapp.flows
      hephaestus instances show order::1001 --history 20 --tz Europe/Paris
      hephaestus instances show order::1001 --watch
    """
    if as_json and watch:
        raise CliUsageError("--watch prints lines as the run goes on: use it without --json")
    zone = _zone(tz)
    config = connection_config(app, dsn, schema, imports)

    async def fetch(opened: Hephaestus) -> tuple[Instance, object]:
        instance = await opened.get_instance(instance_id)
        return instance, opened.registry.get(instance.workflow)

    if not watch:
        instance, definition = _run(config, fetch)
        if as_json:
            click.echo(json.dumps(to_json(instance), indent=2))
            return 0
        out = console()
        _print_problems(out, instance, definition)
        _print_instance(out, instance, definition, zone, history_limit)
        return 0

    async def follow(opened: Hephaestus) -> Instance:
        instance, definition = await fetch(opened)
        out = console()
        _print_problems(out, instance, definition)
        _print_instance(out, instance, definition, zone, history_limit)
        return await _follow(out, opened, instance, zone, interval)

    final = _run(config, follow)
    return 0 if final.status.value == "completed" else 1


async def _follow(
    out: Console, opened: Hephaestus, instance: Instance, zone: tzinfo, interval: float
) -> Instance:
    """Print the run's new history entries as they are stored, until it ends; returns it."""
    from rich.markup import escape

    from hephaestus._core.instance import TERMINAL_STATUSES

    out.print(f"[bold]Watching[/] {escape(instance.id)} (Ctrl-C to stop; times {_zone_name(zone)})")
    seen = len(instance.history)
    while instance.status not in TERMINAL_STATUSES:
        await asyncio.sleep(interval)
        instance = await opened.storage.get(instance.run_id)
        for entry in instance.history[seen:]:
            out.print("  ".join(cell for cell in _entry_cells(entry, zone) if cell), soft_wrap=True)
        seen = len(instance.history)
    line = f"{escape(instance.id)}: {_status(instance.status)}"
    if instance.error is not None:
        line += f" ([red]{escape(_error_text(instance, 200))}[/])"
    out.print(line)
    return instance


def _entry_cells(entry: HistoryEntry, zone: tzinfo) -> list[str]:
    """A history entry as cells: at, kind, step, event, attempt, detail (markup escaped)."""
    from rich.markup import escape

    detail = entry.source or ""
    if entry.error is not None:
        detail = f"{entry.error.kind}: {entry.error.message}"
    return [
        _time(entry.at, zone),
        str(entry.kind),
        escape(entry.step or ""),
        escape(entry.event or ""),
        "" if entry.attempt is None else str(entry.attempt),
        escape(detail),
    ]


def _print_waiting(
    out: Console, instance: Instance, definition: object, zone: tzinfo = UTC
) -> None:
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
                timer = _time(state.timer_at, zone)
                line += f" (timer {timer} -> {state.timer_event or 'timeout'})"
            out.print(escape(line))
    if instance.scheduled:
        out.print("[bold]Scheduled[/]")
        for item in instance.scheduled:
            at = _time(item.at, zone)
            out.print(escape(f"  {item.step}: {item.event} at {at} (id {item.id})"))


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


def _print_instance(
    out: Console,
    instance: Instance,
    definition: object,
    zone: tzinfo = UTC,
    history_limit: int | None = None,
) -> None:
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
    named = _zone_name(zone)
    header.add_row("created", f"{_time(instance.created_at, zone)} {named}")
    header.add_row("updated", f"{_time(instance.updated_at, zone)} {named}")
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
            detail = f"timer {_time(state.timer_at, zone)} -> {state.timer_event or 'timeout'}"
        elif state.run_after is not None:
            detail = f"runs after {_time(state.run_after, zone)}"
        steps.add_row(
            key, _status(state.status), str(state.attempt), state.event or "", escape(detail)
        )
    out.print(steps)

    _print_waiting(out, instance, definition, zone)
    out.print("[bold]Context[/]")
    context = {"initial": instance.context.initial, "steps": instance.context.steps}
    out.print(escape(json.dumps(to_json(context), indent=2)), soft_wrap=True)

    entries = instance.history
    hidden = 0 if history_limit is None else max(0, len(entries) - history_limit)
    title = f"History ({named})"
    if hidden:
        entries = entries[hidden:]
        title += f", the last {len(entries)} of {len(instance.history)} entries"
    history = Table(
        "at", "kind", "step", "event", "attempt", "detail", title=title, title_justify="left"
    )
    if hidden:
        history.add_row("...", f"{hidden} earlier", "", "", "", "")
    for entry in entries:
        history.add_row(*_entry_cells(entry, zone))
    out.print(history)

    out.print("[bold]Graph[/]")
    if isinstance(definition, WorkflowDefinition):
        out.print(rich_graph(ascii_lines(definition, instance)))
    else:
        why = script_name_hint(instance.workflow)
        out.print(
            f"  (not available: {escape(why)})"
            if why
            else f"  (not available: --import the module that defines {escape(instance.workflow)})"
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


FORWARDED_WAIT_SECONDS = 5.0
"""How long ``resume``/``cancel`` wait for another process that owns the run to apply them."""


def _after(opened: Hephaestus, before: Instance) -> Awaitable[Instance]:
    async def settle() -> Instance:
        from hephaestus.testing import run_until_idle

        await run_until_idle(opened)
        after = await opened.storage.get(before.run_id)
        # Owned by another live process, the run changes there, moments later: wait for it.
        deadline = asyncio.get_running_loop().time() + FORWARDED_WAIT_SECONDS
        while after.revision == before.revision and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            after = await opened.storage.get(before.run_id)
        return after

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


_ACTIVE = ("pending", "running", "waiting")


def _active_filters(options: dict[str, Any]) -> _Filters:
    """``cancel-all``'s filters: at least one given, statuses among the active ones."""
    if not any(value not in (None, ()) for value in options.values()):
        raise CliUsageError(
            "cancel-all needs at least one filter (--status, --workflow, --tag, --metadata, "
            "--created-before...); to cancel every active run, pass --created-before 0s"
        )
    terminal = [s for s in options["statuses"] if s not in _ACTIVE]
    if terminal:
        raise CliUsageError(
            f"--status {terminal[0]}: only active runs ({', '.join(_ACTIVE)}) can be cancelled"
        )
    options["statuses"] = options["statuses"] or _ACTIVE
    return _Filters.parse(options)


async def _every_match(opened: Hephaestus, filters: _Filters) -> list[Instance]:
    """Every run the filters match, oldest first, page by page."""
    runs: list[Instance] = []
    cursor: str | None = None
    while True:
        query = await filters.query(opened, limit=500, after=cursor, newest_first=False)
        page = await opened.storage.page(query)
        runs.extend(page.runs)
        cursor = page.next_cursor
        if cursor is None:
            return runs


async def _cancel_each(
    opened: Hephaestus, runs: list[Instance], reason: str | None
) -> tuple[int, list[str], list[str]]:
    """Cancel the runs still active: (how many were cancelled, ids that ended, failures)."""
    from hephaestus._core.instance import ACTIVE_STATUSES
    from hephaestus.errors import HephaestusError, InstanceNotActiveError

    cancelled, ended, failed = 0, [], []
    for run in runs:
        current = await opened.storage.get(run.run_id)
        if current.status not in ACTIVE_STATUSES:
            ended.append(run.id)
            continue
        try:
            await opened.cancel_instance(run.id, reason=reason)
        except InstanceNotActiveError:
            ended.append(run.id)
        except HephaestusError as exc:
            failed.append(f"{run.id}: {exc}")
        else:
            cancelled += 1
    from hephaestus.testing import run_until_idle

    await run_until_idle(opened)
    return cancelled, ended, failed


@instances.command("cancel-all")
@filter_options
@click.option("--reason", default=None, help="Recorded in each run's history.")
@click.option("--dry-run", is_flag=True, help="Only list the runs that would be cancelled.")
@click.option("--yes", "-y", "assume_yes", is_flag=True, help="Do not ask for confirmation.")
@tz_option
@connection_options
def cancel_all(
    *,
    reason: str | None,
    dry_run: bool,
    assume_yes: bool,
    tz: str,
    app: str | None,
    dsn: str | None,
    schema: str | None,
    imports: tuple[str, ...],
    **options: Any,
) -> int:
    """Cancel every active run matching the filters of list, after a confirmation.

    The runs are listed first; --dry-run stops there, --yes skips the question. Runs that end
    meanwhile are skipped. At least one filter is required (all active runs: --created-before
    0s).

    \b
    Examples:
      hephaestus instances cancel-all --workflow OrderFlow --updated-before 7d --dry-run
      hephaestus instances cancel-all --metadata tenant=acme --reason "tenant closed" --yes
    """
    from hephaestus.storage import Page

    filters = _active_filters(options)
    zone = _zone(tz)
    config = connection_config(app, dsn, schema, imports)
    out = console()

    async def cancel_matching(opened: Hephaestus) -> tuple[int, list[str], list[str]] | None:
        runs = await _every_match(opened, filters)
        if not runs:
            out.print("no active run matches: nothing to cancel")
            return None
        _print_table(out, Page(runs, None), zone)
        if dry_run:
            out.print(f"dry run: {_plural(len(runs))} would be cancelled")
            return None
        question = f"Cancel {_plural(len(runs))}?"
        if not assume_yes and not await asyncio.to_thread(click.confirm, question, default=False):
            raise CliError("nothing cancelled")
        with console(stderr=True).status(f"cancelling {_plural(len(runs))}"):
            return await _cancel_each(opened, runs, reason)

    outcome = _run(config, cancel_matching)
    if outcome is None:
        return 0
    cancelled, ended, failed = outcome
    summary = f"cancelled {_plural(cancelled)}"
    if ended:
        summary += f"; {len(ended)} had ended meanwhile ({', '.join(ended)})"
    out.print(summary, soft_wrap=True)
    for line in failed:
        click.echo(f"not cancelled: {line}", err=True)
    if failed:
        raise CliError(
            f"{len(failed)} of {cancelled + len(ended) + len(failed)} runs could not be cancelled"
        )
    return 0


def _plural(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


@instances.command()
@click.argument("instance_id", metavar="ID")
@connection_options
def rerun(
    *,
    instance_id: str,
    app: str | None,
    dsn: str | None,
    schema: str | None,
    imports: tuple[str, ...],
) -> int:
    """Start a failed run again: a new run of ID, same workflow version, input and metadata.

    The new run executes in the command's process until it waits or ends; its status is
    printed. The failed run stays as it was (``show`` gives the newest run of ID).

    \b
    Example:
      hephaestus instances rerun order::1001 --dsn postgresql:///app --import myapp.flows
    """
    config = connection_config(app, dsn, schema, imports)

    async def again(opened: Hephaestus) -> tuple[Instance, Instance]:
        from hephaestus._core.definition import WorkflowDefinition
        from hephaestus.errors import UnknownWorkflowError

        failed = await opened.get_instance(instance_id)
        if failed.status.value != "failed":
            raise CliError(
                f"{failed.id} is {failed.status.value}: only a failed run is re-run "
                "(resume a waiting run; start a new one from your code otherwise)"
            )
        definition = opened.registry.get(failed.workflow)
        owner = None if definition is None else definition.owner
        if not isinstance(definition, WorkflowDefinition) or not isinstance(owner, type):
            why = script_name_hint(failed.workflow)
            raise UnknownWorkflowError(
                f"no workflow named {failed.workflow!r} is defined in this process; "
                + (why or "import the module that defines it")
            )
        value = failed.id.split("::")[1]
        new_id = await opened.start(owner, value, failed.context.initial, metadata=failed.metadata)
        from hephaestus.testing import run_until_idle

        await run_until_idle(opened)
        return failed, await opened.get_instance(new_id)

    with console(stderr=True).status(f"re-running {instance_id}: running until it waits or ends"):
        failed, after = _run(config, again)
    waiting = f"; waiting: {', '.join(after.waiting_steps)}" if after.waiting_steps else ""
    console().print(
        f"{after.id}: re-run of failed run {failed.run_id} as run {after.run_id}; "
        f"{_status(after.status)}{waiting}"
    )
    return 0
