"""The runner contract: what every runner does, run on each runner and each storage.

Each test speaks only the public API (the workflow facade, ``hephaestus.testing``), so a new
runner passes this module unchanged once it is added to ``RUNNERS`` in the conftest. Time is a
``FakeClock`` driven by the testing helpers, which work on any runner.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import pytest

from hephaestus import (
    Async,
    Config,
    Done,
    Hephaestus,
    HistoryKind,
    Instance,
    InstanceAlreadyRunningError,
    Ok,
    RetryPolicy,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    StepStatus,
    Unique,
    WaitForEvent,
    Workflow,
    telemetry,
)
from hephaestus.errors import ValueRejectedError
from hephaestus.storage.postgres import PostgresStorage
from hephaestus.testing import advance, run_until_idle

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping

    from hephaestus.runners import Changes, Runner
    from hephaestus.storage import Storage, StorageTransaction
    from hephaestus.testing import FakeClock

BOUND = 5.0
"""Seconds a test waits for something that should happen at once; a failure, never a hang."""


class _Board:
    """What the module's steps report to the test that runs them (reset before each test)."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.keys: list[str] = []
        self.signals: dict[str, asyncio.Event] = {}

    def reset(self) -> None:
        self.log.clear()
        self.keys.clear()
        self.signals.clear()

    def signal(self, name: str) -> asyncio.Event:
        return self.signals.setdefault(name, asyncio.Event())


board = _Board()


@pytest.fixture(autouse=True)
def _fresh_board() -> None:
    board.reset()


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait (real time, at most ``BOUND``) until ``await check()`` holds."""
    async with asyncio.timeout(BOUND):
        while True:
            if await check():
                return
            await asyncio.sleep(0.001)


def seconds(instance: Instance, kind: HistoryKind) -> list[float]:
    """When the run's ``kind`` history entries happened, in seconds since it was created."""
    return [
        (entry.at - instance.created_at).total_seconds()
        for entry in instance.history
        if entry.kind is kind
    ]


# -- linear -----------------------------------------------------------------------------------


class Fetch(Step):
    events = ("fetched",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.log.append("fetch")
        return Ok("fetched", {"items": [1, 2, 3]})


class Total(Step):
    events = ("totalled",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.log.append("total")  # a plain def step: runs in a thread
        items = context.steps["fetch"]["items"]
        return Ok("totalled", {"sum": sum(items)})


class Report(Step):
    events = ("reported",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.log.append("report")
        return Ok("reported", {"text": f"sum={context.steps['total']['sum']}"})


class Linear(Workflow):
    unique = Unique(key="rclinear")
    start_step = Fetch
    transitions = {
        (Fetch, "fetched"): Total,
        (Total, "totalled"): Report,
        (Report, "reported"): Done,
    }


async def test_a_linear_chain_runs_each_step_once_in_order(app: Hephaestus) -> None:
    """Each step runs once, after the one before it, and sees its results in the context."""
    await Linear.start("a1")
    await run_until_idle(app)
    run = await Linear.get("a1")
    assert run.status is Status.COMPLETED
    assert board.log == ["fetch", "total", "report"]
    assert run.completed_steps == ("fetch", "total", "report", "done")
    assert run.context.steps["report"] == {"text": "sum=6"}


# -- branch -----------------------------------------------------------------------------------


class Classify(Step):
    events = ("big", "small")

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "big" if context.initial["n"] > 10 else "small"


class Big(Step):
    events = ("handled",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.log.append("big")
        return "handled"


class Small(Step):
    events = ("handled",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.log.append("small")
        return "handled"


class Branch(Workflow):
    unique = Unique(key="rcbranch")
    start_step = Classify
    transitions = {
        (Classify, "big"): Big,
        (Classify, "small"): Small,
        (Big, "handled"): Done,
        (Small, "handled"): Done,
    }


async def test_the_event_a_step_returns_picks_the_branch(app: Hephaestus) -> None:
    """A step's event routes the run down one branch; the other one never runs."""
    await Branch.start("b1", {"n": 50})
    await Branch.start("b2", {"n": 5})
    await run_until_idle(app)
    big, small = await Branch.get("b1"), await Branch.get("b2")
    assert (big.status, small.status) == (Status.COMPLETED, Status.COMPLETED)
    assert big.completed_steps == ("classify", "big", "done")
    assert small.completed_steps == ("classify", "small", "done")
    assert sorted(board.log) == ["big", "small"]


# -- fan-out / fan-in -------------------------------------------------------------------------


class Split(Step):
    events = ("split",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "split"


class Pack(Step):
    events = ("packed",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.log.append("pack")
        return Ok("packed", {"boxes": 2})


class Charge(Step):
    events = ("charged",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.log.append("charge")
        return Ok("charged", {"amount": 30})


class Ship(Step):
    events = ("shipped",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.log.append("ship")
        steps = context.steps
        return Ok("shipped", {"seen": [steps["pack"]["boxes"], steps["charge"]["amount"]]})


class FanOut(Workflow):
    unique = Unique(key="rcfan")
    start_step = Split
    transitions = {
        (Split, "split"): [Pack, Charge],
        (Pack, "packed"): Ship,
        (Charge, "charged"): Ship,
        (Ship, "shipped"): Done,
    }


async def test_an_all_join_runs_once_after_every_branch(app: Hephaestus) -> None:
    """Both branches of a fan-out run; the join after them runs once and sees both results."""
    await FanOut.start("f1")
    await run_until_idle(app)
    run = await FanOut.get("f1")
    assert run.status is Status.COMPLETED
    assert sorted(board.log[:2]) == ["charge", "pack"]
    assert board.log[2:] == ["ship"]
    assert run.context.steps["ship"] == {"seen": [2, 30]}


class Review(Step):
    events = ("approved", "rejected")

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "approved" if context.initial["ok"] else "rejected"


class Approve(Step):
    events = ("noted",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "noted"


class Reject(Step):
    events = ("noted",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "noted"


class Archive(Step):
    events = ("archived",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.log.append("archive")
        return "archived"


class AnyJoin(Workflow):
    unique = Unique(key="rcany")
    start_step = Review
    transitions = {
        (Review, "approved"): Approve,
        (Review, "rejected"): Reject,
        (Approve, "noted"): Archive,  # exclusive alternatives: Archive joins with "any"
        (Reject, "noted"): Archive,
        (Archive, "archived"): Done,
    }


async def test_an_any_join_runs_after_the_branch_that_was_taken(app: Hephaestus) -> None:
    """An ``any`` join runs once after the one alternative taken; the other is skipped."""
    await AnyJoin.start("y1", {"ok": False})
    await run_until_idle(app)
    run = await AnyJoin.get("y1")
    assert run.status is Status.COMPLETED
    assert board.log == ["archive"]
    assert run.steps["reject"].status is StepStatus.COMPLETED
    assert run.steps["approve"].status is StepStatus.SKIPPED
    assert run.steps["archive"].status is StepStatus.COMPLETED


# -- retries and step timeouts ----------------------------------------------------------------


class Flaky(Step):
    """Fails twice, then succeeds."""

    events = ("ok",)
    retry = RetryPolicy(max_attempts=3, initial_delay=2, backoff="exponential")

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.keys.append(context.idempotency_key)
        board.log.append(f"attempt {context.attempt}")
        if context.attempt < 3:
            raise ConnectionError(f"down (attempt {context.attempt})")
        return Ok("ok", {"attempts": context.attempt})


class Retrying(Workflow):
    unique = Unique(key="rcretry")
    start_step = Flaky
    transitions = {(Flaky, "ok"): Done}


async def test_a_failing_step_is_retried_after_its_backoff_delays(app: Hephaestus) -> None:
    """Attempts 2 and 3 run exactly 2 s and then 4 s after the failures, never earlier."""
    await Retrying.start("r1")
    await run_until_idle(app)
    assert board.log == ["attempt 1"]
    await advance(app, 1.9)
    assert board.log == ["attempt 1"]
    await advance(app, 0.1)
    assert board.log == ["attempt 1", "attempt 2"]
    await advance(app, 3.9)
    assert len(board.log) == 2
    await advance(app, 0.1)
    run = await Retrying.get("r1")
    assert run.status is Status.COMPLETED
    assert board.log == ["attempt 1", "attempt 2", "attempt 3"]
    assert run.context.steps["flaky"] == {"attempts": 3}
    assert seconds(run, HistoryKind.STEP_RETRYING) == [0.0, 2.0]
    assert seconds(run, HistoryKind.COMPLETED) == [6.0]
    prefix = f"{run.id}/{run.run_id}/flaky"
    assert board.keys == [f"{prefix}/1", f"{prefix}/2", f"{prefix}/3"]


class Hangs(Step):
    """Never returns: its timeout fails the attempt."""

    events = ("never",)
    timeout = 0.05
    retry = RetryPolicy(max_attempts=2, initial_delay=1)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.log.append(f"attempt {context.attempt}")
        await asyncio.Event().wait()
        return "never"


class TimesOut(Workflow):
    unique = Unique(key="rctimeout")
    start_step = Hangs
    transitions = {(Hangs, "never"): Done}


async def test_a_step_that_exceeds_its_timeout_fails_and_is_retried(app: Hephaestus) -> None:
    """Each attempt past the step's timeout fails with kind ``timeout``; then the run fails."""
    await TimesOut.start("t1")
    async with asyncio.timeout(BOUND):
        await run_until_idle(app, skip_timers=True)
    run = await TimesOut.get("t1")
    assert board.log == ["attempt 1", "attempt 2"]
    assert run.status is Status.FAILED
    assert run.error is not None
    assert (run.error.kind, run.error.step) == ("timeout", "hangs")


class MakesRefused(Step):
    events = ("made",)
    retry = RetryPolicy(max_attempts=2, initial_delay=1)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.log.append(f"attempt {context.attempt}")
        return Ok("made", {"name": REFUSED})


class Refused(Workflow):
    unique = Unique(key="rcrefused")
    start_step = MakesRefused
    transitions = {(MakesRefused, "made"): Done}


REFUSED = "refused by the storage"


class _RefusingTransaction:
    """A unit of work whose writes refuse ``REFUSED``, as PostgreSQL refuses a NUL character."""

    def __init__(self, tx: StorageTransaction) -> None:
        self._tx = tx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)  # what a runner adds of its own (a connection) passes

    async def get(self, run_id: str, *, lock: bool = True) -> Instance:
        return await self._tx.get(run_id, lock=lock)

    async def create(self, instance: Instance) -> None:
        await self._tx.create(instance)

    async def put(
        self, instance: Instance, previous: Instance | None = None, changes: Changes | None = None
    ) -> None:
        refuse(instance)
        await self._tx.put(instance, previous, changes)

    def after_commit(self, callback: Callable[[], object]) -> None:
        self._tx.after_commit(callback)


def refuse(instance: Instance) -> None:
    if REFUSED in repr(instance.context.steps):
        raise ValueRejectedError("the database refused a value (SQLSTATE 22P05)", sqlstate="22P05")


async def test_a_result_the_storage_refuses_fails_the_attempt(
    storage: Storage, clock: FakeClock, new_runner: Callable[[], Runner]
) -> None:
    """A result the storage refuses fails the attempt (``invalid_result``), retried per policy."""
    put, transaction = storage.put, storage.transaction

    async def refusing_put(
        instance: Instance, previous: Instance | None = None, changes: Changes | None = None
    ) -> None:
        refuse(instance)
        await put(instance, previous, changes)

    @contextlib.asynccontextmanager
    async def refusing_transaction() -> AsyncIterator[StorageTransaction]:
        async with transaction() as tx:
            yield _RefusingTransaction(tx)

    storage.put = refusing_put  # type: ignore[method-assign]
    storage.transaction = refusing_transaction  # type: ignore[method-assign]
    if isinstance(storage, PostgresStorage):  # the Oban runner's group writes encode here
        write_item = storage.write_item

        def refusing_item(
            instance: Instance, previous: Instance | None, changes: Changes | None
        ) -> str:
            refuse(instance)
            return write_item(instance, previous, changes)

        storage.write_item = refusing_item  # type: ignore[method-assign]
    async with Hephaestus(storage=storage, clock=clock, runner=new_runner()) as app:
        await Refused.start("x1")
        await run_until_idle(app, skip_timers=True)
        run = await Refused.get("x1")
    assert board.log == ["attempt 1", "attempt 2"]
    assert run.status is Status.FAILED
    assert run.error is not None
    assert (run.error.kind, run.error.step) == ("invalid_result", "makes_refused")
    assert "SQLSTATE 22P05" in run.error.message


# -- waiting: timers and events ---------------------------------------------------------------


class AwaitApproval(Step):
    events = ("approved", "expired")

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Async(timeout=30, timeout_event="expired")


class Expire(Step):
    events = ("closed",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.log.append("expire")
        return "closed"


class Approval(Workflow):
    unique = Unique(key="rcapproval")
    start_step = AwaitApproval
    transitions = {
        (AwaitApproval, "approved"): Done,
        (AwaitApproval, "expired"): Expire,
        (Expire, "closed"): Done,
    }


async def test_a_waiting_step_times_out_when_its_timer_is_due(app: Hephaestus) -> None:
    """An ``Async(timeout=30)`` step waits 30 s of clock time, then takes its timeout event."""
    await Approval.start("w1")
    await run_until_idle(app)
    assert (await Approval.get("w1")).waiting_steps == ("await_approval",)
    await advance(app, 29.9)
    assert (await Approval.get("w1")).status is Status.WAITING
    await advance(app, 0.1)
    run = await Approval.get("w1")
    assert run.status is Status.COMPLETED
    assert run.steps["await_approval"].event == "expired"
    assert board.log == ["expire"]
    assert seconds(run, HistoryKind.COMPLETED) == [30.0]


async def test_a_resume_before_the_timeout_disarms_the_timer(app: Hephaestus) -> None:
    """Resumed in time, the step takes the event; its timer never fires."""
    await Approval.start("w2")
    await run_until_idle(app)
    await advance(app, 10)
    await Approval.resume("w2", "approved", {"by": "ann"})
    await run_until_idle(app)
    run = await Approval.get("w2")
    assert run.status is Status.COMPLETED
    assert run.context.steps["await_approval"] == {"by": "ann"}
    await advance(app, 60)
    assert board.log == []
    assert (await Approval.get("w2")).revision == run.revision


class Prepare(Step):
    """Holds until the test opens the gate, so that a resume arrives before the wait."""

    events = ("prepared",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.signal("preparing").set()
        await board.signal("gate").wait()
        return "prepared"


class EarlyEvent(Workflow):
    unique = Unique(key="rcearly")
    start_step = Prepare
    transitions = {(Prepare, "prepared"): WaitForEvent, (WaitForEvent, "received"): Done}


async def test_a_resume_that_arrives_before_the_wait_is_delivered_when_it_waits(
    app: Hephaestus,
) -> None:
    """A resume while the run is still on an earlier step is kept, then delivered at the wait."""
    await EarlyEvent.start("e1")
    async with asyncio.timeout(BOUND):
        await board.signal("preparing").wait()
    await EarlyEvent.resume("e1", "received", {"early": True}, step="wait_for_event")
    held = await EarlyEvent.get("e1")
    assert [e.kind for e in held.history if e.step == "wait_for_event"] == [
        HistoryKind.RESUME_BUFFERED
    ]
    board.signal("gate").set()
    await run_until_idle(app)
    run = await EarlyEvent.get("e1")
    assert run.status is Status.COMPLETED
    assert run.context.steps["wait_for_event"] == {"early": True}


class Parcel(Workflow):
    unique = Unique(key="rcparcel")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


async def test_an_event_resumes_the_waiting_step_with_its_payload(app: Hephaestus) -> None:
    """``resume`` delivers the event to the waiting step; its payload becomes the result."""
    await Parcel.start("p1")
    await run_until_idle(app)
    assert (await Parcel.get("p1")).status is Status.WAITING
    await Parcel.resume("p1", "received", {"by": "courier"})
    await run_until_idle(app)
    run = await Parcel.get("p1")
    assert run.status is Status.COMPLETED
    assert run.context.steps["wait_for_event"] == {"by": "courier"}


async def test_a_scheduled_resume_is_delivered_when_due(app: Hephaestus) -> None:
    """``schedule_resume`` delivers its event at the clock time it names, not before."""
    await Parcel.start("p2")
    await run_until_idle(app)
    item = await Parcel.schedule_resume("p2", "wait_for_event", 10, event="received")
    assert (await Parcel.get("p2")).scheduled == (item,)
    await advance(app, 9.9)
    assert (await Parcel.get("p2")).status is Status.WAITING
    await advance(app, 0.1)
    run = await Parcel.get("p2")
    assert run.status is Status.COMPLETED
    assert run.scheduled == ()
    resumed = [e for e in run.history if e.kind is HistoryKind.STEP_RESUMED]
    assert [(e.source, (e.at - run.created_at).total_seconds()) for e in resumed] == [
        ("scheduled", 10.0)
    ]


# -- cancel -----------------------------------------------------------------------------------


class Blocker(Step):
    """Runs until cancelled, and notes that it was."""

    events = ("unblocked",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.signal("blocking").set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            board.log.append("blocker cancelled")
            raise
        return "unblocked"


class Meet(Step):
    events = ("met",)
    join = "all"

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "met"


class Cancellable(Workflow):
    unique = Unique(key="rccancel")
    start_step = Split
    transitions = {
        (Split, "split"): [(WaitForEvent, {"timeout": 60}), Blocker],
        (WaitForEvent, "received"): Meet,
        (WaitForEvent, "timeout"): Meet,
        (Blocker, "unblocked"): Meet,
        (Meet, "met"): Done,
    }


async def test_cancel_stops_the_step_in_flight_and_disarms_the_timers(app: Hephaestus) -> None:
    """A cancelled run is final at once; its executing step is stopped, its timer never fires."""

    async def waiting() -> bool:
        state = (await Cancellable.get("c1")).steps.get("wait_for_event")
        return state is not None and state.status is StepStatus.WAITING  # its 60 s timer armed

    async def stopped() -> bool:
        return board.log == ["blocker cancelled"]

    await Cancellable.start("c1")
    async with asyncio.timeout(BOUND):
        await board.signal("blocking").wait()
    await eventually(waiting)
    await Cancellable.cancel("c1", reason="changed mind")
    cancelled = await Cancellable.get("c1")
    assert cancelled.status is Status.CANCELLED
    await eventually(stopped)
    await advance(app, 120)
    run = await Cancellable.get("c1")
    assert run.status is Status.CANCELLED
    assert run.revision == cancelled.revision  # nothing happened after the cancel
    assert run.history[-1].kind is HistoryKind.CANCELLED
    assert run.history[-1].data == {"reason": "changed mind"}


# -- recovery after a crash -------------------------------------------------------------------


class StuckOnce(Step):
    """Hangs on its first execution (the app closes meanwhile); finishes after that."""

    events = ("done",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.keys.append(context.idempotency_key)
        if len(board.keys) == 1:
            board.signal("stuck").set()
            await asyncio.Event().wait()
        return Ok("done", {"executions": len(board.keys)})


class Crash(Workflow):
    unique = Unique(key="rccrash")
    start_step = StuckOnce
    transitions = {(StuckOnce, "done"): Done}


async def test_a_step_in_flight_at_a_crash_runs_again_after_reopening(
    storage: Storage, clock: FakeClock, new_runner: Callable[[], Runner]
) -> None:
    """Closed mid-step, the run is left active; a new app and runner finish it (same key)."""
    async with Hephaestus(storage=storage, clock=clock, runner=new_runner()):
        await Crash.start("k1")
        async with asyncio.timeout(BOUND):
            await board.signal("stuck").wait()
    async with Hephaestus(storage=storage, clock=clock, runner=new_runner(), recover=False):
        left = await Crash.get("k1")  # as the crash left it: nothing is taken over here
    async with Hephaestus(storage=storage, clock=clock, runner=new_runner()) as app:
        await run_until_idle(app)
        run = await Crash.get("k1")
    assert left.status is Status.RUNNING
    assert run.status is Status.COMPLETED
    assert run.run_id == left.run_id
    assert run.context.steps["stuck_once"] == {"executions": 2}
    assert board.keys[0] == board.keys[1]


async def test_a_retry_pending_at_a_crash_runs_when_due_after_reopening(
    storage: Storage, clock: FakeClock, new_runner: Callable[[], Runner]
) -> None:
    """A retry waiting for its backoff when the app closed runs at its time under a new app."""
    async with Hephaestus(storage=storage, clock=clock, runner=new_runner()) as app:
        await Retrying.start("k2")
        await run_until_idle(app)
    assert board.log == ["attempt 1"]
    async with Hephaestus(storage=storage, clock=clock, runner=new_runner()) as app:
        await advance(app, 1.9)
        assert board.log == ["attempt 1"]
        await run_until_idle(app, skip_timers=True)
        run = await Retrying.get("k2")
    assert run.status is Status.COMPLETED
    assert board.log == ["attempt 1", "attempt 2", "attempt 3"]
    assert seconds(run, HistoryKind.COMPLETED) == [6.0]


async def test_a_timer_armed_at_a_crash_fires_after_reopening(
    storage: Storage, clock: FakeClock, new_runner: Callable[[], Runner]
) -> None:
    """A waiting step's timeout, and a scheduled resume, are re-armed by the next app."""
    async with Hephaestus(storage=storage, clock=clock, runner=new_runner()) as app:
        await Approval.start("k3")
        await Parcel.start("k4")
        await run_until_idle(app)
        await Parcel.schedule_resume("k4", "wait_for_event", 5, event="received")
    async with Hephaestus(storage=storage, clock=clock, runner=new_runner()) as app:
        await advance(app, 30)
        expired, parcel = await Approval.get("k3"), await Parcel.get("k4")
    assert expired.status is Status.COMPLETED
    assert expired.steps["await_approval"].event == "expired"
    assert parcel.status is Status.COMPLETED


async def test_recovery_leaves_the_runs_of_another_apps_workflows_alone(
    storage: Storage, clock: FakeClock, new_runner: Callable[[], Runner]
) -> None:
    """On a shared storage, an app takes over the runs of its own workflows only."""
    async with Hephaestus(storage=storage, clock=clock, runner=new_runner()) as app:
        await Approval.start("o1")  # waits, its timeout 30 s away
        await Retrying.start("o2")  # its second attempt 2 s away
        await run_until_idle(app)
        left = await Approval.get("o1")
    async with Hephaestus(
        storage=storage, clock=clock, runner=new_runner(), workflows=[Retrying]
    ) as app:
        await advance(app, 60)
        retried = await Retrying.get("o2")
        waiting = await app.get_instance("rcapproval::o1")
    assert retried.status is Status.COMPLETED
    assert (waiting.status, waiting.revision) == (Status.WAITING, left.revision)  # untouched
    async with Hephaestus(
        storage=storage, clock=clock, runner=new_runner(), workflows=[Approval]
    ) as app:
        await run_until_idle(app)  # its timer fell due meanwhile: fired on recovery
        expired = await Approval.get("o1")
    assert expired.status is Status.COMPLETED
    assert expired.steps["await_approval"].event == "expired"


# -- uniqueness -------------------------------------------------------------------------------


async def test_a_second_start_is_refused_while_the_first_run_is_active(app: Hephaestus) -> None:
    """Starting an active id again raises; once the run has completed it starts a new run."""
    await Parcel.start("u1")
    with pytest.raises(InstanceAlreadyRunningError):
        await Parcel.start("u1")  # at once: the first run is stored when start returns
    await run_until_idle(app)
    with pytest.raises(InstanceAlreadyRunningError):
        await Parcel.start("u1")
    first = await Parcel.get("u1")
    await Parcel.resume("u1", "received")
    await run_until_idle(app)
    await Parcel.start("u1")
    await run_until_idle(app)
    second = await Parcel.get("u1")
    assert second.run_id != first.run_id
    assert second.status is Status.WAITING
    runs = await Parcel.list()
    assert sorted(run.status for run in runs) == [Status.COMPLETED, Status.WAITING]


# -- versioning -------------------------------------------------------------------------------


class LegacyFulfil(Step):
    events = ("fulfilled",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("fulfilled", {"by": "legacy"})


class ModernFulfil(Step):
    events = ("fulfilled",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("fulfilled", {"by": "modern"})


class FulfilV1(Workflow):
    version = 1
    unique = Unique(key="rcfulfil")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): LegacyFulfil, (LegacyFulfil, "fulfilled"): Done}


class FulfilV2(Workflow):
    version = 2
    unique = Unique(key="rcfulfil")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): ModernFulfil, (ModernFulfil, "fulfilled"): Done}


class Fulfil(Workflow):
    unique = Unique(key="rcfulfil")
    versions = {1: FulfilV1, 2: FulfilV2}
    current = 2

    @classmethod
    def version_for(cls, value: str, context: Mapping[str, Any]) -> int | None:
        return 1 if context.get("legacy") else None


async def test_each_run_stays_on_the_version_it_started_with(app: Hephaestus) -> None:
    """Runs of one umbrella start on the version chosen then and run that version's steps."""
    await Fulfil.start("v1", {"legacy": True})
    await Fulfil.start("v2")
    await run_until_idle(app)
    assert (await Fulfil.get("v1")).workflow_version == 1
    assert (await Fulfil.get("v2")).workflow_version == 2
    await Fulfil.resume("v1", "received")
    await Fulfil.resume("v2", "received")
    await run_until_idle(app)
    legacy, modern = await Fulfil.get("v1"), await Fulfil.get("v2")
    assert (legacy.status, modern.status) == (Status.COMPLETED, Status.COMPLETED)
    assert (legacy.workflow, legacy.context.steps["legacy_fulfil"]) == (
        FulfilV1.name,
        {"by": "legacy"},
    )
    assert (modern.workflow, modern.context.steps["modern_fulfil"]) == (
        FulfilV2.name,
        {"by": "modern"},
    )


# -- telemetry --------------------------------------------------------------------------------


@pytest.fixture
def events() -> Iterator[list[tuple[str, str | None, Any, str]]]:
    """Every telemetry event emitted during the test: (name, step, detail, runner)."""
    seen: list[tuple[str, str | None, Any, str]] = []

    def handler(event: str, measurements: Mapping[str, float], metadata: Mapping[str, Any]) -> None:
        del measurements
        step = metadata.get("step") or metadata.get("from_step")
        detail = metadata.get("attempt", metadata.get("targets", metadata.get("status")))
        seen.append((event.removeprefix("hephaestus."), step, detail, metadata["runner"]))

    telemetry.attach("runner-contract", telemetry.EVENTS, handler)
    try:
        yield seen
    finally:
        telemetry.detach("runner-contract")


async def test_every_runner_emits_the_same_events_for_a_run(
    app: Hephaestus, events: list[tuple[str, str | None, Any, str]]
) -> None:
    """A run with a retry emits the same event sequence, naming the runner, on every runner."""
    await Retrying.start("m1")
    await run_until_idle(app, skip_timers=True)
    assert {runner for *_, runner in events} == {getattr(app.runner, "name", None)}
    assert [event[:3] for event in events] == [
        ("workflow.start", None, None),
        ("step.start", "flaky", 1),
        ("step.exception", "flaky", 1),
        ("step.start", "flaky", 2),
        ("step.exception", "flaky", 2),
        ("step.start", "flaky", 3),
        ("step.stop", "flaky", 3),
        ("workflow.transition", "flaky", ("done",)),
        ("workflow.stop", None, "completed"),
    ]
