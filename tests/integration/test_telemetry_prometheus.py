"""Prometheus metrics read back from a registry the test owns."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry

from hephaestus import (
    Config,
    Done,
    Error,
    Hephaestus,
    Ok,
    RetryPolicy,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    WaitForEvent,
    Workflow,
)
from hephaestus.telemetry.prometheus import PrometheusMetrics
from hephaestus.testing import advance, run_until_idle

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hephaestus.storage import Storage
    from hephaestus.testing import FakeClock


class Check(Step):
    events = ("checked",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("checked")


class Flaky(Step):
    events = ("ok",)
    retry = RetryPolicy(max_attempts=2, initial_delay=1)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        raise RuntimeError("down")


class Gate(Workflow):
    unique = Unique(key="gate")
    start_step = Check
    tags = ("ops",)
    metadata = {"tier": "gold"}
    transitions = {
        (Check, "checked"): (WaitForEvent, {"timeout": 60}),
        (WaitForEvent, "received"): Done,
        (WaitForEvent, "timeout"): Done,
    }


class Refuse(Step):
    events = ("ok",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Error("card declined", retryable=False)


class Refused(Workflow):
    unique = Unique(key="refused")
    start_step = Refuse
    transitions = {(Refuse, "ok"): Done}


class Broken(Workflow):
    unique = Unique(key="broken")
    start_step = Flaky
    transitions = {(Flaky, "ok"): Done}


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry of the test's own, so values start at zero."""
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Iterator[PrometheusMetrics]:
    """Both scopes, with the tags label and the ``tier`` metadata label, attached."""
    recorder = PrometheusMetrics(registry=registry, tags_label=True, metadata_labels=["tier"])
    recorder.attach()
    yield recorder
    recorder.detach()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_runs_are_counted_by_outcome_with_durations_and_gauges(
    app: Hephaestus, registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    """Started/finished counters, duration histograms and the active gauge follow the runs."""
    gate = {"workflow": Gate.name, "tags": "ops", "tier": "gold"}
    broken = {"workflow": Broken.name, "tags": "", "tier": ""}
    await Gate.start("a")
    await Gate.start("b")
    await Broken.start("c")
    await run_until_idle(app)
    assert value(registry, "hephaestus_runs_started_total", **gate) == 2
    assert value(registry, "hephaestus_runs_active", **gate) == 2
    assert value(registry, "hephaestus_steps_waiting", step="wait_for_event", **gate) == 2
    await advance(app, 10)
    await Gate.resume("a", "received")
    await Gate.cancel("b")
    await advance(app, 1)
    assert value(registry, "hephaestus_runs_active", **gate) == 0
    assert value(registry, "hephaestus_runs_active", **broken) == 0
    assert value(registry, "hephaestus_steps_waiting", step="wait_for_event", **gate) == 0
    for outcome, labels in (("completed", gate), ("cancelled", gate), ("failed", broken)):
        finished = value(registry, "hephaestus_runs_finished_total", outcome=outcome, **labels)
        assert finished == 1, outcome
    completed = {"outcome": "completed", **gate}
    assert value(registry, "hephaestus_run_duration_seconds_count", **completed) == 1
    assert value(registry, "hephaestus_run_duration_seconds_sum", **completed) == 10.0


async def test_steps_are_counted_by_outcome_and_waits_are_timed(
    app: Hephaestus, registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    """Each step attempt counts once under its outcome; a resume observes how long it waited."""
    gate = {"workflow": Gate.name, "tags": "ops", "tier": "gold"}
    broken = {"workflow": Broken.name, "tags": "", "tier": ""}
    await Gate.start("a")
    await Broken.start("c")
    await run_until_idle(app)
    await advance(app, 60)  # the gate's timer fires; the flaky retry ran after 1 s
    steps = "hephaestus_steps_total"
    assert value(registry, steps, step="check", outcome="completed", **gate) == 1
    assert value(registry, steps, step="wait_for_event", outcome="waiting", **gate) == 1
    assert value(registry, steps, step="flaky", outcome="retrying", **broken) == 1
    assert value(registry, steps, step="flaky", outcome="failed", **broken) == 1
    assert value(registry, steps, step="done", outcome="completed", **gate) == 0
    waited = {"step": "wait_for_event", "source": "timer", **gate}
    assert value(registry, "hephaestus_step_wait_seconds_count", **waited) == 1
    assert value(registry, "hephaestus_step_wait_seconds_sum", **waited) == 60.0
    timed = {"step": "check", "outcome": "completed", **gate}
    assert value(registry, "hephaestus_step_duration_seconds_count", **timed) == 1


async def test_step_failures_are_counted_by_kind(
    app: Hephaestus, registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    """Every failed attempt, retried or not, counts under its failure kind."""
    await Broken.start("c")
    await Refused.start("r")
    await advance(app, 5)
    failures = "hephaestus_step_failures_total"
    broken = {"workflow": Broken.name, "step": "flaky", "tags": "", "tier": ""}
    refused = {"workflow": Refused.name, "step": "refuse", "tags": "", "tier": ""}
    assert value(registry, failures, kind="exception", **broken) == 2
    assert value(registry, failures, kind="error", **refused) == 1
    assert value(registry, failures, kind="exception", **refused) == 0


async def test_a_run_carried_on_by_a_fresh_recorder_never_drives_gauges_negative(
    storage: Storage, clock: FakeClock
) -> None:
    """A process that sees a run only from its resume counts it active once, then back to 0."""
    gate = {"workflow": Gate.name}
    first, second = CollectorRegistry(), CollectorRegistry()
    before = PrometheusMetrics(registry=first, handler_id="first-process")
    before.attach()
    async with Hephaestus(storage=storage, clock=clock) as app:
        await Gate.start("a")
        await run_until_idle(app)
    before.detach()
    after = PrometheusMetrics(registry=second, handler_id="second-process")
    after.attach()
    try:
        async with Hephaestus(storage=storage, clock=clock) as app:
            await Gate.resume("a", "received")
            await run_until_idle(app)
    finally:
        after.detach()
    assert value(first, "hephaestus_runs_active", **gate) == 1, "it left the first one waiting"
    assert value(second, "hephaestus_runs_started_total", **gate) == 0
    assert value(second, "hephaestus_runs_active", **gate) == 0
    assert value(second, "hephaestus_steps_waiting", step="wait_for_event", **gate) == 0
    assert value(second, "hephaestus_runs_finished_total", outcome="completed", **gate) == 1


def test_scope_limits_the_families_registered(registry: CollectorRegistry) -> None:
    """With ``scope=["workflow"]`` only run metrics exist; bad scopes and labels are refused."""
    PrometheusMetrics(registry=registry, scope=["workflow"])
    names = {metric.name for metric in registry.collect()}
    assert "hephaestus_runs_started" in names
    assert not any(name.startswith("hephaestus_step") for name in names)
    with pytest.raises(ValueError, match="scope"):
        PrometheusMetrics(registry=CollectorRegistry(), scope=["engine"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="built-in"):
        PrometheusMetrics(registry=CollectorRegistry(), metadata_labels=["step"])


async def test_a_workflow_scoped_recorder_ignores_steps(
    app: Hephaestus, registry: CollectorRegistry
) -> None:
    """A recorder scoped to workflows counts runs and registers no step series."""
    recorder = PrometheusMetrics(registry=registry, scope=["workflow"], handler_id="wf-only")
    recorder.attach()
    try:
        await Gate.start("a")
        await run_until_idle(app)
    finally:
        assert recorder.detach() is True
    assert value(registry, "hephaestus_runs_started_total", workflow=Gate.name) == 1
    assert value(registry, "hephaestus_runs_active", workflow=Gate.name) == 1
