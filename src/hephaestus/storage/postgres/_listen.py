"""The storage's listener: one dedicated connection that ``LISTEN``\\ s while anyone watches.

Runs started and inputs sent in callers' transactions are announced on the schema's channel
(payload: the run id) and delivered when those transactions commit, from any process. The
listener passes each to the watchers. When its connection is lost it reconnects, and then
tells the watchers that notifications may have been missed (``None``) so that they sweep.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import psycopg

from hephaestus.errors import StorageError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from hephaestus.storage.postgres._queries import Queries

__all__ = ["Listener"]

log = logging.getLogger("hephaestus.storage")

RECONNECT_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
"""Seconds between attempts to reconnect the listener, the last repeated."""

type Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]


class Listener:
    """Listens on ``queries.channel`` through connections made by ``connect``."""

    __slots__ = (
        "_callbacks",
        "_connect",
        "_lost",
        "_queries",
        "_ready",
        "_session",
        "_task",
        "_timeout",
    )

    def __init__(
        self,
        connect: Connect,
        queries: Queries,
        *,
        timeout: float,
        session: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]] | None = None,
        lost: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._queries = queries
        self._timeout = timeout
        self._session = session
        self._lost = lost
        self._callbacks: list[Callable[[str | None], object]] = []
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def watch(
        self, callback: Callable[[str | None], object]
    ) -> Callable[[], Awaitable[None]]:
        """Subscribe ``callback``; returns once the listener listens (``StorageError`` if it
        cannot within the storage's ``open_timeout``)."""
        self._callbacks.append(callback)
        if self._task is None:
            self._ready = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._listen())
        try:
            await asyncio.wait_for(self._ready.wait(), self._timeout)
        except TimeoutError:
            await self._unwatch(callback)
            raise StorageError(
                f"could not LISTEN on {self._queries.channel!r} within {self._timeout}s"
            ) from None

        async def unwatch() -> None:
            await self._unwatch(callback)

        return unwatch

    async def _unwatch(self, callback: Callable[[str | None], object]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)
        if not self._callbacks:
            await self.close()

    async def close(self) -> None:
        """Stop listening (the storage closes)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _tell(self, run_id: str | None) -> None:
        for callback in list(self._callbacks):
            try:
                callback(run_id)
            except Exception:  # a watcher's bug must not stop the others, nor the listener
                log.exception("a storage watcher failed on run %s", run_id)

    async def _listen(self) -> None:
        failures = 0
        listened = False
        while True:
            try:
                connection = await self._connect()
                async with connection:
                    if self._session is not None:  # what the session holds: the owner lock
                        await self._session(connection)
                    await connection.execute(self._queries.listen)
                    if listened:
                        log.info("listener on %r reconnected", self._queries.channel)
                        self._tell(None)  # what was sent while it was away: sweep for it
                    listened = True
                    failures = 0
                    self._ready.set()
                    async for notify in connection.notifies():
                        self._tell(notify.payload)
            except (psycopg.Error, OSError) as exc:
                if self._lost is not None:
                    self._lost()
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                failures += 1
                log.warning(
                    "listener on %r lost its connection, reconnecting in %.1fs: %s",
                    self._queries.channel,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
