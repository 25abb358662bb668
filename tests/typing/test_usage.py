"""Public API usage that the strict type checker must accept (mypy runs over tests/)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, assert_type

from hephaestus import (
    Async,
    Config,
    Done,
    Error,
    Hephaestus,
    Instance,
    Ok,
    RetryPolicy,
    ScheduledResume,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    Wait,
    WaitForEvent,
    Workflow,
    route,
)
from hephaestus.testing import FakeClock, advance, run_until_idle


class Check(Step):
    events = ("ok", "bad")
    retry = RetryPolicy(max_attempts=3, backoff="linear", initial_delay=0.5)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        if context.initial.get("fail"):
            return Error("not today", retryable=False)
        return Ok("ok", {"key": context.idempotency_key})


class Notify(Step):
    events = ("sent",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        assert_type(run.id, str)
        assert_type(run.workflow_version, int)
        assert_type(run.attempt, int)
        assert_type(run.metadata, Mapping[str, Any])
        assert_type(run.context, StepContext)
        assert run.idempotency_key == context.idempotency_key
        return "sent"


class Approve(Step):
    events = ("approved",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Async(timeout=60) if config else Ok("approved")


class Reply(WaitForEvent):
    join = "any"  # after a route and a choice, the reply is awaited whichever way came


@route(Notify, Wait)
def pick(context: object) -> type[Step] | tuple[type[Step], Config]:
    return Notify


class TypedFlow(Workflow):
    unique = Unique(key="typed", scope="workflow")
    start_step = Check
    transitions = {
        (Check, "ok"): pick,
        (Check, "bad"): (Approve, {"manual": True}),
        (Notify, "sent"): Reply,
        (Wait, "timeout"): Reply,
        (Approve, "approved"): Reply,
        (Reply, "received"): Done,
    }


async def test_typed_usage() -> None:
    """The documented API type-checks, and runs: start, resume, get, list."""
    clock = FakeClock()
    async with Hephaestus(clock=clock) as app:
        instance_id = await TypedFlow.start("abc", {"fail": False})
        assert_type(instance_id, str)
        await run_until_idle(app)
        await TypedFlow.resume("abc", "received", {"by": "typing"})
        await run_until_idle(app)
        instance = await TypedFlow.get("abc")
        assert_type(instance, Instance)
        assert instance.status == Status.COMPLETED
        assert instance.context.steps["reply"] == {"by": "typing"}
        runs = await TypedFlow.list(status="completed")
        assert [run.id for run in runs] == [instance_id]


async def test_typed_schedule_resume() -> None:
    """schedule_resume type-checks with seconds or a timedelta and returns a ScheduledResume."""
    clock = FakeClock()
    async with Hephaestus(clock=clock) as app:
        instance_id = await TypedFlow.start("abc", {"fail": False})
        await run_until_idle(app)
        item = await TypedFlow.schedule_resume("abc", "reply", 5.0, event="received")
        assert_type(item, ScheduledResume)
        later = await app.schedule_resume(
            instance_id, "reply", timedelta(seconds=10), event="received", payload={}
        )
        assert_type(later, ScheduledResume)
        await advance(app, 5)
        assert (await TypedFlow.get("abc")).status == Status.COMPLETED


async def test_typed_app_scope() -> None:
    """An app given its workflows, and the facade's query filters, type-check and run."""
    clock = FakeClock()
    async with Hephaestus(workflows=[TypedFlow], clock=clock) as app:
        assert app.has(TypedFlow)
        await TypedFlow.start("abc", {"fail": False}, metadata={"region": "eu"})
        runs = await TypedFlow.list(id_prefix="typed::a", metadata={"region": "eu"})
        assert_type(runs, list[Instance])
        assert [run.id for run in runs] == ["typed::abc"]
        assert await TypedFlow.list(metadata={"region": "us"}, created_after=clock.now()) == []


def test_typed_sync_facade() -> None:
    """``Flow.sync`` methods carry the async methods' full signatures and plain results."""
    with Hephaestus(workflows=[TypedFlow]) as app:
        instance_id = TypedFlow.sync.start("abc", {"fail": False}, version=1, app=app)
        assert_type(instance_id, str)
        instance = TypedFlow.sync.get("abc")
        assert_type(instance, Instance)
        runs = TypedFlow.sync.list(status_in=["running", Status.WAITING], id_prefix="typed::")
        assert_type(runs, list[Instance])
        assert TypedFlow.sync.cancel("abc", reason="typing") is None
