"""The caller's transaction: runs started and inputs sent through the caller's own connection.

A run started there is inserted ``pending`` and an input (resume, cancel) is queued in the
run's inbox, each with a ``NOTIFY`` on the schema's channel, in the caller's transaction.
PostgreSQL delivers notifications only when the transaction commits, and until then no other
session sees the rows: nothing executes before the commit, and a rollback leaves no trace.
The runner hears the notification (``Listener``), or finds the rows by sweeping.

Accepted connections: psycopg 3 ``AsyncConnection`` (async API) and ``Connection`` (sync API),
Django's connection with the psycopg 3 backend (sync), SQLAlchemy ``Connection`` and
``Session`` (sync) and ``AsyncConnection`` and ``AsyncSession`` (async), on the psycopg
driver. Django and SQLAlchemy are never imported here unless the caller already did.
"""

from __future__ import annotations

import sys
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.errors
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from hephaestus.codec import dumps, encode_input
from hephaestus.errors import InvalidArgumentError
from hephaestus.storage._rows import decode_rows, insert_params
from hephaestus.storage.postgres._errors import wrap_exceptions
from hephaestus.storage.postgres._transaction import already_running

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from hephaestus._core.commands import Cancel, Resume
    from hephaestus._core.instance import Instance
    from hephaestus.storage import InstanceQuery, Work
    from hephaestus.storage.postgres._storage import PostgresStorage

__all__ = ["PostgresCallerTransaction", "is_async_connection"]

type Statement = tuple[bytes, dict[str, Any]]

_ASYNC_HINT = (
    "it is a sync connection: pass it to the sync API (OrderFlow.sync.start(..., conn=...), "
    "app.sync.start(...)), or give the async API a psycopg AsyncConnection (or SQLAlchemy "
    "AsyncConnection/AsyncSession); from async Django code, call the sync API through "
    "asgiref's sync_to_async"
)
_SYNC_HINT = (
    "it is an async connection: await the async API (await OrderFlow.start(..., conn=...)), "
    "or give the sync API a psycopg Connection, Django's connection or a SQLAlchemy "
    "Connection/Session"
)
_ACCEPTED = (
    "conn= takes a psycopg 3 Connection or AsyncConnection, Django's connection (psycopg 3 "
    "backend) or a SQLAlchemy Connection, Session, AsyncConnection or AsyncSession"
)


def is_async_connection(connection: object) -> bool:
    """Whether ``connection`` is an async connection this storage can join (else a sync one);
    ``TypeError`` for anything else."""
    if isinstance(connection, psycopg.AsyncConnection):
        return True
    if isinstance(connection, psycopg.Connection) or _is_django(connection):
        return False
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.engine import Connection as SAConnection
        from sqlalchemy.orm import Session

        if isinstance(connection, SAConnection | Session):
            return False
    if "sqlalchemy.ext.asyncio" in sys.modules:  # needs greenlet: imported only if used
        from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

        if isinstance(connection, AsyncConnection | AsyncSession):
            return True
    raise InvalidArgumentError(f"{_ACCEPTED}; got {type(connection).__name__}")


def _is_django(connection: object) -> bool:
    return type(connection).__module__.startswith("django.") and hasattr(
        connection, "ensure_connection"
    )


def _driver(raw: object, what: str) -> object:
    if not isinstance(raw, psycopg.Connection | psycopg.AsyncConnection):
        raise InvalidArgumentError(
            f"{what} does not use psycopg 3 (it holds a {type(raw).__module__}."
            f"{type(raw).__name__}); Hephaestus joins transactions through psycopg 3"
        )
    return raw


def _sync_connection(connection: object) -> psycopg.Connection[Any]:
    """The psycopg connection under a sync ``connection``, in a transaction the caller's
    framework commits (SQLAlchemy's is begun if it was not)."""
    if isinstance(connection, psycopg.Connection):
        return connection
    raw: object = None
    if _is_django(connection):
        vendor = getattr(connection, "vendor", None)
        if vendor != "postgresql":
            raise InvalidArgumentError(f"Django's connection is to {vendor}, not PostgreSQL")
        connection.ensure_connection()  # type: ignore[attr-defined]
        raw = _driver(connection.connection, "Django's connection")  # type: ignore[attr-defined]
    else:
        from sqlalchemy.engine import Connection as SAConnection
        from sqlalchemy.orm import Session

        if isinstance(connection, Session):
            connection = connection.connection()  # begins the session's transaction
        if isinstance(connection, SAConnection):
            if not connection.in_transaction():
                connection.begin()  # committed by the caller's connection.commit()
            raw = _driver(connection.connection.driver_connection, "the SQLAlchemy connection")
    if not isinstance(raw, psycopg.Connection):
        raise InvalidArgumentError(f"conn= {_SYNC_HINT}")
    return raw


async def _async_connection(connection: object) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection under an async ``connection`` (see ``_sync_connection``)."""
    if isinstance(connection, psycopg.AsyncConnection):
        return connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    if isinstance(connection, AsyncSession):
        connection = await connection.connection()  # begins the session's transaction
    raw: object = None
    if isinstance(connection, AsyncConnection):
        if not connection.in_transaction():
            await connection.begin()
        proxied = await connection.get_raw_connection()
        raw = _driver(proxied.driver_connection, "the SQLAlchemy connection")
    if not isinstance(raw, psycopg.AsyncConnection):
        raise InvalidArgumentError(f"conn= {_ASYNC_HINT}")
    return raw


class PostgresCallerTransaction:
    """``CallerTransaction`` on PostgreSQL: the storage's statements on the caller's connection.

    ``run``/``run_async`` fence the work in a savepoint inside the caller's transaction, so an
    error (``InstanceAlreadyRunningError``, say) undoes only the work's writes and the caller's
    transaction stays usable. A connection in autocommit with no transaction open gets one of
    its own for the work, committed at once: the caller's "transaction" is that statement.
    """

    __slots__ = ("_connection", "_storage", "is_async")

    def __init__(self, storage: PostgresStorage, connection: object) -> None:
        self.is_async = is_async_connection(connection)
        self._storage = storage
        self._connection = connection

    # -- the work ---------------------------------------------------------------------------

    def create(self, instance: Instance) -> Work[None]:
        queries = self._storage.queries
        try:
            yield (queries.insert_instance, insert_params(instance))
        except psycopg.errors.UniqueViolation as exc:
            raise already_running(instance, exc) from exc
        yield (queries.notify_run, {"channel": queries.channel, "run_id": instance.run_id})

    def query(self, query: InstanceQuery) -> Work[list[Instance]]:
        read = self._storage.read_statement(query, query.limit)
        if read is None:
            return []
        rows = yield read
        return decode_rows(rows, self._storage.registry, skip_corrupt=query.skip_corrupt)

    def send(self, run_id: str, input: Resume | Cancel) -> Work[None]:
        queries = self._storage.queries
        params = {"run_id": run_id, "input": dumps(encode_input(input)), "channel": queries.channel}
        yield (queries.enqueue_input, params)

    # -- executing it -----------------------------------------------------------------------

    def run[T](self, work: Work[T]) -> T:
        if self.is_async:
            raise InvalidArgumentError(f"conn= {_SYNC_HINT}")
        connection = _sync_connection(self._connection)
        with wrap_exceptions(), self._fenced(connection):
            try:
                statement = next(work)
                while True:
                    try:
                        cursor = connection.cursor(row_factory=tuple_row)
                        cursor.execute(*_statement(statement))
                        rows = cursor.fetchall() if cursor.description else []
                    except psycopg.Error as exc:
                        statement = work.throw(exc)
                    else:
                        statement = work.send(rows)
            except StopIteration as stop:
                result: T = stop.value
                return result

    async def run_async[T](self, work: Work[T]) -> T:
        if not self.is_async:
            raise InvalidArgumentError(f"conn= {_ASYNC_HINT}")
        connection = await _async_connection(self._connection)
        with wrap_exceptions():
            async with self._fenced_async(connection):
                try:
                    statement = next(work)
                    while True:
                        try:
                            cursor = connection.cursor(row_factory=tuple_row)
                            await cursor.execute(*_statement(statement))
                            rows = await cursor.fetchall() if cursor.description else []
                        except psycopg.Error as exc:
                            statement = work.throw(exc)
                        else:
                            statement = work.send(rows)
                except StopIteration as stop:
                    result: T = stop.value
                    return result

    @contextmanager
    def _fenced(self, connection: psycopg.Connection[Any]) -> Iterator[None]:
        if connection.autocommit and connection.info.transaction_status is TransactionStatus.IDLE:
            with connection.transaction():
                yield
            return
        queries = self._storage.queries
        connection.execute(queries.savepoint)
        try:
            yield
        except BaseException:
            if connection.info.transaction_status in _UNDOABLE:
                connection.execute(queries.rollback_savepoint)
                connection.execute(queries.release_savepoint)
            raise
        connection.execute(queries.release_savepoint)

    @asynccontextmanager
    async def _fenced_async(self, connection: psycopg.AsyncConnection[Any]) -> AsyncIterator[None]:
        if connection.autocommit and connection.info.transaction_status is TransactionStatus.IDLE:
            async with connection.transaction():
                yield
            return
        queries = self._storage.queries
        await connection.execute(queries.savepoint)
        try:
            yield
        except BaseException:
            if connection.info.transaction_status in _UNDOABLE:
                await connection.execute(queries.rollback_savepoint)
                await connection.execute(queries.release_savepoint)
            raise
        await connection.execute(queries.release_savepoint)


_UNDOABLE = (TransactionStatus.INTRANS, TransactionStatus.INERROR)
"""Where the work's savepoint can be rolled back to (the connection was not lost)."""


def _statement(statement: object) -> Statement:
    if not isinstance(statement, tuple):  # the work is ours: this is a bug, not bad input
        raise TypeError(f"a Work yields (statement, parameters), got {statement!r}")
    return statement
