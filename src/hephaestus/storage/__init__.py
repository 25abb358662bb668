"""Where instances live: the ``Storage`` protocol and the in-memory implementation.

The protocol speaks in domain terms. ``create`` is the only place uniqueness is decided, and it
decides atomically: there is no check-then-insert anywhere above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from hephaestus.storage._memory import InMemoryStorage

if TYPE_CHECKING:
    from collections.abc import Collection

    from hephaestus._core.instance import Instance, Status

__all__ = ["InMemoryStorage", "InstanceQuery", "Storage"]


@dataclass(frozen=True, slots=True)
class InstanceQuery:
    """Filters for ``Storage.query``; every given filter must match (AND).

    Results are ordered by creation time, oldest first (``newest_first`` reverses it), then
    ``offset`` rows are skipped and at most ``limit`` returned.

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
    limit: int | None = None
    offset: int = 0
    newest_first: bool = False
    skip_corrupt: bool = True

    def matches(self, instance: Instance) -> bool:
        """Whether ``instance`` passes every filter (pagination aside)."""
        if self.id is not None and instance.id != self.id:
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


@runtime_checkable
class Storage(Protocol):
    """Persistence of instances, keyed by ``run_id``.

    Implementations translate their own errors into ``hephaestus.errors`` types at the boundary.
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

    async def put(self, instance: Instance, previous: Instance | None = None) -> None:
        """Replace a stored run with its next state.

        Raises ``InstanceNotFoundError`` if the run does not exist and ``ConcurrentUpdateError``
        unless the stored revision is ``instance.revision - 1`` (someone else wrote first).
        ``previous``, when given, is the state the writer had at that revision: a storage may
        use it to write only what changed (records that did not change are the same objects).
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
