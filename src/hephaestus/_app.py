"""The ``Hephaestus`` app: storage + runner + clock, and the operations on workflow runs."""

from __future__ import annotations

import asyncio
import secrets
import threading
import uuid
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Self, TypeVar

from hephaestus import telemetry as _telemetry
from hephaestus._clock import Clock, SystemClock
from hephaestus._core import engine
from hephaestus._core.compat import check_instance
from hephaestus._core.definition import VersionedDefinition, WorkflowDefinition
from hephaestus._core.instance import ACTIVE_STATUSES, Instance, ScheduledResume, Status
from hephaestus._core.registry import WorkflowRegistry, default_registry
from hephaestus._core.steps import MAX_TIMEOUT_SECONDS, valid_seconds
from hephaestus._core.unique import build_id, parse_value, unique_key_for
from hephaestus._core.values import check_mapping
from hephaestus.errors import (
    AmbiguousAppError,
    AmbiguousInstanceError,
    AppError,
    AppNotOpenError,
    InstanceNotActiveError,
    InstanceNotFoundError,
    NoAppRunningError,
    UnknownVersionError,
)
from hephaestus.runners import LocalRunner, Runner, RuntimeEnv
from hephaestus.storage import InMemoryStorage, InstanceQuery, Page, Storage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
    from types import TracebackType

    from hephaestus._workflow import Workflow
    from hephaestus.storage import CountKey

__all__ = ["Hephaestus", "resolve_app"]

T = TypeVar("T")

_open_apps: list[Hephaestus] = []


def resolve_app(app: Hephaestus | None = None) -> Hephaestus:
    """The app a workflow facade call should use: ``app`` if given, else the only open one."""
    if app is not None:
        return app
    if not _open_apps:
        raise NoAppRunningError(
            "no Hephaestus app is open: wrap your code in `async with Hephaestus():` "
            "(or `with Hephaestus():` in sync code)"
        )
    if len(_open_apps) > 1:
        raise AmbiguousAppError(
            f"{len(_open_apps)} Hephaestus apps are open; pass app= to choose one"
        )
    return _open_apps[0]


def _check_mapping(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """A private copy of the caller's ``value``, or ``UnencodableValueError`` (a TypeError)."""
    return check_mapping(value, what)


def _delay_seconds(delay: float | timedelta) -> float:
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
    if not valid_seconds(seconds):
        raise ValueError(
            f"delay must be a number of seconds (or a timedelta) between 0 and "
            f"{MAX_TIMEOUT_SECONDS:.0f}, got {delay!r}"
        )
    return float(seconds)


def _check_names(**names: object) -> None:
    for what, name in names.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"{what} must be a non-empty string, got {name!r}")


class Hephaestus:
    """A workflow engine instance: where runs are stored and how they execute.

    ```python
    async with Hephaestus() as app:           # in-memory storage, local runner
        await OrderFlow.start("abc123", {"items": [1, 2]})
    ```

    In sync code, ``with Hephaestus() as app:`` runs the engine on a background event loop and
    ``OrderFlow.sync.start(...)`` blocks until done. Swap ``storage`` or ``runner`` to change
    where runs live and how they execute; workflows and steps stay the same.
    ``telemetry=False`` turns telemetry events and trace-context capture off for this app.
    """

    def __init__(
        self,
        *,
        storage: Storage | None = None,
        runner: Runner | None = None,
        clock: Clock | None = None,
        registry: WorkflowRegistry | None = None,
        recover: bool = True,
        telemetry: bool = True,
    ) -> None:
        self.storage: Storage = storage if storage is not None else InMemoryStorage()
        self.runner: Runner = runner if runner is not None else LocalRunner()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.registry = registry if registry is not None else default_registry
        self._recover = recover
        self.telemetry = telemetry
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._loop is not None

    async def open(self, *, recover: bool | None = None) -> None:
        """Open storage, start the runner and recover the runs it finds.

        ``recover=False`` opens without taking over the active runs in storage (as the
        command line does to inspect or resume one run); by default, as constructed.
        """
        if self._loop is not None:
            raise AppError("this Hephaestus app is already open")
        await self.storage.open()
        self._loop = asyncio.get_running_loop()
        try:
            env = RuntimeEnv(
                self.storage,
                self.registry,
                self.clock,
                self._recover if recover is None else recover,
                telemetry=self.telemetry,
            )
            await self.runner.open(env)
        except BaseException:
            self._loop = None
            await self.storage.close()
            raise
        _open_apps.append(self)

    async def close(self) -> None:
        """Stop executing (active runs stay stored and are recovered next time) and close."""
        if self._loop is None:
            return
        if self in _open_apps:
            _open_apps.remove(self)
        try:
            await self.runner.close()
        finally:
            self._loop = None
            await self.storage.close()

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
        ``close_sync()`` at exit; ``with Hephaestus() as app:`` does both.
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
            asyncio.run_coroutine_threadsafe(self.open(), loop).result()
        except BaseException:
            self._stop_thread(loop)
            raise
        return self

    def close_sync(self) -> None:
        """Close an app opened with ``open_sync`` and stop its background thread."""
        loop = self._loop
        if loop is None:
            return
        if self._thread is None:
            raise AppError("this app was opened with `await open()`; close it with `await close()`")
        try:
            asyncio.run_coroutine_threadsafe(self.close(), loop).result()
        finally:
            self._stop_thread(loop)

    def _stop_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        loop.close()

    # -- running work on the app's loop ---------------------------------------------------

    async def _on_loop(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``make()`` on the app's loop, awaiting it from whatever loop the caller is on."""
        loop = self._loop
        if loop is None:
            raise AppNotOpenError("this Hephaestus app is not open")
        if asyncio.get_running_loop() is loop:
            return await make()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(make(), loop))

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

        async def call() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(call(), loop).result()

    # -- operations -------------------------------------------------------------------------

    async def start(
        self,
        workflow: type[Workflow],
        value: str,
        context: Mapping[str, Any] | None = None,
        *,
        version: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Start a run of ``workflow`` for business value ``value``; returns the instance id.

        Raises ``InstanceAlreadyRunningError`` if the unique scope already holds an active run,
        ``UnencodableValueError`` if ``context`` or ``metadata`` cannot be stored (both are
        copied: changing them afterwards changes nothing stored).
        """
        top, version = self._scope(workflow, version)
        initial = _check_mapping(context, "context")
        meta = _check_mapping(metadata, "metadata")
        definition = self._pick_version(workflow, top, value, initial, version)
        suffix = secrets.token_hex(4) if top.unique.scope == "none" else None
        instance_id = build_id(top.unique, value, suffix)
        decision = engine.start(
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
        await self._on_loop(lambda: self.runner.start(definition, decision))
        return instance_id

    async def resume(
        self,
        workflow: type[Workflow],
        value: str,
        event: str,
        payload: Mapping[str, Any] | None = None,
        *,
        step: str | None = None,
        version: int | None = None,
    ) -> None:
        """Deliver ``event`` (and ``payload``, stored as the step's result) to a waiting step.

        ``step`` names the step when several could take the event. A resume for a step that
        has not started waiting yet is kept and delivered when it does.
        """
        if not isinstance(event, str) or not event:
            raise TypeError(f"event must be a non-empty string, got {event!r}")
        run = await self._active_run(workflow, value, version)
        await self._on_loop(
            lambda: self.runner.resume(run.run_id, event=event, payload=payload, step=step)
        )

    async def cancel(
        self,
        workflow: type[Workflow],
        value: str,
        *,
        reason: str | None = None,
        version: int | None = None,
    ) -> None:
        """Cancel the active run; raises ``InstanceNotActiveError`` if it already finished."""
        run = await self._active_run(workflow, value, version)
        await self._on_loop(lambda: self.runner.cancel(run.run_id, reason=reason))

    async def get(
        self, workflow: type[Workflow], value: str, *, version: int | None = None
    ) -> Instance:
        """The latest run of ``workflow`` for ``value``; raises ``InstanceNotFoundError``.

        Raises ``CorruptInstanceError`` when that run cannot be decoded, and its subclass
        ``IncompatibleInstanceError`` when it is active but no longer fits the definition.
        """
        top, version = self._scope(workflow, version)
        instance_id = parse_value(top.unique, value)
        rows = await self._on_loop(
            lambda: self.storage.query(
                InstanceQuery(
                    id=instance_id,
                    workflow=self._names(top, version),
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
        status: Status | str | None = None,
        status_in: Collection[Status | str] | None = None,
        version: int | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
        id_prefix: str | None = None,
        tags: Collection[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        after: str | None = None,
    ) -> list[Instance]:
        """Runs, optionally of one workflow, filtered and paginated as ``InstanceQuery`` says.

        ``tags`` resolve through this app's registry; ``after`` is a cursor from
        ``storage.page`` (see the Queries section of the reference).
        """
        query = self._query(
            workflow,
            status=status,
            status_in=status_in,
            version=version,
            limit=limit,
            offset=offset,
            newest_first=newest_first,
            id_prefix=id_prefix,
            tags=tags,
            metadata=metadata,
            created_after=created_after,
            created_before=created_before,
            updated_after=updated_after,
            updated_before=updated_before,
            after=after,
        )
        return await self._on_loop(lambda: self.storage.query(query))

    async def run_until_idle(self) -> None:
        """Wait until no step is executing or due (pending timers aside)."""
        await self._on_loop(self.runner.wait_idle)

    async def page(
        self,
        workflow: type[Workflow] | None = None,
        *,
        status: Status | str | None = None,
        status_in: Collection[Status | str] | None = None,
        version: int | None = None,
        limit: int = 50,
        newest_first: bool = False,
        id_prefix: str | None = None,
        tags: Collection[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        after: str | None = None,
    ) -> Page:
        """One page of the runs ``list`` would return, and the cursor of the next page.

        Pass ``Page.next_cursor`` back as ``after=`` (same filters, same ``limit`` and
        direction) until it is ``None``: keyset pagination, as fast deep in the runs as at the
        start and stable while runs are added.
        """
        query = self._query(
            workflow,
            status=status,
            status_in=status_in,
            version=version,
            limit=limit,
            newest_first=newest_first,
            id_prefix=id_prefix,
            tags=tags,
            metadata=metadata,
            created_after=created_after,
            created_before=created_before,
            updated_after=updated_after,
            updated_before=updated_before,
            after=after,
        )
        return await self._on_loop(lambda: self.storage.page(query))

    async def count(
        self,
        workflow: type[Workflow] | None = None,
        *,
        by: tuple[CountKey, ...] = ("status", "workflow"),
        status: Status | str | None = None,
        status_in: Collection[Status | str] | None = None,
        version: int | None = None,
        id_prefix: str | None = None,
        tags: Collection[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
    ) -> dict[tuple[str, ...], int]:
        """How many runs match the filters of ``list``, grouped by status and/or workflow.

        Keys are tuples of the grouped values in ``by`` order (``("waiting", "app.Flow")``);
        ``by=()`` gives ``{(): n}``; groups with no runs are absent.
        """
        query = self._query(
            workflow,
            status=status,
            status_in=status_in,
            version=version,
            id_prefix=id_prefix,
            tags=tags,
            metadata=metadata,
            created_after=created_after,
            created_before=created_before,
            updated_after=updated_after,
            updated_before=updated_before,
        )
        return await self._on_loop(lambda: self.storage.count(query, by=by))

    def _query(
        self,
        workflow: type[Workflow] | None,
        *,
        status: Status | str | None,
        status_in: Collection[Status | str] | None,
        version: int | None,
        id_prefix: str | None,
        tags: Collection[str] | None,
        metadata: Mapping[str, Any] | None,
        created_after: datetime | None,
        created_before: datetime | None,
        updated_after: datetime | None,
        updated_before: datetime | None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
        after: str | None = None,
    ) -> InstanceQuery:
        """The storage query of ``list``, ``page`` and ``count`` (tags resolved here)."""
        names = None
        if workflow is not None:
            top, version = self._scope(workflow, version)
            names = self._names(top, version)
        return InstanceQuery(
            status=None if status is None else Status(status),
            status_in=None if status_in is None else frozenset(Status(s) for s in status_in),
            workflow=names,
            workflow_version=version,
            limit=limit,
            offset=offset,
            newest_first=newest_first,
            id_prefix=id_prefix,
            tags=tags,
            metadata=metadata,
            created_after=created_after,
            created_before=created_before,
            updated_after=updated_after,
            updated_before=updated_before,
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
            raise InstanceNotFoundError(f"no instance {instance_id}", instance_id=instance_id)
        return rows[0]

    async def resume_instance(
        self,
        instance_id: str,
        event: str,
        payload: Mapping[str, Any] | None = None,
        *,
        step: str | None = None,
    ) -> Instance:
        """``resume`` by full id; returns the run resumed. Its workflow must be defined here."""
        if not isinstance(event, str) or not event:
            raise TypeError(f"event must be a non-empty string, got {event!r}")
        run = await self._find_active(instance_id, None)
        await self._on_loop(
            lambda: self.runner.resume(run.run_id, event=event, payload=payload, step=step)
        )
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
        seconds = _delay_seconds(delay)
        _check_names(step=step, event=event)
        run = await self._find_active(instance_id, None)
        return await self._schedule(run, step, seconds, event, payload)

    async def _schedule_resume_of(
        self,
        workflow: type[Workflow],
        value: str,
        step: str,
        delay: float | timedelta,
        *,
        event: str,
        payload: Mapping[str, Any] | None,
        version: int | None,
    ) -> ScheduledResume:
        """``schedule_resume`` for the facade: the run is named by workflow and value."""
        seconds = _delay_seconds(delay)
        _check_names(step=step, event=event)
        run = await self._active_run(workflow, value, version)
        return await self._schedule(run, step, seconds, event, payload)

    async def _schedule(
        self,
        run: Instance,
        step: str,
        seconds: float,
        event: str,
        payload: Mapping[str, Any] | None,
    ) -> ScheduledResume:
        at = self.clock.now() + timedelta(seconds=seconds)
        return await self._on_loop(
            lambda: self.runner.schedule_resume(
                run.run_id, step=step, event=event, payload=payload, at=at
            )
        )

    async def cancel_instance(self, instance_id: str, *, reason: str | None = None) -> Instance:
        """``cancel`` by full id; returns the run cancelled."""
        run = await self._find_active(instance_id, None)
        await self._on_loop(lambda: self.runner.cancel(run.run_id, reason=reason))
        return run

    # -- helpers ----------------------------------------------------------------------------

    def _scope(
        self, workflow: type[Workflow], version: int | None
    ) -> tuple[WorkflowDefinition | VersionedDefinition, int | None]:
        """The definition that owns ``workflow``'s ids, and the version to restrict to.

        A version class listed in an umbrella shares the umbrella's ids and uniqueness, so
        starting ``OrderFlowV1`` directly is the same as ``OrderFlow.start(..., version=1)``.
        """
        top = workflow.definition()
        if isinstance(top, VersionedDefinition):
            return top, version
        umbrella = self.registry.umbrella_of(top.name)
        if umbrella is None:
            return top, version
        if version is not None and version != top.version:
            raise UnknownVersionError(
                f"{top.name} is version {top.version} of {umbrella.name}; got version={version!r}"
            )
        return umbrella, top.version

    def _pick_version(
        self,
        workflow: type[Workflow],
        top: WorkflowDefinition | VersionedDefinition,
        value: str,
        initial: Mapping[str, Any],
        version: int | None,
    ) -> WorkflowDefinition:
        if isinstance(top, WorkflowDefinition):
            if version is not None and version != top.version:
                raise UnknownVersionError(
                    f"{top.name} is not versioned; it only has version {top.version}, "
                    f"got {version!r}"
                )
            return top
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

    async def _active_run(
        self, workflow: type[Workflow], value: str, version: int | None
    ) -> Instance:
        top, version = self._scope(workflow, version)
        instance_id = parse_value(top.unique, value)
        return await self._find_active(instance_id, self._names(top, version))

    async def _find_active(self, instance_id: str, names: frozenset[str] | None) -> Instance:
        """The one active run of ``instance_id`` (among ``names``); reads no finished runs."""

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
            return active[0]
        if len(active) > 1:
            runs = ", ".join(f"{row.workflow} v{row.workflow_version}" for row in active)
            raise AmbiguousInstanceError(
                f"{instance_id} has {len(active)} active runs ({runs}); pass version=",
                instance_id=instance_id,
            )
        latest = await self._on_loop(lambda: query(limit=1))
        if latest:
            raise InstanceNotActiveError(
                f"instance {instance_id} is {latest[0].status}; it is no longer active",
                instance_id=instance_id,
                status=latest[0].status,
            )
        raise InstanceNotFoundError(f"no instance {instance_id}", instance_id=instance_id)
