"""OpenTelemetry spans, checked with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from hephaestus import (
    Async,
    Config,
    Done,
    Hephaestus,
    Ok,
    RetryPolicy,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    Wait,
    WaitForEvent,
    Workflow,
    telemetry,
)
from hephaestus.telemetry.otel import OpenTelemetryTracing
from hephaestus.testing import advance, run_until_idle

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

    from hephaestus.storage import Storage
    from hephaestus.testing import FakeClock


class Fetch(Step):
    events = ("fetched",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("fetched")


class Store(Step):
    events = ("stored",)
    retry = RetryPolicy(max_attempts=2, initial_delay=1)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        if context.attempt == 1:
            raise RuntimeError("disk full")
        return "stored"


class Ingest(Workflow):
    unique = Unique(key="ingest")
    start_step = Fetch
    tags = ("etl",)
    transitions = {(Fetch, "fetched"): Store, (Store, "stored"): Done}


class Review(Workflow):
    unique = Unique(key="review")
    start_step = Fetch
    transitions = {(Fetch, "fetched"): WaitForEvent, (WaitForEvent, "received"): Done}


current_spans: dict[str, int] = {}


class Probe(Step):
    events = ("probed",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        current_spans[context.step] = trace.get_current_span().get_span_context().span_id
        return "probed"


class ThreadProbe(Step):
    events = ("probed",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        current_spans[context.step] = trace.get_current_span().get_span_context().span_id
        return "probed"


class Hang(Step):
    events = ("ok",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        signal("hang.started").set()
        await asyncio.Event().wait()
        return "ok"


class Hung(Workflow):
    unique = Unique(key="hung")
    start_step = Hang
    transitions = {(Hang, "ok"): Done}


signals: dict[str, asyncio.Event] = {}


def signal(name: str) -> asyncio.Event:
    return signals.setdefault(name, asyncio.Event())


class Probed(Workflow):
    unique = Unique(key="probed")
    start_step = Probe
    transitions = {(Probe, "probed"): ThreadProbe, (ThreadProbe, "probed"): Done}


@pytest.fixture
def provider() -> TracerProvider:
    """An SDK tracer provider (not the global one)."""
    return TracerProvider()


@pytest.fixture
def exporter(provider: TracerProvider) -> InMemorySpanExporter:
    """Collects every span the provider ends."""
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return spans


@pytest.fixture
def tracing(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> Iterator[OpenTelemetryTracing]:
    """The integration on ``provider``; detached afterwards, OTel having logged no error."""
    integration = OpenTelemetryTracing(tracer_provider=provider)
    integration.attach()
    yield integration
    integration.detach()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("opentelemetry")] == []


def named(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    found: int = span.context.span_id
    return found


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    found: int = span.context.trace_id
    return found


async def test_a_run_is_a_workflow_span_with_a_child_per_step_attempt(
    app: Hephaestus,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    tracing: OpenTelemetryTracing,
) -> None:
    """Caller span > start span > workflow span > one span per attempt, all in one trace."""
    with provider.get_tracer("test").start_as_current_span("http request") as request:
        await Ingest.start("i1", metadata={"tenant": "acme"})
    await run_until_idle(app, skip_timers=True)
    spans = exporter.get_finished_spans()
    (start,) = named(spans, "hephaestus.start")
    (workflow,) = named(spans, "hephaestus.workflow")
    steps = named(spans, "hephaestus.step")
    assert [s.name for s in steps] == [
        "hephaestus.step fetch",
        "hephaestus.step store",
        "hephaestus.step store",
    ]
    caller = request.get_span_context()
    assert start.parent is not None
    assert start.parent.span_id == caller.span_id
    assert workflow.parent is not None
    assert workflow.parent.span_id == span_id(start)
    for step in steps:
        assert step.parent is not None
        assert step.parent.span_id == span_id(workflow)
    assert {trace_id(s) for s in spans} == {caller.trace_id}
    attributes = dict(workflow.attributes or {})
    assert attributes["hephaestus.instance_id"] == "ingest::i1"
    assert attributes["hephaestus.workflow"] == Ingest.name
    assert attributes["hephaestus.tenant"] == "acme"
    assert attributes["hephaestus.tags"] == ("etl",)
    assert attributes["hephaestus.status"] == "completed"
    assert attributes["hephaestus.resumed"] is False
    failed, retried = steps[1], steps[2]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "disk full"
    assert [e.name for e in failed.events] == ["exception"]
    failed_attributes = dict(failed.attributes or {})
    assert failed_attributes["hephaestus.attempt"] == 1
    assert failed_attributes["hephaestus.will_retry"] is True
    assert dict(retried.attributes or {})["hephaestus.attempt"] == 2
    assert dict(retried.attributes or {})["hephaestus.event"] == "stored"
    transitions = [e for e in workflow.events if e.name == "hephaestus.transition"]
    assert [dict(e.attributes or {})["hephaestus.targets"] for e in transitions] == [
        ("store",),
        ("done",),
    ]


async def test_without_a_caller_span_the_start_span_is_the_root(
    app: Hephaestus, exporter: InMemorySpanExporter, tracing: OpenTelemetryTracing
) -> None:
    """A run started outside any span gets its own trace rooted at its start span."""
    await Ingest.start("i2")
    await run_until_idle(app, skip_timers=True)
    spans = exporter.get_finished_spans()
    (start,) = named(spans, "hephaestus.start")
    assert start.parent is None
    assert {trace_id(s) for s in spans} == {trace_id(start)}


async def test_a_run_resumed_after_reopening_the_app_continues_the_same_trace(
    storage: Storage,
    clock: FakeClock,
    exporter: InMemorySpanExporter,
    tracing: OpenTelemetryTracing,
) -> None:
    """The resumed run's workflow span is a new child of the stored start span, same trace."""
    async with Hephaestus(storage=storage, clock=clock) as app:
        await Review.start("r1")
        await run_until_idle(app)
    suspended = named(exporter.get_finished_spans(), "hephaestus.workflow")
    assert len(suspended) == 1, "the waiting run's span ends when the run goes to sleep"
    async with Hephaestus(storage=storage, clock=clock) as app:
        await Review.resume("r1", "received")
        await run_until_idle(app)
    spans = exporter.get_finished_spans()
    (start,) = named(spans, "hephaestus.start")
    first, second = named(spans, "hephaestus.workflow")
    for segment in (first, second):
        assert segment.parent is not None
        assert segment.parent.span_id == span_id(start)
    assert dict(first.attributes or {})["hephaestus.suspended"] is True
    assert dict(second.attributes or {})["hephaestus.resumed"] is True
    assert dict(second.attributes or {})["hephaestus.status"] == "completed"
    assert [e.name for e in second.events] == ["hephaestus.step.resume", "hephaestus.transition"]
    assert {trace_id(s) for s in spans} == {trace_id(start)}


async def test_detaching_ends_open_spans_and_stops_capturing_context(
    app: Hephaestus, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    """Detach ends spans still open (marked interrupted) and new runs store no context."""
    integration = OpenTelemetryTracing(tracer_provider=provider, handler_id="short-lived")
    integration.attach()
    await Ingest.start("i3")
    await run_until_idle(app)  # the retry timer is pending: the run is still open
    assert integration.detach() is True
    (workflow,) = named(exporter.get_finished_spans(), "hephaestus.workflow")
    assert dict(workflow.attributes or {})["hephaestus.interrupted"] is True
    await Ingest.start("i4")
    assert (await Ingest.get("i4")).trace_context == {}


async def test_the_step_span_is_current_while_the_step_runs(
    app: Hephaestus, exporter: InMemorySpanExporter, tracing: OpenTelemetryTracing
) -> None:
    """Code inside a step, async or in a thread, sees its attempt's span as the current span."""
    current_spans.clear()
    await Probed.start("p1")
    await run_until_idle(app)
    spans = exporter.get_finished_spans()
    by_name = {s.name: span_id(s) for s in named(spans, "hephaestus.step")}
    assert current_spans == {
        "probe": by_name["hephaestus.step probe"],
        "thread_probe": by_name["hephaestus.step thread_probe"],
    }
    assert trace.get_current_span() is trace.INVALID_SPAN, "nothing leaks into the test's task"


async def test_cancelling_mid_step_ends_the_attempt_span_as_aborted(
    app: Hephaestus, exporter: InMemorySpanExporter, tracing: OpenTelemetryTracing
) -> None:
    """A run cancelled while a step runs ends that step's span (aborted) and its workflow span."""
    signals.clear()
    await Hung.start("h1")
    async with asyncio.timeout(5):
        await signal("hang.started").wait()
    await Hung.cancel("h1")
    await run_until_idle(app)
    spans = exporter.get_finished_spans()
    (step,) = named(spans, "hephaestus.step")
    (workflow,) = named(spans, "hephaestus.workflow")
    assert dict(step.attributes or {})["hephaestus.aborted"] is True
    assert dict(workflow.attributes or {})["hephaestus.status"] == "cancelled"


# -- every path to "waiting" ends the workflow span -------------------------------------------


class Fork(Step):
    events = ("forked",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "forked"


class AwaitLeft(Step):
    events = ("arrived",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Async()


class AwaitRight(Step):
    events = ("arrived",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Async()


class Straggler(Step):
    """Finishes only once the other branch has been reported waiting (see ``waiting_signal``)."""

    events = ("arrived",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        async with asyncio.timeout(5):
            await signal("left.waiting").wait()
        return "arrived"


class Join(Step):
    events = ("joined",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "joined"


class SleepAfterFanOut(Workflow):
    """The last running branch (``straggler``) finishes while ``await_left`` waits."""

    unique = Unique(key="sleepfan")
    start_step = Fork
    transitions = {
        (Fork, "forked"): [AwaitLeft, Straggler],
        (AwaitLeft, "arrived"): Join,
        (Straggler, "arrived"): Join,
        (Join, "joined"): Done,
    }


class BothWait(Workflow):
    """Both branches wait; resuming one leaves the join waiting for the other."""

    unique = Unique(key="bothwait")
    start_step = Fork
    transitions = {
        (Fork, "forked"): [AwaitLeft, AwaitRight],
        (AwaitLeft, "arrived"): Join,
        (AwaitRight, "arrived"): Join,
        (Join, "joined"): Done,
    }


class TimerThenEvent(Workflow):
    """A timer fires, and the run goes back to sleep on an event."""

    unique = Unique(key="timerthen")
    start_step = (Wait, {"duration": 10, "unit": "second"})
    transitions = {(Wait, "timeout"): WaitForEvent, (WaitForEvent, "received"): Done}


@pytest.fixture
def waiting_signal() -> Iterator[None]:
    """Sets ``left.waiting`` once ``await_left`` is reported waiting (after it is persisted)."""
    signals.clear()

    def handler(event: str, m: Mapping[str, float], meta: Mapping[str, Any]) -> None:
        if meta.get("step") == "await_left":
            signal("left.waiting").set()

    telemetry.attach("left-waiting", ["hephaestus.step.async"], handler)
    yield
    telemetry.detach("left-waiting")


def workflow_spans(exporter: InMemorySpanExporter) -> list[dict[str, Any]]:
    return [
        dict(s.attributes or {})
        for s in named(exporter.get_finished_spans(), "hephaestus.workflow")
    ]


async def test_a_run_asleep_after_its_last_running_branch_ends_ends_its_span(
    app: Hephaestus,
    exporter: InMemorySpanExporter,
    tracing: OpenTelemetryTracing,
    waiting_signal: None,
) -> None:
    """Fan-out: one branch waits, the other finishes last; the span ends suspended then."""
    await SleepAfterFanOut.start("f1")
    await run_until_idle(app)
    assert (await SleepAfterFanOut.get("f1")).status.value == "waiting"
    (span,) = workflow_spans(exporter)
    assert span["hephaestus.suspended"] is True
    assert span["hephaestus.waiting_steps"] == ("await_left",)
    await SleepAfterFanOut.resume("f1", "arrived")
    await run_until_idle(app)
    _, second = workflow_spans(exporter)
    assert (second["hephaestus.resumed"], second["hephaestus.status"]) == (True, "completed")


async def test_a_resume_whose_join_still_waits_ends_its_span_suspended(
    app: Hephaestus, exporter: InMemorySpanExporter, tracing: OpenTelemetryTracing
) -> None:
    """Both branches wait; each resume but the last opens a span that ends suspended."""
    await BothWait.start("b1")
    await run_until_idle(app)
    (asleep,) = workflow_spans(exporter)
    assert asleep["hephaestus.suspended"] is True
    await BothWait.resume("b1", "arrived", step="await_left")
    await run_until_idle(app)
    _, resumed = workflow_spans(exporter)
    assert (resumed["hephaestus.resumed"], resumed["hephaestus.suspended"]) == (True, True)
    assert resumed["hephaestus.waiting_steps"] == ("await_right",)
    await BothWait.resume("b1", "arrived", step="await_right")
    await run_until_idle(app)
    *_, last = workflow_spans(exporter)
    assert last["hephaestus.status"] == "completed"
    assert "hephaestus.suspended" not in last


async def test_a_timer_resume_that_leads_to_another_wait_ends_its_span_suspended(
    app: Hephaestus, exporter: InMemorySpanExporter, tracing: OpenTelemetryTracing
) -> None:
    """A timer fires; the run carries on and sleeps again on an event: a second suspended span."""
    await TimerThenEvent.start("t1")
    await run_until_idle(app)
    await advance(app, 10)
    first, second = workflow_spans(exporter)
    assert first["hephaestus.suspended"] is True
    assert (second["hephaestus.resumed"], second["hephaestus.suspended"]) == (True, True)
    assert second["hephaestus.waiting_steps"] == ("wait_for_event",)
