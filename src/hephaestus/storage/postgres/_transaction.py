"""The unit of work of the PostgreSQL storage: one transaction on one connection.

A runner that loads, decides and saves a run in one transaction, and adds its own rows (job
rows, outbox rows) to it, gets a ``PostgresTransaction``: the storage's reads and writes on
the transaction's ``connection``, which the runner uses for its own statements.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import psycopg.errors

from hephaestus.errors import (
    ConcurrentUpdateError,
    InstanceAlreadyRunningError,
    InstanceNotFoundError,
    StorageError,
)
from hephaestus.storage._rows import (
    decode_inbox_entry,
    decode_refreshed,
    decode_row,
    held_params,
    insert_params,
    put_item,
)
from hephaestus.storage.postgres._errors import wrap_exceptions

if TYPE_CHECKING:
    from collections.abc import Callable

    from hephaestus._core.commands import Changes
    from hephaestus._core.instance import Instance
    from hephaestus._core.registry import WorkflowRegistry
    from hephaestus.storage import InboxEntry
    from hephaestus.storage.postgres._queries import Queries

__all__ = ["UNIQUE_INDEX", "PostgresTransaction", "already_running"]

log = logging.getLogger("hephaestus.storage")

UNIQUE_INDEX = "workflow_instances_active_unique_key"
"""The partial unique index that lets one active run hold a unique key."""


def already_running(instance: Instance, exc: psycopg.errors.UniqueViolation) -> Exception:
    """The error a unique violation on insert stands for."""
    if exc.diag.constraint_name == UNIQUE_INDEX:
        return InstanceAlreadyRunningError(
            f"an active instance {instance.id} already exists ({instance.unique_key})",
            instance_id=instance.id,
            unique_key=instance.unique_key or "",
        )
    return StorageError(f"run {instance.run_id} already exists")


class PostgresTransaction:
    """Reads and writes of runs inside one open transaction on ``connection``.

    Nothing here commits: the transaction's owner does (the storage's ``transaction()`` block,
    or the caller whose connection this is). Any error leaves the transaction to be rolled back.
    """

    __slots__ = ("_callbacks", "_owner", "_queries", "_registry", "connection")

    def __init__(
        self,
        connection: psycopg.AsyncConnection[Any],
        queries: Queries,
        registry: WorkflowRegistry,
        owner: int | None = None,
    ) -> None:
        self.connection = connection
        self._queries = queries
        self._registry = registry
        self._owner = owner
        self._callbacks: list[Callable[[], object]] = []

    async def get(self, run_id: str, *, lock: bool = True) -> Instance:
        """The run, its row locked until the transaction ends (``lock=False``: a plain read)."""
        params = {"run_id": run_id}
        with wrap_exceptions():
            if lock:  # first the lock, then a read that sees what its last holder wrote
                await self.connection.execute(self._queries.lock_instance, params)
            cursor = await self.connection.execute(self._queries.get_instance, params)
            rows = await cursor.fetchall()
        if not rows:
            raise InstanceNotFoundError(f"run {run_id} does not exist", instance_id=run_id)
        return decode_row(rows[0], self._registry)

    async def refresh(self, instance: Instance) -> Instance:
        """The run locked until the transaction ends, read for a holder of ``instance``:
        only what changed since (``PostgresStorage.refresh``)."""
        held = {instance.run_id: instance}
        params = {"held": json.dumps([held_params(instance.run_id, instance)])}
        with wrap_exceptions():
            await self.connection.execute(self._queries.lock_instance, {"run_id": instance.run_id})
            cursor = await self.connection.execute(self._queries.refresh_instance, params)
            rows = await cursor.fetchall()
        found = decode_refreshed(rows, held, self._registry)
        if instance.run_id not in found:
            raise InstanceNotFoundError(
                f"run {instance.run_id} does not exist", instance_id=instance.id
            )
        return found[instance.run_id]

    async def create(self, instance: Instance) -> None:
        params = insert_params(instance, self._owner)
        with wrap_exceptions():
            try:
                await self.connection.execute(self._queries.insert_instance, params)
            except psycopg.errors.UniqueViolation as exc:
                raise already_running(instance, exc) from exc

    async def put(
        self,
        instance: Instance,
        previous: Instance | None = None,
        changes: Changes | None = None,
    ) -> None:
        params = {"batch": "[" + put_item(instance, previous, changes, self._owner) + "]"}
        with wrap_exceptions():
            cursor = await self.connection.execute(self._queries.update_instances, params)
            if await cursor.fetchall():
                return
            cursor = await self.connection.execute(
                self._queries.stored_revision, {"run_id": instance.run_id}
            )
            found = await cursor.fetchall()
        if not found:
            raise InstanceNotFoundError(
                f"run {instance.run_id} of {instance.id} does not exist", instance_id=instance.id
            )
        raise ConcurrentUpdateError(
            f"run {instance.run_id} of {instance.id} is at revision {found[0][0]} (or owned by "
            f"another process); cannot write revision {instance.revision}",
            instance_id=instance.id,
        )

    async def next_input(self, run_id: str) -> InboxEntry | None:
        """The oldest entry of the run's inbox; one that cannot be decoded is logged (with
        its stored text) and deleted, so it never blocks the entries behind it."""
        while True:
            with wrap_exceptions():
                cursor = await self.connection.execute(self._queries.next_input, {"run_id": run_id})
                rows = await cursor.fetchall()
            if not rows:
                return None
            entry_id, text, created_at = rows[0]
            entry = decode_inbox_entry(run_id, entry_id, text, created_at, self._registry)
            if entry is not None:
                return entry
            with wrap_exceptions():
                await self.connection.execute(self._queries.delete_input, {"id": entry_id})

    async def remove_input(self, entry: InboxEntry) -> None:
        with wrap_exceptions():
            await self.connection.execute(self._queries.delete_input, {"id": entry.id})

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once the transaction committed (never if it rolls back)."""
        self._callbacks.append(callback)

    def committed(self) -> None:
        """Run the ``after_commit`` callbacks: the owner calls this after a commit."""
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()
