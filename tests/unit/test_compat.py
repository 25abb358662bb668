"""Whether a stored run fits the definition that would continue it (``_core.compat``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from hephaestus import (
    Done,
    StepState,
    StepStatus,
    WaitForEvent,
    Workflow,
    WorkflowDefinition,
)
from hephaestus._core import engine
from hephaestus._core.compat import check_instance, instance_problems
from hephaestus._core.instance import JoinState, PendingResume, ScheduledResume
from hephaestus.errors import CorruptInstanceError, IncompatibleInstanceError

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Parcel(Workflow):
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


def definition() -> WorkflowDefinition:
    compiled = Parcel.definition()
    assert isinstance(compiled, WorkflowDefinition)
    return compiled


def started() -> engine.Decision:
    return engine.start(
        definition(),
        instance_id="parcel::a",
        run_id="run-a",
        family=definition().name,
        initial={},
        now=NOW,
    )


def test_a_run_started_from_the_definition_fits_it() -> None:
    """A run the engine made from a definition has no problem with it."""
    instance = started().instance
    assert instance_problems(definition(), instance) == []
    check_instance(definition(), instance)


def test_each_reference_to_a_missing_step_is_a_problem() -> None:
    """A step, join, join member or buffered resume naming an unknown step is reported."""
    instance = replace(
        started().instance,
        steps={"renamed_wait": StepState(StepStatus.WAITING)},
        joins={"gone_join": JoinState(resolved=frozenset({"ghost"}), taken=True)},
        inbox=(PendingResume(step="old_step", event="received", payload={}, at=NOW),),
    )
    problems = instance_problems(definition(), instance)
    assert len(problems) == 4
    assert any("waiting step 'renamed_wait'" in problem for problem in problems)
    assert any("join 'gone_join'" in problem and "'ghost'" in problem for problem in problems)
    assert any("'old_step'" in problem for problem in problems)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"workflow_version": 2}, "version 2"),
        ({"workflow": "elsewhere.Flow"}, "elsewhere.Flow"),
    ],
)
def test_another_workflow_or_version_is_a_problem(
    changes: dict[str, object], expected: str
) -> None:
    """A run of another workflow name or version does not fit."""
    instance = replace(started().instance, **changes)  # type: ignore[arg-type]
    with pytest.raises(IncompatibleInstanceError, match=expected) as caught:
        check_instance(definition(), instance)
    assert caught.value.run_id == "run-a"
    assert caught.value.instance_id == "parcel::a"
    assert len(caught.value.problems) == 1
    assert isinstance(caught.value, CorruptInstanceError)
    assert "Deploy the definition it was started with" in str(caught.value)


def test_scheduled_resumes_and_timers_that_no_longer_fit_are_problems() -> None:
    """A scheduled resume of an unknown step, or an event the step no longer routes, is reported;
    so is a pending timer whose event has no transition any more."""
    instance = replace(
        started().instance,
        steps={"wait_for_event": StepState(StepStatus.WAITING, timer_at=NOW, timer_event="late")},
        scheduled=(
            ScheduledResume(id="1", step="old_step", event="received", payload={}, at=NOW),
            ScheduledResume(id="2", step="wait_for_event", event="timeout", payload={}, at=NOW),
        ),
    )
    problems = instance_problems(definition(), instance)
    assert len(problems) == 3
    assert any("scheduled resume targets 'old_step'" in problem for problem in problems)
    assert any("sends 'timeout'" in problem for problem in problems)
    assert any("fires 'late'" in problem for problem in problems)
