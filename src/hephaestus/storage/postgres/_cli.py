"""``hephaestus db``: install, migrate and print the PostgreSQL schema."""

from __future__ import annotations

import asyncio
import re

import click

__all__ = ["db"]

_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

dsn_option = click.option(
    "--dsn",
    envvar="HEPHAESTUS_DATABASE_URL",
    required=True,
    help="PostgreSQL connection string (env: HEPHAESTUS_DATABASE_URL).",
)
schema_option = click.option(
    "--schema",
    default="public",
    show_default=True,
    help="PostgreSQL schema holding the tables (one per tenant).",
)


def _check_schema(schema: str) -> str:
    # Identifiers are always quoted; this only keeps typos (spaces, dashes) from becoming schemas.
    if not _SCHEMA.match(schema):
        raise click.BadParameter(f"{schema!r} is not a plain identifier", param_hint="--schema")
    return schema


@click.group()
def db() -> None:
    """Manage the PostgreSQL schema of the hephaestus[postgres] storage."""


@db.command()
@dsn_option
@schema_option
def install(dsn: str, schema: str) -> None:
    """Create the tables (or apply pending migrations when they exist)."""
    from hephaestus.errors import StorageError
    from hephaestus.storage.postgres import install as do_install

    try:
        applied = asyncio.run(do_install(dsn, _check_schema(schema)))
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    if applied:
        click.echo(f"installed schema {schema!r} at version {applied[-1].version}")
    else:
        click.echo(f"schema {schema!r} is already up to date")


@db.command()
@dsn_option
@schema_option
def migrate(dsn: str, schema: str) -> None:
    """Apply the migrations not applied yet, in order."""
    from hephaestus.errors import StorageError
    from hephaestus.storage.postgres import migrate as do_migrate

    try:
        applied = asyncio.run(do_migrate(dsn, _check_schema(schema)))
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
def sql(schema: str, after: int | None) -> None:
    """Print the SQL (for Alembic, Django or hand-run migrations); touches no database."""
    from hephaestus.storage.postgres import migration_sql, schema_sql

    schema = _check_schema(schema)
    text = schema_sql(schema) if after is None else migration_sql(schema, after=after)
    click.echo(text, nl=False)
