"""PostgreSQL for tests: the server on 127.0.0.1:5432, and throwaway databases on it.

Every database a run creates carries the process id and a random suffix, so parallel runs
never collide, and is dropped when the run ends. When the server is unreachable the tests that
need it fail under ``CI=true`` and are skipped otherwise.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from functools import cache

import psycopg
import pytest
from psycopg import sql

from hephaestus.storage.postgres import install

HOST = os.environ.get("HEPHAESTUS_TEST_PGHOST", "127.0.0.1")
PORT = int(os.environ.get("HEPHAESTUS_TEST_PGPORT", "5432"))
USER = os.environ.get("HEPHAESTUS_TEST_PGUSER", "postgres")


def dsn(database: str = "postgres") -> str:
    """The connection string of ``database`` on the test server."""
    return f"host={HOST} port={PORT} user={USER} dbname={database} connect_timeout=5"


@cache
def _unreachable_reason() -> str | None:
    try:
        with psycopg.connect(dsn(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        return f"PostgreSQL unreachable at {HOST}:{PORT} ({exc})".strip()
    return None


def require_postgres() -> None:
    """Fail (under CI) or skip (elsewhere) when the test server cannot be reached."""
    reason = _unreachable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI requires PostgreSQL")
    pytest.skip(reason)


def unique_name(prefix: str) -> str:
    """A database name no other run, in this process or another, will use."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"


def create_database(name: str, *, template: str | None = None) -> None:
    """Create ``name`` (a copy of ``template`` if given)."""
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
    with psycopg.connect(dsn(), autocommit=True) as conn:
        conn.execute(statement)


def drop_database(name: str) -> None:
    """Drop ``name``, disconnecting whoever is still connected to it."""
    with psycopg.connect(dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def create_installed_database(prefix: str, schemas: tuple[str, ...] = ("public",)) -> str:
    """A new database with the storage installed in each of ``schemas``; returns its name."""
    name = unique_name(prefix)
    create_database(name)
    for schema in schemas:
        asyncio.run(install(dsn(name), schema))
    return name


def truncate(database: str, schema: str = "public") -> None:
    """Empty the storage tables of ``schema``, and its jobs (a fresh storage in an existing
    database)."""
    with psycopg.connect(dsn(database), autocommit=True) as conn:
        conn.execute(
            sql.SQL("TRUNCATE {}, {} RESTART IDENTITY CASCADE").format(
                sql.Identifier(schema, "workflow_instances"), sql.Identifier(schema, "oban_jobs")
            )
        )
