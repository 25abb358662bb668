"""The state of one workflow run: plain frozen data, keyed by step keys (strings).

Nothing here refers to step or workflow classes, so an instance is trivially serialisable and
the engine can be replayed from stored data alone.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, NoReturn

from hephaestus._core.records import record

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

__all__ = [
    "ACTIVE_STATUSES",
    "NO_DATA",
    "TERMINAL_STATUSES",
    "Context",
    "ErrorInfo",
    "HistoryEntry",
    "HistoryKind",
    "Instance",
    "JoinState",
    "PendingResume",
    "ScheduledResume",
    "Status",
    "StepContext",
    "StepRun",
    "StepState",
    "StepStatus",
]


class _NoData(dict[str, Any]):
    """The one empty mapping that records share where they hold no data.

    Most runs carry several empty mappings (no metadata, no joins, no trace context...): one
    shared object instead of one empty dict each keeps a waiting run small. It is a ``dict``
    (so ``json.dumps``, ``==`` and ``isinstance`` treat it as one) that refuses every change,
    since records are never mutated and this one object is everybody's.
    """

    __slots__ = ()

    def __hash__(self) -> int:  # type: ignore[override]  # hashable: a dataclass default
        return 0

    def __repr__(self) -> str:
        return "{}"

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("this empty mapping is shared and read-only; change a dict(...) copy")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse


NO_DATA: Mapping[str, Any] = _NoData()
"""The shared, read-only empty mapping of records that hold no data (see ``_NoData``)."""


class Status(StrEnum):
    """Lifecycle of an instance. ``completed``, ``failed`` and ``cancelled`` are final."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = frozenset({Status.PENDING, Status.RUNNING, Status.WAITING})
TERMINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


class StepStatus(StrEnum):
    """Where one step of one run stands. A step that has not been reached has no state."""

    ACTIVE = "active"  # dispatched: running, or due to run (again) at ``run_after``
    WAITING = "waiting"  # returned Async; waits for a resume or its timer
    COMPLETED = "completed"
    SKIPPED = "skipped"  # on a branch that was not taken
    FAILED = "failed"
    CANCELLED = "cancelled"


@record
class ErrorInfo:
    """Why a step attempt or a run failed, in plain data."""

    kind: str  # "exception", "error", "timeout", "invalid_result", "route_error", "stalled"
    message: str
    type: str | None = None
    traceback: str | None = None
    step: str | None = None
    attempt: int | None = None


@record
class StepState:
    """The state of one reached step."""

    status: StepStatus
    attempt: int = 1
    config: Mapping[str, Any] | None = None
    event: str | None = None
    run_after: datetime | None = None
    timer_at: datetime | None = None
    timer_event: str | None = None
    error: ErrorInfo | None = None


@record
class JoinState:
    """A step some of whose incoming edges are resolved (taken or not taken).

    ``taken``: some resolved edge was taken; ``missed``: the sources whose edge resolved not
    taken (an ``all`` join with any is skipped once every edge is resolved).
    """

    resolved: frozenset[str]
    taken: bool
    config: Mapping[str, Any] | None = None
    missed: frozenset[str] = frozenset()


@record
class PendingResume:
    """A resume that arrived before its step started waiting; delivered when it does."""

    step: str
    event: str
    payload: Mapping[str, Any]
    at: datetime
    source: str = "external"
    """``external`` (a caller's resume) or ``scheduled`` (a ``ScheduledResume`` that came due)."""


@record
class ScheduledResume:
    """A resume the caller scheduled (``schedule_resume``): deliver ``event`` to ``step`` at ``at``.

    ``id`` is unique within the run and names the runner's timer. It is dropped (and its timer
    cancelled) when the step resolves first or the run ends.
    """

    id: str
    step: str
    event: str
    payload: Mapping[str, Any]
    at: datetime


@record
class Context:
    """Data threaded through a run: the caller's ``initial`` data and each step's results."""

    initial: Mapping[str, Any]
    steps: Mapping[str, Mapping[str, Any]]


@record
class StepContext(Context):
    """The context handed to ``Step.execute``, plus what identifies this execution.

    ``idempotency_key`` is stable across re-dispatches of the same attempt (after a crash, say),
    and distinct between attempts, runs and instances: use it to de-duplicate side effects.
    """

    instance_id: str = ""
    run_id: str = ""
    step: str = ""
    attempt: int = 1

    @property
    def idempotency_key(self) -> str:
        return f"{self.instance_id}/{self.run_id}/{self.step}/{self.attempt}"


class StepRun:
    """What a step sees of its run: who it is and what it was started with, read-only.

    A small view instead of the engine's ``Instance``, on purpose: status, step states,
    history, revisions and the like are engine internals that change shape as the engine
    evolves, and a step that branched on them would break with it (or race with the run it is
    part of). Steps decide from their ``config`` and ``context``; the run's outcome is the
    engine's. Everything here is fixed for the attempt: attributes cannot be set, ``metadata``
    and the context's mappings are read-only, and nothing a step does to it reaches the run.

    ``id``, ``run_id``, ``step`` and ``attempt`` are read from ``context``, so the view and its
    context can never disagree (``idempotency_key`` is the context's). Runners build it with
    ``metadata`` behind a read-only mapping; build one directly to call ``execute`` in a test.
    """

    __slots__ = ("_context", "_metadata", "_resources", "_workflow", "_workflow_version")

    _workflow: str
    _workflow_version: int
    _metadata: Mapping[str, Any]
    _context: StepContext
    _resources: Mapping[str, Any]

    def __init__(
        self,
        context: StepContext,
        workflow: str,
        workflow_version: int,
        metadata: Mapping[str, Any] = NO_DATA,
        resources: Mapping[str, Any] = NO_DATA,
    ) -> None:
        # Every public attribute is a property without a setter, and __slots__ refuses new
        # ones: read-only at the cost of plain slot writes (it is built once per attempt; a
        # raising __setattr__ would make it cost three times as much).
        self._workflow = workflow
        self._workflow_version = workflow_version
        self._metadata = metadata
        self._context = context
        self._resources = resources

    @property
    def id(self) -> str:
        """The run's business id (``key::value``)."""
        return self._context.instance_id

    @property
    def run_id(self) -> str:
        """Unique per run: a later run with the same ``id`` has another ``run_id``."""
        return self._context.run_id

    @property
    def workflow(self) -> str:
        """The stored name of the workflow the run belongs to."""
        return self._workflow

    @property
    def workflow_version(self) -> int:
        """The version the run is pinned to."""
        return self._workflow_version

    @property
    def step(self) -> str:
        """This step's context key."""
        return self._context.step

    @property
    def attempt(self) -> int:
        """1 for the first attempt, 2 for the first retry, and so on."""
        return self._context.attempt

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The caller's ``metadata`` given at start (read-only)."""
        return self._metadata

    @property
    def resources(self) -> Mapping[str, Any]:
        """The app's resources (``Hephaestus(resources=...)``): a database pool, an HTTP client,
        settings; the objects themselves, shared by every step. A missing name raises
        ``MissingResourceError``."""
        return self._resources

    @property
    def idempotency_key(self) -> str:
        """``context.idempotency_key``: stable across re-dispatches of one attempt."""
        return self._context.idempotency_key

    @property
    def context(self) -> StepContext:
        """The run's data (read-only mappings): the same object passed as ``context``."""
        return self._context

    def __repr__(self) -> str:
        return (
            f"StepRun(id={self.id!r}, run_id={self.run_id!r}, workflow={self._workflow!r}, "
            f"workflow_version={self._workflow_version}, step={self.step!r}, "
            f"attempt={self.attempt})"
        )


class HistoryKind(StrEnum):
    """What a history entry records."""

    STARTED = "started"
    STEP_COMPLETED = "step_completed"
    STEP_WAITING = "step_waiting"
    STEP_RESUMED = "step_resumed"
    STEP_RETRYING = "step_retrying"
    STEP_FAILED = "step_failed"
    STEP_SKIPPED = "step_skipped"
    RESUME_BUFFERED = "resume_buffered"
    RESUME_DISCARDED = "resume_discarded"
    RESUME_SCHEDULED = "resume_scheduled"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@record
class HistoryEntry:
    """One line of a run's audit trail."""

    at: datetime
    kind: HistoryKind
    step: str | None = None
    event: str | None = None
    attempt: int | None = None
    data: Mapping[str, Any] | None = None
    source: str | None = None
    error: ErrorInfo | None = None


@record
class Instance:
    """One run of a workflow.

    ``id`` is the business id (``key::value``) and names the run to callers; ``run_id`` is unique
    per run and is the storage key. ``revision`` grows by one with every persisted change, which
    lets storage refuse a write from a stale copy.
    """

    id: str
    run_id: str
    workflow: str
    workflow_version: int
    family: str
    status: Status
    context: Context
    created_at: datetime
    updated_at: datetime
    revision: int = 1
    steps: Mapping[str, StepState] = NO_DATA
    joins: Mapping[str, JoinState] = NO_DATA
    inbox: tuple[PendingResume, ...] = ()
    runtime_metadata: Mapping[str, Any] = NO_DATA
    history: tuple[HistoryEntry, ...] = ()
    unique_key: str | None = None
    metadata: Mapping[str, Any] = NO_DATA
    error: ErrorInfo | None = None
    trace_context: Mapping[str, str] = NO_DATA
    """Propagation headers (W3C ``traceparent``...) captured at start, so a run resumed later
    or by another process continues the caller's trace."""
    scheduled: tuple[ScheduledResume, ...] = ()
    """Resumes scheduled for later (``schedule_resume``), oldest first; durable like the rest."""

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def steps_in(self, status: StepStatus) -> tuple[str, ...]:
        """Keys of the steps currently in ``status``, in the order they were reached."""
        return tuple(key for key, state in self.steps.items() if state.status == status)

    @property
    def waiting_steps(self) -> tuple[str, ...]:
        return self.steps_in(StepStatus.WAITING)

    @property
    def active_steps(self) -> tuple[str, ...]:
        return self.steps_in(StepStatus.ACTIVE)

    @property
    def completed_steps(self) -> tuple[str, ...]:
        return self.steps_in(StepStatus.COMPLETED)
