"""The local runner through the public API: concurrency, threads, retries, timeouts, cancel."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import pytest

from hephaestus import (
    Config,
    Done,
    Error,
    HistoryKind,
    Ok,
    RetryPolicy,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    StepStatus,
    Unique,
    Wait,
    WaitForEvent,
    Workflow,
)
from hephaestus.testing import advance, run_until_idle

if TYPE_CHECKING:
    from hephaestus import Hephaestus
    from hephaestus.testing import FakeClock

BOUND = 5.0
"""Seconds a test waits for something that should happen at once; a failure, never a hang."""


class _Board:
    """What the module's steps report to the test that runs them (reset before each test)."""

    def __init__(self) -> None:
        self.signals: dict[str, asyncio.Event] = {}
        self.threads: dict[str, int] = {}
        self.keys: list[str] = []
        self.flags: set[str] = set()

    def reset(self) -> None:
        self.signals.clear()
        self.threads.clear()
        self.keys.clear()
        self.flags.clear()

    def signal(self, name: str) -> asyncio.Event:
        return self.signals.setdefault(name, asyncio.Event())


board = _Board()


@pytest.fixture(autouse=True)
def _fresh_board() -> None:
    board.reset()


# -- concurrency ------------------------------------------------------------------------------


class Fork(Step):
    events = ("go",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "go"


class Left(Step):
    events = ("met",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.signal("left").set()
        await board.signal("right").wait()
        return "met"


class Right(Step):
    events = ("met",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.signal("right").set()
        await board.signal("left").wait()
        return "met"


class Meet(Step):
    events = ("joined",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "joined"


class ConcurrentFlow(Workflow):
    unique = Unique(key="concurrent")
    start_step = Fork
    transitions = {
        (Fork, "go"): [Left, Right],
        (Left, "met"): Meet,
        (Right, "met"): Meet,
        (Meet, "joined"): Done,
    }


async def test_active_steps_of_one_run_execute_concurrently(app: Hephaestus) -> None:
    """Two fan-out branches that each wait for the other finish, so they run at the same time."""
    await ConcurrentFlow.start("one")
    async with asyncio.timeout(BOUND):
        await run_until_idle(app)
    instance = await ConcurrentFlow.get("one")
    assert instance.status is Status.COMPLETED
    assert set(instance.completed_steps) >= {"fork", "left", "right", "meet", "done"}


# -- threads ----------------------------------------------------------------------------------


class SyncStep(Step):
    events = ("recorded",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.threads["sync"] = threading.get_ident()
        return "recorded"


class AsyncStep(Step):
    events = ("recorded",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.threads["async"] = threading.get_ident()
        return "recorded"


class ThreadFlow(Workflow):
    unique = Unique(key="threads")
    start_step = SyncStep
    transitions = {(SyncStep, "recorded"): AsyncStep, (AsyncStep, "recorded"): Done}


async def test_sync_steps_run_in_a_worker_thread(app: Hephaestus) -> None:
    """A plain ``def`` step runs off the event loop's thread; an ``async def`` step runs on it."""
    await ThreadFlow.start("one")
    await run_until_idle(app)
    assert (await ThreadFlow.get("one")).status is Status.COMPLETED
    loop_thread = threading.get_ident()
    assert board.threads["async"] == loop_thread
    assert board.threads["sync"] != loop_thread


# -- retries ----------------------------------------------------------------------------------


class Flaky(Step):
    events = ("ok",)
    retry = RetryPolicy(max_attempts=3, initial_delay=5)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.keys.append(context.idempotency_key)
        if context.attempt < 3:
            raise RuntimeError(f"flaky attempt {context.attempt}")
        return Ok("ok", {"attempts": context.attempt})


class RetryFlow(Workflow):
    unique = Unique(key="retry")
    start_step = Flaky
    transitions = {(Flaky, "ok"): Done}


async def test_a_failing_step_is_retried_with_backoff_until_it_succeeds(
    app: Hephaestus, clock: FakeClock
) -> None:
    """Attempts wait 5 s then 10 s of fake time; each has its own idempotency key and history."""
    await RetryFlow.start("one")
    await run_until_idle(app)
    assert len(board.keys) == 1
    assert clock.pending == 1

    await advance(app, 4.9)
    assert len(board.keys) == 1, "the retry ran before its 5 s backoff"
    await advance(app, 0.1)
    assert len(board.keys) == 2

    await advance(app, 9.9)
    assert len(board.keys) == 2, "the second retry ran before its 10 s backoff"
    await advance(app, 0.1)
    assert len(board.keys) == 3

    instance = await RetryFlow.get("one")
    assert instance.status is Status.COMPLETED
    assert instance.context.steps["flaky"] == {"attempts": 3}
    assert board.keys == [f"{instance.id}/{instance.run_id}/flaky/{n}" for n in (1, 2, 3)]
    assert len(set(board.keys)) == 3
    flaky = [(e.kind, e.attempt) for e in instance.history if e.step == "flaky"]
    assert flaky == [
        (HistoryKind.STEP_RETRYING, 1),
        (HistoryKind.STEP_RETRYING, 2),
        (HistoryKind.STEP_COMPLETED, 3),
    ]
    errors = [e.error for e in instance.history if e.kind is HistoryKind.STEP_RETRYING]
    assert [e.message for e in errors if e is not None] == ["flaky attempt 1", "flaky attempt 2"]


async def test_cancel_during_a_retry_backoff_drops_the_retry(
    app: Hephaestus, clock: FakeClock
) -> None:
    """A retry waiting out its backoff is disarmed by cancel and never runs."""
    await RetryFlow.start("one")
    await run_until_idle(app)
    assert clock.pending == 1
    await RetryFlow.cancel("one")
    assert clock.pending == 0
    await advance(app, 60)
    assert len(board.keys) == 1
    instance = await RetryFlow.get("one")
    assert instance.status is Status.CANCELLED
    assert instance.steps["flaky"].status is StepStatus.CANCELLED


class AlwaysFails(Step):
    events = ("ok",)
    retry = RetryPolicy(max_attempts=2, initial_delay=1)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.keys.append(context.idempotency_key)
        raise ValueError("boom")


class ExhaustedFlow(Workflow):
    unique = Unique(key="exhausted")
    start_step = AlwaysFails
    transitions = {(AlwaysFails, "ok"): Done}


async def test_exhausted_retries_fail_the_run_with_its_error(app: Hephaestus) -> None:
    """When the last attempt fails the run is failed and carries the last attempt's error."""
    await ExhaustedFlow.start("one")
    await run_until_idle(app, skip_timers=True)
    instance = await ExhaustedFlow.get("one")
    assert instance.status is Status.FAILED
    assert len(board.keys) == 2
    error = instance.error
    assert error is not None
    assert (error.kind, error.message, error.step, error.attempt) == (
        "exception",
        "boom",
        "always_fails",
        2,
    )
    assert error.type == "builtins.ValueError"
    assert error.traceback is not None
    assert "ValueError: boom" in error.traceback
    assert instance.steps["always_fails"].status is StepStatus.FAILED
    assert instance.history[-1].kind is HistoryKind.FAILED


class Declines(Step):
    events = ("ok",)
    retry = RetryPolicy(max_attempts=5, initial_delay=1)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.keys.append(context.idempotency_key)
        return Error("card declined", retryable=False)


class DeclineFlow(Workflow):
    unique = Unique(key="decline")
    start_step = Declines
    transitions = {(Declines, "ok"): Done}


async def test_a_non_retryable_error_fails_at_once(app: Hephaestus, clock: FakeClock) -> None:
    """``Error(retryable=False)`` fails the run after one attempt despite retries being left."""
    await DeclineFlow.start("one")
    await run_until_idle(app)
    instance = await DeclineFlow.get("one")
    assert instance.status is Status.FAILED
    assert len(board.keys) == 1
    assert clock.pending == 0
    assert instance.error is not None
    assert (instance.error.kind, instance.error.message) == ("error", "card declined")


# -- step timeout -----------------------------------------------------------------------------


class Sluggish(Step):
    events = ("ok",)
    timeout = 0.05
    retry = RetryPolicy(max_attempts=1)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        await board.signal("never").wait()
        board.flags.add("sluggish.finished")
        return "ok"


class TimeoutFlow(Workflow):
    unique = Unique(key="slow")
    start_step = Sluggish
    transitions = {(Sluggish, "ok"): Done}


async def test_a_step_over_its_timeout_fails_with_kind_timeout(app: Hephaestus) -> None:
    """An attempt that outlives ``Step.timeout`` is stopped and fails with kind ``timeout``."""
    await TimeoutFlow.start("one")
    async with asyncio.timeout(BOUND):
        await run_until_idle(app)
    instance = await TimeoutFlow.get("one")
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert instance.error.kind == "timeout"
    assert instance.error.step == "sluggish"
    assert "sluggish.finished" not in board.flags


# -- waiting with a timeout -------------------------------------------------------------------


class Accepted(Step):
    events = ("accepted",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "accepted"


class Expired(Step):
    events = ("expired",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "expired"


class ApprovalFlow(Workflow):
    unique = Unique(key="approval")
    start_step = (WaitForEvent, {"timeout": 30})
    transitions = {
        (WaitForEvent, "received"): Accepted,
        (WaitForEvent, "timeout"): Expired,
        (Accepted, "accepted"): Done,
        (Expired, "expired"): Done,
    }


async def test_wait_for_event_with_a_timeout_routes_on_timeout(
    app: Hephaestus, clock: FakeClock
) -> None:
    """With no resume within 30 s of fake time the waiting step emits ``timeout``."""
    await ApprovalFlow.start("one")
    await run_until_idle(app)
    waiting = await ApprovalFlow.get("one")
    assert waiting.status is Status.WAITING
    assert waiting.waiting_steps == ("wait_for_event",)
    assert clock.pending == 1

    await advance(app, 29.9)
    assert (await ApprovalFlow.get("one")).status is Status.WAITING
    await advance(app, 0.1)

    instance = await ApprovalFlow.get("one")
    assert instance.status is Status.COMPLETED
    assert instance.steps["wait_for_event"].event == "timeout"
    assert "expired" in instance.completed_steps
    assert instance.steps["accepted"].status is StepStatus.SKIPPED
    resumed = [e for e in instance.history if e.kind is HistoryKind.STEP_RESUMED]
    assert [(e.step, e.event, e.source) for e in resumed] == [
        ("wait_for_event", "timeout", "timer")
    ]


async def test_a_resume_before_the_timeout_cancels_the_timer(
    app: Hephaestus, clock: FakeClock
) -> None:
    """Resuming a step that waits with a timeout disarms its timer and takes the other branch."""
    await ApprovalFlow.start("one")
    await run_until_idle(app)
    await ApprovalFlow.resume("one", "received", {"by": "alice"})
    await run_until_idle(app)
    assert clock.pending == 0
    instance = await ApprovalFlow.get("one")
    assert instance.status is Status.COMPLETED
    assert instance.context.steps["wait_for_event"] == {"by": "alice"}
    assert instance.steps["expired"].status is StepStatus.SKIPPED


# -- cancel -----------------------------------------------------------------------------------


class Blocking(Step):
    events = ("finished",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.signal("blocking.started").set()
        try:
            await board.signal("blocking.release").wait()
        except asyncio.CancelledError:
            board.flags.add("blocking.cancelled")
            raise
        board.flags.add("blocking.finished")
        return "finished"


class BlockingFlow(Workflow):
    unique = Unique(key="blocking")
    start_step = Blocking
    transitions = {(Blocking, "finished"): Done}


async def test_cancel_stops_a_running_step(app: Hephaestus) -> None:
    """Cancelling a run cancels its in-flight step task, which never gets to finish."""
    await BlockingFlow.start("one")
    async with asyncio.timeout(BOUND):
        await board.signal("blocking.started").wait()
    await BlockingFlow.cancel("one", reason="changed my mind")
    async with asyncio.timeout(BOUND):
        await run_until_idle(app)
    board.signal("blocking.release").set()  # too late: nothing is left to wake
    await run_until_idle(app)

    instance = await BlockingFlow.get("one")
    assert instance.status is Status.CANCELLED
    assert instance.steps["blocking"].status is StepStatus.CANCELLED
    assert board.flags == {"blocking.cancelled"}
    last = instance.history[-1]
    assert last.kind is HistoryKind.CANCELLED
    assert last.data == {"reason": "changed my mind"}


class Nap(Workflow):
    unique = Unique(key="nap")
    start_step = (Wait, {"duration": 1, "unit": "minute"})
    transitions = {(Wait, "timeout"): Done}


async def test_cancel_during_a_wait_disarms_its_timer(app: Hephaestus, clock: FakeClock) -> None:
    """Cancelling a waiting run drops its timer, so advancing past it changes nothing."""
    await Nap.start("one")
    await run_until_idle(app)
    assert (await Nap.get("one")).status is Status.WAITING
    assert clock.pending == 1

    await Nap.cancel("one")
    assert clock.pending == 0
    cancelled = await Nap.get("one")
    await advance(app, 3600)
    after = await Nap.get("one")
    assert after.status is Status.CANCELLED
    assert after.revision == cancelled.revision
    assert after.history == cancelled.history
    assert after.steps["wait"].status is StepStatus.CANCELLED


async def test_wait_fires_after_its_duration(app: Hephaestus) -> None:
    """A ``Wait`` of one minute completes the run exactly when a minute of fake time passes."""
    await Nap.start("one")
    await advance(app, 59)
    assert (await Nap.get("one")).status is Status.WAITING
    await advance(app, 1)
    assert (await Nap.get("one")).status is Status.COMPLETED
