"""What every command shares: settings, errors with exit codes, imports, the app, output."""

from __future__ import annotations

import importlib
import os
import re
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import click

from hephaestus._config import (
    DEFAULT_SCHEMA,
    Config,
    ConfigError,
    PostgresDatabase,
    SQLiteDatabase,
    parse_database,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable
    from pathlib import Path
    from types import ModuleType

    from rich.console import Console

    from hephaestus._app import Hephaestus
    from hephaestus.storage import Storage

__all__ = [
    "USAGE",
    "CliError",
    "CliUsageError",
    "Settings",
    "connection_options",
    "console",
    "database_of",
    "database_options",
    "import_module",
    "load_attr",
    "make_storage",
    "opened_app",
    "settings",
]

USAGE = 2
"""Exit status of usage errors (bad arguments, unknown module): as click and argparse do."""
FAILURE = 1
PIPE_WIDTH = 120
PROBE_SECONDS = 5


class CliError(click.ClickException):
    """A failure to report in one line on stderr; exit status 1."""

    exit_code = FAILURE


class CliUsageError(CliError):
    """A usage error (bad arguments, unknown module): exit status 2, as click's own."""

    exit_code = USAGE


@dataclass
class Settings:
    """The root group's options; the configuration is read on first use, not for every command."""

    config_file: Path | None = None
    color: bool | None = None
    flags: dict[str, object] = field(default_factory=dict)

    @cached_property
    def config(self) -> Config:
        try:
            config = Config.load(file=self.config_file)
            if self.color is not None:
                config = config.merge({"color": "always" if self.color else "never"})
        except ConfigError as exc:
            raise CliUsageError(f"configuration: {exc}") from exc
        return config

    def with_flags(self, **flags: object) -> Config:
        """The configuration overlaid with a command's flags (``None``: flag not given)."""
        try:
            return self.config.merge(flags)
        except ConfigError as exc:
            raise CliUsageError(str(exc)) from exc


def settings() -> Settings:
    """The current command's settings (made by the root group)."""
    ctx = click.get_current_context()
    found = ctx.find_object(Settings)
    return found if found is not None else ctx.ensure_object(Settings)


def console(*, stderr: bool = False) -> Console:
    """A rich console honouring ``--color/--no-color``, the config and ``NO_COLOR``."""
    from rich.console import Console

    color = settings().config.color
    if color == "always":
        out = Console(stderr=stderr, force_terminal=True, highlight=False)
    elif color == "never":
        out = Console(stderr=stderr, no_color=True, highlight=False)
    else:
        out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal:
        # Piped or captured output is not wrapped at rich's default 80 columns.
        out.width = max(out.width, PIPE_WIDTH)
    return out


# -- importing user code -------------------------------------------------------------------


def _importable_from_cwd() -> None:
    # A console script does not put the working directory on sys.path (``python -m`` does);
    # users expect `hephaestus check myproject.workflows` to work from their project root.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def import_module(name: str) -> ModuleType:
    """Import ``name``; a module that does not exist is a usage error (exit 2).

    Errors raised while the module runs (a broken workflow, a failing import inside it)
    propagate, so callers can report them.
    """
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", name):
        raise CliUsageError(f"{name!r} is not a module name (expected dotted.module)")
    _importable_from_cwd()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == name or name.startswith(f"{missing}."):
            raise CliUsageError(f"no module named {name!r} (is it on sys.path?)") from exc
        raise


def import_modules(names: Iterable[str]) -> None:
    """Import each module (``--import``), reporting any failure as a usage error."""
    for name in names:
        try:
            import_module(name)
        except CliError:
            raise
        except Exception as exc:
            raise CliUsageError(f"importing {name} failed: {type(exc).__name__}: {exc}") from exc


def load_attr(spec: str, what: str) -> object:
    """The object at ``module:attr`` (``attr`` may be dotted); usage errors when it is missing."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CliUsageError(f"expected {what} as module:attr, got {spec!r}")
    try:
        value: object = import_module(module_name)
    except CliError:
        raise
    except Exception as exc:
        raise CliUsageError(f"importing {module_name} failed: {type(exc).__name__}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(value, part):
            raise CliUsageError(f"module {module_name!r} has no attribute {attr!r}")
        value = getattr(value, part)
    return value


# -- the app --------------------------------------------------------------------------------


DATABASE_HELP = (
    "The database: a PostgreSQL DSN (postgresql://..., host=... dbname=...) or a SQLite file, "
    "sqlite:///relative.db or sqlite:////absolute.db (env HEPHAESTUS_DSN or "
    "HEPHAESTUS_DATABASE_URL; --dsn is the same option)."
)


def database_options[F: Callable[..., Any]](command: F) -> F:
    """``--database`` (alias ``--dsn``): the one database setting, PostgreSQL or SQLite."""
    return click.option(
        "--database", "--dsn", "dsn", default=None, metavar="URL", help=DATABASE_HELP
    )(command)


def connection_options[F: Callable[..., Any]](command: F) -> F:
    """``--app``, ``--database``/``--dsn``, ``--schema`` and ``--import``: where runs are stored."""
    options = [
        click.option(
            "--import",
            "imports",
            multiple=True,
            metavar="MODULE",
            help="Import MODULE first, so its workflows are defined (repeatable).",
        ),
        click.option(
            "--schema",
            default=None,
            help="PostgreSQL schema of the tables (public); SQLite has none (a tenant is a file).",
        ),
        database_options,
        click.option(
            "--app",
            default=None,
            metavar="MODULE:ATTR",
            help="A Hephaestus app (not opened), or a function returning one (env HEPHAESTUS_APP).",
        ),
    ]
    for option in options:
        command = option(command)
    return command


def connection_config(
    app: str | None, dsn: str | None, schema: str | None, imports: tuple[str, ...]
) -> Config:
    """The settings with a command's connection flags on top (``--import`` adds modules)."""
    extra = (*settings().config.imports, *imports) if imports else None
    return settings().with_flags(app=app, dsn=dsn, schema=schema, imports=extra)


def redact(dsn: str) -> str:
    """``dsn`` without its password, for messages."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", re.sub(r"password=\S+", "password=***", dsn))


def database_of(config: Config) -> PostgresDatabase | SQLiteDatabase | None:
    """The configured database, parsed; a ``--schema`` other than the default with SQLite
    is a usage error (tenants on SQLite are separate files, not schemas)."""
    if config.dsn is None:
        return None
    try:
        database = parse_database(config.dsn)
    except ValueError as exc:  # checked when set; kept for Configs made by hand
        raise CliUsageError(str(exc)) from exc
    if isinstance(database, SQLiteDatabase) and config.schema != DEFAULT_SCHEMA:
        where = config.sources.get("schema", "default")
        raise CliUsageError(
            f"schema {config.schema!r} (from {where}) is PostgreSQL's: {database.url} is a "
            "SQLite file, which has no schemas; a SQLite tenant is a file of its own "
            "(sqlite:///tenant_a.db)"
        )
    return database


def make_storage(config: Config) -> Storage:
    """The storage the database setting names: ``SQLiteStorage`` for ``sqlite:///path`` (with
    the URL's options), ``PostgresStorage`` for a PostgreSQL DSN. The one place a database URL
    becomes a storage."""
    database = database_of(config)
    if database is None:
        raise CliUsageError(
            "no database: pass --database URL (postgresql://... or sqlite:///runs.db), "
            "or set database in [tool.hephaestus], hephaestus.toml or HEPHAESTUS_DATABASE_URL"
        )
    if isinstance(database, SQLiteDatabase):
        from hephaestus.errors import InvalidArgumentError
        from hephaestus.storage.sqlite import SQLiteStorage

        options: dict[str, Any] = dict(database.options)
        try:
            return SQLiteStorage(database.path, **options)
        except InvalidArgumentError as exc:
            raise CliUsageError(f"{database.url}: {exc}") from exc
    try:
        from hephaestus.storage.postgres import PostgresStorage
    except ImportError as exc:
        raise CliError(
            "a PostgreSQL database needs PostgreSQL support: "
            f"pip install 'hephaestus-workflow[postgres]' ({exc})"
        ) from exc
    return PostgresStorage(database.dsn, schema=config.schema)


def where_stored(config: Config) -> str:
    """The configured storage, for messages: the app, the SQLite URL or the DSN redacted."""
    if config.storage_target() == "app":
        return config.app or ""
    database = database_of(config)
    if isinstance(database, SQLiteDatabase):
        return database.url
    return redact(config.dsn or "")


def _build_app(config: Config) -> Hephaestus:
    from hephaestus._app import Hephaestus

    if config.storage_target() == "app" and config.app:
        value = load_attr(config.app, "--app")
        if not isinstance(value, Hephaestus) and callable(value):
            value = value()
        if not isinstance(value, Hephaestus):
            raise CliUsageError(
                f"--app {config.app} is {type(value).__name__}, not a Hephaestus app"
            )
        if value.is_open:
            raise CliUsageError(f"--app {config.app} is already open; give an app not yet opened")
        return value
    if config.dsn:
        database = database_of(config)
        if isinstance(database, SQLiteDatabase) and not os.path.exists(database.path):
            # Opening would create and install an empty file: a typo would list nothing.
            raise CliError(
                f"SQLite database {database.path} does not exist (create it with "
                f"`hephaestus db install --database {database.url}`, or by opening it from "
                "your app)"
            )
        return Hephaestus(storage=make_storage(config))
    raise CliUsageError(
        "no storage to read: pass --app MODULE:ATTR or --database URL "
        "(postgresql://... or sqlite:///runs.db; or set app/database in [tool.hephaestus], "
        "hephaestus.toml or HEPHAESTUS_DATABASE_URL)"
    )


def _summary(exc: BaseException) -> str:
    """The first line of an error and of its cause: the driver's own words, briefly."""
    parts = [
        f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    ]
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        parts.append(str(cause).strip().splitlines()[0])
    return " (".join(parts) + (")" if len(parts) > 1 else "")


async def _probe(dsn: str, where: str) -> None:
    """Connect once, so a bad DSN or a down server fails now, with the driver's words.

    (A pool would keep retrying until its timeout before reporting anything.)
    """
    import psycopg

    try:
        connection = await psycopg.AsyncConnection.connect(dsn, connect_timeout=PROBE_SECONDS)
    except psycopg.Error as exc:
        raise CliError(f"cannot connect to {where}: {_summary(exc)}") from exc
    await connection.close()


@asynccontextmanager
async def opened_app(config: Config) -> AsyncIterator[Hephaestus]:
    """The configured app, opened without recovering (nothing else starts running here)."""
    import_modules(config.imports)
    app = _build_app(config)
    where = where_stored(config)
    if config.storage_target() == "dsn":
        database = database_of(config)
        if isinstance(database, PostgresDatabase):
            await _probe(database.dsn, where)
    try:
        await app.open(recover=False)
    except Exception as exc:
        message = f"cannot open storage of {where}: {_summary(exc)}"
        if type(exc.__cause__).__name__ == "UndefinedTable":
            hint = f"hephaestus db install --schema {config.schema}"
            message += f" (is the schema installed? {hint})"
        raise CliError(message) from exc
    from hephaestus.storage import InMemoryStorage

    if isinstance(app.storage, InMemoryStorage):
        click.echo(
            f"note: {where} keeps runs in memory; only runs this process creates are visible",
            err=True,
        )
    try:
        yield app
    finally:
        await app.close()
