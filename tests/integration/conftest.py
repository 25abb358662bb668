"""Fixtures for integration tests: a storage per backend, a fake clock, and an open app.

``storage`` is parametrized by backend name so that every test written against it (the storage
contract suite, and every app-level test through ``app``) runs on each backend: the in-memory
storage, the same storing encoded JSON (``memory-json``: the codec round trip), PostgreSQL,
and SQLite (a file in the test's temporary directory).

PostgreSQL tests share one migrated database per session and empty its tables before each
test (``TRUNCATE`` costs a few milliseconds; a database per test would cost ten times more).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from hephaestus import Hephaestus
from hephaestus.storage import InMemoryStorage, Storage
from hephaestus.testing import FakeClock
from tests._pg import create_installed_database, drop_database, dsn, require_postgres, truncate

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

STORAGE_BACKENDS = ("memory", "memory-json", "postgres", "sqlite")


@pytest.fixture(scope="session")
def integration_database() -> Iterator[str]:
    """One migrated PostgreSQL database for the integration suite; dropped at the end."""
    require_postgres()
    name = create_installed_database("hx_integration")
    yield name
    drop_database(name)


def make_storage(backend: str, request: pytest.FixtureRequest) -> Storage:
    """A fresh, empty, not yet opened storage of ``backend``."""
    if backend == "memory":
        return InMemoryStorage()
    if backend == "memory-json":
        return InMemoryStorage(serialize=True)
    if backend == "postgres":
        from hephaestus.storage.postgres import PostgresStorage

        database: str = request.getfixturevalue("integration_database")
        truncate(database)
        return PostgresStorage(dsn(database), min_size=1, max_size=4)
    if backend == "sqlite":
        from hephaestus.storage.sqlite import SQLiteStorage

        directory: Path = request.getfixturevalue("tmp_path")
        return SQLiteStorage(directory / "runs.db")
    raise ValueError(f"unknown storage backend {backend!r}")


@pytest.fixture(params=STORAGE_BACKENDS)
def storage(request: pytest.FixtureRequest) -> Storage:
    """A fresh storage (not opened: the app, or the contract suite, opens it)."""
    backend: str = request.param
    return make_storage(backend, request)


@pytest.fixture
def clock() -> FakeClock:
    """A clock that only moves when a test advances it."""
    return FakeClock()


@pytest.fixture
async def app(storage: Storage, clock: FakeClock) -> AsyncIterator[Hephaestus]:
    """An open app on ``storage`` with the fake ``clock``; closed after the test."""
    async with Hephaestus(storage=storage, clock=clock) as opened:
        yield opened
