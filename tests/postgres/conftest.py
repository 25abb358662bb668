"""PostgreSQL fixtures: a template database built from the migrations, cloned for each test.

Building the schema once and cloning it (``CREATE DATABASE ... TEMPLATE``) makes a fresh,
fully migrated database cost tens of milliseconds. Every database is dropped afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from hephaestus.storage.postgres import PostgresStorage
from tests._pg import (
    create_database,
    create_installed_database,
    drop_database,
    dsn,
    require_postgres,
    unique_name,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


@pytest.fixture(scope="session")
def template_database() -> Iterator[str]:
    """A database with every migration applied to ``public``, used only as a template."""
    require_postgres()
    name = create_installed_database("hx_template")
    yield name
    drop_database(name)


@pytest.fixture
def database(template_database: str) -> Iterator[str]:
    """A fresh migrated database of this test's own, dropped afterwards."""
    name = unique_name("hx_test")
    create_database(name, template=template_database)
    yield name
    drop_database(name)


@pytest.fixture
def database_url(database: str) -> str:
    """The connection string of this test's database."""
    return dsn(database)


@pytest.fixture
async def pg_storage(database_url: str) -> AsyncIterator[PostgresStorage]:
    """An open ``PostgresStorage`` on this test's database; closed afterwards."""
    storage = PostgresStorage(database_url)
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()
