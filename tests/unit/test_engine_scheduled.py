"""Pure engine tests of scheduled resumes: schedule_resume, their timers, firing and dropping."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from hephaestus import Async, Error, HistoryKind, InstanceNotActiveError, Status, StepStatus
from hephaestus._core import engine
from hephaestus._core.instance import PendingResume, ScheduledResume
from hephaestus.errors import InvalidEventError, StepNotWaitingError
from tests.unit.test_engine import (
    NOW,
    ApprovalFlow,
    BufferFlow,
    begin,
    complete,
    definition,
    resume,
    returns,
    waiting_for_approval,
)

if TYPE_CHECKING:
    from datetime import datetime

    from hephaestus import Instance, Workflow

DUE = NOW + timedelta(minutes=5)


def schedule(
    workflow: type[Workflow],
    instance: Instance,
    step: str,
    event: str,
    payload: dict[str, object] | None = None,
    *,
    at: datetime = DUE,
) -> engine.Decision:
    return engine.schedule_resume(
        definition(workflow), instance, step=step, event=event, payload=payload, at=at, now=NOW
    )


def fire(workflow: type[Workflow], instance: Instance, item: ScheduledResume) -> engine.Decision:
    return engine.fire_timer(
        definition(workflow), instance, step=item.step, at=item.at, now=item.at, timer=item.id
    )


def test_schedule_resume_stores_it_and_arms_its_own_timer() -> None:
    """The run keeps a ScheduledResume and the runner gets a StartTimer keyed by its id."""
    instance = waiting_for_approval()
    decision = schedule(ApprovalFlow, instance, "hold", "received", {"by": "clerk"})
    (item,) = decision.instance.scheduled
    assert item == ScheduledResume(item.id, "hold", "received", {"by": "clerk"}, DUE)
    assert decision.commands == (engine.StartTimer("hold", DUE, "received", item.id),)
    assert decision.instance.status is Status.WAITING
    assert decision.instance.revision == instance.revision + 1
    entry = decision.instance.history[-1]
    assert (entry.kind, entry.step, entry.event, entry.source) == (
        HistoryKind.RESUME_SCHEDULED,
        "hold",
        "received",
        "scheduled",
    )


def test_each_scheduled_resume_gets_its_own_id() -> None:
    """Two resumes scheduled for one step have distinct ids (and so distinct timers)."""
    instance = schedule(ApprovalFlow, waiting_for_approval(), "hold", "received").instance
    instance = schedule(ApprovalFlow, instance, "hold", "timeout").instance
    assert len({item.id for item in instance.scheduled}) == 2


def test_a_due_scheduled_resume_completes_the_waiting_step() -> None:
    """When its timer fires, the step is resumed from source 'scheduled' and the run goes on."""
    instance = schedule(
        ApprovalFlow, waiting_for_approval(timeout=60), "hold", "received", {"by": "clerk"}
    ).instance
    (item,) = instance.scheduled
    decision = fire(ApprovalFlow, instance, item)
    after = decision.instance
    assert after.status is Status.COMPLETED
    assert after.scheduled == ()
    assert after.context.steps["hold"] == {"by": "clerk"}
    resumed = next(e for e in after.history if e.kind is HistoryKind.STEP_RESUMED)
    assert (resumed.step, resumed.event, resumed.source) == ("hold", "received", "scheduled")
    assert engine.CancelTimer("hold") in decision.commands  # the step's own timeout timer


def test_a_step_can_have_a_timeout_and_scheduled_resumes_at_once() -> None:
    """The step's own timeout and a scheduled resume are distinct timers; the first wins."""
    waiting = waiting_for_approval(timeout=60)
    instance = schedule(ApprovalFlow, waiting, "hold", "received").instance
    (item,) = instance.scheduled
    at = waiting.steps["hold"].timer_at
    assert at is not None
    assert engine.recover(instance) == (
        engine.StartTimer("hold", at, "timeout"),
        engine.StartTimer("hold", DUE, "received", item.id),
    )
    decision = engine.fire_timer(definition(ApprovalFlow), instance, step="hold", at=at, now=at)
    assert decision.instance.steps["hold"].event == "timeout"
    assert decision.instance.scheduled == ()
    assert engine.CancelTimer("hold", item.id) in decision.commands
    assert not fire(ApprovalFlow, decision.instance, item).changed


def test_resuming_first_drops_the_scheduled_resume_and_cancels_its_timer() -> None:
    """A resume that arrives first wins; the scheduled one is discarded and stale afterwards."""
    instance = schedule(ApprovalFlow, waiting_for_approval(), "hold", "timeout").instance
    (item,) = instance.scheduled
    decision = resume(ApprovalFlow, instance, "received")
    assert decision.commands == (engine.CancelTimer("hold", item.id),)
    after = decision.instance
    assert after.scheduled == ()
    assert after.status is Status.COMPLETED
    discarded = [e for e in after.history if e.kind is HistoryKind.RESUME_DISCARDED]
    assert [(e.step, e.event, e.source) for e in discarded] == [("hold", "timeout", "scheduled")]
    stale = fire(ApprovalFlow, after, item)
    assert not stale.changed
    assert stale.instance is after


def test_a_scheduled_resume_for_a_step_not_waiting_yet_is_kept_until_it_waits() -> None:
    """Due before its step waits, it is buffered, then delivered (source 'scheduled') on Async."""
    instance = schedule(ApprovalFlow, begin(ApprovalFlow), "hold", "received").instance
    (item,) = instance.scheduled
    instance = fire(ApprovalFlow, instance, item).instance
    assert instance.scheduled == ()
    assert instance.inbox == (PendingResume("hold", "received", {}, DUE, source="scheduled"),)
    instance = complete(ApprovalFlow, instance, "validate", "valid")
    decision = returns(ApprovalFlow, instance, "hold", Async(timeout=60))
    assert decision.commands == ()  # delivered at once: no timer armed
    assert decision.instance.status is Status.COMPLETED
    resumed = next(e for e in decision.instance.history if e.kind is HistoryKind.STEP_RESUMED)
    assert resumed.source == "scheduled"


@pytest.mark.parametrize(
    ("workflow", "step", "event", "error"),
    [
        (BufferFlow, "hold", "timeout", InvalidEventError),  # optional, not routed here
        (ApprovalFlow, "hold", "approved", InvalidEventError),  # not declared
        (ApprovalFlow, "ghost", "received", StepNotWaitingError),
        (ApprovalFlow, "done", "done", StepNotWaitingError),
        (ApprovalFlow, "validate", "valid", StepNotWaitingError),  # already completed
    ],
)
def test_schedule_resume_is_refused_before_anything_changes(
    workflow: type[Workflow], step: str, event: str, error: type[Exception]
) -> None:
    """Unroutable events, unknown steps and resolved steps raise; the run is untouched."""
    instance = complete(workflow, begin(workflow), *_first(workflow))
    instance = returns(workflow, instance, "hold", Async()).instance
    snapshot = copy.deepcopy(instance)
    with pytest.raises(error):
        schedule(workflow, instance, step, event)
    assert instance == snapshot


def _first(workflow: type[Workflow]) -> tuple[str, str]:
    return ("validate", "valid") if workflow is ApprovalFlow else ("review", "approved")


def test_schedule_resume_of_a_finished_run_is_refused() -> None:
    """A finished run cannot get a scheduled resume."""
    instance = engine.cancel(waiting_for_approval(), NOW).instance
    with pytest.raises(InstanceNotActiveError):
        schedule(ApprovalFlow, instance, "hold", "received")


def test_cancelling_the_run_drops_scheduled_resumes() -> None:
    """Cancel disarms every scheduled resume and clears them from the run."""
    instance = schedule(ApprovalFlow, waiting_for_approval(), "hold", "received").instance
    (item,) = instance.scheduled
    decision = engine.cancel(instance, NOW)
    assert engine.CancelTimer("hold", item.id) in decision.commands
    assert decision.instance.scheduled == ()
    assert not fire(ApprovalFlow, decision.instance, item).changed


def test_a_run_that_fails_drops_scheduled_resumes() -> None:
    """When the run fails before the step is reached, its scheduled resume is disarmed."""
    instance = schedule(ApprovalFlow, begin(ApprovalFlow), "hold", "received").instance
    (item,) = instance.scheduled
    decision = returns(ApprovalFlow, instance, "validate", Error("no", retryable=False))
    assert decision.instance.status is Status.FAILED
    assert decision.instance.scheduled == ()
    assert engine.CancelTimer("hold", item.id) in decision.commands
    assert engine.recover(decision.instance) == ()


def test_recover_rearms_scheduled_resumes() -> None:
    """A recovered run re-arms each scheduled resume with its id, whatever its step's state."""
    instance = schedule(ApprovalFlow, begin(ApprovalFlow), "hold", "received").instance
    (item,) = instance.scheduled
    commands = engine.recover(instance)
    assert engine.StartTimer("hold", DUE, "received", item.id) in commands
    assert instance.steps["validate"].status is StepStatus.ACTIVE
