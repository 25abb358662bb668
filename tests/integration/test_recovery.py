"""Recovery: a new app on the same storage picks up the runs a closed app left active."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from hephaestus import (
    Config,
    Context,
    Done,
    Hephaestus,
    HistoryKind,
    Instance,
    Ok,
    RetryPolicy,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    StepState,
    StepStatus,
    Unique,
    Wait,
    WaitForEvent,
    Workflow,
)
from hephaestus.testing import advance, run_until_idle

if TYPE_CHECKING:
    from hephaestus.storage import Storage
    from hephaestus.testing import FakeClock

BOUND = 5.0


class _Board:
    """What the module's steps report to the test that runs them (reset before each test)."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.started = asyncio.Event()
        self.finished = 0

    def reset(self) -> None:
        self.keys.clear()
        self.started = asyncio.Event()
        self.finished = 0


board = _Board()


@pytest.fixture(autouse=True)
def _fresh_board() -> None:
    board.reset()


class StuckOnce(Step):
    """Blocks forever on its first execution (the app closes meanwhile); finishes after that."""

    events = ("done",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.keys.append(context.idempotency_key)
        if len(board.keys) == 1:
            board.started.set()
            await asyncio.Event().wait()
        board.finished += 1
        return Ok("done", {"executions": len(board.keys)})


class CrashFlow(Workflow):
    unique = Unique(key="crash")
    start_step = StuckOnce
    transitions = {(StuckOnce, "done"): Done}


async def test_a_step_interrupted_by_close_is_re_executed_after_reopen(
    storage: Storage, clock: FakeClock
) -> None:
    """The step in flight when the app closed runs again (same idempotency key) and completes."""
    async with Hephaestus(storage=storage, clock=clock):
        await CrashFlow.start("one")
        async with asyncio.timeout(BOUND):
            await board.started.wait()
        left = await CrashFlow.get("one")
    assert left.status is Status.RUNNING
    assert left.active_steps == ("stuck_once",)
    assert board.finished == 0

    async with Hephaestus(storage=storage, clock=clock) as app:
        await run_until_idle(app)
        instance = await CrashFlow.get("one")
    assert instance.status is Status.COMPLETED
    assert instance.run_id == left.run_id
    assert board.finished == 1
    assert len(board.keys) == 2
    assert board.keys[0] == board.keys[1] == f"crash::one/{left.run_id}/stuck_once/1"
    assert instance.context.steps["stuck_once"] == {"executions": 2}


class FailsFirst(Step):
    events = ("ok",)
    retry = RetryPolicy(max_attempts=2, initial_delay=30)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.keys.append(context.idempotency_key)
        if context.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "ok"


class Backoff(Workflow):
    unique = Unique(key="backoff")
    start_step = FailsFirst
    transitions = {(FailsFirst, "ok"): Done}


async def test_a_retry_waiting_out_its_backoff_is_re_armed_after_reopen(
    storage: Storage, clock: FakeClock
) -> None:
    """A retry scheduled before close runs at its original due time after the app reopens."""
    async with Hephaestus(storage=storage, clock=clock) as app:
        await Backoff.start("one")
        await advance(app, 10)
    assert clock.pending == 0

    async with Hephaestus(storage=storage, clock=clock) as app:
        assert clock.pending == 1
        await advance(app, 19)
        assert len(board.keys) == 1
        await advance(app, 1)
        instance = await Backoff.get("one")
    assert instance.status is Status.COMPLETED
    assert [key.rsplit("/", 1)[1] for key in board.keys] == ["1", "2"]


class Snooze(Workflow):
    unique = Unique(key="snooze")
    start_step = (Wait, {"duration": 10})
    transitions = {(Wait, "timeout"): Done}


async def test_a_waiting_run_gets_its_timer_back_after_reopen(
    storage: Storage, clock: FakeClock
) -> None:
    """A run waiting on a ``Wait`` timer is re-armed on recovery and completes when it is due."""
    async with Hephaestus(storage=storage, clock=clock) as app:
        await Snooze.start("one")
        await advance(app, 4)
        assert (await Snooze.get("one")).status is Status.WAITING
    assert clock.pending == 0, "closing the app must disarm its timers"

    async with Hephaestus(storage=storage, clock=clock) as app:
        assert clock.pending == 1
        await advance(app, 5)
        assert (await Snooze.get("one")).status is Status.WAITING
        await advance(app, 1)
        instance = await Snooze.get("one")
    assert instance.status is Status.COMPLETED
    assert instance.steps["wait"].event == "timeout"


async def test_a_timer_due_while_closed_fires_right_after_reopen(
    storage: Storage, clock: FakeClock
) -> None:
    """A timer whose deadline passed while no app was open fires as soon as the clock is driven."""
    async with Hephaestus(storage=storage, clock=clock) as app:
        await Snooze.start("one")
        await run_until_idle(app)
    clock.advance(60)

    async with Hephaestus(storage=storage, clock=clock) as app:
        await advance(app, 0)
        assert (await Snooze.get("one")).status is Status.COMPLETED


class Parked(Workflow):
    unique = Unique(key="parked")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


async def test_recover_false_leaves_runs_alone_until_touched(
    storage: Storage, clock: FakeClock
) -> None:
    """Without recovery nothing resumes on its own; a resume or cancel adopts the run."""
    async with Hephaestus(storage=storage, clock=clock) as app:
        await Snooze.start("one")
        await Parked.start("one")
        await Parked.start("two")
        await run_until_idle(app)
        await CrashFlow.start("one")
        async with asyncio.timeout(BOUND):
            await board.started.wait()

    async with Hephaestus(storage=storage, clock=clock, recover=False) as app:
        await run_until_idle(app)
        assert clock.pending == 0
        await advance(app, 60)
        assert len(board.keys) == 1
        assert (await CrashFlow.get("one")).status is Status.RUNNING
        assert (await Snooze.get("one")).status is Status.WAITING

        await Parked.resume("one", "received", {"late": True})
        await Parked.cancel("two")
        await run_until_idle(app)
        assert (await Parked.get("one")).status is Status.COMPLETED
        assert (await Parked.get("one")).context.steps["wait_for_event"] == {"late": True}
        assert (await Parked.get("two")).status is Status.CANCELLED
        assert (await CrashFlow.get("one")).status is Status.RUNNING


async def test_a_stored_run_of_an_unknown_workflow_is_logged_and_skipped(
    storage: Storage, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Recovery skips the runs of a workflow no class defines and recovers the rest; it logs
    one line for that workflow, however many runs it has, with their count and the fix."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    orphan = Instance(
        id="ghost::one",
        run_id="ghost-run",
        workflow="nowhere.GhostFlow",
        workflow_version=1,
        family="nowhere.GhostFlow",
        status=Status.RUNNING,
        context=Context(initial={}, steps={}),
        created_at=now,
        updated_at=now,
        steps={"haunt": StepState(StepStatus.ACTIVE)},
    )
    others = [replace(orphan, id=f"ghost::{n}", run_id=f"ghost-run-{n}") for n in (2, 3)]
    await storage.open()
    try:
        for run in (orphan, *others):
            await storage.create(run)
    finally:
        await storage.close()
    async with Hephaestus(storage=storage, clock=clock) as app:
        await Snooze.start("one")
        await run_until_idle(app)

    caplog.clear()  # the first open reported them too: one line per open and workflow
    with caplog.at_level(logging.ERROR, logger="hephaestus"):
        async with Hephaestus(storage=storage, clock=clock) as app:
            await advance(app, 10)
            assert (await Snooze.get("one")).status is Status.COMPLETED
            stored = await app.storage.get("ghost-run")
    assert stored == orphan
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    ghost = [m for m in messages if "nowhere.GhostFlow" in m]
    assert len(ghost) == 1, messages
    assert "cannot recover 3 run(s) of nowhere.GhostFlow" in ghost[0]
    assert "ghost::one" in ghost[0]
    assert "import the module that defines it" in ghost[0]


async def test_a_pending_run_is_started_on_recovery(storage: Storage, clock: FakeClock) -> None:
    """A run stored ``pending`` (persisted before its first decision) is begun on open."""
    now = clock.now()
    pending = Instance(
        id="snooze::queued",
        run_id="queued-run",
        workflow=Snooze.name,
        workflow_version=1,
        family=Snooze.name,
        status=Status.PENDING,
        context=Context(initial={"from": "outbox"}, steps={}),
        created_at=now,
        updated_at=now,
    )
    await storage.open()
    try:
        await storage.create(pending)
    finally:
        await storage.close()

    async with Hephaestus(storage=storage, clock=clock) as app:
        await run_until_idle(app)
        begun = await Snooze.get("queued")
        assert begun.status is Status.WAITING
        await advance(app, 10)
        instance = await Snooze.get("queued")
    assert instance.status is Status.COMPLETED
    assert instance.run_id == "queued-run"
    assert instance.context.initial == {"from": "outbox"}
    assert [e.kind for e in instance.history].count(HistoryKind.STARTED) == 1
