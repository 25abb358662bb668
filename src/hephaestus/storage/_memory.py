"""In-memory storage: the default, and a complete implementation of the protocol.

Every method finishes without awaiting anything, so on one event loop each call is atomic;
uniqueness needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from typing import TYPE_CHECKING

from hephaestus._core.instance import ACTIVE_STATUSES, Instance
from hephaestus._core.unique import keys_collide
from hephaestus._core.values import copy_instance
from hephaestus.errors import (
    ConcurrentUpdateError,
    CorruptInstanceError,
    InstanceAlreadyRunningError,
    InstanceNotFoundError,
    InvalidArgumentError,
    StorageError,
)
from hephaestus.storage._corrupt import corrupt, log_skipped
from hephaestus.storage._query import Page, decode_cursor, encode_cursor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from datetime import datetime

    from hephaestus._core.commands import Changes
    from hephaestus._core.registry import WorkflowRegistry
    from hephaestus.storage import CountKey, InstanceQuery

__all__ = ["InMemoryStorage"]


class InMemoryStorage:
    """Keeps instances in a dict; fast, process-local, gone when the process exits.

    With ``serialize=True`` every write is encoded to JSON text with ``hephaestus.codec`` and
    every read decoded from it (step references through ``registry``, by default the workflows
    of the app that opened it: see ``bind_registry``), exactly what a database storage does:
    use it to check in tests that your context data survives a database.
    """

    def __init__(
        self, *, serialize: bool = False, registry: WorkflowRegistry | None = None
    ) -> None:
        self._runs: dict[str, Instance] = {}
        self._serialize = serialize
        self._registry = registry
        self._bound: WorkflowRegistry | None = None
        self._texts: dict[str, str] = {}  # run_id -> JSON text, when serializing
        # instance id -> its runs' ids, in creation order (the run id alone while it has one):
        # a lookup by business id (resume, cancel, get) reads that id's runs only.
        self._by_id: dict[str, str | list[str]] = {}
        # run_id -> creation sequence number: ties of created_at break by it (and cursors).
        self._seq: dict[str, int] = {}
        self._next_seq = 0
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def bind_registry(self, registry: WorkflowRegistry) -> None:
        """Decode with the opening app's workflows, unless given a ``registry`` at construction."""
        self._bound = registry

    def _workflows(self) -> WorkflowRegistry:
        from hephaestus._core.registry import default_registry

        for registry in (self._registry, self._bound):
            if registry is not None:
                return registry
        return default_registry

    @property
    def serialize(self) -> bool:
        """Whether runs are stored as JSON text (and so must be encodable), like a database."""
        return self._serialize

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def create(self, instance: Instance) -> None:
        self._create(instance)

    def _create(self, instance: Instance) -> None:
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

    async def put(
        self,
        instance: Instance,
        previous: Instance | None = None,
        changes: Changes | None = None,
    ) -> None:
        del previous, changes  # the whole instance is kept; there is nothing to diff
        self._put(instance)

    def _put(self, instance: Instance) -> None:
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

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTransaction]:
        """A unit of work: its writes apply together when the block exits without error.

        Runs read with ``get(lock=True)`` stay locked against other transactions until then.
        """
        tx = MemoryTransaction(self)
        try:
            yield tx
            tx.commit()
        finally:
            tx.release()
        for callback in tx.callbacks:
            callback()

    def _lock(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        return lock

    async def delete(self, run_id: str) -> None:
        instance = self._runs.pop(run_id, None)
        self._texts.pop(run_id, None)
        if instance is not None:
            self._unindex(instance)
            del self._seq[run_id]

    async def query(self, query: InstanceQuery) -> list[Instance]:
        return self._decode(self._select(query, query.limit), query)

    async def page(self, query: InstanceQuery) -> Page:
        limit = query.limit
        rows = self._select(query, None if limit is None else limit + 1)
        cursor = None
        if limit is not None and len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            cursor = encode_cursor(last.created_at, self._seq[last.run_id])
        return Page(self._decode(rows, query), cursor)

    async def count(
        self, query: InstanceQuery, *, by: tuple[CountKey, ...] = ("status", "workflow")
    ) -> dict[tuple[str, ...], int]:
        if any(column not in ("status", "workflow") for column in by):
            raise InvalidArgumentError(f"count groups by status and/or workflow, not {by!r}")
        counts: dict[tuple[str, ...], int] = {}
        for row in self._matching(query):
            key = tuple(row.status.value if column == "status" else row.workflow for column in by)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def _matching(self, query: InstanceQuery) -> list[Instance]:
        query = query.resolve_tags(self._workflows())
        if query.id is not None:
            found = self._by_id.get(query.id, ())
            run_ids = (found,) if isinstance(found, str) else found
            candidates = [self._runs[run_id] for run_id in run_ids]
        else:
            candidates = list(self._runs.values())
        return [instance for instance in candidates if query.matches(instance)]

    def _select(self, query: InstanceQuery, limit: int | None) -> list[Instance]:
        """The stored rows ``query`` selects, ordered and paginated (``limit`` rows at most)."""
        rows = self._matching(query)
        seq = self._seq

        def position(instance: Instance) -> tuple[datetime, int]:
            return instance.created_at, seq[instance.run_id]

        # Creation time orders rows (as a database would), ties in the order runs were created.
        rows.sort(key=position, reverse=query.newest_first)
        if query.after is not None:
            mark = decode_cursor(query.after)
            if query.newest_first:
                rows = [row for row in rows if position(row) < mark]
            else:
                rows = [row for row in rows if position(row) > mark]
        end = None if limit is None else query.offset + limit
        return rows[query.offset : end]

    def _decode(self, rows: list[Instance], query: InstanceQuery) -> list[Instance]:
        if not self._serialize:
            return [copy_instance(row) for row in rows]  # what callers get is theirs to change
        return _decoded(self._load, rows, skip_corrupt=query.skip_corrupt)

    def _store(self, instance: Instance) -> None:
        if self._serialize:
            from hephaestus.codec import dumps, encode_instance

            # Encode before storing anything, so a value that cannot be encoded changes nothing.
            self._texts[instance.run_id] = dumps(encode_instance(instance))
        if instance.run_id not in self._runs:
            self._seq[instance.run_id] = self._next_seq
            self._next_seq += 1
            found = self._by_id.get(instance.id)
            if found is None:
                self._by_id[instance.id] = instance.run_id
            elif isinstance(found, str):
                self._by_id[instance.id] = [found, instance.run_id]
            else:
                found.append(instance.run_id)
        self._runs[instance.run_id] = instance

    def _undo_point(self, run_id: str) -> tuple[str, Instance | None, str | None]:
        """What ``_restore`` needs to put ``run_id`` back as it is now."""
        return run_id, self._runs.get(run_id), self._texts.get(run_id)

    def _restore(self, undo: tuple[str, Instance | None, str | None]) -> None:
        run_id, instance, text = undo
        current = self._runs.get(run_id)
        if instance is None:
            if current is not None:
                del self._runs[run_id]
                self._texts.pop(run_id, None)
                self._unindex(current)
                self._seq.pop(run_id, None)
            return
        self._runs[run_id] = instance
        if text is not None:
            self._texts[run_id] = text

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
        from hephaestus.codec import decode_instance

        registry = self._workflows()
        try:
            return decode_instance(json.loads(self._texts[instance.run_id]), registry, strict=False)
        except Exception as exc:  # whatever the stored text holds, the caller gets a typed error
            raise corrupt(instance.run_id, exc) from exc


class MemoryTransaction:
    """The unit of work of ``InMemoryStorage``: writes are checked when made, kept, and applied
    at commit in one step (nothing is awaited in between, so no one sees half of them)."""

    def __init__(self, storage: InMemoryStorage) -> None:
        self._storage = storage
        self._writes: list[tuple[bool, Instance]] = []  # (is a create, instance)
        self._staged: dict[str, Instance] = {}
        self._held: list[asyncio.Lock] = []
        self.callbacks: list[Callable[[], object]] = []

    async def get(self, run_id: str, *, lock: bool = True) -> Instance:
        if lock:
            held = self._storage._lock(run_id)
            if held not in self._held:
                await held.acquire()
                self._held.append(held)
        staged = self._staged.get(run_id)
        if staged is not None:
            return copy_instance(staged)
        return await self._storage.get(run_id)

    async def create(self, instance: Instance) -> None:
        if instance.run_id in self._staged:
            raise StorageError(f"run {instance.run_id} already exists")
        self._check(True, instance)
        self._writes.append((True, instance))
        self._staged[instance.run_id] = instance

    async def put(
        self,
        instance: Instance,
        previous: Instance | None = None,
        changes: Changes | None = None,
    ) -> None:
        del previous, changes
        staged = self._staged.get(instance.run_id)
        if staged is None:
            self._check(False, instance)
        elif staged.revision != instance.revision - 1:
            raise ConcurrentUpdateError(
                f"run {instance.run_id} of {instance.id} is at revision {staged.revision}; "
                f"cannot write revision {instance.revision}",
                instance_id=instance.id,
            )
        self._writes.append((False, instance))
        self._staged[instance.run_id] = instance

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once the writes are applied (never if they are not)."""
        self.callbacks.append(callback)

    def _check(self, create: bool, instance: Instance) -> None:
        """Raise now what applying the write would raise (nothing is changed)."""
        storage = self._storage
        undo = storage._undo_point(instance.run_id)
        try:
            if create:
                storage._create(instance)
            else:
                storage._put(instance)
        finally:
            storage._restore(undo)

    def commit(self) -> None:
        storage = self._storage
        applied = []
        try:
            for create, instance in self._writes:
                applied.append(storage._undo_point(instance.run_id))
                if create:
                    storage._create(instance)
                else:
                    storage._put(instance)
        except BaseException:
            for undo in reversed(applied):
                storage._restore(undo)
            self.callbacks.clear()
            raise

    def release(self) -> None:
        for lock in self._held:
            lock.release()
        self._held.clear()


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
