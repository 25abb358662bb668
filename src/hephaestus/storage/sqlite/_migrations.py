"""Installing and migrating a SQLite database: the versioned migrations, applied in order.

Applied versions are recorded in ``hephaestus_migrations``. Migrating runs in one
``BEGIN IMMEDIATE`` transaction (SQLite's write lock), so two processes migrating one file at
once apply each migration once, and a migration that fails leaves nothing half-applied.
"""

from __future__ import annotations

import os
import sqlite3

from hephaestus.errors import StorageConfigError
from hephaestus.storage.sqlite._database import translated
from hephaestus.storage.sqlite._schema import (
    APPLIED,
    CREATE_MIGRATIONS,
    HAS_MIGRATIONS,
    MIGRATIONS,
    RECORD,
    TABLES,
    Migration,
)

__all__ = ["applied_versions", "check_schema", "migrate", "pending_migrations"]


def _applied(connection: sqlite3.Connection) -> list[int]:
    if connection.execute(HAS_MIGRATIONS).fetchone() is None:
        return []
    return [int(row[0]) for row in connection.execute(APPLIED)]


def pending_migrations(applied: list[int]) -> list[Migration]:
    """The migrations not in ``applied``, in order."""
    done = set(applied)
    return [migration for migration in MIGRATIONS if migration.version not in done]


def applied_versions(path: str) -> list[int]:
    """Versions of the migrations applied to the database at ``path`` (empty: not installed;
    a file that does not exist is not created)."""
    if not os.path.exists(path):
        return []
    with translated(path):
        connection = sqlite3.connect(f"file:{_uri_path(path)}?mode=ro", uri=True)
        try:
            return _applied(connection)
        finally:
            connection.close()


def migrate(path: str, *, busy_timeout: float = 10.0) -> list[Migration]:
    """Create the database at ``path`` if needed and apply the pending migrations; returns
    them (none when it is up to date; safe to run again). ``StorageConfigError`` if the
    database was written by a newer version of Hephaestus."""
    with translated(path):
        connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return migrate_connection(connection, path)
        finally:
            connection.close()


def migrate_connection(connection: sqlite3.Connection, path: str) -> list[Migration]:
    """``migrate`` on an open autocommit connection."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        applied = _applied(connection)
        _refuse_newer(applied, path)
        connection.execute(CREATE_MIGRATIONS)
        pending = pending_migrations(applied)
        for migration in pending:
            for statement in migration.statements:
                connection.execute(statement)
            connection.execute(RECORD, (migration.version, migration.name))
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return pending


def check_schema(connection: sqlite3.Connection, path: str, *, migrate: bool) -> list[Migration]:
    """Make the database ready for this code on open: a new (empty) file is installed; pending
    migrations are applied when ``migrate``, else refused with what to run; a newer schema is
    always refused. Returns the migrations applied."""
    applied = _applied(connection)
    _refuse_newer(applied, path)
    pending = pending_migrations(applied)
    if not pending:
        return []
    fresh = not applied and connection.execute(TABLES).fetchone() == (0,)
    if fresh or migrate:
        return migrate_connection(connection, path)
    if not applied:
        raise StorageConfigError(
            f"SQLite database {path} holds tables but no Hephaestus schema: is it another "
            "application's database? Give Hephaestus a file of its own"
        )
    raise StorageConfigError(
        f"SQLite database {path} is at schema version {max(applied)}; this code needs "
        f"{MIGRATIONS[-1].version}: run `hephaestus db migrate --database "
        f"sqlite:///{_uri_path(path)}`, "
        "or open it with SQLiteStorage(..., migrate=True)"
    )


def _refuse_newer(applied: list[int], path: str) -> None:
    known = {migration.version for migration in MIGRATIONS}
    newer = sorted(set(applied) - known)
    if newer:
        raise StorageConfigError(
            f"SQLite database {path} has schema version {newer[-1]}, newer than this code "
            f"knows ({MIGRATIONS[-1].version}): it was written by a newer Hephaestus; upgrade "
            "hephaestus-workflow (downgrading a database is not supported)"
        )


def _uri_path(path: str) -> str:
    from urllib.parse import quote

    return quote(path)
