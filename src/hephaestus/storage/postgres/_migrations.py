"""Installing and migrating the schema: versioned ``.sql`` migrations, applied in order.

Applied versions are recorded in ``<schema>.hephaestus_migrations``. Every change runs in one
transaction under an advisory lock, so two processes migrating at once apply each migration
once. ``schema_sql`` / ``migration_sql`` give the same SQL as text, for projects whose schema
is managed by Alembic, Django or plain files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.errors
import psycopg_pool

from hephaestus.storage.postgres._errors import wrap_exceptions
from hephaestus.storage.postgres._queries import MIGRATIONS, Migration, Queries

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "MIGRATIONS",
    "Migration",
    "applied_versions",
    "install",
    "migrate",
    "migration_sql",
    "pending_migrations",
    "schema_sql",
]

type Target = str | psycopg.AsyncConnection[Any] | psycopg_pool.AsyncConnectionPool


def schema_sql(schema: str = "public") -> str:
    """SQL that creates the current schema in ``schema`` and records every migration."""
    queries = Queries(schema)
    parts = [queries.bootstrap.decode(), queries.current_schema().decode()]
    parts.extend(queries.record_literal(migration).decode() for migration in MIGRATIONS)
    return "\n".join(parts) + "\n"


def migration_sql(schema: str = "public", *, after: int = 0) -> str:
    """SQL that applies (and records) the migrations after version ``after``, in order."""
    queries = Queries(schema)
    parts = [queries.bootstrap.decode()]
    for migration in MIGRATIONS:
        if migration.version > after:
            parts.append(queries.migration(migration).decode())
            parts.append(queries.record_literal(migration).decode())
    return "\n".join(parts) + "\n"


async def _applied(conn: psycopg.AsyncConnection[Any], queries: Queries) -> list[int]:
    try:
        async with conn.transaction():
            cursor = await conn.execute(queries.applied_migrations)
            return [int(row[0]) for row in await cursor.fetchall()]
    except psycopg.errors.UndefinedTable:
        return []


async def _connect(target: Target) -> tuple[psycopg.AsyncConnection[Any], bool]:
    """A connection to ``target`` and whether we own it (and must close it)."""
    if isinstance(target, str):
        return await psycopg.AsyncConnection.connect(target, autocommit=True), True
    if isinstance(target, psycopg_pool.AsyncConnectionPool):
        return await target.getconn(), False
    return target, False


async def _release(target: Target, conn: psycopg.AsyncConnection[Any], owned: bool) -> None:
    if owned:
        await conn.close()
    elif isinstance(target, psycopg_pool.AsyncConnectionPool):
        await target.putconn(conn)


async def applied_versions(target: Target, schema: str = "public") -> list[int]:
    """Versions of the migrations applied to ``schema`` (empty: not installed)."""
    with wrap_exceptions():
        conn, owned = await _connect(target)
        try:
            return await _applied(conn, Queries(schema))
        finally:
            await _release(target, conn, owned)


def pending_migrations(applied: Sequence[int]) -> list[Migration]:
    """The migrations not in ``applied``, in order."""
    done = set(applied)
    return [migration for migration in MIGRATIONS if migration.version not in done]


async def migrate(target: Target, schema: str = "public") -> list[Migration]:
    """Apply the pending migrations to ``schema`` (creating it if needed); returns them.

    ``target`` is a DSN, an open connection or a pool.
    """
    return await _apply(target, schema, fresh_from_schema=False)


async def install(target: Target, schema: str = "public") -> list[Migration]:
    """Create everything in ``schema``: the current schema if empty, else pending migrations.

    Safe to run again (it then applies nothing). Returns the migrations recorded.
    """
    return await _apply(target, schema, fresh_from_schema=True)


async def _apply(target: Target, schema: str, *, fresh_from_schema: bool) -> list[Migration]:
    queries = Queries(schema)
    with wrap_exceptions():
        conn, owned = await _connect(target)
        try:
            async with conn.transaction():
                await conn.execute(queries.lock_migrations, {"schema": schema})
                await conn.execute(queries.bootstrap)
                cursor = await conn.execute(queries.applied_migrations)
                applied = [int(row[0]) for row in await cursor.fetchall()]
                pending = pending_migrations(applied)
                if fresh_from_schema and not applied:
                    await conn.execute(queries.current_schema())
                else:
                    for migration in pending:
                        await conn.execute(queries.migration(migration))
                for migration in pending:
                    await conn.execute(
                        queries.record_migration,
                        {"version": migration.version, "name": migration.name},
                    )
                return pending
        finally:
            await _release(target, conn, owned)
