"""A benchmark's own database on the PostgreSQL server it measures: created migrated, dropped."""

from __future__ import annotations

import asyncio
import os
import uuid

import psycopg
from psycopg import sql

from hephaestus.storage.postgres import install


def admin_dsn(server: str, database: str = "postgres") -> str:
    """The connection string of ``database`` on ``server`` (libpq key-value settings)."""
    return f"{server} dbname={database}"


def create_database(server: str, prefix: str = "hx_bench") -> str:
    """A new database with every migration applied; its name."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn(server), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    asyncio.run(install(admin_dsn(server, name)))
    return name


def drop_database(server: str, name: str) -> None:
    with psycopg.connect(admin_dsn(server), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
