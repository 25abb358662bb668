"""Pure engine tests of waiting: Async steps, resume (direct and buffered) and timers."""

# Workflow ``transitions`` are class-level declarations read once, when the class is created:

from __future__ import annotations

import copy
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest

from hephaestus import (
    Async,
    HistoryKind,
    InstanceNotActiveError,
    Status,
    StepState,
    StepStatus,
)
from hephaestus._core import engine
from hephaestus._core.instance import PendingResume
from hephaestus.errors import (
    AmbiguousResumeError,
    InvalidEventError,
    ResumeError,
    StepNotWaitingError,
)
from tests.unit.test_engine import (
    NOW,
    TIMER_AT,
    ApprovalFlow,
    BufferFlow,
    FanFlow,
    OptionalFlow,
    SignoffFlow,
    begin,
    complete,
    definition,
    fanned_out,
    kinds,
    resume,
    returns,
    waiting_for_approval,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from hephaestus import Instance


# ---------------------------------------------------------------------------------------------
# Async and waiting


def test_async_puts_the_step_and_the_run_in_waiting() -> None:
    """A step returning Async waits; with nothing else active the run's status is waiting."""
    instance = complete(ApprovalFlow, begin(ApprovalFlow), "validate", "valid")
    decision = returns(ApprovalFlow, instance, "hold", Async())
    instance = decision.instance
    assert decision.commands == ()
    assert instance.steps["hold"] == StepState(StepStatus.WAITING)
    assert instance.status is Status.WAITING
    assert instance.waiting_steps == ("hold",)
    assert kinds(instance)[-1] == (HistoryKind.STEP_WAITING, "hold")


@pytest.mark.parametrize("timeout", [60, 60.0, timedelta(minutes=1)])
def test_async_with_timeout_starts_a_timer(timeout: float | timedelta) -> None:
    """Async(timeout) records the timer on the step and emits StartTimer at now + timeout."""
    instance = complete(ApprovalFlow, begin(ApprovalFlow), "validate", "valid")
    decision = returns(ApprovalFlow, instance, "hold", Async(timeout=timeout))
    assert decision.commands == (engine.StartTimer("hold", TIMER_AT, "timeout"),)
    state = decision.instance.steps["hold"]
    assert (state.status, state.timer_at, state.timer_event) == (
        StepStatus.WAITING,
        TIMER_AT,
        "timeout",
    )


def test_several_steps_wait_at_once_and_resume_targets_one() -> None:
    """Two fanned-out steps wait together; resume(step=...) completes one, the other waits on."""
    instance = complete(SignoffFlow, begin(SignoffFlow), "split", "ok")
    instance = returns(SignoffFlow, instance, "legal_signoff", Async()).instance
    assert instance.status is Status.RUNNING  # finance_signoff is still active
    instance = returns(SignoffFlow, instance, "finance_signoff", Async()).instance
    assert instance.status is Status.WAITING
    assert instance.waiting_steps == ("legal_signoff", "finance_signoff")

    decision = resume(SignoffFlow, instance, "received", {"by": "fin"}, step="finance_signoff")
    instance = decision.instance
    assert decision.commands == ()
    assert instance.waiting_steps == ("legal_signoff",)
    assert instance.status is Status.WAITING
    assert instance.context.steps["finance_signoff"] == {"by": "fin"}
    assert "join" not in instance.steps

    decision = resume(SignoffFlow, instance, "received")  # only one step left to take it
    assert decision.commands == (engine.RunStep("join", 1, None),)
    assert decision.instance.status is Status.RUNNING


def test_resume_without_step_is_ambiguous_when_several_steps_wait_for_the_event() -> None:
    """With two steps waiting for the same event, resume without step= raises."""
    instance = complete(SignoffFlow, begin(SignoffFlow), "split", "ok")
    instance = returns(SignoffFlow, instance, "legal_signoff", Async()).instance
    instance = returns(SignoffFlow, instance, "finance_signoff", Async()).instance
    with pytest.raises(AmbiguousResumeError):
        resume(SignoffFlow, instance, "received")


def test_resume_before_either_step_waits_is_ambiguous_too() -> None:
    """Buffering without step= needs a single step that may still take the event."""
    instance = complete(SignoffFlow, begin(SignoffFlow), "split", "ok")
    with pytest.raises(AmbiguousResumeError):
        resume(SignoffFlow, instance, "received")


def test_other_branches_keep_running_while_one_waits() -> None:
    """While one branch waits, the others are still dispatched; the join waits for all."""
    decision = returns(FanFlow, fanned_out(), "hold", Async(timeout=30))
    assert decision.instance.status is Status.RUNNING

    decision = returns(FanFlow, decision.instance, "left", "ok")
    assert decision.commands == (engine.RunStep("mid", 1, None),)
    assert decision.instance.status is Status.RUNNING

    instance = complete(FanFlow, decision.instance, "right", "ok")
    instance = complete(FanFlow, instance, "mid", "ok")
    assert "join" not in instance.steps
    assert instance.status is Status.WAITING

    decision = resume(FanFlow, instance, "received", step="hold")
    assert set(decision.commands) == {engine.CancelTimer("hold"), engine.RunStep("join", 1, None)}
    assert decision.instance.status is Status.RUNNING


# ---------------------------------------------------------------------------------------------
# resume


def test_resume_delivers_the_event_and_stores_the_payload() -> None:
    """Resume completes the waiting step with the event; the payload is its context entry."""
    decision = resume(ApprovalFlow, waiting_for_approval(), "received", {"approver": "ann"})
    instance = decision.instance
    assert instance.status is Status.COMPLETED
    assert instance.steps["hold"].event == "received"
    assert instance.context.steps["hold"] == {"approver": "ann"}
    resumed = next(e for e in instance.history if e.kind is HistoryKind.STEP_RESUMED)
    assert (resumed.step, resumed.event, resumed.data, resumed.source) == (
        "hold",
        "received",
        {"approver": "ann"},
        "external",
    )


def test_resume_without_payload_stores_an_empty_entry() -> None:
    """A resume with no payload stores {} for the step."""
    instance = resume(ApprovalFlow, waiting_for_approval(), "received", step="hold").instance
    assert instance.context.steps["hold"] == {}


def test_resume_follows_the_transition_of_the_delivered_event() -> None:
    """Resuming with another declared event (here 'timeout') takes that event's transition."""
    decision = resume(ApprovalFlow, waiting_for_approval(), "timeout", step="hold")
    assert decision.commands == (engine.RunStep("escalate", 1, None),)


def test_resume_cancels_the_step_timer() -> None:
    """Resuming a step that has a timer emits CancelTimer for it."""
    decision = resume(ApprovalFlow, waiting_for_approval(timeout=60), "received")
    assert decision.commands == (engine.CancelTimer("hold"),)
    assert decision.instance.status is Status.COMPLETED


@pytest.mark.parametrize("step", ["hold", None])
def test_resume_with_an_undeclared_event_is_refused(step: str | None) -> None:
    """An event the step does not declare raises InvalidEventError and changes nothing."""
    instance = waiting_for_approval()
    snapshot = copy.deepcopy(instance)
    with pytest.raises(InvalidEventError):
        resume(ApprovalFlow, instance, "approved", step=step)
    assert instance == snapshot


@pytest.mark.parametrize(("step", "event"), [("ghost", "received"), ("done", "done")])
def test_resume_of_an_unknown_step_is_refused(step: str, event: str) -> None:
    """Naming a step the workflow lacks (or Done) raises StepNotWaitingError."""
    with pytest.raises(StepNotWaitingError):
        resume(ApprovalFlow, waiting_for_approval(), event, step=step)


def test_resume_of_a_completed_step_is_refused() -> None:
    """A step that already completed cannot be resumed."""
    with pytest.raises(StepNotWaitingError):
        resume(ApprovalFlow, waiting_for_approval(), "valid", step="validate")


def test_resume_when_no_step_can_take_the_event_is_refused() -> None:
    """Without step=, an event no open or upcoming step declares raises StepNotWaitingError."""
    instance = resume(FanFlow, fanned_out(), "received", step="hold").instance  # buffered
    instance = returns(FanFlow, instance, "hold", Async()).instance  # delivered at once
    assert instance.steps["hold"].status is StepStatus.COMPLETED
    with pytest.raises(StepNotWaitingError):
        resume(FanFlow, instance, "received")


def test_resume_of_a_finished_run_is_refused() -> None:
    """Resuming a completed or cancelled run raises InstanceNotActiveError."""
    completed = resume(ApprovalFlow, waiting_for_approval(), "received").instance
    cancelled = engine.cancel(waiting_for_approval(), NOW).instance
    for instance in (completed, cancelled):
        with pytest.raises(InstanceNotActiveError):
            resume(ApprovalFlow, instance, "received", step="hold")


@pytest.mark.parametrize("payload", [[1, 2], "yes", {1: "one"}], ids=["list", "str", "int-keys"])
def test_resume_payload_must_be_a_dict_with_string_keys(payload: object) -> None:
    """A payload that is not a dict with string keys raises ResumeError."""
    with pytest.raises(ResumeError):
        resume(ApprovalFlow, waiting_for_approval(), "received", cast(Any, payload))


def test_resume_before_the_step_waits_is_buffered_then_delivered() -> None:
    """A resume for a step not waiting yet is kept, then delivered when the step returns Async."""
    instance = begin(ApprovalFlow)
    decision = resume(ApprovalFlow, instance, "received", {"early": True})
    instance = decision.instance
    assert decision.commands == ()
    assert instance.inbox == (PendingResume("hold", "received", {"early": True}, NOW),)
    assert "hold" not in instance.steps
    buffered = instance.history[-1]
    assert (buffered.kind, buffered.step, buffered.event, buffered.data) == (
        HistoryKind.RESUME_BUFFERED,
        "hold",
        "received",
        {"early": True},
    )

    instance = complete(ApprovalFlow, instance, "validate", "valid")
    assert instance.inbox  # hold is active, not waiting: still buffered
    instance = returns(ApprovalFlow, instance, "hold", Async()).instance
    assert instance.inbox == ()
    assert instance.status is Status.COMPLETED
    assert instance.context.steps["hold"] == {"early": True}
    assert [kind for kind, key in kinds(instance) if key == "hold"] == [
        HistoryKind.RESUME_BUFFERED,
        HistoryKind.STEP_WAITING,
        HistoryKind.STEP_RESUMED,
    ]


def test_buffered_resume_delivered_on_async_with_timeout_leaves_no_timer_armed() -> None:
    """A buffered resume for an active step is delivered on Async(timeout) with no live timer."""
    instance = complete(ApprovalFlow, begin(ApprovalFlow), "validate", "valid")
    instance = resume(ApprovalFlow, instance, "received", step="hold").instance
    decision = returns(ApprovalFlow, instance, "hold", Async(timeout=60))
    assert decision.instance.status is Status.COMPLETED
    timer_commands = [
        c for c in decision.commands if isinstance(c, engine.StartTimer | engine.CancelTimer)
    ]
    assert timer_commands == []  # delivered at once: no timer is armed, so none is cancelled
    assert engine.recover(decision.instance) == ()


def test_second_buffered_resume_is_discarded_when_the_first_is_delivered() -> None:
    """Only one buffered resume completes the step; any other for it is dropped and recorded."""
    instance = begin(ApprovalFlow)
    instance = resume(ApprovalFlow, instance, "received", {"n": 1}, step="hold").instance
    instance = resume(ApprovalFlow, instance, "timeout", {"n": 2}, step="hold").instance
    assert len(instance.inbox) == 2
    instance = complete(ApprovalFlow, instance, "validate", "valid")
    instance = returns(ApprovalFlow, instance, "hold", Async()).instance
    assert instance.status is Status.COMPLETED
    assert instance.context.steps["hold"] == {"n": 1}
    assert instance.inbox == ()
    discarded = [e for e in instance.history if e.kind is HistoryKind.RESUME_DISCARDED]
    assert [(e.step, e.event, e.data) for e in discarded] == [("hold", "timeout", {"n": 2})]


def test_buffered_resume_for_a_skipped_step_is_discarded() -> None:
    """A buffered resume whose step ends up on the untaken branch is dropped and recorded."""
    instance = resume(BufferFlow, begin(BufferFlow), "received", step="hold").instance
    instance = complete(BufferFlow, instance, "review", "rejected")
    assert instance.steps["hold"].status is StepStatus.SKIPPED
    assert instance.inbox == ()
    assert (HistoryKind.RESUME_DISCARDED, "hold") in kinds(instance)
    instance = complete(BufferFlow, instance, "reject", "ok")
    assert instance.status is Status.COMPLETED


def test_buffered_resume_for_a_step_that_completes_without_waiting_is_discarded() -> None:
    """A step that completes directly (no Async) drops the resume buffered for it."""
    instance = resume(BufferFlow, begin(BufferFlow), "received", {"x": 1}, step="hold").instance
    instance = complete(BufferFlow, instance, "review", "approved")
    instance = complete(BufferFlow, instance, "hold", "received", {"own": True})
    assert instance.inbox == ()
    assert instance.context.steps["hold"] == {"own": True}
    discarded = next(e for e in instance.history if e.kind is HistoryKind.RESUME_DISCARDED)
    assert (discarded.step, discarded.data) == ("hold", {"x": 1})
    assert instance.status is Status.COMPLETED


# ---------------------------------------------------------------------------------------------
# fire_timer


def test_fire_timer_delivers_the_timer_event() -> None:
    """A due timer completes the waiting step with its timeout event, marked source 'timer'."""
    instance = waiting_for_approval(timeout=60)
    decision = engine.fire_timer(
        definition(ApprovalFlow), instance, step="hold", at=TIMER_AT, now=TIMER_AT
    )
    instance = decision.instance
    assert decision.changed
    assert decision.commands == (engine.RunStep("escalate", 1, None),)
    assert instance.steps["hold"].event == "timeout"
    assert instance.context.steps["hold"] == {}
    fired = instance.history[-1]
    assert (fired.kind, fired.step, fired.event, fired.source, fired.at) == (
        HistoryKind.STEP_RESUMED,
        "hold",
        "timeout",
        "timer",
        TIMER_AT,
    )


def _resumed() -> tuple[Instance, str, datetime]:
    return resume(ApprovalFlow, waiting_for_approval(60), "received").instance, "hold", TIMER_AT


def _other_deadline() -> tuple[Instance, str, datetime]:
    return waiting_for_approval(60), "hold", TIMER_AT + timedelta(seconds=1)


def _cancelled() -> tuple[Instance, str, datetime]:
    return engine.cancel(waiting_for_approval(60), NOW).instance, "hold", TIMER_AT


def _no_timer() -> tuple[Instance, str, datetime]:
    return waiting_for_approval(), "hold", TIMER_AT


def _not_waiting() -> tuple[Instance, str, datetime]:
    return begin(ApprovalFlow), "validate", TIMER_AT


@pytest.mark.parametrize(
    "case",
    [_resumed, _other_deadline, _cancelled, _no_timer, _not_waiting],
    ids=["resumed", "other-deadline", "cancelled", "no-timer", "not-waiting"],
)
def test_stale_timers_change_nothing(case: Callable[[], tuple[Instance, str, datetime]]) -> None:
    """A timer for a resumed step, another deadline, or a finished run is ignored."""
    instance, step, at = case()
    decision = engine.fire_timer(definition(ApprovalFlow), instance, step=step, at=at, now=at)
    assert not decision.changed
    assert decision.instance is instance
    assert decision.commands == ()


def test_a_timeout_with_no_transition_fails_the_attempt_at_once() -> None:
    """Async(timeout=) whose timeout event no transition routes fails as invalid_result now."""
    instance = complete(BufferFlow, begin(BufferFlow), "review", "approved")
    decision = returns(BufferFlow, instance, "hold", Async(timeout=5))
    assert decision.commands == ()
    instance = decision.instance
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert instance.error.kind == "invalid_result"
    assert "'timeout'" in instance.error.message
    assert "no transition" in instance.error.message


def test_completing_with_an_unrouted_optional_event_fails_the_attempt() -> None:
    """Ok(event) with an optional event no transition routes is an invalid result, not a stall."""
    instance = returns(OptionalFlow, begin(OptionalFlow), "poll", "expired").instance
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert instance.error.kind == "invalid_result"
    assert "'expired'" in instance.error.message
    assert "no transition" in instance.error.message


@pytest.mark.parametrize("step", ["hold", None])
def test_resume_with_an_unrouted_optional_event_is_refused(step: str | None) -> None:
    """Resuming WaitForEvent with 'timeout' where nothing routes it is refused; nothing changes."""
    instance = complete(BufferFlow, begin(BufferFlow), "review", "approved")
    instance = returns(BufferFlow, instance, "hold", Async()).instance
    snapshot = copy.deepcopy(instance)
    with pytest.raises(InvalidEventError, match=r"routable.*\['received'\]") as raised:
        resume(BufferFlow, instance, "timeout", step=step)
    assert "'timeout'" not in str(raised.value).split("routable")[1]
    assert instance == snapshot


@pytest.mark.parametrize("step", ["poll", None])
def test_resume_of_an_upcoming_step_with_an_unrouted_event_is_refused(step: str | None) -> None:
    """An unrouted optional event is refused for a step not waiting yet, and nothing is buffered."""
    instance = begin(OptionalFlow)
    snapshot = copy.deepcopy(instance)
    with pytest.raises(InvalidEventError, match="no transition"):
        resume(OptionalFlow, instance, "expired", step=step)
    assert instance == snapshot
    assert instance.inbox == ()


def test_routed_events_exclude_unrouted_optional_events() -> None:
    """Node.routed_events holds declared events and only the optional ones a transition routes."""
    assert definition(BufferFlow).nodes["hold"].routed_events == frozenset({"received"})
    assert definition(ApprovalFlow).nodes["hold"].routed_events == frozenset(
        {"received", "timeout"}
    )
    assert definition(OptionalFlow).nodes["poll"].routed_events == frozenset({"ok"})
