"""The connections of one storage: its pool, the queue for a connection, retry after a loss.

Statements run on a pooled autocommit connection as prepared statements. A statement that
fails because the connection was lost (the database restarted, say), a serialization failure
or a deadlock is run again, a few times; anything else is translated at once.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg_pool

from hephaestus.errors import StorageError
from hephaestus.storage.postgres._errors import retryable, translate, wrap_exceptions

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

__all__ = ["CONNECTION_ATTEMPTS", "Connections"]

CONNECTION_ATTEMPTS = 3
"""Tries of one statement when the connection is lost (the database restarted, say)."""


class Connections:
    """A pool (owned, from a ``dsn``, or the caller's) and the slots that queue for it."""

    __slots__ = ("_dsn", "_max_size", "_min_size", "_open_timeout", "_pool", "own_pool", "slots")

    def __init__(
        self,
        dsn: str | None,
        pool: psycopg_pool.AsyncConnectionPool | None,
        *,
        min_size: int,
        max_size: int,
        open_timeout: float,
    ) -> None:
        self._dsn = dsn
        self.own_pool = pool is None
        self._pool = pool
        self._min_size = min_size
        self._max_size = max_size
        self._open_timeout = open_timeout
        # Queue on a semaphore rather than in the pool: a pool waiter costs a task and a
        # timeout per wait, which at hundreds of concurrent runs is a visible share of the CPU.
        self.slots = asyncio.Semaphore(max_size if pool is None else pool.max_size)

    @property
    def pool(self) -> psycopg_pool.AsyncConnectionPool:
        """The connection pool (raises ``StorageError`` before ``open``)."""
        if self._pool is None:
            raise StorageError("PostgresStorage is not open; the app opens it (or call open())")
        return self._pool

    async def open(self) -> None:
        if not self.own_pool:  # the caller's pool: they open and close it
            self.slots = asyncio.Semaphore(self.pool.max_size)
            return
        if self._pool is not None or self._dsn is None:
            return  # already open
        pool = psycopg_pool.AsyncConnectionPool(
            self._dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            kwargs={"autocommit": True},
            open=False,
        )
        with wrap_exceptions():
            try:
                await pool.open(wait=True, timeout=self._open_timeout)
            except BaseException:
                await pool.close()
                raise
        self._pool = pool
        self.slots = asyncio.Semaphore(self._max_size)

    async def close(self) -> None:
        """Close the pool if this storage owns it (the caller closes their own)."""
        if self.own_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        """A new autocommit connection of its own, outside the pool (the listener's)."""
        if self._dsn is not None:
            return await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, connect_timeout=int(max(self._open_timeout, 1))
            )
        pool = self.pool  # the caller's: connect as it does (its settings may be callables)
        conninfo = await _resolve(pool.conninfo)
        settings: dict[str, Any] | None = await _resolve(pool.kwargs)
        kwargs = {**(settings or {}), "autocommit": True}
        return await psycopg.AsyncConnection.connect(conninfo, **kwargs)

    async def fetch_once(self, statement: bytes, params: Mapping[str, Any]) -> list[Any]:
        """Run one statement on a pooled connection; driver errors are raised as they are."""
        async with self.slots:
            return await self.execute_on_pool(statement, params)

    async def execute_on_pool(self, statement: bytes, params: Mapping[str, Any]) -> list[Any]:
        """``fetch_once`` for a caller already holding one of ``slots``."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(statement, params, prepare=True)
            return await cursor.fetchall() if cursor.description else []

    async def fetch(self, statement: bytes, params: Mapping[str, Any]) -> list[Any]:
        """Run one statement and return its rows, retrying on a lost connection.

        Only for statements that are safe to run twice (reads, idempotent deletes); writes
        retry themselves, because they must tell a lost commit from a conflict.
        """
        with wrap_exceptions():
            for attempt in range(CONNECTION_ATTEMPTS):
                try:
                    return await self.fetch_once(statement, params)
                except psycopg.OperationalError as exc:
                    await self.connection_lost(attempt, exc)
        raise AssertionError("unreachable")  # pragma: no cover

    async def connection_lost(self, attempt: int, exc: psycopg.Error) -> None:
        """After a statement failed: retry what may succeed again, translate the rest.

        A lost connection lets the pool drop broken ones first; a serialization failure or a
        deadlock is simply run again. Anything else (a refused value, a program limit) is
        raised at once, translated: retrying cannot help and the pool is fine.
        """
        if not retryable(exc):
            raise translate(exc) from exc
        if attempt + 1 >= CONNECTION_ATTEMPTS:
            if exc.sqlstate in ("40001", "40P01"):
                raise StorageError(f"PostgreSQL kept failing to commit: {exc}") from exc
            raise StorageError(f"PostgreSQL connection lost: {exc}") from exc
        if exc.sqlstate is None or exc.sqlstate[:2] in ("08", "57"):
            with wrap_exceptions():
                await self.pool.check()
        await asyncio.sleep(0.05 * (attempt + 1))


async def _resolve[T](value: T | Callable[[], T] | Callable[[], Awaitable[T]]) -> T:
    """A pool setting that may be given as a value, a function or an async function."""
    if not callable(value):
        return value
    result = value()
    if inspect.isawaitable(result):
        return await result
    return result
