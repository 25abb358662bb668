"""Migrations: ordered ``.sql`` files whose result equals the current schema, applied once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
import pytest

from hephaestus.storage.postgres import (
    MIGRATIONS,
    applied_versions,
    install,
    migrate,
    migration_sql,
    schema_sql,
)
from hephaestus.storage.postgres._queries import Queries
from tests._pg import create_database, drop_database, dsn, require_postgres, unique_name

if TYPE_CHECKING:
    from collections.abc import Iterator

CATALOG = """
SELECT 'column', table_name || '.' || column_name || ' ' || data_type || ' null=' || is_nullable
       || ' default=' || coalesce(column_default, '') || ' identity=' || is_identity
FROM information_schema.columns WHERE table_schema = %(schema)s
UNION ALL
SELECT 'index', indexname || ': ' || replace(indexdef, %(schema)s || '.', '')
FROM pg_indexes WHERE schemaname = %(schema)s
UNION ALL
SELECT 'constraint', c.conrelid::regclass::text || ' ' || c.conname || ' ' || c.contype::text || ' '
       || pg_get_constraintdef(c.oid)
FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
WHERE n.nspname = %(schema)s
UNION ALL
SELECT 'table', c.relname || ' ' || coalesce(array_to_string(c.reloptions, ','), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind = 'r'
UNION ALL
SELECT 'trigger', pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND NOT t.tgisinternal
UNION ALL
SELECT 'function', p.proname || '(' || pg_get_function_arguments(p.oid) || ') '
       || pg_get_function_result(p.oid) || ' ' || p.prosrc
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %(schema)s
UNION ALL
SELECT 'migration', version::text || ' ' || name FROM {table}
ORDER BY 1, 2
"""


def catalog(url: str, schema: str) -> list[tuple[str, str]]:
    """Every column, index, constraint, trigger and function of ``schema``, and its migrations."""
    table = psycopg.sql.Identifier(schema, "hephaestus_migrations")
    statement = psycopg.sql.SQL(CATALOG).format(table=table)
    with psycopg.connect(url) as conn:
        rows = conn.execute(statement, {"schema": schema}).fetchall()
    return [
        (str(kind), str(text).replace(f'"{schema}".', "").replace(f"{schema}.", ""))
        for kind, text in rows
    ]


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A new, empty database (no schema installed), dropped afterwards."""
    require_postgres()
    name = unique_name("hx_empty")
    create_database(name)
    yield dsn(name)
    drop_database(name)


def test_migrations_are_numbered_in_order_from_one() -> None:
    """Migration files are versions 1..n with no gap, each with a name."""
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert all(m.name for m in MIGRATIONS)
    assert len(MIGRATIONS) >= 2


async def test_applying_every_migration_equals_the_current_schema(empty_database: str) -> None:
    """A schema built migration by migration is identical to one built from schema.sql."""
    await migrate(empty_database, "by_migrations")
    await install(empty_database, "by_schema")
    migrated = catalog(empty_database, "by_migrations")
    installed = catalog(empty_database, "by_schema")
    assert migrated == installed
    kinds = {kind for kind, _ in migrated}
    assert kinds == {"column", "index", "constraint", "table", "trigger", "function", "migration"}
    assert ("table", "workflow_instances fillfactor=70") in migrated
    assert any("jsonb_path_ops" in text for _, text in migrated)
    assert any("workflow_instances_active_unique_key" in text for _, text in migrated)
    assert any("BEFORE INSERT" in text for kind, text in migrated if kind == "trigger")


async def test_migrate_applies_only_what_is_pending(empty_database: str) -> None:
    """From version 1, migrate applies the rest; run again, it applies nothing."""
    queries = Queries("stepwise")
    async with await psycopg.AsyncConnection.connect(empty_database, autocommit=True) as conn:
        await conn.execute(queries.bootstrap)
        await conn.execute(queries.migration(MIGRATIONS[0]))
        await conn.execute(queries.record_literal(MIGRATIONS[0]))
    assert await applied_versions(empty_database, "stepwise") == [1]
    applied = await migrate(empty_database, "stepwise")
    assert [m.version for m in applied] == [m.version for m in MIGRATIONS[1:]]
    assert await migrate(empty_database, "stepwise") == []
    assert await install(empty_database, "stepwise") == []
    assert await applied_versions(empty_database, "stepwise") == [m.version for m in MIGRATIONS]
    await install(empty_database, "reference")
    assert catalog(empty_database, "stepwise") == catalog(empty_database, "reference")


async def test_an_uninstalled_schema_has_no_applied_versions(empty_database: str) -> None:
    """A schema that was never installed reports no migrations."""
    assert await applied_versions(empty_database, "nothing_here") == []


async def test_the_printed_sql_builds_the_same_schema(empty_database: str) -> None:
    """Running the text of ``schema_sql`` and ``migration_sql`` equals ``install``."""
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute(schema_sql("printed").encode())
        conn.execute(migration_sql("printed_migrations").encode())
    await install(empty_database, "installed")
    assert catalog(empty_database, "printed") == catalog(empty_database, "installed")
    assert catalog(empty_database, "printed_migrations") == catalog(empty_database, "installed")


def test_schema_names_are_quoted_identifiers() -> None:
    """A hostile schema name is quoted as one identifier, never spliced into the SQL."""
    text = schema_sql('x"; DROP TABLE y; --')
    assert 'CREATE SCHEMA IF NOT EXISTS "x""; DROP TABLE y; --";' in text
    assert "\nDROP TABLE" not in text
