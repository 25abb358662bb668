"""The caller's transaction through Django's and SQLAlchemy's connections (psycopg 3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from hephaestus import Hephaestus, InstanceAlreadyRunningError, Status
from hephaestus.runners import LocalRunner
from hephaestus.storage.postgres import PostgresStorage
from tests._pg import HOST, PORT, USER
from tests.postgres.test_caller_transaction import Payment, executed, reach, wait_sync

if TYPE_CHECKING:
    from collections.abc import Iterator


def sqlalchemy_url(database: str, driver: str = "psycopg") -> str:
    return f"postgresql+{driver}://{USER}@{HOST}:{PORT}/{database}"


@pytest.fixture(autouse=True)
def _forget_executions() -> None:
    executed.clear()


@pytest.fixture
def django_connection(database: str) -> Iterator[object]:
    """Django configured in this process (once) with its default database set to this test's."""
    import django
    from django.conf import settings
    from django.db import connections

    if not settings.configured:
        settings.configure(
            DATABASES={
                "default": {
                    "ENGINE": "django.db.backends.postgresql",
                    "NAME": database,
                    "HOST": HOST,
                    "PORT": str(PORT),
                    "USER": USER,
                }
            },
            USE_TZ=True,
        )
        django.setup()
    connection = connections["default"]
    connection.close()
    connection.settings_dict["NAME"] = database
    yield connection
    connection.close()


def test_django_atomic_blocks_start_runs_when_they_commit(
    django_connection: object, database_url: str
) -> None:
    """Inside ``transaction.atomic()`` a run starts when the block commits; an exception in
    the block leaves none; a duplicate raises there and the block can still commit."""
    from django.db import transaction

    with Hephaestus(
        storage=PostgresStorage(database_url, min_size=1, max_size=4),
        runner=LocalRunner(sweep_interval=0.2),
    ) as app:
        with transaction.atomic():
            app.sync.start(Payment, "dj1", conn=django_connection)
            assert app.sync.list() == []
            with pytest.raises(InstanceAlreadyRunningError):
                app.sync.start(Payment, "dj1", conn=django_connection)
        wait_sync(app, Payment, "dj1", Status.COMPLETED)

        def order_refused() -> None:
            with transaction.atomic():
                app.sync.start(Payment, "dj2", conn=django_connection)
                raise RuntimeError("rule")

        with pytest.raises(RuntimeError, match="rule"):
            order_refused()
        app.sync.start(Payment, "dj3", conn=django_connection)  # autocommit: at once
        wait_sync(app, Payment, "dj3", Status.COMPLETED)
        assert sorted(run.id for run in app.sync.list()) == ["payment::dj1", "payment::dj3"]
    assert sorted(executed) == ["payment::dj1", "payment::dj3"]


def test_sqlalchemy_sessions_and_connections_start_runs_when_they_commit(
    database: str, database_url: str
) -> None:
    """A SQLAlchemy ``Session`` or ``Connection`` (psycopg driver) carries the start into its
    transaction: committed, it runs; rolled back, it never existed."""
    engine = create_engine(sqlalchemy_url(database))
    try:
        with Hephaestus(
            storage=PostgresStorage(database_url, min_size=1, max_size=4),
            runner=LocalRunner(sweep_interval=0.2),
        ) as app:
            with Session(engine) as session:
                app.sync.start(Payment, "sa1", conn=session)
                session.commit()
            with engine.connect() as connection:
                app.sync.start(Payment, "sa2", conn=connection)
                connection.rollback()
                app.sync.start(Payment, "sa3", conn=connection)
                connection.execute(text("SELECT 1"))
                connection.commit()
            wait_sync(app, Payment, "sa1", Status.COMPLETED)
            wait_sync(app, Payment, "sa3", Status.COMPLETED)
            assert sorted(run.id for run in app.sync.list()) == ["payment::sa1", "payment::sa3"]
    finally:
        engine.dispose()


async def test_sqlalchemy_async_sessions_and_connections_start_runs_when_they_commit(
    database: str, database_url: str
) -> None:
    """A SQLAlchemy ``AsyncSession`` or ``AsyncConnection`` does the same with the async API."""
    engine = create_async_engine(sqlalchemy_url(database))
    try:
        async with Hephaestus(
            storage=PostgresStorage(database_url, min_size=1, max_size=4),
            runner=LocalRunner(sweep_interval=0.2),
        ) as app:
            async with AsyncSession(engine) as session:
                await app.start(Payment, "as1", conn=session)
                await session.commit()
            async with engine.connect() as connection:
                await app.start(Payment, "as2", conn=connection)
                await connection.rollback()
            async with engine.begin() as connection:
                await app.start(Payment, "as3", conn=connection)
            await reach(app, Payment, "as1", Status.COMPLETED)
            await reach(app, Payment, "as3", Status.COMPLETED)
            assert sorted(run.id for run in await app.list()) == ["payment::as1", "payment::as3"]
    finally:
        await engine.dispose()
