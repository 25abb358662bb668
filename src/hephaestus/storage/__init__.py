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
    from collections.abc import Awaitable, Callable, Collection, Generator, Mapping
    from contextlib import AbstractAsyncContextManager
    from datetime import datetime

    from hephaestus._core.commands import Cancel, Changes, Resume, ScheduleResume
    from hephaestus._core.instance import Instance, Status
    from hephaestus._core.registry import WorkflowRegistry

__all__ = [
    "CallerTransaction",
    "CountKey",
    "InMemoryStorage",
    "InboxEntry",
    "InboxTransaction",
    "InstanceQuery",
    "JoinableStorage",
    "MemoryTransaction",
    "OwningStorage",
    "Page",
    "RefreshingTransaction",
    "Storage",
    "StorageTransaction",
    "Unwatch",
    "Work",
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


# -- the caller's transaction (an optional capability) ---------------------------------------

type Work[T] = Generator[object, Any, T]
"""Reads and writes on a caller's connection, as a generator of the statements they run.

It yields statements and is sent their results; ``CallerTransaction.run`` (sync) or
``run_async`` (async) executes them on the connection. Writing the work once as a generator
serves the sync and the async API alike (the app's own logic sits between the statements).
"""

type Unwatch = Callable[[], Awaitable[None]]
"""Ends a ``JoinableStorage.watch`` subscription."""


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """An input sent to a run inside a caller's transaction, waiting for the runner."""

    id: int
    run_id: str
    input: Resume | Cancel | ScheduleResume
    created_at: datetime


@runtime_checkable
class CallerTransaction(Protocol):
    """A storage's reads and writes through a caller's open connection (``join``).

    Nothing here commits or rolls back the caller's transaction: what is written becomes
    visible, and runners hear of it, when the caller commits; a rollback leaves no trace.
    ``run`` and ``run_async`` fence the work so that an error undoes only its own writes.
    """

    @property
    def is_async(self) -> bool:
        """Whether the connection is async (``run_async``) or sync (``run``)."""

    def create(self, instance: Instance) -> Work[None]:
        """Store a new ``pending`` run (``InstanceAlreadyRunningError`` as ``Storage.create``)
        and announce it to runners, at commit."""

    def query(self, query: InstanceQuery) -> Work[list[Instance]]:
        """``Storage.query``, as the caller's transaction sees the runs."""

    def send(self, run_id: str, input: Resume | Cancel) -> Work[None]:
        """Queue ``input`` for the run in its inbox and announce it, at commit. The run itself
        is neither locked nor written: its runner applies the input."""

    def run[T](self, work: Work[T]) -> T:
        """Execute ``work`` on a sync connection; returns its result."""

    async def run_async[T](self, work: Work[T]) -> T:
        """Execute ``work`` on an async connection; returns its result."""


@runtime_checkable
class InboxTransaction(StorageTransaction, Protocol):
    """A unit of work of a ``JoinableStorage``: it also reads and clears runs' inboxes."""

    async def next_input(self, run_id: str) -> InboxEntry | None:
        """The oldest entry of the run's inbox (an entry that cannot be decoded is logged and
        removed), or ``None``."""

    async def remove_input(self, entry: InboxEntry) -> None:
        """Delete ``entry``, committed with the transaction."""


@runtime_checkable
class RefreshingTransaction(StorageTransaction, Protocol):
    """A unit of work that reads a run again for a holder of an older copy: only what changed
    since (a runner that keeps the runs it handles, such as the Oban runner)."""

    async def refresh(self, instance: Instance) -> Instance:
        """The run locked until the transaction ends, as it is now; ``instance`` itself when
        it is the stored revision (``InstanceNotFoundError`` if the run is gone)."""


@runtime_checkable
class OwningStorage(Protocol):
    """A storage shared by several processes, each owning the active runs it executes.

    A process ``register`` once (an owner id, held for the life of its session: PostgreSQL
    holds it as a session advisory lock, released by the server whatever way the process
    goes). Runs it creates are its own; only a run's owner writes it (every write is fenced
    by the owner id, a deposed owner's write raises ``ConcurrentUpdateError``). An input for a
    run a live process owns goes to that owner (``forward``: inbox + notification); runs
    nobody owns or whose owner is gone are taken over (``claim``, ``claim_orphans``); a
    process that stops gives its runs up (``release``) so the others take them at once.
    """

    owner: int | None
    """This process's owner id once registered (``None`` before, or while reconnecting)."""

    async def register(self, lost: Callable[[], object]) -> int:
        """Become an owner; ``lost()`` is called (on the loop) if the session holding the
        owner id ends (a lost connection): every run this process held is then another's to
        take, and its writes are refused. A new owner id is drawn when the session is back."""

    async def claim(self, run_id: str) -> bool:
        """Make ``run_id`` ours if it is active and nobody owns it, we do, or its owner is gone;
        false when a live process owns it (or it is not active)."""

    async def claim_orphans(
        self, *, limit: int = 100, workflows: Collection[str] | None = None
    ) -> list[str]:
        """Take over up to ``limit`` active runs (of ``workflows``, stored names, when given)
        that nobody owns or whose owner is gone."""

    async def release(self) -> list[str]:
        """Give up every active run we own and announce each; returns their ids."""

    async def forward(self, run_id: str, input: Resume | Cancel | ScheduleResume) -> None:
        """Queue ``input`` in ``run_id``'s inbox and announce it, for its owner to apply."""


@runtime_checkable
class JoinableStorage(Protocol):
    """A storage that can start, resume and cancel runs inside a caller's transaction.

    A run started there is stored ``pending``, and a resume or cancel is queued in the run's
    inbox; runners learn of both when the caller commits (``watch``), and find what a lost
    notification left behind by sweeping (``awaiting``). Its ``transaction()`` yields an
    ``InboxTransaction``.
    """

    def join(self, connection: object) -> CallerTransaction:
        """Reads and writes through the caller's ``connection``; ``TypeError`` for a
        connection this storage cannot use."""

    async def watch(self, callback: Callable[[str | None], object]) -> Unwatch:
        """Call ``callback(run_id)`` on the event loop whenever a committed caller's
        transaction left work for that run, until the returned function is awaited.

        Returns once listening. ``callback(None)`` means notifications may have been missed
        (the listener reconnected): sweep with ``awaiting``. Callbacks must not block.
        """

    async def awaiting(self, *, older_than: float, limit: int = 1000) -> list[str]:
        """Runs with work waiting since more than ``older_than`` seconds: ``pending`` runs
        and runs with inbox entries (what a lost notification leaves behind)."""
