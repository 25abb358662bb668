"""A runner written outside the package, against the public API only (a test checks that).

``SerialRunner`` is built unlike ``LocalRunner``, the way a database job queue (the Oban
runner) is: it holds no run in memory. Every command becomes a *job* on one FIFO queue,
worked by one task, one job at a time. A job reads its run from storage and applies its input
in a unit of work (``Driver.apply_stored``); the decision's commands become jobs only once
that unit of work commits (here through ``after_commit``; a database queue would insert its
job rows in the same transaction). A job whose step is no longer active at that attempt is
dropped. Timers and delayed steps enqueue a job when due: with ``timers="clock"`` they are
clock callbacks (``Clock.call_at``); with ``timers="poll"`` a task compares them with
``clock.now()`` every few milliseconds, as a database queue polls its scheduled jobs (a
``FakeClock`` then knows none of them: the testing helpers read the deadlines from storage).
On open, the active runs in storage are picked up: pending runs are begun, the
others' commands re-issued (``recover_commands``).

It does not implement ``hephaestus.testing.IdleAware``: the testing helpers watch its storage.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import TYPE_CHECKING, Literal

from hephaestus import HephaestusError, Status, StepStatus
from hephaestus.errors import AppNotOpenError
from hephaestus.runners import (
    AbortStep,
    Begin,
    Cancel,
    CancelTimer,
    Driver,
    FireTimer,
    RunStep,
    StartTimer,
    StepExecutor,
    StepFinished,
    recover_commands,
)
from hephaestus.storage import InstanceQuery

if TYPE_CHECKING:
    from datetime import datetime

    from hephaestus import Instance, WorkflowDefinition
    from hephaestus.runners import (
        Applied,
        Command,
        Decision,
        Input,
        Outcome,
        Resume,
        RuntimeEnv,
        ScheduleResume,
        TimerHandle,
    )
    from hephaestus.storage import StorageTransaction

__all__ = ["SerialRunner"]

log = logging.getLogger("tests.serial_runner")

ACTIVE = frozenset({Status.PENDING, Status.RUNNING, Status.WAITING})

POLL_SECONDS = 0.002
"""How often ``timers="poll"`` looks for due timers (real time)."""

type Job = tuple[str, Input | RunStep]
"""A run id and what to do for it: apply an input, or execute a step."""

type TimerKey = tuple[str, str, str, str | None]
"""(run id, "run" or "timer", step, timer id): one armed timer or delayed step."""


class SerialRunner:
    """One queue of jobs, one worker; every decision in its own unit of work."""

    name = "serial"

    def __init__(self, *, timers: Literal["clock", "poll"] = "clock") -> None:
        self._polling = timers == "poll"
        self._driver: Driver | None = None
        self._executor = StepExecutor(max_threads=2)
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._timers: dict[TimerKey, TimerHandle] = {}
        self._due: dict[TimerKey, tuple[datetime, Input | RunStep]] = {}  # timers="poll"
        self._executing: tuple[str, str, asyncio.Task[Outcome]] | None = None
        self._closing = False

    # -- the Runner protocol ----------------------------------------------------------------

    async def open(self, env: RuntimeEnv) -> None:
        self._driver = Driver(env, runner=self.name)
        self._closing = False
        self._queue = asyncio.Queue()
        self._executor.open(env)
        loop = asyncio.get_running_loop()
        self._worker = loop.create_task(self._work())
        if self._polling:
            self._poller = loop.create_task(self._poll())
        if env.recover:
            for run in await env.storage.query(InstanceQuery(status_in=ACTIVE)):
                if env.registry.belongs_elsewhere(run.workflow):
                    continue  # another app's run (a storage shared by apps): left alone
                try:
                    self._driver.definition_of(run)
                except HephaestusError as exc:
                    log.error("cannot recover %s (run %s): %s", run.id, run.run_id, exc)
                    continue
                if run.status is Status.PENDING:
                    self._enqueue(run.run_id, Begin())
                else:
                    self._carry_out(run.run_id, recover_commands(run))

    async def close(self) -> None:
        self._closing = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._due.clear()
        for task in (self._worker, self._poller):
            if task is not None:
                task.cancel()  # a step in flight is cancelled; recovery re-executes it
                await asyncio.gather(task, return_exceptions=True)
        self._worker = self._poller = None
        self._executor.close()
        self._driver = None

    async def start(self, definition: WorkflowDefinition, run: Instance) -> None:
        """Store the run pending; a job begins it once the insert has committed."""
        del definition  # the Begin job resolves it again, like any job
        async with self._require().env.storage.transaction() as tx:
            await tx.create(run)
            tx.after_commit(functools.partial(self._enqueue, run.run_id, Begin()))

    async def apply(self, run_id: str, input: Resume | ScheduleResume | Cancel) -> Decision:
        applied = await self._require().apply_stored(
            run_id, input, dispatch=self._dispatch, fit=not isinstance(input, Cancel)
        )
        return applied.decision

    # -- jobs -------------------------------------------------------------------------------

    def _require(self) -> Driver:
        if self._driver is None:
            raise AppNotOpenError("the serial runner is not open")
        return self._driver

    def _enqueue(self, run_id: str, item: Input | RunStep) -> None:
        if not self._closing:
            self._queue.put_nowait((run_id, item))

    async def _dispatch(self, tx: StorageTransaction, applied: Applied) -> None:
        """Turn the decision's commands into jobs and timers once it has committed."""
        decision = applied.decision
        if not decision.changed or not applied.fits:
            return
        run_id = decision.instance.run_id
        commands = decision.commands
        terminal = decision.instance.is_terminal
        tx.after_commit(lambda: self._carry_out(run_id, commands, terminal=terminal))

    def _carry_out(
        self, run_id: str, commands: tuple[Command, ...], *, terminal: bool = False
    ) -> None:
        if self._closing:
            return  # stored as active or waiting: recovery re-issues it next time
        clock = self._require().env.clock
        for command in commands:
            if isinstance(command, RunStep):
                if command.not_before is not None and command.not_before > clock.now():
                    self._arm((run_id, "run", command.step, None), command.not_before, command)
                else:
                    self._enqueue(run_id, command)
            elif isinstance(command, StartTimer):
                fire = FireTimer(command.step, command.at, command.timer)
                self._arm((run_id, "timer", command.step, command.timer), command.at, fire)
            elif isinstance(command, CancelTimer):
                self._disarm((run_id, "timer", command.step, command.timer))
            elif isinstance(command, AbortStep):
                self._disarm((run_id, "run", command.step, None))
                executing = self._executing
                if executing is not None and executing[:2] == (run_id, command.step):
                    executing[2].cancel()
        if terminal:  # nothing of a finished run may fire any more
            for key in [key for key in (*self._timers, *self._due) if key[0] == run_id]:
                self._disarm(key)

    def _arm(self, key: TimerKey, when: datetime, item: Input | RunStep) -> None:
        self._disarm(key)
        if self._polling:
            self._due[key] = (when, item)
            return

        def fire() -> None:
            self._timers.pop(key, None)
            self._enqueue(key[0], item)

        self._timers[key] = self._require().env.clock.call_at(when, fire)

    def _disarm(self, key: TimerKey) -> None:
        self._due.pop(key, None)
        handle = self._timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    async def _poll(self) -> None:
        clock = self._require().env.clock
        while True:
            await asyncio.sleep(POLL_SECONDS)
            now = clock.now()
            for key, (when, item) in sorted(self._due.items(), key=lambda kv: kv[1][0]):
                if when <= now:
                    del self._due[key]
                    self._enqueue(key[0], item)

    async def _work(self) -> None:
        while True:
            run_id, item = await self._queue.get()
            try:
                if isinstance(item, RunStep):
                    await self._execute(run_id, item)
                else:
                    await self._require().apply_stored(run_id, item, dispatch=self._dispatch)
            except HephaestusError as exc:
                log.error("job %s for run %s failed: %s", item, run_id, exc)

    async def _execute(self, run_id: str, command: RunStep) -> None:
        """Execute a step attempt if it is still due, then record its outcome."""
        driver = self._require()
        run = await driver.env.storage.get(run_id)
        state = run.steps.get(command.step)
        if (
            run.is_terminal
            or state is None
            or state.status is not StepStatus.ACTIVE
            or state.attempt != command.attempt
        ):
            return  # aborted, retried or finished since the job was queued
        definition = driver.definition_of(run)
        driver.step_started(definition, run, command)
        began = time.perf_counter()
        if StepExecutor.inline(definition, command):
            outcome = self._executor.execute_inline(definition, run, command)
        else:
            task = asyncio.get_running_loop().create_task(
                self._executor.execute(definition, run, command, stopping=self._is_closing)
            )
            self._executing = (run_id, command.step, task)
            try:
                outcome = await task
            except asyncio.CancelledError:
                worker = asyncio.current_task()
                if task.cancelled() and worker is not None and not worker.cancelling():
                    return  # aborted (the run was cancelled): nothing to record
                raise
            finally:
                self._executing = None
        finished = StepFinished(command.step, command.attempt, outcome)
        duration = time.perf_counter() - began
        await driver.apply_stored(run_id, finished, dispatch=self._dispatch, duration=duration)

    def _is_closing(self) -> bool:
        return self._closing
