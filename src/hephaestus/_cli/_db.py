"""``hephaestus db``: install, migrate and print the PostgreSQL schema.

The command wiring only: the work is the plain functions of ``hephaestus.storage.postgres``.
Importing this module imports the driver, so the root group loads it lazily and explains a
missing ``postgres`` extra instead.
"""

from __future__ import annotations

import asyncio
import re

import click

from hephaestus._cli._common import CliUsageError, settings
from hephaestus.errors import StorageError
from hephaestus.storage.postgres import install as do_install
from hephaestus.storage.postgres import migrate as do_migrate
from hephaestus.storage.postgres import migration_sql, schema_sql

__all__ = ["db"]

_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

dsn_option = click.option(
    "--dsn",
    default=None,
    help="PostgreSQL connection string (default: the configuration, env HEPHAESTUS_DSN).",
)
schema_option = click.option(
    "--schema",
    default=None,
    help="PostgreSQL schema holding the tables, one per tenant (default: config, or public).",
)


def _check_schema(schema: str) -> str:
    # Identifiers are always quoted; this only keeps typos (spaces, dashes) from becoming schemas.
    if not _SCHEMA.match(schema):
        raise click.BadParameter(f"{schema!r} is not a plain identifier", param_hint="--schema")
    return schema


def _target(dsn: str | None, schema: str | None, *, need_dsn: bool = True) -> tuple[str, str]:
    """Flags over the layered configuration (file < environment), like every other command."""
    try:
        config = settings().with_flags(dsn=dsn, schema=schema)
    except CliUsageError as exc:
        raise click.UsageError(str(exc)) from exc
    if need_dsn and not config.dsn:
        raise click.UsageError(
            "no database: pass --dsn, set HEPHAESTUS_DSN, or set dsn in [tool.hephaestus]"
        )
    return config.dsn or "", _check_schema(config.schema)


@click.group()
def db() -> None:
    """Manage the PostgreSQL schema of the hephaestus-workflow[postgres] storage."""


@db.command()
@dsn_option
@schema_option
def install(dsn: str | None, schema: str | None) -> None:
    """Create the tables (or apply pending migrations when they exist)."""
    try:
        dsn, schema = _target(dsn, schema)
        applied = asyncio.run(do_install(dsn, schema))
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    if applied:
        click.echo(f"installed schema {schema!r} at version {applied[-1].version}")
    else:
        click.echo(f"schema {schema!r} is already up to date")


@db.command()
@dsn_option
@schema_option
def migrate(dsn: str | None, schema: str | None) -> None:
    """Apply the migrations not applied yet, in order."""
    try:
        dsn, schema = _target(dsn, schema)
        applied = asyncio.run(do_migrate(dsn, schema))
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    for migration in applied:
        click.echo(f"applied {migration.version:04d}_{migration.name}")
    if not applied:
        click.echo(f"schema {schema!r} is already up to date")


@db.command()
@schema_option
@click.option(
    "--after",
    type=int,
    default=None,
    help="Print only the migrations after this version (default: the whole current schema).",
)
def sql(schema: str | None, after: int | None) -> None:
    """Print the SQL (for Alembic, Django or hand-run migrations); touches no database."""
    _, schema = _target(None, schema, need_dsn=False)
    text = schema_sql(schema) if after is None else migration_sql(schema, after=after)
    click.echo(text, nl=False)
