"""The write path of ``put``: group commit of the puts that arrive together.

Each ``put`` is encoded in its caller (so encoding errors surface there) and queued; one
flusher writes every queued run in one ``update_instances`` statement once a connection is
free. Under load many steps share one round trip and one commit; alone, a write goes at once.
Two writes of one run never share a statement, and one bad run in a batch fails alone.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import psycopg

from hephaestus.errors import ConcurrentUpdateError, InstanceNotFoundError
from hephaestus.storage._rows import put_item
from hephaestus.storage.postgres._errors import retryable, wrap_exceptions

if TYPE_CHECKING:
    from collections.abc import Callable

    from hephaestus._core.commands import Changes
    from hephaestus._core.instance import Instance
    from hephaestus.storage.postgres._pool import Connections
    from hephaestus.storage.postgres._queries import Queries

__all__ = ["WriteBatcher"]


class _Write:
    """One ``put`` waiting for (or in) a batch: the instance, its JSON item, its outcome."""

    __slots__ = ("future", "instance", "item")

    def __init__(self, instance: Instance, item: str, future: asyncio.Future[None]) -> None:
        self.instance = instance
        self.item = item
        self.future = future


class WriteBatcher:
    """Queues puts by run and writes each batch in one statement, with ``connections``."""

    __slots__ = ("_connections", "_flushers", "_owner", "_pending", "_queries")

    def __init__(
        self, connections: Connections, queries: Queries, owner: Callable[[], int | None]
    ) -> None:
        self._connections = connections
        self._queries = queries
        self._owner = owner
        self._pending: dict[str, _Write] = {}  # run_id -> the put waiting for the next batch
        self._flushers: set[asyncio.Task[None]] = set()

    async def put(
        self, instance: Instance, previous: Instance | None, changes: Changes | None
    ) -> None:
        item = put_item(instance, previous, changes, self._owner())  # encoding errors: here
        loop = asyncio.get_running_loop()
        write = _Write(instance, item, loop.create_future())
        earlier = self._pending.get(instance.run_id)
        if earlier is not None:  # two writes of one run never share a statement
            await asyncio.wait([earlier.future])
        self._pending[instance.run_id] = write
        if len(self._pending) == 1:
            flusher = loop.create_task(self._flush())
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)
        await write.future

    async def drain(self) -> None:
        """Wait for the writes already submitted to finish (whatever their outcome)."""
        if self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)

    async def _flush(self) -> None:
        """Write every pending ``put`` in one statement once a connection is free.

        Writes that arrive while a batch waits for a connection join it: under load, many
        steps share one round trip and one commit (group commit); alone, a write goes at once.
        """
        async with self._connections.slots:
            batch = list(self._pending.values())
            self._pending.clear()
            try:
                with wrap_exceptions():
                    await self._write_batch(batch)
            except BaseException as exc:
                for write in batch:
                    if not write.future.done():
                        write.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

    async def _write_batch(self, batch: list[_Write]) -> None:
        params = {"batch": "[" + ",".join(write.item for write in batch) + "]"}
        attempt = 0
        while True:
            try:
                rows = await self._connections.execute_on_pool(
                    self._queries.update_instances, params
                )
                break
            except psycopg.Error as exc:
                if retryable(exc):
                    await self._connections.connection_lost(attempt, exc)
                    attempt += 1
                    continue
                if len(batch) == 1:
                    raise
                for write in batch:  # so that one bad run fails alone
                    try:
                        with wrap_exceptions():
                            await self._write_batch([write])
                    except Exception as exc:
                        write.future.set_exception(exc)
                return
        written = {row[0] for row in rows}
        missing = [write for write in batch if write.instance.run_id not in written]
        stored: dict[str, int] = {}
        if missing:
            found = await self._connections.execute_on_pool(
                self._queries.stored_revisions,
                {"run_ids": [write.instance.run_id for write in missing]},
            )
            stored = {str(run_id): int(revision) for run_id, revision in found}
        for write in batch:
            if write.future.done():
                continue
            instance = write.instance
            if instance.run_id in written:
                write.future.set_result(None)
            elif instance.run_id not in stored:
                write.future.set_exception(
                    InstanceNotFoundError(
                        f"run {instance.run_id} of {instance.id} does not exist",
                        instance_id=instance.id,
                    )
                )
            elif attempt and stored[instance.run_id] == instance.revision:
                write.future.set_result(None)  # committed before its connection was lost
            else:
                write.future.set_exception(
                    ConcurrentUpdateError(
                        f"run {instance.run_id} of {instance.id} is at revision "
                        f"{stored[instance.run_id]} (or owned by another process); cannot "
                        f"write revision {instance.revision}",
                        instance_id=instance.id,
                    )
                )
