"""The local runner: every active step of every run as an asyncio task in this process.

Sync steps run in a thread pool (built-in waits, which only compute a result, on the loop). A
run that only waits for an event is not held here: it is read back from storage when resumed or
cancelled. Retries and timers are clock callbacks, so a fake clock can fire them on demand.
Each run has one lock: engine decisions for a run are applied and persisted one at a time, in
order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from hephaestus._core import engine
from hephaestus._core.compat import check_instance, instance_problems
from hephaestus._core.instance import ACTIVE_STATUSES, Instance, Status, StepStatus
from hephaestus.errors import (
    AppNotOpenError,
    ConcurrentUpdateError,
    HephaestusError,
    InstanceNotFoundError,
    InvalidArgumentError,
    StorageError,
    UnknownWorkflowError,
)
from hephaestus.runners._driver import Driver
from hephaestus.runners._executor import StepExecutor

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from datetime import datetime

    from hephaestus._clock import Clock, TimerHandle
    from hephaestus._core.definition import WorkflowDefinition
    from hephaestus.runners import RuntimeEnv
    from hephaestus.storage import JoinableStorage, OwningStorage, Storage, Unwatch

__all__ = ["LocalRunner"]

log = logging.getLogger("hephaestus.runner.local")

STORAGE_RETRY_SECONDS = 30.0
"""How long a step result or timer is retried against a failing storage before giving up."""


def _timer_key(step: str, timer: str | None) -> tuple[str, str]:
    """A step's own timeout timer, or one of the resumes scheduled for it (by id)."""
    return ("timer", step) if timer is None else ("scheduled", timer)


class _Run:
    """A run this runner executes: its latest state, in-flight steps and armed timers.

    The runner keeps a ``_Run`` only while the run needs it: while a step is executing or due,
    a timer is armed, or a caller is using it. A run that only waits for an event is forgotten
    and read back from storage when it is resumed or cancelled. ``users`` counts the tasks and
    calls holding this object; a ``_Run`` is registered (unloaded, without ``instance``) before
    anything is awaited, so concurrent callers of one run share one object and one lock.
    """

    __slots__ = ("_lock", "definition", "instance", "run_id", "tasks", "timers", "users")

    definition: WorkflowDefinition
    instance: Instance

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._lock: asyncio.Lock | None = None
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.timers: dict[tuple[str, str], TimerHandle] = {}
        self.users = 0

    @classmethod
    def of(cls, definition: WorkflowDefinition, instance: Instance) -> _Run:
        run = cls(instance.run_id)
        run.definition = definition
        run.instance = instance
        return run

    @property
    def lock(self) -> asyncio.Lock:
        """The lock that orders this run's decisions; made when first needed (runs started
        together in their thousands do not each carry one before their first step ends)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    @property
    def loaded(self) -> bool:
        return hasattr(self, "instance")

    @property
    def needed(self) -> bool:
        """Whether the runner must keep this run: it is in use, executing, due or timed."""
        if self.users or self.tasks or self.timers:
            return True
        if not self.loaded or self.instance.is_terminal:
            return False
        # A step still active (its result not recorded, or the runner closing) keeps the run.
        return any(state.status is StepStatus.ACTIVE for state in self.instance.steps.values())


class LocalRunner:
    """Runs steps as asyncio tasks in this process.

    ``max_threads`` bounds the pool that runs plain (``def``) steps. ``shutdown_timeout`` is how
    long ``close()`` lets steps already executing finish (their results are recorded) before
    cancelling the rest; meanwhile no new step starts and no timer fires. Whatever is left is
    in storage as it was, and is picked up by recovery when an app opens again.

    Built on the runner kit: ``StepExecutor`` executes steps, ``Driver`` decides and saves.
    Being the only writer of the runs it holds, it saves with ``Storage.put`` (which may share
    one commit among many runs) rather than a transaction per decision.

    On a storage that joins callers' transactions (``JoinableStorage``) it watches for runs
    started and inputs sent in them, and takes each (``Driver.apply_next``) once announced;
    every ``sweep_interval`` seconds, and whenever the storage may have missed announcements,
    it sweeps for what is left (``JoinableStorage.awaiting``). Opened without recovery
    (``recover=False``) it takes over nothing: it neither watches nor sweeps.
    """

    name = "local"
    """The ``runner`` field of the telemetry events this runner emits."""

    def __init__(
        self,
        *,
        max_threads: int | None = None,
        shutdown_timeout: float = 0.0,
        sweep_interval: float = 5.0,
    ) -> None:
        if shutdown_timeout < 0:
            raise InvalidArgumentError(
                f"shutdown_timeout must be >= 0 seconds, got {shutdown_timeout!r}"
            )
        if not sweep_interval > 0:
            raise InvalidArgumentError(
                f"sweep_interval must be > 0 seconds, got {sweep_interval!r}"
            )
        self._sweep_interval = sweep_interval
        self._unwatch: Unwatch | None = None
        self._sweeps: set[asyncio.Task[None]] = set()
        self._deferred: set[str] | None = None
        self._shared: OwningStorage | None = None
        self._shutdown_timeout = shutdown_timeout
        self._closing = False
        self._runs: dict[str, _Run] = {}
        self._inflight = 0
        self._idle = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._env: RuntimeEnv | None = None
        self._driver: Driver | None = None
        self._executor = StepExecutor(max_threads=max_threads)

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self, env: RuntimeEnv) -> None:
        self._env = env
        self._driver = Driver(env, runner=self.name)
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._executor.open(env)
        from hephaestus.storage import OwningStorage

        owning = env.storage if isinstance(env.storage, OwningStorage) else None
        self._shared = owning
        if owning is not None:  # several processes on one database: register as an owner
            await owning.register(self._ownership_lost)
        if env.recover:
            await self._watch_and_recover(env.storage)

    async def close(self) -> None:
        self._closing = True  # from here on nothing new is dispatched
        await self._stop_watching()
        for run in list(self._runs.values()):
            self._disarm(run)
        if self._shutdown_timeout and self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self._shutdown_timeout)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runs.clear()
        owning = self._owning()
        if owning is not None:
            # Hand the runs over at once (the others hear of each), not after a failover.
            try:
                released = await owning.release()
            except HephaestusError as exc:
                log.warning("could not release this process's runs (they fail over): %s", exc)
            else:
                if released:
                    log.info("released %d run(s) to the other processes", len(released))
        self._executor.close()
        self._env = None
        self._driver = None

    async def wait_idle(self) -> None:
        """Return once nothing is executing or about to (pending timers aside): for tests,
        through ``hephaestus.testing``."""
        while self._inflight:
            await self._idle.wait()

    # -- operations -------------------------------------------------------------------------

    async def start(self, definition: WorkflowDefinition, run: Instance) -> None:
        driver = self._require_driver()
        # Begun at the instant it was created: storing and beginning a new run is one step.
        decision = engine.begin(definition, run, run.created_at)
        # Not stored yet: its first stored state is this decision, at the new run's revision.
        decision = dataclasses.replace(
            decision, instance=dataclasses.replace(decision.instance, revision=run.revision)
        )
        inline = self._inline_start_step(definition, decision)
        if inline is not None:
            await self._start_inline(definition, decision, inline)
            return
        await driver.create(definition, decision)
        held = _Run.of(definition, decision.instance)
        if not decision.instance.is_terminal:
            self._runs[decision.instance.run_id] = held
        self._dispatch(held, decision.commands)
        self._forget_if_idle(held)

    def _inline_start_step(
        self, definition: WorkflowDefinition, decision: engine.Decision
    ) -> engine.RunStep | None:
        """The run's only command, if it is a built-in start step run on the loop (a wait)."""
        if self._closing or len(decision.commands) != 1:
            return None
        command = decision.commands[0]
        if (
            isinstance(command, engine.RunStep)
            and command.not_before is None
            and self._executor.inline(definition, command)
        ):
            return command
        return None

    async def _start_inline(
        self, definition: WorkflowDefinition, decision: engine.Decision, command: engine.RunStep
    ) -> None:
        """Start a run whose start step is a built-in wait: create it with the step done.

        The step only computes its result, so its outcome is decided before the run is stored
        and the run is created already waiting: one atomic write, and no task is spawned for it
        (thousands of runs started at once then hold no more than they will while waiting).
        """
        driver = self._require_driver()
        started = decision.instance
        observed = driver.observed
        began = time.perf_counter() if observed else 0.0
        outcome = self._executor.execute_inline(definition, started, command)
        decided = engine.apply_result(
            definition,
            started,
            step=command.step,
            attempt=command.attempt,
            outcome=outcome,
            now=started.updated_at,  # the same instant: the step is part of the start
        )
        instance = dataclasses.replace(decided.instance, revision=started.revision)
        await driver.env.storage.create(instance)
        held = _Run.of(definition, instance)
        if not instance.is_terminal:
            self._runs[instance.run_id] = held
        if observed:
            duration = time.perf_counter() - began
            driver.observe(definition, decision)
            driver.step_started(definition, started, command)
            driver.observe(definition, decided, duration)
        self._dispatch(held, decided.commands)
        self._forget_if_idle(held)

    async def apply(self, run_id: str, input: engine.Input) -> engine.Decision:
        owning = self._owning()
        held = self._runs.get(run_id)
        if (
            owning is not None
            and (held is None or not held.loaded)
            and not await owning.claim(run_id)
        ):
            return await self._forward(owning, run_id, input)
        run = self._hold(run_id)
        try:
            # Cancelling needs no step of the definition: a run that no longer fits it (a
            # renamed step) can still be cancelled, which is how an operator clears it.
            decision, _ = await self._apply(run, input, fit=not isinstance(input, engine.Cancel))
        finally:
            self._let_go(run)
        return decision

    async def _forward(
        self, owning: OwningStorage, run_id: str, input: engine.Input
    ) -> engine.Decision:
        """Send ``input`` to the process that owns the run, once the run as stored shows it
        applies (its errors are raised here; nothing is sent then). Returns that check's
        decision; the owner takes its own when it applies the input, moments later."""
        if not isinstance(input, engine.Resume | engine.Cancel | engine.ScheduleResume):
            raise TypeError(f"only a caller's input goes to a run's owner, got {input!r}")
        if isinstance(input, engine.ScheduleResume) and input.id is None:
            # Named here, so that what the caller is told is what the owner will store.
            input = dataclasses.replace(input, id=f"s-{uuid.uuid4().hex[:12]}")
        driver = self._require_driver()
        instance = await driver.env.storage.get(run_id)
        definition = driver.definition_of(instance, fit=not isinstance(input, engine.Cancel))
        decision = driver.decide(definition, instance, input)
        await owning.forward(run_id, input)
        return decision

    def _owning(self) -> OwningStorage | None:
        """The storage, when it is shared by processes that each own runs (found at open)."""
        return self._shared

    def _ownership_lost(self) -> None:
        """The session holding this process's owner id ended: its runs are the others' now.
        Stop executing them (a step running in a thread finishes on its own; its result will
        be refused); what is ours again after the session is back is claimed by the sweep."""
        for run in list(self._runs.values()):
            self._retire(run)

    # -- runs started and inputs sent in callers' transactions ------------------------------

    async def _watch_and_recover(self, storage: Storage) -> None:
        """Recover; on a ``JoinableStorage``, also take announced runs as they come and what
        was left waiting before (inputs sent while no app was open wait in inboxes), then
        sweep every ``sweep_interval``. Announcements that arrive while recovering are taken
        after it, so that recovery and they never hold one run twice."""
        from hephaestus.storage import JoinableStorage

        if not isinstance(storage, JoinableStorage):
            await self._recover()
            return
        self._deferred = set()
        try:
            self._unwatch = await storage.watch(self._woken)
            self._deferred.update(await storage.awaiting(older_than=0.0))
            await self._recover()
        finally:
            deferred, self._deferred = self._deferred, None
        for run_id in sorted(deferred):
            self._woken(run_id)
        self._sweep_soon(storage, older_than=self._sweep_interval, every=self._sweep_interval)

    async def _stop_watching(self) -> None:
        unwatch, self._unwatch = self._unwatch, None
        sweeps = list(self._sweeps)
        for task in sweeps:
            task.cancel()
        await asyncio.gather(*sweeps, return_exceptions=True)
        if unwatch is not None:
            await unwatch()

    def _woken(self, run_id: str | None) -> None:
        """The storage's announcement: ``run_id`` has work waiting (``None``: maybe missed)."""
        if self._closing or self._driver is None:
            return
        storage = self._driver.env.storage
        if self._deferred is not None:  # recovering: after it
            if run_id is not None:
                self._deferred.add(run_id)
            return
        if run_id is None:
            from hephaestus.storage import JoinableStorage

            if isinstance(storage, JoinableStorage):
                self._sweep_soon(storage, older_than=0.0)
            return
        run = self._hold(run_id)
        try:
            self._spawn(run, self._take(run))
        finally:
            self._let_go(run)

    def _sweep_soon(
        self, storage: JoinableStorage, *, older_than: float, every: float | None = None
    ) -> None:
        async def sweep() -> None:
            while True:
                if every is not None:
                    await asyncio.sleep(every)
                try:
                    found = await storage.awaiting(older_than=older_than)
                    owning = self._owning()
                    if owning is not None:  # failover: runs whose owner is gone
                        orphans = await owning.claim_orphans(
                            limit=1000, workflows=self._require_driver().workflow_names()
                        )
                        found = [*found, *orphans]
                except HephaestusError as exc:
                    log.warning("sweep for runs left by callers' transactions failed: %s", exc)
                    found = []
                for run_id in found:
                    self._woken(run_id)
                if every is None:
                    return

        task = asyncio.get_running_loop().create_task(sweep())
        self._sweeps.add(task)
        task.add_done_callback(self._sweeps.discard)
        if every is None:  # a one-off sweep is work in flight: idle waits for it
            self._inflight += 1
            self._idle.clear()
            task.add_done_callback(self._sweep_done)

    def _sweep_done(self, task: asyncio.Task[None]) -> None:
        del task
        self._inflight -= 1
        if not self._inflight:
            self._idle.set()

    async def _take(self, run: _Run) -> None:
        """Begin the run if it is pending, then apply its inbox in order; each decision is
        carried out once it is durable (the caller's transaction committed long before)."""
        driver = self._require_driver()
        owning = self._owning()
        async with run.lock:
            if owning is not None:
                try:
                    if not await owning.claim(run.run_id):
                        return  # a live process owns it: the announcement is for that one
                    if not run.loaded:
                        await self._load(run, fit=True)  # ours now: adopt what it needs
                except InstanceNotFoundError:
                    return
                except HephaestusError as exc:
                    log.error("cannot recover run %s: %s", run.run_id, exc)
                    return
            while not self._closing:
                try:
                    applied = await driver.apply_next(run.run_id)
                except InstanceNotFoundError:
                    return  # deleted meanwhile
                except HephaestusError as exc:
                    log.error("cannot take the waiting input of run %s: %s", run.run_id, exc)
                    return
                if applied is None:
                    return
                decision = applied.decision
                if not decision.changed:
                    continue
                run.definition = applied.definition
                run.instance = decision.instance
                if applied.fits:
                    self._dispatch(run, decision.commands)
                if decision.instance.is_terminal:
                    self._retire(run)

    # -- internals --------------------------------------------------------------------------

    def _require_driver(self) -> Driver:
        if self._driver is None:
            raise AppNotOpenError("the local runner is not open")
        return self._driver

    @property
    def _clock(self) -> Clock:
        return self._require_driver().env.clock

    async def _recover(self) -> None:
        """Adopt the active stored runs this process is to execute: every one when it is
        alone on its storage; on a storage shared by processes (``OwningStorage``) only those
        nobody alive owns, claimed first. Runs of workflows this app lacks are reported once
        per workflow (another app's are left alone), never claimed."""
        env = self._require_driver().env
        from hephaestus.storage import InstanceQuery

        owning = self._owning()
        claimed: set[str] = set()
        if owning is not None:
            workflows = self._require_driver().workflow_names()
            while batch := await owning.claim_orphans(limit=1000, workflows=workflows):
                claimed.update(batch)
        unknown: dict[str, list[Instance]] = {}
        for instance in await env.storage.query(InstanceQuery(status_in=ACTIVE_STATUSES)):
            if env.registry.belongs_elsewhere(instance.workflow):
                continue  # another app's workflow: that app recovers it
            if owning is None or instance.run_id in claimed:
                await self._recover_one(instance, unknown)
            elif instance.workflow not in env.registry:
                unknown.setdefault(instance.workflow, []).append(instance)
        self._report_unknown(unknown)

    async def _recover_one(self, instance: Instance, unknown: dict[str, list[Instance]]) -> None:
        """Adopt one active stored run (one process on the database: every run is its own).

        Runs that cannot be decoded are logged and skipped by the storage; runs that do not
        fit their definition, and runs whose adoption fails, are logged and skipped here: one
        bad run never keeps the others from being recovered.
        """
        env = self._require_driver().env
        try:
            definition = env.registry.resolve(instance.workflow)
        except UnknownWorkflowError:
            unknown.setdefault(instance.workflow, []).append(instance)
            return
        try:
            check_instance(definition, instance)
        except HephaestusError as exc:
            log.error("cannot recover %s (run %s): %s", instance.id, instance.run_id, exc)
            return
        run = _Run.of(definition, instance)
        self._runs[run.run_id] = run
        run.users += 1
        try:
            async with run.lock:
                await self._adopt(run)
        except HephaestusError as exc:
            self._runs.pop(run.run_id, None)
            log.error("cannot recover %s (run %s): %s", instance.id, instance.run_id, exc)
        finally:
            self._let_go(run)

    @staticmethod
    def _report_unknown(unknown: dict[str, list[Instance]]) -> None:
        for workflow, orphans in unknown.items():  # one line per workflow, not per run
            shown = ", ".join(f"{orphan.id} (run {orphan.run_id})" for orphan in orphans[:5])
            log.error(
                "cannot recover %d run(s) of %s: %s%s; no workflow named %r is defined in this "
                "process: import the module that defines it before opening the app",
                len(orphans),
                workflow,
                shown,
                ", ..." if len(orphans) > 5 else "",
                workflow,
            )

    async def _adopt(self, run: _Run) -> None:
        """Take over an active stored run: start it if pending, else re-issue its commands.

        The caller holds ``run.lock``.
        """
        if run.instance.status is Status.PENDING:
            await self._apply_locked(run, engine.Begin())
        else:
            self._dispatch(run, engine.recover(run.instance))

    def _hold(self, run_id: str) -> _Run:
        """The run's one ``_Run`` (registered unloaded if the runner holds none), in use."""
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = _Run(run_id)
        run.users += 1
        return run

    def _let_go(self, run: _Run) -> None:
        run.users -= 1
        self._forget_if_idle(run)

    def _forget_if_idle(self, run: _Run) -> None:
        """Drop a run nothing needs (it only waits for an event): storage holds all of it."""
        if not run.needed and self._runs.get(run.run_id) is run:
            del self._runs[run.run_id]

    async def _load(self, run: _Run, *, fit: bool = True) -> None:
        """Read a run the runner does not hold from storage (the caller holds ``run.lock``).

        An active run must fit its definition (``IncompatibleInstanceError`` otherwise, and
        nothing is loaded); with ``fit=False`` one that does not is loaded but not adopted
        (nothing of it is dispatched), so that it can still be cancelled.
        """
        driver = self._require_driver()
        instance = await driver.env.storage.get(run.run_id)
        definition = driver.definition_of(instance, fit=fit)
        run.definition = definition
        run.instance = instance
        if not instance.is_terminal:
            if not fit and instance_problems(definition, instance):
                return
            # Waiting here, or active in storage but not running here (the app opened without
            # recovery): re-issue what it needs.
            await self._adopt(run)

    async def _apply(
        self,
        run: _Run,
        input: engine.Input,
        duration: float | None = None,
        *,
        continue_inline: bool = False,
        fit: bool = True,
    ) -> tuple[engine.Decision, engine.RunStep | None]:
        """Decide, persist, then carry out the decision's commands.

        With ``continue_inline`` one immediately runnable step is returned instead of spawned,
        so the calling task runs it next (a sequential run then needs no task per step).
        ``fit``: a run loaded from storage for this must fit its definition (see ``_load``).
        """
        async with run.lock:
            if not run.loaded:
                await self._load(run, fit=fit)
            return await self._apply_locked(run, input, duration, continue_inline=continue_inline)

    async def _apply_locked(
        self,
        run: _Run,
        input: engine.Input,
        duration: float | None = None,
        *,
        continue_inline: bool = False,
    ) -> tuple[engine.Decision, engine.RunStep | None]:
        try:
            decision = await self._require_driver().apply(
                run.definition, run.instance, input, duration=duration
            )
        except ConcurrentUpdateError:
            log.warning("run %s was changed by another writer; letting go", run.instance.id)
            self._retire(run)
            if self._owning() is not None:
                # Its owner changed (our session was lost, or it was released and claimed):
                # take it again if it is ours to take, from what is stored.
                self._woken(run.run_id)
            raise
        if not decision.changed:
            return decision, None
        run.instance = decision.instance
        follow = self._dispatch(run, decision.commands, keep_one=continue_inline)
        if decision.instance.is_terminal:
            self._retire(run)
            return decision, None
        return decision, follow

    async def _apply_durably(
        self,
        run: _Run,
        input: engine.Input,
        duration: float | None = None,
        *,
        continue_inline: bool = False,
    ) -> engine.RunStep | None:
        """``_apply`` for runner-side input (step results, timers): storage errors are retried.

        A step's outcome is kept and recorded again, never re-executed, while storage is down;
        after ``STORAGE_RETRY_SECONDS`` the error is raised and the run waits for recovery.
        """
        delay = 0.05
        deadline = None
        while True:
            try:
                _, follow = await self._apply(run, input, duration, continue_inline=continue_inline)
                return follow
            except ConcurrentUpdateError:
                raise
            except StorageError as exc:
                if deadline is None:
                    deadline = time.monotonic() + STORAGE_RETRY_SECONDS
                if time.monotonic() + delay > deadline or self._runs.get(run.run_id) is not run:
                    raise
                log.warning(
                    "storage failed for %s, retrying in %.2fs: %s", run.instance.id, delay, exc
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _dispatch(
        self, run: _Run, commands: tuple[engine.Command, ...], *, keep_one: bool = False
    ) -> engine.RunStep | None:
        kept: engine.RunStep | None = None
        for command in commands:
            if self._closing and isinstance(command, engine.RunStep | engine.StartTimer):
                continue  # persisted as active/waiting: recovery dispatches it next time
            if isinstance(command, engine.RunStep):
                if keep_one and kept is None and command.not_before is None:
                    kept = command
                    current = asyncio.current_task()
                    if current is not None:
                        run.tasks[command.step] = current
                elif command.not_before is not None and command.not_before > self._clock.now():
                    self._arm(
                        run,
                        ("run", command.step),
                        command.not_before,
                        functools.partial(self._spawn_step, run, command),
                    )
                else:
                    self._spawn_step(run, command)
            elif isinstance(command, engine.StartTimer):
                self._arm(
                    run,
                    _timer_key(command.step, command.timer),
                    command.at,
                    functools.partial(self._spawn_timer, run, command),
                )
            elif isinstance(command, engine.CancelTimer):
                handle = run.timers.pop(_timer_key(command.step, command.timer), None)
                if handle is not None:
                    handle.cancel()
            else:
                handle = run.timers.pop(("run", command.step), None)
                if handle is not None:
                    handle.cancel()
                task = run.tasks.pop(command.step, None)
                if task is not None and task is not asyncio.current_task():
                    task.cancel()
        return kept

    def _arm(
        self,
        run: _Run,
        key: tuple[str, str],
        when: datetime,
        callback: Callable[[], object],
    ) -> None:
        def fire() -> None:
            run.timers.pop(key, None)
            callback()

        previous = run.timers.pop(key, None)
        if previous is not None:
            previous.cancel()
        run.timers[key] = self._clock.call_at(when, fire)

    def _disarm(self, run: _Run) -> None:
        for handle in run.timers.values():
            handle.cancel()
        run.timers.clear()

    def _retire(self, run: _Run) -> None:
        """Forget a finished run: disarm its timers and stop its other executions."""
        self._disarm(run)
        current = asyncio.current_task()
        for task in run.tasks.values():
            if task is not current:
                task.cancel()
        run.tasks.clear()
        if self._runs.get(run.run_id) is run:
            del self._runs[run.run_id]

    def _spawn(self, run: _Run, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._inflight += 1
        self._idle.clear()
        self._tasks.add(task)
        run.users += 1
        task.add_done_callback(functools.partial(self._task_done, run))
        return task

    def _task_done(self, run: _Run, task: asyncio.Task[None]) -> None:
        self._let_go(run)
        self._tasks.discard(task)
        self._inflight -= 1
        if not self._inflight:
            self._idle.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("hephaestus runner task failed", exc_info=exc)

    def _spawn_step(self, run: _Run, command: engine.RunStep) -> None:
        run.tasks[command.step] = self._spawn(run, self._execute(run, command))

    async def _execute(self, run: _Run, command: engine.RunStep) -> None:
        """Run a step, then the run's next sequential steps, in this one task."""
        follow = await self._execute_one(run, command)
        while follow is not None:
            await asyncio.sleep(0)  # let other tasks in between: fairness, not correctness
            follow = await self._execute_one(run, follow)

    async def _execute_one(self, run: _Run, command: engine.RunStep) -> engine.RunStep | None:
        driver = self._require_driver()
        instance = run.instance
        observed = driver.observed
        began = time.perf_counter() if observed else 0.0
        if observed:
            driver.step_started(run.definition, instance, command)
        try:
            outcome = await self._executor.execute(
                run.definition, instance, command, stopping=self._is_closing
            )
        finally:
            if run.tasks.get(command.step) is asyncio.current_task():
                del run.tasks[command.step]
        duration = time.perf_counter() - began if observed else None
        try:
            # A result the storage refuses fails the attempt (the driver sees to it).
            return await self._record(run, command, outcome, duration)
        except HephaestusError as exc:
            log.error("could not record step %s of %s: %s", command.step, instance.id, exc)
            return None

    def _is_closing(self) -> bool:
        return self._closing

    async def _record(
        self,
        run: _Run,
        command: engine.RunStep,
        outcome: engine.Outcome,
        duration: float | None,
    ) -> engine.RunStep | None:
        return await self._apply_durably(
            run,
            engine.StepFinished(command.step, command.attempt, outcome),
            duration,
            continue_inline=True,
        )

    def _spawn_timer(self, run: _Run, command: engine.StartTimer) -> None:
        self._spawn(run, self._fire_timer(run, command))

    async def _fire_timer(self, run: _Run, command: engine.StartTimer) -> None:
        try:
            await self._apply_durably(
                run, engine.FireTimer(command.step, command.at, command.timer)
            )
        except HephaestusError as exc:
            log.error("could not fire timer of %s for %s: %s", command.step, run.instance.id, exc)
