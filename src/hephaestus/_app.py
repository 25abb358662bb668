"""The ``Hephaestus`` app: storage + runner + clock, and the operations on workflow runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import threading
import time
import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Concatenate, Self, TypedDict, TypeVar, Unpack, overload

from hephaestus import telemetry as _telemetry
from hephaestus._clock import Clock, SystemClock
from hephaestus._core import engine
from hephaestus._core.compat import check_instance
from hephaestus._core.definition import VersionedDefinition, WorkflowDefinition
from hephaestus._core.instance import ACTIVE_STATUSES, Instance, ScheduledResume, Status
from hephaestus._core.registry import WorkflowRegistry, default_registry, script_name_hint
from hephaestus._core.steps import MAX_TIMEOUT_SECONDS, valid_seconds
from hephaestus._core.unique import build_id, parse_value, unique_key_for
from hephaestus._core.values import check_mapping
from hephaestus.errors import (
    AmbiguousAppError,
    AmbiguousInstanceError,
    AppError,
    AppNotOpenError,
    InstanceAlreadyRunningError,
    InstanceNotActiveError,
    InstanceNotFoundError,
    InvalidArgumentError,
    NoAppRunningError,
    TransactionNotSupportedError,
    UnknownVersionError,
    UnknownWorkflowError,
)
from hephaestus.runners import (
    Cancel,
    JoiningRunner,
    LocalRunner,
    Resume,
    Runner,
    RuntimeEnv,
    ScheduleResume,
)
from hephaestus.storage import InMemoryStorage, InstanceQuery, JoinableStorage, Page, Storage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Mapping
    from types import TracebackType

    from hephaestus._workflow import Workflow
    from hephaestus.storage import CallerTransaction, CountKey, Work

__all__ = ["Hephaestus", "SyncOperations", "resolve_app"]

T = TypeVar("T")

_current: ContextVar[Hephaestus | None] = ContextVar("hephaestus_current_app", default=None)
"""The app of this task or thread: the innermost one opened here, or the one running the step."""

_log = logging.getLogger("hephaestus")

_opened: list[Hephaestus] = []
"""Every open app of the process: where a context with no current app looks (see resolve_app)."""


def resolve_app(
    app: Hephaestus | None = None, workflow: type[Workflow] | None = None
) -> Hephaestus:
    """The app a facade call uses: ``app`` if given, else the current app, else the open one.

    The current app is the innermost one opened in this task or thread (``async with``,
    ``with``, ``open``), or the app executing the step that makes the call. A task or thread
    that opened none (a request handler, when the app opened at start-up) uses the one open
    app of the process; with several, the one that has ``workflow``, if exactly one does.
    """
    if app is not None:
        return app
    current = _current.get()
    if current is not None and current.is_open:
        return current
    candidates = [opened for opened in tuple(_opened) if opened.is_open]
    if not candidates:
        raise NoAppRunningError(
            "no Hephaestus app is open: wrap your code in `async with Hephaestus():` "
            "(or `with Hephaestus():` in sync code)"
        )
    if len(candidates) > 1 and workflow is not None:
        owners = [opened for opened in candidates if opened.has(workflow)]
        candidates = owners or candidates
    if len(candidates) > 1:
        raise AmbiguousAppError(
            f"{len(candidates)} Hephaestus apps are open and none was opened in this task or "
            "thread; pass app= to choose one"
        )
    return candidates[0]


def definition_of(
    workflow: object, what: str = "workflow"
) -> WorkflowDefinition | VersionedDefinition:
    """The definition of the workflow class ``workflow``; ``InvalidArgumentError`` for anything
    else (an object, a step class, an abstract workflow), naming ``what`` was passed."""
    from hephaestus._workflow import Workflow  # here: _workflow imports this module

    if not isinstance(workflow, type) or not issubclass(workflow, Workflow):
        kind = "class" if isinstance(workflow, type) else type(workflow).__name__
        raise InvalidArgumentError(
            f"{what} must be a Workflow subclass (class OrderFlow(Workflow): ...), got "
            f"{workflow!r} (a {kind})"
        )
    return workflow.definition()


def _registry_of(workflows: Iterable[type[Workflow]] | WorkflowRegistry) -> WorkflowRegistry:
    """The registry of exactly ``workflows`` (an umbrella brings its versions)."""
    if isinstance(workflows, WorkflowRegistry):
        return workflows
    registry = WorkflowRegistry()
    for workflow in workflows:
        definition = definition_of(workflow, "each of workflows=")
        umbrella = default_registry.umbrella_of(definition.name)
        if isinstance(definition, WorkflowDefinition) and umbrella is not None:
            raise InvalidArgumentError(
                f"{workflow.__qualname__} is version {definition.version} of {umbrella.name}; "
                "list the versioned workflow (it brings all its versions)"
            )
        registry.register(definition)
    return registry


@dataclass(frozen=True, slots=True)
class _Target:
    """What an operation acts on, resolved once by ``Hephaestus._target``.

    ``top`` owns the ids (the umbrella for a version), ``names`` are the stored workflow names
    that may match (``None``: any workflow, for operations by instance id).
    """

    workflow: type[Workflow] | None
    top: WorkflowDefinition | VersionedDefinition | None
    version: int | None
    names: frozenset[str] | None
    instance_id: str | None

    @property
    def scope(self) -> WorkflowDefinition | VersionedDefinition:
        """The definition that owns the ids (operations that name a workflow)."""
        if self.top is None:
            raise InvalidArgumentError("this operation needs a workflow class")
        return self.top

    @property
    def id(self) -> str:
        """The instance id (operations on one run)."""
        if self.instance_id is None:
            raise InvalidArgumentError("this operation needs a business value or an instance id")
        return self.instance_id


def _check_mapping(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """A private copy of the caller's ``value``, or ``UnencodableValueError`` (a TypeError)."""
    return check_mapping(value, what)


def _delay_seconds(delay: float | timedelta) -> float:
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
    if not valid_seconds(seconds):
        raise InvalidArgumentError(
            f"delay must be a number of seconds (or a timedelta) between 0 and "
            f"{MAX_TIMEOUT_SECONDS:.0f}, got {delay!r}"
        )
    return float(seconds)


def _window_seconds(idempotent: float | timedelta | None) -> float | None:
    """``start``'s ``idempotent=`` window in seconds (``None``: not idempotent)."""
    if idempotent is None:
        return None
    seconds = idempotent.total_seconds() if isinstance(idempotent, timedelta) else idempotent
    if not valid_seconds(seconds):
        raise InvalidArgumentError(
            f"idempotent= must be a window in seconds (or a timedelta) between 0 and "
            f"{MAX_TIMEOUT_SECONDS:.0f}: how long after its end a run is still returned; "
            f"got {idempotent!r}"
        )
    return float(seconds)


def _same_start(
    rows: Iterable[Instance], initial: Mapping[str, Any], now: datetime, window: float
) -> Instance | None:
    """The run an idempotent start returns instead of starting one: the newest of ``rows``
    started with the same initial context that is active, or ended less than ``window``
    seconds before ``now`` (``0``: active runs only)."""
    oldest_end = now - timedelta(seconds=window)
    for row in rows:
        if row.context.initial == initial and (not row.is_terminal or row.updated_at > oldest_end):
            return row
    return None


def _check_event(event: object) -> None:
    if not isinstance(event, str) or not event:
        raise InvalidArgumentError(f"event must be a non-empty string, got {event!r}")


def _one_active(
    instance_id: str, active: list[Instance], latest: list[Instance], *, by_id: bool
) -> Instance:
    """The one active run of ``instance_id`` among ``active``; else the error saying why
    (``latest``: its newest run, read when none is active; ``by_id``: the call named no
    workflow, so it has no ``version=`` to suggest)."""
    if len(active) == 1:
        return active[0]
    if len(active) > 1:
        runs = ", ".join(f"{row.workflow} v{row.workflow_version}" for row in active)
        versions = sorted(row.workflow_version for row in active)
        fix = (
            "the calls by id cannot choose one: call the workflow's own operation with "
            f"version= instead (such as OrderFlow.resume(value, event, version={versions[0]}))"
            if by_id
            else f"pass version= (one of {versions}) to choose one"
        )
        raise AmbiguousInstanceError(
            f"{instance_id} has {len(active)} active runs ({runs}); {fix}",
            instance_id=instance_id,
        )
    if latest:
        raise InstanceNotActiveError(
            f"instance {instance_id} is {latest[0].status}; it is no longer active",
            instance_id=instance_id,
            status=latest[0].status,
        )
    raise _not_found(instance_id)


def _not_found(instance_id: str) -> InstanceNotFoundError:
    """No run has ``instance_id``; a bare value (no ``key::``) is the usual slip: say so."""
    hint = ""
    if "::" not in instance_id:
        hint = (
            f"; instance ids are key::value (OrderFlow.start({instance_id!r}) makes "
            f"orderflow::{instance_id}): pass the whole id, as `list` shows it"
        )
    return InstanceNotFoundError(f"no instance {instance_id}{hint}", instance_id=instance_id)


def _other_input(exc: InstanceAlreadyRunningError) -> InstanceAlreadyRunningError:
    """``exc``, for an idempotent start: the active run was started with other input."""
    return InstanceAlreadyRunningError(
        f"{exc}; it was started with a different initial context, so an idempotent start "
        "does not return it: use another business value, or wait for it to end",
        instance_id=exc.instance_id,
        unique_key=exc.unique_key,
    )


def _check_names(**names: object) -> None:
    for what, name in names.items():
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"{what} must be a non-empty string, got {name!r}")


class RunFilters(TypedDict, total=False):
    """The filters of ``list``, ``page`` and ``count`` (app and facade); each given one must
    hold. They become an ``InstanceQuery`` (see it for what each means); ``version`` narrows a
    workflow to one of its versions."""

    status: Status | str | None
    status_in: Collection[Status | str] | None
    version: int | None
    id_prefix: str | None
    tags: Collection[str] | None
    metadata: Mapping[str, Any] | None
    created_after: datetime | None
    created_before: datetime | None
    updated_after: datetime | None
    updated_before: datetime | None


class Hephaestus:
    """A workflow engine instance: where runs are stored and how they execute.

    ```python
    async with Hephaestus() as app:           # in-memory storage, local runner
        await OrderFlow.start("abc123", {"items": [1, 2]})
    ```

    In sync code, ``with Hephaestus() as app:`` runs the engine on a background event loop and
    ``OrderFlow.sync.start(...)`` blocks until done. Swap ``storage`` or ``runner`` to change
    where runs live and how they execute; workflows and steps stay the same.
    ``workflows=[OrderFlow, ...]`` gives the app exactly those workflows (an umbrella brings
    its versions; a ``WorkflowRegistry`` is taken as is); by default it has every workflow
    defined in the process. ``telemetry=False`` turns telemetry events and trace-context
    capture off for this app. ``resources={"db": pool, ...}`` is what steps read as
    ``run.resources`` on every runner (``app.resources``: swap one in a test).
    """

    def __init__(
        self,
        *,
        storage: Storage | None = None,
        runner: Runner | None = None,
        clock: Clock | None = None,
        workflows: Iterable[type[Workflow]] | WorkflowRegistry | None = None,
        recover: bool = True,
        telemetry: bool = True,
        resources: Mapping[str, Any] | None = None,
    ) -> None:
        self.storage: Storage = storage if storage is not None else InMemoryStorage()
        self.runner: Runner = runner if runner is not None else LocalRunner()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.registry: WorkflowRegistry = (
            default_registry if workflows is None else _registry_of(workflows)
        )
        self._recover = recover
        self.telemetry = telemetry
        self.resources: dict[str, Any] = dict(resources or {})
        """What steps read as ``run.resources`` (a pool, a client, settings), on every runner.
        Steps see changes made here later (a test swapping in a fake)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._token: Token[Hephaestus | None] | None = None
        self._warned_script_names: set[str] = set()

    def has(self, workflow: type[Workflow]) -> bool:
        """Whether this app runs ``workflow`` (given in ``workflows=``, or defined at all)."""
        return definition_of(workflow).name in self.registry

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._loop is not None

    async def open(self, *, recover: bool | None = None) -> None:
        """Open storage, start the runner and recover the runs it finds.

        ``recover=False`` opens without taking over the active runs in storage (as the
        command line does to inspect or resume one run); by default, as constructed. The app
        becomes the current app of the calling task until ``close``.
        """
        await self._open(recover)
        self._token = _current.set(self)

    async def _open(self, recover: bool | None) -> None:
        if self._loop is not None:
            raise AppError("this Hephaestus app is already open")
        bind = getattr(self.storage, "bind_registry", None)
        if bind is not None:  # optional Storage hook: decode with this app's workflows
            bind(self.registry)
        await self.storage.open()
        self._loop = asyncio.get_running_loop()
        try:
            env = RuntimeEnv(
                self.storage,
                self.registry,
                self.clock,
                self._recover if recover is None else recover,
                telemetry=self.telemetry,
                resources=MappingProxyType(self.resources),
            )
            await self._as_current(lambda: self.runner.open(env))
        except BaseException:
            self._loop = None
            await self.storage.close()
            raise
        _opened.append(self)
        if self.telemetry and _telemetry.handlers_attached():
            _telemetry.emit(
                "hephaestus.runner.init",
                {"system_time": time.time()},
                {
                    "runner": getattr(self.runner, "name", type(self.runner).__name__),
                    "storage": type(self.storage).__name__,
                    "pid": os.getpid(),
                    "recover": env.recover,
                },
            )

    async def close(self) -> None:
        """Stop executing (active runs stay stored and are recovered next time) and close."""
        self._leave()
        await self._close()

    async def _close(self) -> None:
        if self._loop is None:
            return
        if self in _opened:
            _opened.remove(self)
        try:
            await self.runner.close()
        finally:
            self._loop = None
            await self.storage.close()

    def _leave(self) -> None:
        """Stop being the current app here: the app current before this one opened is again."""
        token, self._token = self._token, None
        if token is not None and _current.get() is self:
            with contextlib.suppress(ValueError):  # closed elsewhere: closed apps never resolve
                _current.reset(token)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __enter__(self) -> Self:
        return self.open_sync()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_sync()

    def open_sync(self) -> Self:
        """Open the app on a background event loop thread, for sync programs.

        Call it once at process start (a Django ``AppConfig.ready``, a Flask app factory) and
        ``close_sync()`` at exit; ``with Hephaestus() as app:`` does both. The app becomes the
        current app of the calling thread; other threads find it as the one open app.
        """
        if self._loop is not None:
            raise AppError("this Hephaestus app is already open")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=serve, name="hephaestus-app", daemon=True)
        self._thread.start()
        ready.wait()
        try:
            asyncio.run_coroutine_threadsafe(self._open(None), loop).result()
        except BaseException:
            self._stop_thread(loop)
            raise
        self._token = _current.set(self)
        return self

    def close_sync(self) -> None:
        """Close an app opened with ``open_sync`` and stop its background thread."""
        loop = self._loop
        if loop is None:
            return
        if self._thread is None:
            raise AppError("this app was opened with `await open()`; close it with `await close()`")
        self._leave()
        try:
            asyncio.run_coroutine_threadsafe(self._close(), loop).result()
        finally:
            self._stop_thread(loop)

    def _stop_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        loop.close()

    # -- running work on the app's loop ---------------------------------------------------

    async def _as_current(self, make: Callable[[], Awaitable[T]]) -> T:
        """Await ``make()`` with this app current, so tasks it starts (steps) resolve to it."""
        token = _current.set(self)
        try:
            return await make()
        finally:
            _current.reset(token)

    async def _on_loop(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` on the app's loop, awaiting it from whatever loop the caller is on."""
        loop = self._loop
        if loop is None:
            raise AppNotOpenError("this Hephaestus app is not open")
        if asyncio.get_running_loop() is loop:
            return await self._as_current(make)
        future = asyncio.run_coroutine_threadsafe(self._as_current(make), loop)
        return await asyncio.wrap_future(future)

    def run_sync(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run an app operation from sync code and wait for its result."""
        loop = self._loop
        if loop is None:
            raise AppNotOpenError("this Hephaestus app is not open")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise AppError(
                "sync API called from the app's own event loop; use the async API (await ...)"
            )
        return asyncio.run_coroutine_threadsafe(self._as_current(make), loop).result()

    # -- operations -------------------------------------------------------------------------

    async def start(
        self,
        workflow: type[Workflow],
        value: str,
        context: Mapping[str, Any] | None = None,
        *,
        version: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotent: float | timedelta | None = None,
        conn: object | None = None,
    ) -> str:
        """Start a run of ``workflow`` for business value ``value``; returns the instance id.

        Raises ``InstanceAlreadyRunningError`` if the unique scope already holds an active run,
        ``UnencodableValueError`` if ``context`` or ``metadata`` cannot be stored (both are
        copied: changing them afterwards changes nothing stored).

        ``idempotent``: a window (seconds or a ``timedelta``; ``0``: active runs only). A run of
        this id started with the same ``context`` that is active, or ended within the window,
        is returned instead of starting another, so a client may retry a start whose response
        it lost. A different ``context`` is still ``InstanceAlreadyRunningError``.

        ``conn``: the caller's open connection (see "Inside your transaction" in
        docs/postgres.md). The run is then created if and only if the caller's transaction
        commits, and nothing executes before it does.
        """
        if conn is not None:
            tx = self._join(conn, is_async=True)
            return await tx.run_async(
                self._start_work(
                    tx,
                    workflow,
                    value,
                    context,
                    version=version,
                    metadata=metadata,
                    idempotent=idempotent,
                )
            )
        window = _window_seconds(idempotent)
        definition, run, names = self._new_run(workflow, value, context, version, metadata)
        if window is None:
            await self._on_loop(lambda: self.runner.start(definition, run))
            return run.id
        self._check_idempotent(workflow)
        existing = await self._on_loop(lambda: self.storage.query(self._runs_of(run, names)))
        same = _same_start(existing, run.context.initial, self.clock.now(), window)
        if same is not None:
            return same.id
        try:
            await self._on_loop(lambda: self.runner.start(definition, run))
        except InstanceAlreadyRunningError as exc:  # started meanwhile, or other input
            active = await self._on_loop(
                lambda: self.storage.query(self._runs_of(run, names, active=True))
            )
            same = _same_start(active, run.context.initial, self.clock.now(), window)
            if same is not None:
                return same.id
            if active:
                raise _other_input(exc) from exc
            raise  # held by another workflow's run (scope "global")
        return run.id

    @staticmethod
    def _runs_of(run: Instance, names: frozenset[str], *, active: bool = False) -> InstanceQuery:
        """The runs an idempotent start of ``run`` may return (newest first)."""
        return InstanceQuery(
            id=run.id,
            workflow=names,
            status_in=ACTIVE_STATUSES if active else None,
            newest_first=True,
            limit=20,
        )

    def _check_idempotent(self, workflow: type[Workflow]) -> None:
        if self._target(workflow).scope.unique.scope == "none":
            raise InvalidArgumentError(
                f"idempotent= needs a business id, but {workflow.__qualname__} has unique scope "
                "'none' (every start is a new run): give it a unique scope, or start without "
                "idempotent="
            )

    def _new_run(
        self,
        workflow: type[Workflow],
        value: str,
        context: Mapping[str, Any] | None,
        version: int | None,
        metadata: Mapping[str, Any] | None,
    ) -> tuple[WorkflowDefinition, Instance, frozenset[str]]:
        """A new ``pending`` run (not stored yet), the definition it runs on, and the stored
        workflow names its id is unique among."""
        target = self._target(workflow, version=version)
        top, version = target.scope, target.version
        initial = _check_mapping(context, "context")
        meta = _check_mapping(metadata, "metadata")
        definition = self._pick_version(workflow, top, value, initial, version)
        self._warn_script_name(definition.name)
        suffix = secrets.token_hex(4) if top.unique.scope == "none" else None
        instance_id = build_id(top.unique, value, suffix)
        run = engine.pending(
            definition,
            instance_id=instance_id,
            run_id=uuid.uuid4().hex,
            family=top.name,
            initial=initial,
            now=self.clock.now(),
            unique_key=unique_key_for(top.unique, instance_id, top.name, definition.version),
            metadata=meta,
            trace_context=(
                _telemetry.capture_trace_context(definition.name, instance_id)
                if self.telemetry
                else None
            ),
        )
        return definition, run, target.names or frozenset({definition.name})

    async def resume(
        self,
        workflow: type[Workflow],
        value: str,
        event: str,
        payload: Mapping[str, Any] | None = None,
        *,
        step: str | None = None,
        version: int | None = None,
        conn: object | None = None,
    ) -> None:
        """Deliver ``event`` (and ``payload``, stored as the step's result) to a waiting step.

        ``step`` names the step when several could take the event. A resume for a step that
        has not started waiting yet is kept and delivered when it does. ``conn``: in the
        caller's transaction, delivered once it commits (as for ``start``).
        """
        if conn is not None:
            tx = self._join(conn, is_async=True)
            work = self._resume_work(
                tx, workflow, value, event, payload, step=step, version=version
            )
            await tx.run_async(work)
            return
        _check_event(event)
        run = await self._find_active(self._target(workflow, value, version))
        await self._on_loop(lambda: self.runner.apply(run.run_id, Resume(event, payload, step)))

    async def cancel(
        self,
        workflow: type[Workflow],
        value: str,
        *,
        reason: str | None = None,
        version: int | None = None,
        conn: object | None = None,
    ) -> None:
        """Cancel the active run; raises ``InstanceNotActiveError`` if it already finished.

        ``conn``: in the caller's transaction, cancelled once it commits (as for ``start``).
        """
        if conn is not None:
            tx = self._join(conn, is_async=True)
            await tx.run_async(
                self._cancel_work(tx, workflow, value, reason=reason, version=version)
            )
            return
        run = await self._find_active(self._target(workflow, value, version))
        await self._on_loop(lambda: self.runner.apply(run.run_id, Cancel(reason)))

    async def get(
        self, workflow: type[Workflow], value: str, *, version: int | None = None
    ) -> Instance:
        """The latest run of ``workflow`` for ``value``; raises ``InstanceNotFoundError``.

        Raises ``CorruptInstanceError`` when that run cannot be decoded, and its subclass
        ``IncompatibleInstanceError`` when it is active but no longer fits the definition.
        """
        target = self._target(workflow, value, version)
        top, instance_id = target.scope, target.id
        rows = await self._on_loop(
            lambda: self.storage.query(
                InstanceQuery(
                    id=instance_id,
                    workflow=target.names,
                    newest_first=True,
                    limit=1,
                    skip_corrupt=False,
                )
            )
        )
        if not rows:
            raise InstanceNotFoundError(
                f"no instance {instance_id} of {top.name}", instance_id=instance_id
            )
        instance = rows[0]
        if not instance.is_terminal:  # an active run must fit the definition that continues it
            versions = top.versions.values() if isinstance(top, VersionedDefinition) else (top,)
            for definition in versions:
                if definition.name == instance.workflow:
                    check_instance(definition, instance)
        return instance

    async def list(
        self,
        workflow: type[Workflow] | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
        after: str | None = None,
        **filters: Unpack[RunFilters],
    ) -> list[Instance]:
        """Runs, optionally of one workflow, filtered (``RunFilters``) and paginated as
        ``InstanceQuery`` says.

        ``tags`` resolve through this app's registry; ``after`` is a cursor from ``page``
        (see the Queries section of the reference).
        """
        query = self._query(
            workflow, filters, limit=limit, offset=offset, newest_first=newest_first, after=after
        )
        return await self._on_loop(lambda: self.storage.query(query))

    async def _runner_idle(self) -> None:
        """Wait for an ``IdleAware`` runner's ``wait_idle`` (``hephaestus.testing`` calls it)."""
        await self._on_loop(self.runner.wait_idle)  # type: ignore[attr-defined]

    async def page(
        self,
        workflow: type[Workflow] | None = None,
        *,
        limit: int = 50,
        newest_first: bool = False,
        after: str | None = None,
        **filters: Unpack[RunFilters],
    ) -> Page:
        """One page of the runs ``list`` would return, and the cursor of the next page.

        Pass ``Page.next_cursor`` back as ``after=`` (same filters, same ``limit`` and
        direction) until it is ``None``: keyset pagination, as fast deep in the runs as at the
        start and stable while runs are added.
        """
        query = self._query(workflow, filters, limit=limit, newest_first=newest_first, after=after)
        return await self._on_loop(lambda: self.storage.page(query))

    async def count(
        self,
        workflow: type[Workflow] | None = None,
        *,
        by: tuple[CountKey, ...] = ("status", "workflow"),
        **filters: Unpack[RunFilters],
    ) -> dict[tuple[str, ...], int]:
        """How many runs match the filters of ``list``, grouped by status and/or workflow.

        Keys are tuples of the grouped values in ``by`` order (``("waiting", "app.Flow")``);
        ``by=()`` gives ``{(): n}``; groups with no runs are absent.
        """
        query = self._query(workflow, filters)
        return await self._on_loop(lambda: self.storage.count(query, by=by))

    def _query(
        self,
        workflow: type[Workflow] | None,
        filters: RunFilters,
        *,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
        after: str | None = None,
    ) -> InstanceQuery:
        """The storage query of ``list``, ``page`` and ``count`` (tags resolved here)."""
        unknown = set(filters) - set(RunFilters.__annotations__)
        if unknown:
            raise InvalidArgumentError(
                f"unknown filter(s) {sorted(unknown)}; the filters are "
                f"{sorted(RunFilters.__annotations__)} (see RunFilters)"
            )
        version = filters.get("version")
        names = None
        if workflow is not None:
            top, version = self._scope(workflow, version)
            names = self._names(top, version)
        status = filters.get("status")
        status_in = filters.get("status_in")
        return InstanceQuery(
            status=None if status is None else Status(status),
            status_in=None if status_in is None else frozenset(Status(s) for s in status_in),
            workflow=names,
            workflow_version=version,
            limit=limit,
            offset=offset,
            newest_first=newest_first,
            id_prefix=filters.get("id_prefix"),
            tags=filters.get("tags"),
            metadata=filters.get("metadata"),
            created_after=filters.get("created_after"),
            created_before=filters.get("created_before"),
            updated_after=filters.get("updated_after"),
            updated_before=filters.get("updated_before"),
            after=after,
        ).resolve_tags(self.registry)

    # -- operations by instance id (for tools that do not import the workflow class) --------

    async def get_instance(self, instance_id: str) -> Instance:
        """The newest run stored under ``instance_id`` (``key::value``), of any workflow.

        Returned as stored, even when it no longer fits its workflow's definition (tools show
        such a run); ``CorruptInstanceError`` when it cannot be decoded.
        """
        rows = await self._on_loop(
            lambda: self.storage.query(
                InstanceQuery(id=instance_id, newest_first=True, limit=1, skip_corrupt=False)
            )
        )
        if not rows:
            raise _not_found(instance_id)
        return rows[0]

    async def resume_instance(
        self,
        instance_id: str,
        event: str,
        payload: Mapping[str, Any] | None = None,
        *,
        step: str | None = None,
        conn: object | None = None,
    ) -> Instance:
        """``resume`` by full id; returns the run resumed. Its workflow must be this app's."""
        if conn is not None:
            tx = self._join(conn, is_async=True)
            return await tx.run_async(
                self._resume_instance_work(tx, instance_id, event, payload, step=step)
            )
        _check_event(event)
        run = await self._find_active(self._target(None, instance_id))
        await self._on_loop(lambda: self.runner.apply(run.run_id, Resume(event, payload, step)))
        return run

    async def schedule_resume(
        self,
        instance_id: str,
        step: str,
        delay: float | timedelta,
        *,
        event: str = "timeout",
        payload: Mapping[str, Any] | None = None,
    ) -> ScheduledResume:
        """Resume ``step`` of the run ``instance_id`` with ``event`` after ``delay`` (durably).

        ``delay`` is seconds or a ``timedelta``. The event must be one a transition routes from
        ``step`` (else ``InvalidEventError``); a step that already resolved raises
        ``StepNotWaitingError``, a finished run ``InstanceNotActiveError``; nothing changes when
        it raises. When due, it is delivered like ``resume`` (kept until the step waits if it
        is not waiting yet); it is dropped if the step resolves first or the run ends. It is
        stored with the run, so it survives restarts with durable storage.
        """
        return await self._schedule(self._target(None, instance_id), step, delay, event, payload)

    async def _schedule_resume_of(
        self,
        workflow: type[Workflow],
        value: str,
        step: str,
        delay: float | timedelta,
        *,
        event: str = "timeout",
        payload: Mapping[str, Any] | None = None,
        version: int | None = None,
    ) -> ScheduledResume:
        """``schedule_resume`` for the facade: the run is named by workflow and value."""
        target = self._target(workflow, value, version)
        return await self._schedule(target, step, delay, event, payload)

    async def _schedule(
        self,
        target: _Target,
        step: str,
        delay: float | timedelta,
        event: str,
        payload: Mapping[str, Any] | None,
    ) -> ScheduledResume:
        seconds = _delay_seconds(delay)
        _check_names(step=step, event=event)
        run = await self._find_active(target)
        at = self.clock.now() + timedelta(seconds=seconds)
        decision = await self._on_loop(
            lambda: self.runner.apply(run.run_id, ScheduleResume(step, event, payload, at))
        )
        return decision.instance.scheduled[-1]

    async def cancel_instance(
        self, instance_id: str, *, reason: str | None = None, conn: object | None = None
    ) -> Instance:
        """``cancel`` by full id; returns the run cancelled. Its workflow must be this app's."""
        if conn is not None:
            tx = self._join(conn, is_async=True)
            return await tx.run_async(self._cancel_instance_work(tx, instance_id, reason=reason))
        run = await self._find_active(self._target(None, instance_id))
        await self._on_loop(lambda: self.runner.apply(run.run_id, Cancel(reason)))
        return run

    # -- resolution: every operation names its runs through here -------------------------

    def _target(
        self,
        workflow: type[Workflow] | None,
        value: str | None = None,
        version: int | None = None,
    ) -> _Target:
        """What ``workflow`` (or, without one, the full id ``value``) names in this app.

        Refuses a workflow this app does not have (``UnknownWorkflowError``) and a version the
        workflow does not have (``UnknownVersionError``); parses ``value`` into the instance id.
        A version class listed in an umbrella shares the umbrella's ids and uniqueness, so
        starting ``OrderFlowV1`` directly is the same as ``OrderFlow.start(..., version=1)``.
        """
        if workflow is None:
            return _Target(None, None, version, None, value)
        if not self.has(workflow):
            raise UnknownWorkflowError(
                f"{workflow.__qualname__} is not one of this app's workflows; add it to "
                f"Hephaestus(workflows=[..., {workflow.__qualname__}]), or pass app= for the "
                "app that has it"
            )
        top = definition_of(workflow)
        umbrella = self.registry.umbrella_of(top.name)
        if isinstance(top, WorkflowDefinition) and umbrella is not None:
            if version is not None and version != top.version:
                raise UnknownVersionError(
                    f"{top.name} is version {top.version} of {umbrella.name}; "
                    f"got version={version!r}"
                )
            version = top.version
            top = umbrella
        instance_id = None if value is None else parse_value(top.unique, value)
        return _Target(workflow, top, version, self._names(top, version), instance_id)

    def _scope(
        self, workflow: type[Workflow], version: int | None
    ) -> tuple[WorkflowDefinition | VersionedDefinition, int | None]:
        """``_target``'s definition scope and version, for queries that need only those."""
        target = self._target(workflow, version=version)
        return target.scope, target.version

    def _pick_version(
        self,
        workflow: type[Workflow],
        top: WorkflowDefinition | VersionedDefinition,
        value: str,
        initial: Mapping[str, Any],
        version: int | None,
    ) -> WorkflowDefinition:
        if isinstance(top, WorkflowDefinition):
            return top  # _names checked the version
        chosen = version
        if chosen is None:
            chosen = workflow.version_for(value, initial)
        if chosen is None:
            chosen = top.current
        if chosen not in top.versions:
            raise UnknownVersionError(
                f"version {chosen!r} not found for {top.name}; available: {sorted(top.versions)}"
            )
        return top.versions[chosen]

    @staticmethod
    def _names(
        top: WorkflowDefinition | VersionedDefinition, version: int | None
    ) -> frozenset[str]:
        if isinstance(top, WorkflowDefinition):
            if version is not None and version != top.version:
                raise UnknownVersionError(
                    f"{top.name} is not versioned; it only has version {top.version}, "
                    f"got {version!r}"
                )
            return frozenset({top.name})
        if version is not None:
            if version not in top.versions:
                raise UnknownVersionError(
                    f"version {version!r} not found for {top.name}; "
                    f"available: {sorted(top.versions)}"
                )
            return frozenset({top.versions[version].name})
        return frozenset(d.name for d in top.versions.values())

    async def _find_active(self, target: _Target) -> Instance:
        """The one active run ``target`` names; reads no finished runs.

        A run found by id alone must be of one of this app's workflows.
        """
        instance_id, names = target.id, target.names

        def query(**filters: Any) -> Coroutine[Any, Any, list[Instance]]:
            return self.storage.query(
                InstanceQuery(
                    id=instance_id,
                    workflow=names,
                    newest_first=True,
                    skip_corrupt=False,
                    **filters,
                )
            )

        active = await self._on_loop(lambda: query(status_in=ACTIVE_STATUSES))
        if len(active) == 1:
            return self._ours(active[0])
        latest = [] if active else await self._on_loop(lambda: query(limit=1))
        return _one_active(instance_id, active, latest, by_id=target.workflow is None)

    def _ours(self, run: Instance) -> Instance:
        """``run``, if its workflow is this app's (else ``UnknownWorkflowError``)."""
        if run.workflow not in self.registry:
            self.registry.resolve(run.workflow)  # raises: import it, or add it to this app
        return run

    # -- inside the caller's transaction -----------------------------------------------------
    # Each operation that takes ``conn=`` is written once, as ``Work`` (a generator of the
    # storage's statements), that ``CallerTransaction.run_async`` or ``run`` executes on the
    # caller's connection: the async operation and its blocking twin (``sync``) share it.

    def _join(self, conn: object, *, is_async: bool) -> CallerTransaction:
        """The storage's reads and writes through ``conn``, for the async or the sync API."""
        if self._loop is None:
            raise AppNotOpenError("this Hephaestus app is not open")
        storage = self.storage
        if not isinstance(storage, JoinableStorage):
            raise TransactionNotSupportedError(
                f"{type(storage).__name__} cannot join the caller's transaction (conn=): only "
                "a storage in the caller's database can; use PostgresStorage or SQLiteStorage, "
                "or call without conn="
            )
        tx = storage.join(conn)  # TypeError for what it cannot use
        if tx.is_async and not is_async:
            raise InvalidArgumentError(
                "conn= is an async connection, given to the sync API: await the async API "
                "(await OrderFlow.start(..., conn=conn), await app.start(...)), or pass a sync "
                "connection"
            )
        if is_async and not tx.is_async:
            raise InvalidArgumentError(
                "conn= is a sync connection, given to the async API: call the sync API "
                "(OrderFlow.sync.start(..., conn=conn), app.sync.start(...)), or pass an async "
                "connection (psycopg AsyncConnection, SQLAlchemy AsyncConnection/AsyncSession); "
                "from async Django code, call the sync API through sync_to_async"
            )
        return tx

    def _warn_script_name(self, name: str) -> None:
        """Warn once per name: a durable run of a ``__main__`` workflow outlives what can read it.

        Only the script that defined it can continue or read such a run; in memory, runs end
        with the process anyway.
        """
        hint = script_name_hint(name)
        if not hint or isinstance(self.storage, InMemoryStorage):
            return
        if name in self._warned_script_names:
            return
        self._warned_script_names.add(name)
        _log.warning(
            "starting a run of %r in durable storage: %s. Other processes (a worker, "
            "`hephaestus instances ... --import`) cannot continue or show it.",
            name,
            hint,
        )

    def _start_work(
        self,
        tx: CallerTransaction,
        workflow: type[Workflow],
        value: str,
        context: Mapping[str, Any] | None = None,
        *,
        version: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotent: float | timedelta | None = None,
    ) -> Work[str]:
        window = _window_seconds(idempotent)
        _, run, names = self._new_run(workflow, value, context, version, metadata)
        if window is not None:
            self._check_idempotent(workflow)
            existing = yield from tx.query(self._runs_of(run, names))
            same = _same_start(existing, run.context.initial, self.clock.now(), window)
            if same is not None:
                return same.id
        yield from tx.create(run)  # pending: the runner begins it once the caller commits
        yield from self._joined(run.run_id)
        return run.id

    def _resume_work(
        self,
        tx: CallerTransaction,
        workflow: type[Workflow],
        value: str,
        event: str,
        payload: Mapping[str, Any] | None = None,
        *,
        step: str | None = None,
        version: int | None = None,
    ) -> Work[None]:
        _check_event(event)
        target = self._target(workflow, value, version)
        yield from self._send_work(tx, target, Resume(event, payload, step))

    def _cancel_work(
        self,
        tx: CallerTransaction,
        workflow: type[Workflow],
        value: str,
        *,
        reason: str | None = None,
        version: int | None = None,
    ) -> Work[None]:
        target = self._target(workflow, value, version)
        yield from self._send_work(tx, target, Cancel(reason))

    def _resume_instance_work(
        self,
        tx: CallerTransaction,
        instance_id: str,
        event: str,
        payload: Mapping[str, Any] | None = None,
        *,
        step: str | None = None,
    ) -> Work[Instance]:
        _check_event(event)
        target = self._target(None, instance_id)
        return (yield from self._send_work(tx, target, Resume(event, payload, step)))

    def _cancel_instance_work(
        self, tx: CallerTransaction, instance_id: str, *, reason: str | None = None
    ) -> Work[Instance]:
        return (yield from self._send_work(tx, self._target(None, instance_id), Cancel(reason)))

    def _send_work(
        self,
        tx: CallerTransaction,
        target: _Target,
        input: Resume | Cancel,
    ) -> Work[Instance]:
        """Check ``input`` against the active run as the caller's transaction sees it (the
        engine's errors are raised there), then queue it in the run's inbox."""
        instance_id = target.id

        def query(**filters: Any) -> InstanceQuery:
            return InstanceQuery(
                id=instance_id,
                workflow=target.names,
                newest_first=True,
                skip_corrupt=False,
                **filters,
            )

        active = yield from tx.query(query(status_in=ACTIVE_STATUSES))
        latest = [] if active else (yield from tx.query(query(limit=1)))
        run = self._ours(_one_active(instance_id, active, latest, by_id=target.workflow is None))
        definition = self.registry.resolve(run.workflow)
        if not isinstance(input, Cancel):  # a cancel applies even to a run that no longer fits
            check_instance(definition, run)
        engine.decide(definition, run, input, self.clock.now())  # raises what applying would
        yield from tx.send(run.run_id, input)
        yield from self._joined(run.run_id)
        return run

    def _joined(self, run_id: str) -> Work[None]:
        """The runner's own writes in the caller's transaction (``JoiningRunner``), if any."""
        runner = self.runner
        if isinstance(runner, JoiningRunner):
            yield from runner.joined(run_id)

    @property
    def sync(self) -> SyncOperations:
        """Blocking twins of the operations, for sync code: ``app.sync.start(OrderFlow, ...)``.

        Each takes the same arguments as the async operation. Given ``conn=`` (a sync
        connection), the operation runs in the calling thread on that connection; otherwise
        on the app's loop (``run_sync``).
        """
        return SyncOperations(self)


class _Twin[**P, R]:
    """The blocking twin of an app operation (``app.sync.<name>``), typed as the operation.

    With ``conn=`` (a sync connection) it runs the operation's ``Work`` on that connection in
    the calling thread (``_<name>_work``): the caller's framework owns the connection and its
    thread. Otherwise it waits for the operation on the app's loop.
    """

    def __init__(self, method: Callable[Concatenate[Hephaestus, P], Awaitable[R]]) -> None:
        self._name: str = getattr(method, "__name__", "")
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, ops: None, owner: type[SyncOperations]) -> Self: ...
    @overload
    def __get__(self, ops: SyncOperations, owner: type[SyncOperations]) -> Callable[P, R]: ...
    def __get__(
        self, ops: SyncOperations | None, owner: type[SyncOperations]
    ) -> Self | Callable[P, R]:
        if ops is None:
            return self
        app = ops.app
        name = self._name
        method = getattr(app, name)

        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            conn = kwargs.pop("conn", None)
            if conn is None:
                return app.run_sync(lambda: method(*args, **kwargs))  # type: ignore[no-any-return]
            tx = app._join(conn, is_async=False)
            work = getattr(app, f"_{name}_work", None)
            if work is None:
                raise InvalidArgumentError(
                    f"{name} takes no conn=: only start, resume, cancel, resume_instance and "
                    "cancel_instance run inside the caller's transaction"
                )
            return tx.run(work(tx, *args, **kwargs))  # type: ignore[no-any-return]

        call.__name__ = name
        call.__doc__ = self.__doc__
        return call


class SyncOperations:
    """``app.sync``: the app's operations for sync code (scripts, Django, Flask)."""

    __slots__ = ("app",)

    def __init__(self, app: Hephaestus) -> None:
        self.app = app

    start = _Twin(Hephaestus.start)
    resume = _Twin(Hephaestus.resume)
    cancel = _Twin(Hephaestus.cancel)
    get = _Twin(Hephaestus.get)
    list = _Twin(Hephaestus.list)
    page = _Twin(Hephaestus.page)
    count = _Twin(Hephaestus.count)
    get_instance = _Twin(Hephaestus.get_instance)
    resume_instance = _Twin(Hephaestus.resume_instance)
    cancel_instance = _Twin(Hephaestus.cancel_instance)
    schedule_resume = _Twin(Hephaestus.schedule_resume)
    _schedule_resume_of = _Twin(Hephaestus._schedule_resume_of)  # the facade's, by value
