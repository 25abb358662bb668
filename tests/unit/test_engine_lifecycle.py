"""Pure engine tests of stale input, cancel, recover and what every decision obeys.

Every decision bumps the revision by one and never mutates the instance it was given.
"""

# Workflow ``transitions`` are class-level declarations read once, when the class is created:

from __future__ import annotations

import copy
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from hephaestus import (
    Async,
    Error,
    HistoryKind,
    InstanceNotActiveError,
    Ok,
    Status,
    StepStatus,
    Workflow,
)
from hephaestus._core import engine
from tests.unit.test_engine import (
    NOW,
    TIMER_AT,
    ApprovalFlow,
    FanFlow,
    SignoffFlow,
    begin,
    complete,
    definition,
    fanned_out,
    resume,
    returns,
    statuses,
    waiting_for_approval,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from hephaestus import Instance


# ---------------------------------------------------------------------------------------------
# Stale step results


def _wrong_attempt() -> tuple[Instance, str, int]:
    return begin(ApprovalFlow), "validate", 2


def _old_attempt() -> tuple[Instance, str, int]:
    retried = returns(ApprovalFlow, begin(ApprovalFlow), "validate", Error("x")).instance
    return retried, "validate", 1


def _completed_step() -> tuple[Instance, str, int]:
    return complete(ApprovalFlow, begin(ApprovalFlow), "validate", "valid"), "validate", 1


def _waiting_step() -> tuple[Instance, str, int]:
    return waiting_for_approval(), "hold", 1


def _unreached_step() -> tuple[Instance, str, int]:
    return begin(ApprovalFlow), "escalate", 1


def _finished_run() -> tuple[Instance, str, int]:
    return engine.cancel(begin(ApprovalFlow), NOW).instance, "validate", 1


@pytest.mark.parametrize(
    "case",
    [_wrong_attempt, _old_attempt, _completed_step, _waiting_step, _unreached_step, _finished_run],
    ids=["wrong-attempt", "old-attempt", "completed", "waiting", "unreached", "finished-run"],
)
def test_stale_results_change_nothing(case: Callable[[], tuple[Instance, str, int]]) -> None:
    """A result for another attempt, a step not active, or a finished run is ignored."""
    instance, step, attempt = case()
    decision = engine.apply_result(
        definition(ApprovalFlow),
        instance,
        step=step,
        attempt=attempt,
        outcome=Ok("valid"),
        now=NOW,
    )
    assert not decision.changed
    assert decision.instance is instance
    assert decision.commands == ()


# ---------------------------------------------------------------------------------------------
# Cancel and recover
def _half_done() -> Instance:
    """FanFlow: hold waits with a timer, left is due for attempt 2, right completed."""
    instance = returns(FanFlow, fanned_out(), "hold", Async(timeout=30)).instance
    instance = returns(FanFlow, instance, "left", Error("flaky")).instance
    return complete(FanFlow, instance, "right", "ok")


def test_cancel_closes_open_steps_and_records_the_reason() -> None:
    """Cancel marks open steps cancelled, aborts active ones and cancels timers."""
    instance = _half_done()
    later = NOW + timedelta(minutes=5)
    decision = engine.cancel(instance, later, reason="customer request")
    cancelled = decision.instance
    assert decision.changed
    assert cancelled.status is Status.CANCELLED
    assert set(decision.commands) == {engine.CancelTimer("hold"), engine.AbortStep("left")}
    assert statuses(cancelled) == {
        "split": StepStatus.COMPLETED,
        "hold": StepStatus.CANCELLED,
        "left": StepStatus.CANCELLED,
        "right": StepStatus.COMPLETED,
    }
    last = cancelled.history[-1]
    assert (last.kind, last.at, last.data) == (
        HistoryKind.CANCELLED,
        later,
        {"reason": "customer request"},
    )
    assert (cancelled.revision, cancelled.updated_at) == (instance.revision + 1, later)


def test_cancel_without_reason_or_timers() -> None:
    """Waiting steps without timers need no command; a cancel without reason records no data."""
    instance = complete(SignoffFlow, begin(SignoffFlow), "split", "ok")
    instance = returns(SignoffFlow, instance, "legal_signoff", Async()).instance
    instance = returns(SignoffFlow, instance, "finance_signoff", Async()).instance
    decision = engine.cancel(instance, NOW)
    assert decision.commands == ()
    assert decision.instance.history[-1].data is None


def _completed_run() -> Instance:
    return resume(ApprovalFlow, waiting_for_approval(), "received").instance


def _failed_run() -> Instance:
    return returns(ApprovalFlow, begin(ApprovalFlow), "validate", Error("x", False)).instance


def _cancelled_run() -> Instance:
    return engine.cancel(begin(ApprovalFlow), NOW).instance


@pytest.mark.parametrize(
    "finished",
    [_completed_run, _failed_run, _cancelled_run],
    ids=["completed", "failed", "cancelled"],
)
def test_terminal_statuses_are_absorbing(finished: Callable[[], Instance]) -> None:
    """A finished run refuses cancel and resume, and recover has nothing to do for it."""
    instance = finished()
    assert instance.is_terminal
    with pytest.raises(InstanceNotActiveError):
        engine.cancel(instance, NOW)
    with pytest.raises(InstanceNotActiveError):
        resume(ApprovalFlow, instance, "received", step="hold")
    assert engine.recover(instance) == ()


def test_late_results_and_timers_after_cancel_change_nothing() -> None:
    """After cancel, a result from an aborted step and a due timer are ignored."""
    instance = engine.cancel(_half_done(), NOW).instance
    defn = definition(FanFlow)
    late = engine.apply_result(defn, instance, step="left", attempt=2, outcome=Ok("ok"), now=NOW)
    fired = engine.fire_timer(defn, instance, step="hold", at=NOW + timedelta(seconds=30), now=NOW)
    for decision in (late, fired):
        assert not decision.changed
        assert decision.instance is instance
    assert instance.status is Status.CANCELLED


def test_recover_redispatches_active_steps_and_restarts_timers() -> None:
    """recover() re-runs active steps at their attempt and run_after, and re-arms timers."""
    assert engine.recover(fanned_out()) == (
        engine.RunStep("hold", 1, None),
        engine.RunStep("left", 1, None),
        engine.RunStep("right", 1, None),
    )
    assert engine.recover(_half_done()) == (
        engine.StartTimer("hold", NOW + timedelta(seconds=30), "timeout"),
        engine.RunStep("left", 2, None, NOW + timedelta(seconds=1)),
    )
    assert engine.recover(waiting_for_approval()) == ()  # waiting without a timer


def test_recover_after_start_repeats_the_start_commands() -> None:
    """Recovering a freshly started run gives the same commands start() returned."""
    decision = engine.start(
        definition(ApprovalFlow), instance_id="a::1", run_id="r", family="f", initial={}, now=NOW
    )
    assert engine.recover(decision.instance) == decision.commands


# ---------------------------------------------------------------------------------------------
# Bookkeeping: revision and immutability

type Call = Callable[[Instance, datetime], engine.Decision]

_FAN_WALK: list[Call] = [
    lambda i, t: returns(FanFlow, i, "split", "ok", now=t),
    lambda i, t: resume(FanFlow, i, "received", {"x": 1}, step="hold", now=t),
    lambda i, t: returns(FanFlow, i, "left", Error("flaky"), now=t),
    lambda i, t: returns(FanFlow, i, "right", Ok("ok", {"r": 1}, metadata={"m": 1}), now=t),
    lambda i, t: returns(FanFlow, i, "hold", Async(timeout=30), now=t),
    lambda i, t: returns(FanFlow, i, "left", "ok", now=t),
    lambda i, t: returns(FanFlow, i, "mid", "ok", now=t),
    lambda i, t: returns(FanFlow, i, "join", Ok("ok", metadata={"m": 2}), now=t),
]

_APPROVAL_WALK: list[Call] = [
    lambda i, t: returns(ApprovalFlow, i, "validate", "valid", now=t),
    lambda i, t: returns(ApprovalFlow, i, "hold", Async(timeout=60), now=t),
    # hold went waiting at walk step 2 (NOW + 2 s) with a 60 s timeout
    lambda i, t: engine.fire_timer(
        definition(ApprovalFlow), i, step="hold", at=NOW + timedelta(seconds=62), now=t
    ),
    lambda i, t: returns(ApprovalFlow, i, "escalate", Error("pager down"), now=t),
    lambda i, t: engine.cancel(i, t, reason="gave up"),
]


@pytest.mark.parametrize(
    ("workflow", "walk", "final"),
    [(FanFlow, _FAN_WALK, Status.COMPLETED), (ApprovalFlow, _APPROVAL_WALK, Status.CANCELLED)],
    ids=["fan-out", "approval"],
)
def test_decisions_bump_revision_by_one_and_never_mutate_their_input(
    workflow: type[Workflow], walk: list[Call], final: Status
) -> None:
    """Each changed decision returns a new instance, revision + 1, leaving the input intact."""
    instance = begin(workflow)
    assert instance.revision == 1
    for index, call in enumerate(walk, start=1):
        now = NOW + timedelta(seconds=index)
        snapshot = copy.deepcopy(instance)
        decision = call(instance, now)
        assert decision.changed
        assert instance == snapshot
        assert decision.instance is not instance
        assert decision.instance.revision == instance.revision + 1
        assert decision.instance.updated_at == now
        assert decision.instance.history[: len(instance.history)] == instance.history
        instance = decision.instance
    assert instance.status is final


def test_unchanged_decisions_keep_the_revision() -> None:
    """A stale input returns the very same instance, revision untouched."""
    instance = waiting_for_approval(timeout=60)
    stale = engine.fire_timer(definition(ApprovalFlow), instance, step="hold", at=NOW, now=TIMER_AT)
    assert (stale.changed, stale.instance.revision) == (False, instance.revision)
