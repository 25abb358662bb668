"""Telemetry emitted by the local runner: exact event sequences and handler isolation."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from hephaestus import (
    Config,
    Done,
    Hephaestus,
    Ok,
    RetryPolicy,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    WaitForEvent,
    Workflow,
    telemetry,
)
from hephaestus.testing import advance, run_until_idle

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from hephaestus.storage import Storage
    from hephaestus.testing import FakeClock

BOUND = 5.0
HANDLER_ID = "integration-tests"


@dataclass(frozen=True)
class Captured:
    event: str
    measurements: Mapping[str, float]
    metadata: Mapping[str, Any]

    @property
    def short(self) -> tuple[str, str | None]:
        """``("step.stop", "pack")``: the event without its prefix, and its (from) step."""
        step = self.metadata.get("step") or self.metadata.get("from_step")
        return self.event.removeprefix("hephaestus."), step


@pytest.fixture
def captured() -> Iterator[list[Captured]]:
    """Every telemetry event emitted during the test, in order."""
    seen: list[Captured] = []

    def handler(event: str, measurements: Mapping[str, float], metadata: Mapping[str, Any]) -> None:
        seen.append(Captured(event, dict(measurements), dict(metadata)))

    telemetry.attach(HANDLER_ID, telemetry.EVENTS, handler)
    yield seen
    telemetry.detach(HANDLER_ID)


def trail(captured: list[Captured], instance_id: str) -> list[tuple[str, str | None]]:
    return [c.short for c in captured if c.metadata["instance_id"] == instance_id]


class _Board:
    def __init__(self) -> None:
        self.signals: dict[str, asyncio.Event] = {}
        self.executions = 0

    def reset(self) -> None:
        self.signals.clear()
        self.executions = 0

    def signal(self, name: str) -> asyncio.Event:
        return self.signals.setdefault(name, asyncio.Event())


board = _Board()


@pytest.fixture(autouse=True)
def _fresh_board() -> None:
    board.reset()


# -- linear -----------------------------------------------------------------------------------


class Prepare(Step):
    events = ("prepared",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("prepared", {"ready": True})


class Pack(Step):
    events = ("packed",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "packed"


class Linear(Workflow):
    unique = Unique(key="linear")
    start_step = Prepare
    tags = ("shipping",)
    metadata = {"team": "fulfilment", "tenant": "default"}
    transitions = {(Prepare, "prepared"): Pack, (Pack, "packed"): Done}


async def test_a_linear_run_emits_start_step_pairs_transitions_and_stop(
    app: Hephaestus, captured: list[Captured]
) -> None:
    """A two-step run emits workflow.start, start/stop/transition per step, then workflow.stop."""
    await Linear.start("one", metadata={"tenant": "acme", "instance_id": "spoofed"})
    await run_until_idle(app)
    instance = await Linear.get("one")
    assert [c.short for c in captured] == [
        ("workflow.start", None),
        ("step.start", "prepare"),
        ("step.stop", "prepare"),
        ("workflow.transition", "prepare"),
        ("step.start", "pack"),
        ("step.stop", "pack"),
        ("workflow.transition", "pack"),
        ("workflow.stop", None),
    ]
    for event in captured:
        assert event.metadata["instance_id"] == "linear::one", "core fields must win"
        assert event.metadata["run_id"] == instance.run_id
        assert event.metadata["workflow"] == Linear.name
        assert event.metadata["workflow_version"] == 1
        assert event.metadata["runner"] == "local"
        assert event.metadata["tags"] == ("shipping",)
        assert event.metadata["team"] == "fulfilment", "workflow metadata is on every event"
        assert event.metadata["tenant"] == "acme", "caller metadata wins over the workflow's"
    start, prepare_start, prepare_stop, prepared, _, pack_stop, packed, stop = captured
    assert start.metadata["initial_step"] == "prepare"
    assert "system_time" in start.measurements
    assert prepare_start.metadata["attempt"] == 1
    assert prepare_start.metadata["step_key"] == "prepare"
    assert prepare_start.metadata["step_class"] == f"{Prepare.__module__}.Prepare"
    assert "system_time" in prepare_start.measurements
    assert prepare_stop.metadata["event"] == "prepared"
    assert prepare_stop.measurements["duration"] >= 0
    assert (prepared.metadata["event"], prepared.metadata["targets"]) == ("prepared", ("pack",))
    assert prepared.metadata["fan_out"] is False
    assert prepared.measurements == {"targets_count": 1}
    assert pack_stop.metadata["event"] == "packed"
    assert packed.metadata["targets"] == ("done",)
    assert stop.metadata["status"] == "completed"
    assert stop.measurements == {"duration": 0.0, "step_count": 2}  # no fake time passed


# -- fan-out ----------------------------------------------------------------------------------


class Split(Step):
    events = ("split",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "split"


class Up(Step):
    events = ("merged",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "merged"


class Down(Step):
    events = ("merged",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "merged"


class Merge(Step):
    events = ("merged",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "merged"


class Fanned(Workflow):
    unique = Unique(key="fanned")
    start_step = Split
    transitions = {
        (Split, "split"): [Up, Down],
        (Up, "merged"): Merge,
        (Down, "merged"): Merge,
        (Merge, "merged"): Done,
    }


async def test_a_fan_out_run_emits_a_pair_per_branch_between_fork_and_join(
    app: Hephaestus, captured: list[Captured]
) -> None:
    """The fork's transition fans out; branch events sit between it and the join's start."""
    await Fanned.start("one")
    await run_until_idle(app)
    events = [c.short for c in captured]
    assert events[:4] == [
        ("workflow.start", None),
        ("step.start", "split"),
        ("step.stop", "split"),
        ("workflow.transition", "split"),
    ]
    assert events[-4:] == [
        ("step.start", "merge"),
        ("step.stop", "merge"),
        ("workflow.transition", "merge"),
        ("workflow.stop", None),
    ]
    fork = captured[3]
    assert (fork.metadata["targets"], fork.metadata["fan_out"]) == (("up", "down"), True)
    assert fork.measurements == {"targets_count": 2}
    branches = events[4:-4]
    assert sorted(branches) == sorted(
        [
            ("step.start", "up"),
            ("step.stop", "up"),
            ("workflow.transition", "up"),
            ("step.start", "down"),
            ("step.stop", "down"),
            ("workflow.transition", "down"),
        ]
    )
    for step in ("up", "down"):
        start, stop = branches.index(("step.start", step)), branches.index(("step.stop", step))
        assert start < stop < branches.index(("workflow.transition", step))
    joins = [c.metadata["targets"] for c in captured[4:-4] if c.event.endswith("transition")]
    assert joins == [(), ("merge",)], "the first branch to finish activates nothing yet"
    starts = [c for c in captured if c.event == "hephaestus.step.start"]
    alone = [(c.metadata["concurrent"], c.metadata["active_steps_count"]) for c in starts]
    assert alone[0] == alone[-1] == (False, 1), "split and merge run alone"
    assert alone[1] == (True, 2), "the first branch starts while the other is active too"


# -- waiting and resuming ---------------------------------------------------------------------


class Ask(Step):
    events = ("asked",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "asked"


class Approval(Workflow):
    unique = Unique(key="approval")
    start_step = Ask
    transitions = {
        (Ask, "asked"): (WaitForEvent, {"timeout": 30}),
        (WaitForEvent, "received"): Done,
        (WaitForEvent, "timeout"): Done,
    }


async def test_an_async_resume_run_emits_async_then_resume(
    app: Hephaestus, captured: list[Captured]
) -> None:
    """A waiting step emits step.async (with its timeout); the resume emits step.resume."""
    await Approval.start("one")
    await run_until_idle(app)
    await advance(app, 5)
    await Approval.resume("one", "received", {"by": "alice"})
    await run_until_idle(app)
    assert [c.short for c in captured] == [
        ("workflow.start", None),
        ("step.start", "ask"),
        ("step.stop", "ask"),
        ("workflow.transition", "ask"),
        ("step.start", "wait_for_event"),
        ("step.async", "wait_for_event"),
        ("workflow.suspend", None),
        ("step.resume", "wait_for_event"),
        ("workflow.transition", "wait_for_event"),
        ("workflow.stop", None),
    ]
    waiting, asleep, resumed, onwards = captured[5], captured[6], captured[7], captured[8]
    assert asleep.metadata["status"] == "waiting"
    assert asleep.metadata["waiting_steps"] == ("wait_for_event",)
    assert waiting.metadata["timeout"] == 30.0
    assert waiting.metadata["attempt"] == 1
    assert (resumed.metadata["event"], resumed.metadata["source"]) == ("received", "external")
    assert resumed.measurements["wait_duration"] == 5.0
    assert (onwards.metadata["event"], onwards.metadata["targets"]) == ("received", ("done",))


async def test_a_scheduled_resume_is_reported_with_source_scheduled(
    app: Hephaestus, captured: list[Captured]
) -> None:
    """A resume scheduled with schedule_resume is reported as step.resume, source=scheduled."""
    await Approval.start("one")
    await run_until_idle(app)
    await Approval.schedule_resume("one", "wait_for_event", 10, event="received")
    await advance(app, 10)
    resumed = [c for c in captured if c.event == "hephaestus.step.resume"]
    assert [(c.metadata["event"], c.metadata["source"]) for c in resumed] == [
        ("received", "scheduled")
    ]
    assert resumed[0].measurements["wait_duration"] == 10.0
    assert captured[-1].short == ("workflow.stop", None)


async def test_a_timer_resume_is_reported_with_source_timer(
    app: Hephaestus, captured: list[Captured]
) -> None:
    """When the wait times out the step.resume event carries ``event=timeout, source=timer``."""
    await Approval.start("one")
    await advance(app, 30)
    resumed = [c for c in captured if c.event == "hephaestus.step.resume"]
    assert [(c.metadata["event"], c.metadata["source"]) for c in resumed] == [("timeout", "timer")]
    assert resumed[0].measurements["wait_duration"] == 30.0
    assert captured[-1].short == ("workflow.stop", None)
    assert captured[-1].measurements == {"duration": 30.0, "step_count": 2}


# -- failing ----------------------------------------------------------------------------------


class Explode(Step):
    events = ("ok",)
    retry = RetryPolicy(max_attempts=2, initial_delay=1)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        raise RuntimeError("kaboom")


class Doomed(Workflow):
    unique = Unique(key="doomed")
    start_step = Explode
    transitions = {(Explode, "ok"): Done}


async def test_a_failing_run_emits_step_exceptions_then_workflow_exception(
    app: Hephaestus, captured: list[Captured]
) -> None:
    """Each failed attempt emits step.exception (will_retry on all but the last), then the run's."""
    await Doomed.start("one")
    await run_until_idle(app, skip_timers=True)
    assert (await Doomed.get("one")).status is Status.FAILED
    assert [c.short for c in captured] == [
        ("workflow.start", None),
        ("step.start", "explode"),
        ("step.exception", "explode"),
        ("step.start", "explode"),
        ("step.exception", "explode"),
        ("workflow.exception", None),
    ]
    first, second = captured[2], captured[4]
    assert (first.metadata["attempt"], first.metadata["will_retry"]) == (1, True)
    assert (second.metadata["attempt"], second.metadata["will_retry"]) == (2, False)
    assert first.metadata["retry_in"] is not None
    assert first.metadata["retry_in"] > 0
    assert second.metadata["retry_in"] is None
    assert captured[3].metadata["attempt"] == 2
    assert first.metadata["error"].message == "kaboom"
    failed = captured[-1]
    assert failed.metadata["status"] == "failed"
    assert failed.metadata["error"].kind == "exception"
    assert (failed.metadata["kind"], failed.metadata["failed_step"]) == ("exception", "explode")
    assert failed.measurements == {"duration": 1.0}


# -- cancelled --------------------------------------------------------------------------------


class Stall(Step):
    events = ("ok",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.signal("stall.started").set()
        await board.signal("stall.release").wait()
        return "ok"


class Stalled(Workflow):
    unique = Unique(key="stalled")
    start_step = Stall
    transitions = {(Stall, "ok"): Done}


async def test_a_cancelled_run_emits_workflow_cancel_and_no_step_stop(
    app: Hephaestus, captured: list[Captured]
) -> None:
    """Cancelling mid-step emits workflow.cancel; the aborted step reports no stop."""
    await Stalled.start("one")
    async with asyncio.timeout(BOUND):
        await board.signal("stall.started").wait()
    await Stalled.cancel("one")
    async with asyncio.timeout(BOUND):
        await run_until_idle(app)
    assert [c.short for c in captured] == [
        ("workflow.start", None),
        ("step.start", "stall"),
        ("workflow.cancel", None),
    ]
    assert captured[-1].metadata["status"] == "cancelled"
    assert captured[-1].metadata["reason"] is None


async def test_a_cancelled_waiting_run_emits_async_then_cancel(
    app: Hephaestus, captured: list[Captured]
) -> None:
    """Cancelling a waiting run emits workflow.cancel right after it went to sleep."""
    await Approval.start("one")
    await run_until_idle(app)
    await Approval.cancel("one", reason="customer changed their mind")
    await advance(app, 60)
    assert [c.short for c in captured][-3:] == [
        ("step.async", "wait_for_event"),
        ("workflow.suspend", None),
        ("workflow.cancel", None),
    ]
    assert captured[-1].metadata["reason"] == "customer changed their mind"


# -- handler isolation and recovery -----------------------------------------------------------


async def test_a_raising_handler_is_detached_and_the_run_completes(
    app: Hephaestus, captured: list[Captured], caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that raises is logged and detached; other handlers and the run carry on."""
    calls: list[str] = []

    def broken(event: str, measurements: Mapping[str, float], metadata: Mapping[str, Any]) -> None:
        calls.append(event)
        raise RuntimeError("handler bug")

    telemetry.attach("broken", ["hephaestus.step.start"], broken)
    with caplog.at_level(logging.ERROR, logger="hephaestus.telemetry"):
        await Linear.start("one")
        await run_until_idle(app)
    assert calls == ["hephaestus.step.start"]
    assert telemetry.detach("broken") is False, "the raising handler should have been detached"
    assert (await Linear.get("one")).status is Status.COMPLETED
    assert [c.short for c in captured][-1] == ("workflow.stop", None)
    assert len(captured) == 8
    assert any("broken" in r.getMessage() for r in caplog.records)


class Interrupted(Step):
    events = ("ok",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        board.executions += 1
        if board.executions == 1:
            board.signal("interrupted.started").set()
            await asyncio.Event().wait()
        return "ok"


class Resumable(Workflow):
    unique = Unique(key="resumable")
    start_step = Interrupted
    transitions = {(Interrupted, "ok"): Done}


async def test_a_recovered_run_emits_no_second_workflow_start(
    storage: Storage, clock: FakeClock, captured: list[Captured]
) -> None:
    """Recovery continues a run's telemetry: its step starts again, the workflow does not."""
    async with Hephaestus(storage=storage, clock=clock):
        await Resumable.start("one")
        async with asyncio.timeout(BOUND):
            await board.signal("interrupted.started").wait()
    async with Hephaestus(storage=storage, clock=clock) as app:
        await run_until_idle(app)
        assert (await Resumable.get("one")).status is Status.COMPLETED
    assert [c.short for c in captured] == [
        ("workflow.start", None),
        ("step.start", "interrupted"),
        ("step.start", "interrupted"),
        ("step.stop", "interrupted"),
        ("workflow.transition", "interrupted"),
        ("workflow.stop", None),
    ]


async def test_an_opened_app_emits_runner_init_to_handlers_that_ask_for_it(
    storage: Storage, clock: FakeClock, captured: list[Captured]
) -> None:
    """``runner.init`` reports the runner, storage, pid and recovery; not sent for EVENTS."""
    opened: list[Mapping[str, Any]] = []
    telemetry.attach(
        "runner-init", ["hephaestus.runner.init"], lambda e, m, meta: opened.append(meta)
    )
    try:
        async with Hephaestus(storage=storage, clock=clock, recover=False):
            pass
    finally:
        telemetry.detach("runner-init")
    assert opened == [
        {"runner": "local", "storage": type(storage).__name__, "pid": os.getpid(), "recover": False}
    ]
    assert captured == [], "handlers of run events never see it: it has no instance_id"


# -- switches ---------------------------------------------------------------------------------


async def test_an_app_with_telemetry_disabled_emits_nothing_and_captures_no_context(
    storage: Storage, clock: FakeClock, captured: list[Captured]
) -> None:
    """``Hephaestus(telemetry=False)`` emits no event and stores no trace context."""
    telemetry.set_context_injector(lambda workflow, instance_id: {"traceparent": "x"})
    try:
        async with Hephaestus(storage=storage, clock=clock, telemetry=False) as app:
            await Approval.start("one")
            await run_until_idle(app)
            await Approval.resume("one", "received")
            await run_until_idle(app)
            instance = await Approval.get("one")
    finally:
        telemetry.set_context_injector(None)
    assert instance.status is Status.COMPLETED
    assert captured == []
    assert instance.trace_context == {}


async def test_a_started_run_stores_the_injected_trace_context(
    app: Hephaestus, captured: list[Captured]
) -> None:
    """The injector's headers are stored with the run and carried on every event."""
    telemetry.set_context_injector(lambda workflow, instance_id: {"traceparent": instance_id})
    try:
        await Linear.start("one")
        await run_until_idle(app)
    finally:
        telemetry.set_context_injector(None)
    assert (await Linear.get("one")).trace_context == {"traceparent": "linear::one"}
    assert {c.metadata["trace_context"]["traceparent"] for c in captured} == {"linear::one"}
