"""``hephaestus db``: install, migrate and inspect the schema of a PostgreSQL or SQLite
database; print PostgreSQL's SQL.

The command wiring only: the work is the plain functions of ``hephaestus.storage.postgres``
and ``hephaestus.storage.sqlite``. PostgreSQL's are imported only when the database is
PostgreSQL, so a SQLite database needs no extra; a PostgreSQL one without the ``postgres``
extra is explained instead.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import TYPE_CHECKING, Literal, Protocol

import click

from hephaestus._cli._common import (
    CliError,
    CliUsageError,
    database_of,
    database_options,
    redact,
    settings,
)
from hephaestus._config import PostgresDatabase, SQLiteDatabase
from hephaestus.errors import HephaestusError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

__all__ = ["db"]

_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

schema_option = click.option(
    "--schema",
    default=None,
    help="PostgreSQL schema holding the tables, one per tenant (default: config, or public); "
    "SQLite has none (a tenant is a file).",
)

Database = PostgresDatabase | SQLiteDatabase


def _check_schema(schema: str) -> str:
    # Identifiers are always quoted; this only keeps typos (spaces, dashes) from becoming schemas.
    if not _SCHEMA.match(schema):
        raise click.BadParameter(f"{schema!r} is not a plain identifier", param_hint="--schema")
    return schema


def _target(dsn: str | None, schema: str | None) -> tuple[Database | None, str]:
    """Flags over the layered configuration (file < environment), like every other command."""
    try:
        config = settings().with_flags(dsn=dsn, schema=schema)
        database = database_of(config)
    except CliUsageError as exc:
        raise click.UsageError(str(exc)) from exc
    return database, _check_schema(config.schema)


def _required(database: Database | None) -> Database:
    if database is None:
        raise click.UsageError(
            "no database: pass --database URL (postgresql://... or sqlite:///runs.db), "
            "set HEPHAESTUS_DATABASE_URL, or set database in [tool.hephaestus]"
        )
    return database


def _postgres() -> ModuleType:
    """``hephaestus.storage.postgres``, or an error naming the extra it needs."""
    try:
        from hephaestus.storage import postgres
    except ImportError as exc:
        raise CliError(
            "`hephaestus db` needs PostgreSQL support: "
            f"pip install 'hephaestus-workflow[postgres]' ({type(exc).__name__}: {exc})"
        ) from exc
    return postgres


def _busy_timeout(database: SQLiteDatabase) -> float:
    return float(database.options.get("busy_timeout", 10.0))


def _apply(
    dsn: str | None, schema: str | None, how: Literal["install", "migrate"]
) -> tuple[list[_Migration], str]:
    """Run the database's migrations (``how``: PostgreSQL's ``install`` or ``migrate``; a
    SQLite file has one way, ``migrate``, which creates it if needed); the migrations applied
    and what to call the target."""
    database, schema = _target(dsn, schema)
    database = _required(database)
    try:
        if isinstance(database, SQLiteDatabase):
            from hephaestus.storage.sqlite import migrate as sqlite_migrate

            applied = sqlite_migrate(database.path, busy_timeout=_busy_timeout(database))
            return list(applied), database.url
        postgres = _postgres()
        run = postgres.install if how == "install" else postgres.migrate
        applied = asyncio.run(run(database.dsn, schema))
    except HephaestusError as exc:
        raise click.ClickException(str(exc)) from exc
    return list(applied), f"schema {schema!r}"


@click.group()
def db() -> None:
    """Manage the database schema: PostgreSQL (hephaestus-workflow[postgres]) or SQLite.

    The database is --database (alias --dsn), env HEPHAESTUS_DSN or HEPHAESTUS_DATABASE_URL,
    or database in the configuration file: postgresql://... or sqlite:///runs.db.
    """


@db.command()
@database_options
@schema_option
def install(dsn: str | None, schema: str | None) -> None:
    """Create the tables (or apply pending migrations when they exist).

    A SQLite file is created if it does not exist.
    """
    applied, what = _apply(dsn, schema, "install")
    if applied:
        click.echo(f"installed {what} at version {applied[-1].version}")
    else:
        click.echo(f"{what} is already up to date")


@db.command()
@database_options
@schema_option
def migrate(dsn: str | None, schema: str | None) -> None:
    """Apply the migrations not applied yet, in order.

    A SQLite file is created if it does not exist.
    """
    applied, what = _apply(dsn, schema, "migrate")
    for migration in applied:
        click.echo(f"applied {migration.version:04d}_{migration.name}")
    if not applied:
        click.echo(f"{what} is already up to date")


@db.command()
@database_options
@schema_option
def status(dsn: str | None, schema: str | None) -> int:
    """Show the migrations applied and pending; touches nothing.

    Exits 0 when the schema is up to date, 1 when it is not installed, has migrations
    pending, or is newer than this code (written by a newer Hephaestus).
    """
    database, schema = _target(dsn, schema)
    database = _required(database)
    migrations: Sequence[_Migration]
    try:
        if isinstance(database, SQLiteDatabase):
            from hephaestus.storage.sqlite import MIGRATIONS, applied_versions

            migrations = MIGRATIONS
            exists = os.path.exists(database.path)
            applied = applied_versions(database.path) if exists else []
            where = database.url
            fix = f"--database {database.url}"
        else:
            postgres = _postgres()
            migrations = postgres.MIGRATIONS
            applied = asyncio.run(postgres.applied_versions(database.dsn, schema))
            where = f"schema {schema!r} of {redact(database.dsn)}"
            fix = f"--schema {schema}" if schema != "public" else ""
    except HephaestusError as exc:
        raise click.ClickException(str(exc)) from exc
    return _report(where, fix, migrations, applied)


class _Migration(Protocol):
    """What ``status``, ``install`` and ``migrate`` read of a migration (PostgreSQL's and
    SQLite's both have these)."""

    @property
    def version(self) -> int: ...
    @property
    def name(self) -> str: ...


def _report(where: str, fix: str, migrations: Sequence[_Migration], applied: list[int]) -> int:
    names = {migration.version: migration.name for migration in migrations}
    latest = migrations[-1].version
    done = set(applied)
    pending = [migration for migration in migrations if migration.version not in done]
    newer = sorted(done - set(names))
    if newer:
        click.echo(
            f"{where}: schema version {newer[-1]} is newer than this code knows ({latest}): it "
            "was written by a newer Hephaestus; upgrade hephaestus-workflow (downgrading a "
            "database is not supported)"
        )
    elif not applied:
        click.echo(f"{where}: not installed; this code's schema is version {latest}")
    elif pending:
        click.echo(f"{where}: schema version {max(applied)}; this code's is {latest}")
    else:
        click.echo(f"{where}: schema version {latest}, up to date")
    for version in sorted(done):
        click.echo(f"applied  {version:04d}_{names.get(version, '(unknown to this code)')}")
    for migration in pending:
        click.echo(f"pending  {migration.version:04d}_{migration.name}")
    command = " ".join(part for part in ("hephaestus db", "{}", fix) if part)
    if not applied:
        click.echo(f"run `{command.format('install')}`")
    elif pending and not newer:
        count = f"{len(pending)} migration{'s' if len(pending) > 1 else ''}"
        click.echo(f"{count} pending: run `{command.format('migrate')}`")
    return 1 if newer or pending else 0


@db.command()
@database_options
@schema_option
@click.option(
    "--after",
    type=int,
    default=None,
    help="Print only the migrations after this version (default: the whole current schema).",
)
def sql(dsn: str | None, schema: str | None, after: int | None) -> None:
    """Print PostgreSQL's SQL (for Alembic, Django or hand-run migrations); touches no database.

    PostgreSQL only: a SQLite database is set up by `hephaestus db install`.
    """
    database, schema = _target(dsn, schema)
    if isinstance(database, SQLiteDatabase):
        raise click.UsageError(
            f"`hephaestus db sql` is PostgreSQL only, and the database is SQLite "
            f"({database.url}): `hephaestus db install --database {database.url}` creates or "
            "migrates it (the statements are hephaestus.storage.sqlite.MIGRATIONS)"
        )
    postgres = _postgres()
    if after is None:
        text = postgres.schema_sql(schema)
    else:
        text = postgres.migration_sql(schema, after=after)
    click.echo(text, nl=False)
