"""In-memory storage: the default, and a complete implementation of the protocol.

Every method finishes without awaiting anything, so on one event loop each call is atomic;
uniqueness needs no lock.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from hephaestus._core.instance import ACTIVE_STATUSES, Instance
from hephaestus._core.values import copy_instance
from hephaestus.errors import (
    ConcurrentUpdateError,
    CorruptInstanceError,
    InstanceAlreadyRunningError,
    InstanceNotFoundError,
    StorageError,
)

if TYPE_CHECKING:
    from datetime import datetime

    from hephaestus._core.registry import WorkflowRegistry
    from hephaestus.storage import InstanceQuery

__all__ = ["InMemoryStorage"]


class InMemoryStorage:
    """Keeps instances in a dict; fast, process-local, gone when the process exits.

    With ``serialize=True`` every write is encoded to JSON text with ``hephaestus.codec`` and
    every read decoded from it (step references through ``registry``, by default every defined
    workflow), exactly what a database storage does: use it to check in tests that your context
    data survives a database.
    """

    def __init__(
        self, *, serialize: bool = False, registry: WorkflowRegistry | None = None
    ) -> None:
        self._runs: dict[str, Instance] = {}
        self._holders: dict[str, str] = {}  # unique key -> run_id of the active run holding it
        self._serialize = serialize
        self._registry = registry
        self._texts: dict[str, str] = {}  # run_id -> JSON text, when serializing

    @property
    def serialize(self) -> bool:
        """Whether runs are stored as JSON text (and so must be encodable), like a database."""
        return self._serialize

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def create(self, instance: Instance) -> None:
        if instance.run_id in self._runs:
            raise StorageError(f"run {instance.run_id} already exists")
        key = instance.unique_key
        if key is not None:
            holder = self._holders.get(key)
            if holder is not None and self._runs[holder].status in ACTIVE_STATUSES:
                raise InstanceAlreadyRunningError(
                    f"an active instance {instance.id} already exists "
                    f"({self._runs[holder].workflow}, run {holder})",
                    instance_id=instance.id,
                    unique_key=key,
                )
            if instance.status in ACTIVE_STATUSES:
                self._holders[key] = instance.run_id
        self._store(instance)

    async def put(self, instance: Instance, previous: Instance | None = None) -> None:
        del previous  # the whole instance is kept; there is nothing to diff
        stored = self._runs.get(instance.run_id)
        if stored is None:
            raise InstanceNotFoundError(
                f"run {instance.run_id} of {instance.id} does not exist", instance_id=instance.id
            )
        if stored.revision != instance.revision - 1:
            raise ConcurrentUpdateError(
                f"run {instance.run_id} of {instance.id} is at revision {stored.revision}; "
                f"cannot write revision {instance.revision}",
                instance_id=instance.id,
            )
        self._store(instance)
        key = instance.unique_key
        if (
            key is not None
            and instance.status not in ACTIVE_STATUSES
            and self._holders.get(key) == instance.run_id
        ):
            del self._holders[key]

    async def get(self, run_id: str) -> Instance:
        instance = self._runs.get(run_id)
        if instance is None:
            raise InstanceNotFoundError(f"run {run_id} does not exist", instance_id=run_id)
        return self._load(instance)

    async def delete(self, run_id: str) -> None:
        instance = self._runs.pop(run_id, None)
        self._texts.pop(run_id, None)
        key = None if instance is None else instance.unique_key
        if key is not None and self._holders.get(key) == run_id:
            del self._holders[key]

    async def query(self, query: InstanceQuery) -> list[Instance]:
        rows = [instance for instance in self._runs.values() if query.matches(instance)]
        # Creation time orders rows (as a database would); the stable sort keeps ties in the
        # order runs were created, which dict order already is.
        rows.sort(key=_created_at)
        if query.newest_first:
            rows.reverse()
        end = None if query.limit is None else query.offset + query.limit
        return [self._load(row) for row in rows[query.offset : end]]

    def _store(self, instance: Instance) -> None:
        if self._serialize:
            from hephaestus.codec import dumps, encode_instance

            # Encode before storing anything, so a value that cannot be encoded changes nothing.
            self._texts[instance.run_id] = dumps(encode_instance(instance))
        self._runs[instance.run_id] = instance

    def _load(self, instance: Instance) -> Instance:
        if not self._serialize:
            return copy_instance(instance)  # what callers get is theirs to change
        from hephaestus._core.registry import default_registry
        from hephaestus.codec import CodecError, decode_instance

        registry = default_registry if self._registry is None else self._registry
        try:
            return decode_instance(json.loads(self._texts[instance.run_id]), registry, strict=False)
        except (CodecError, ValueError, RecursionError) as exc:
            raise CorruptInstanceError(
                f"run {instance.run_id} cannot be decoded: {exc}", run_id=instance.run_id
            ) from exc


def _created_at(instance: Instance) -> datetime:
    return instance.created_at
