"""In-memory storage: the default, and a complete implementation of the protocol.

Every method finishes without awaiting anything, so on one event loop each call is atomic;
uniqueness needs no lock.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from hephaestus._core.instance import ACTIVE_STATUSES, Instance
from hephaestus._core.unique import keys_collide
from hephaestus._core.values import copy_instance
from hephaestus.errors import (
    ConcurrentUpdateError,
    CorruptInstanceError,
    InstanceAlreadyRunningError,
    InstanceNotFoundError,
    StorageError,
)
from hephaestus.storage._corrupt import corrupt, log_skipped

if TYPE_CHECKING:
    from collections.abc import Callable
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
        self._serialize = serialize
        self._registry = registry
        self._texts: dict[str, str] = {}  # run_id -> JSON text, when serializing
        # instance id -> its runs' ids, in creation order (the run id alone while it has one):
        # a lookup by business id (resume, cancel, get) reads that id's runs only.
        self._by_id: dict[str, str | list[str]] = {}

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
            holder = self._holder(instance.id, key)
            if holder is not None:
                raise InstanceAlreadyRunningError(
                    f"an active instance {instance.id} already exists "
                    f"({self._runs[holder].workflow}, run {holder})",
                    instance_id=instance.id,
                    unique_key=key,
                )
        self._store(instance)  # may fail (an unencodable value): then nothing is held

    def _holder(self, instance_id: str, key: str) -> str | None:
        """The active run whose key excludes ``key`` (``keys_collide``), if any.

        Every key names its id (``family|id``, ``family@version|id``, the id itself), so the
        runs that can hold a colliding key are among that id's runs, which the id index holds:
        no index of keys to pay for per run, and a run that finishes frees its key at once.
        """
        found = self._by_id.get(instance_id, ())
        for run_id in (found,) if isinstance(found, str) else found:
            other = self._runs[run_id]
            if (
                other.unique_key is not None
                and other.status in ACTIVE_STATUSES
                and keys_collide(key, other.unique_key, instance_id)
            ):
                return run_id
        return None

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

    async def get(self, run_id: str) -> Instance:
        instance = self._runs.get(run_id)
        if instance is None:
            raise InstanceNotFoundError(f"run {run_id} does not exist", instance_id=run_id)
        return self._load(instance)

    async def delete(self, run_id: str) -> None:
        instance = self._runs.pop(run_id, None)
        self._texts.pop(run_id, None)
        if instance is not None:
            self._unindex(instance)

    async def query(self, query: InstanceQuery) -> list[Instance]:
        if query.id is not None:
            found = self._by_id.get(query.id, ())
            run_ids = (found,) if isinstance(found, str) else found
            candidates = [self._runs[run_id] for run_id in run_ids]
        else:
            candidates = list(self._runs.values())
        rows = [instance for instance in candidates if query.matches(instance)]
        # Creation time orders rows (as a database would); the stable sort keeps ties in the
        # order runs were created, which dict order already is.
        rows.sort(key=_created_at)
        if query.newest_first:
            rows.reverse()
        end = None if query.limit is None else query.offset + query.limit
        page = rows[query.offset : end]
        if not self._serialize:
            return [copy_instance(row) for row in page]  # what callers get is theirs to change
        return _decoded(self._load, page, skip_corrupt=query.skip_corrupt)

    def _store(self, instance: Instance) -> None:
        if self._serialize:
            from hephaestus.codec import dumps, encode_instance

            # Encode before storing anything, so a value that cannot be encoded changes nothing.
            self._texts[instance.run_id] = dumps(encode_instance(instance))
        if instance.run_id not in self._runs:
            found = self._by_id.get(instance.id)
            if found is None:
                self._by_id[instance.id] = instance.run_id
            elif isinstance(found, str):
                self._by_id[instance.id] = [found, instance.run_id]
            else:
                found.append(instance.run_id)
        self._runs[instance.run_id] = instance

    def _unindex(self, instance: Instance) -> None:
        found = self._by_id.get(instance.id)
        if isinstance(found, list):
            found.remove(instance.run_id)
            if len(found) == 1:
                self._by_id[instance.id] = found[0]
        elif found is not None:
            del self._by_id[instance.id]

    def _load(self, instance: Instance) -> Instance:
        if not self._serialize:
            return copy_instance(instance)  # what callers get is theirs to change
        from hephaestus._core.registry import default_registry
        from hephaestus.codec import decode_instance

        registry = default_registry if self._registry is None else self._registry
        try:
            return decode_instance(json.loads(self._texts[instance.run_id]), registry, strict=False)
        except Exception as exc:  # whatever the stored text holds, the caller gets a typed error
            raise corrupt(instance.run_id, exc) from exc


def _decoded(
    load: Callable[[Instance], Instance], rows: list[Instance], *, skip_corrupt: bool
) -> list[Instance]:
    """``rows`` decoded; one that cannot be is logged and skipped (or raised, if asked)."""
    found: list[Instance] = []
    for row in rows:
        try:
            found.append(load(row))
        except CorruptInstanceError as exc:
            if not skip_corrupt:
                raise
            log_skipped(exc)
    return found


def _created_at(instance: Instance) -> datetime:
    return instance.created_at
