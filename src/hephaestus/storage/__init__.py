"""Where instances live: the ``Storage`` protocol and the in-memory implementation.

The protocol speaks in domain terms. ``create`` is the only place uniqueness is decided, and it
decides atomically: there is no check-then-insert anywhere above it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from hephaestus.storage._memory import InMemoryStorage, MemoryTransaction
from hephaestus.storage._query import Page, json_contains, tagged_workflows

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping
    from contextlib import AbstractAsyncContextManager
    from datetime import datetime

    from hephaestus._core.commands import Changes
    from hephaestus._core.instance import Instance, Status
    from hephaestus._core.registry import WorkflowRegistry

__all__ = [
    "CountKey",
    "InMemoryStorage",
    "InstanceQuery",
    "MemoryTransaction",
    "Page",
    "Storage",
    "StorageTransaction",
]

type CountKey = Literal["status", "workflow"]
"""What ``Storage.count`` can group by."""


@dataclass(frozen=True, slots=True)
class InstanceQuery:
    """Filters for ``Storage.query``, ``Storage.page`` and ``Storage.count``; every given
    filter must match (AND).

    - ``id``: the runs of one instance id; ``id_prefix``: instance ids starting with it
      (``"order::ab"``; matched literally, ``%`` and ``_`` are not wildcards).
    - ``status`` / ``status_in``: one status, or any of several.
    - ``workflow`` (one stored workflow name or several), ``workflow_version``.
    - ``tags``: runs of a workflow whose definition has every one of these tags. Tags live on
      definitions, so the storage resolves them to workflow names through its registry
      (``tagged_workflows``): a workflow that is not defined in this process matches no tag.
    - ``metadata``: the run's caller metadata contains this mapping (nested mappings match
      recursively, lists by containment: JSONB ``@>``).
    - ``created_after`` / ``created_before``, ``updated_after`` / ``updated_before``: half-open
      ranges, ``after <= t < before``.

    Results are ordered by creation, oldest first (``newest_first`` reverses it): by
    ``created_at``, ties broken by the storage's creation sequence, so the order is total and
    stable. ``after`` (a cursor from ``Page.next_cursor``) keeps only the runs after that
    position in this order (keyset pagination: stable under concurrent inserts, and as fast on
    the last page as on the first); then ``offset`` rows are skipped and at most ``limit``
    returned.

    A stored run that cannot be decoded is left out of the results and reported with one
    error log line on the ``hephaestus.storage`` logger (naming the run and the fix), so one
    corrupt or foreign row never hides the healthy ones; it still counts toward ``offset`` and
    ``limit``, so a page may hold fewer runs. With ``skip_corrupt=False`` it raises
    ``CorruptInstanceError`` instead: what lookups of one run use.
    """

    id: str | None = None
    status: Status | None = None
    status_in: Collection[Status] | None = None
    workflow: str | Collection[str] | None = None
    workflow_version: int | None = None
    id_prefix: str | None = None
    tags: Collection[str] | None = None
    metadata: Mapping[str, Any] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    after: str | None = None
    limit: int | None = None
    offset: int = 0
    newest_first: bool = False
    skip_corrupt: bool = True

    def resolve_tags(self, registry: WorkflowRegistry) -> InstanceQuery:
        """This query with ``tags`` turned into a ``workflow`` filter through ``registry``."""
        if self.tags is None:
            return self
        names = tagged_workflows(registry, self.tags)
        if self.workflow is not None:
            given = {self.workflow} if isinstance(self.workflow, str) else set(self.workflow)
            names = names & given
        return replace(self, tags=None, workflow=sorted(names))

    def matches(self, instance: Instance) -> bool:
        """Whether ``instance`` passes every filter (pagination aside; ``tags`` resolved)."""
        if self.tags is not None:
            raise ValueError("resolve the tags of a query (resolve_tags) before matching")
        if self.id is not None and instance.id != self.id:
            return False
        if self.id_prefix is not None and not instance.id.startswith(self.id_prefix):
            return False
        if not _in_range(instance.created_at, self.created_after, self.created_before):
            return False
        if not _in_range(instance.updated_at, self.updated_after, self.updated_before):
            return False
        if self.metadata is not None:
            from hephaestus.codec import to_json

            if not json_contains(to_json(instance.metadata), to_json(self.metadata)):
                return False
        if self.status is not None and instance.status != self.status:
            return False
        if self.status_in is not None and instance.status not in self.status_in:
            return False
        if self.workflow is not None:
            if isinstance(self.workflow, str):
                if instance.workflow != self.workflow:
                    return False
            elif instance.workflow not in self.workflow:
                return False
        return self.workflow_version is None or instance.workflow_version == self.workflow_version


def _in_range(at: datetime, after: datetime | None, before: datetime | None) -> bool:
    return (after is None or at >= after) and (before is None or at < before)


@runtime_checkable
class StorageTransaction(Protocol):
    """One open unit of work on a storage (see ``Storage.transaction``)."""

    async def get(self, run_id: str, *, lock: bool = True) -> Instance:
        """The run as this transaction sees it; with ``lock``, no other transaction can lock
        or write it until this one ends. ``InstanceNotFoundError``, ``CorruptInstanceError``."""

    async def create(self, instance: Instance) -> None:
        """``Storage.create``, committed with the transaction."""

    async def put(
        self,
        instance: Instance,
        previous: Instance | None = None,
        changes: Changes | None = None,
    ) -> None:
        """``Storage.put`` (revision-checked), committed with the transaction."""

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` after the transaction commits; never if it rolls back."""


@runtime_checkable
class Storage(Protocol):
    """Persistence of instances, keyed by ``run_id``.

    Implementations translate their own errors into ``hephaestus.errors`` types at the boundary.

    Optional hook, not part of the protocol's required methods: ``bind_registry(registry)``.
    When a storage has it, the app calls it before ``open`` with the app's ``WorkflowRegistry``
    (its ``workflows=``): decode step references and resolve ``tags`` through it, unless the
    storage was given a registry of its own. Give each app its own storage object.
    """

    async def open(self) -> None:
        """Acquire resources (connections); called by the app on open."""

    async def close(self) -> None:
        """Release resources; called by the app on close."""

    async def create(self, instance: Instance) -> None:
        """Insert a new run.

        Raises ``InstanceAlreadyRunningError`` when ``instance.unique_key`` is set and an active
        run already holds it; the check and the insert are one atomic step.
        """

    async def put(
        self,
        instance: Instance,
        previous: Instance | None = None,
        changes: Changes | None = None,
    ) -> None:
        """Replace a stored run with its next state.

        Raises ``InstanceNotFoundError`` if the run does not exist and ``ConcurrentUpdateError``
        unless the stored revision is ``instance.revision - 1`` (someone else wrote first).
        ``previous``, when given, is the state the writer had at that revision, and ``changes``
        (the decision's) what differs from it: a storage may use them to write only that.
        Outside a transaction a storage may batch concurrent puts into one commit (group
        commit); each returns once its own write is durable.
        """

    def transaction(self) -> AbstractAsyncContextManager[StorageTransaction]:
        """A unit of work: ``async with storage.transaction() as tx:`` reads and writes runs
        that commit together when the block exits, or not at all when it raises.

        ``tx.get(run_id)`` locks the run against other transactions until the end (a runner's
        per-run atomic read-modify-write); a storage with a database connection exposes it
        (``PostgresTransaction.connection``) so the runner can add its own writes.
        """

    async def get(self, run_id: str) -> Instance:
        """The stored run; raises ``InstanceNotFoundError``.

        Raises ``CorruptInstanceError`` (with ``run_id``, the decoding error chained) when the
        stored data cannot be decoded, whatever is wrong with it: never ``KeyError`` and such.
        """

    async def delete(self, run_id: str) -> None:
        """Remove a run; deleting a missing run is not an error."""

    async def query(self, query: InstanceQuery) -> list[Instance]:
        """Runs matching ``query``, ordered and paginated as it says.

        Runs that cannot be decoded are logged and skipped (see ``InstanceQuery``), unless
        ``query.skip_corrupt`` is false: then the first raises ``CorruptInstanceError``.
        """

    async def page(self, query: InstanceQuery) -> Page:
        """Runs matching ``query`` like ``query``, with the cursor of the next page.

        ``Page.next_cursor`` is ``None`` once no run follows; otherwise pass it as
        ``InstanceQuery.after`` (same filters, same ``limit``) for the next page. Walking every
        page returns every run that existed at the start exactly once, whatever is inserted
        meanwhile.
        """

    async def count(
        self, query: InstanceQuery, *, by: tuple[CountKey, ...] = ("status", "workflow")
    ) -> dict[tuple[str, ...], int]:
        """How many runs match ``query``'s filters, grouped by ``by`` (pagination ignored).

        Keys are tuples of the grouped values in ``by`` order (``("running", "billing")``);
        ``by=()`` gives one key, ``()``, unless nothing matches. Groups with no runs are absent.
        """
