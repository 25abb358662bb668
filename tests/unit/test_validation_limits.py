"""Edge cases of definition checks: infinite timers, cascading issues, umbrella options."""

from __future__ import annotations

import math

import pytest

from hephaestus import (
    Config,
    Done,
    Ok,
    RetryPolicy,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Wait,
    WaitForEvent,
    Workflow,
)
from hephaestus.errors import IssueCode, WorkflowDefinitionError


class Begin(Step):
    events = ("go",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("go")


class LimitsV1(Workflow):
    version = 1
    start_step = Begin
    transitions = {(Begin, "go"): Done}


@pytest.mark.parametrize("duration", [math.inf, math.nan, -1, 10**12])
def test_wait_durations_that_cannot_be_dated_are_rejected(duration: float) -> None:
    """A Wait of infinite, NaN, negative or over-100-year duration fails at definition time."""
    with pytest.raises(WorkflowDefinitionError) as caught:

        class Forever(Workflow):
            start_step = Begin
            transitions = {
                (Begin, "go"): (Wait, {"duration": duration, "unit": "second"}),
                (Wait, "timeout"): Done,
            }

    assert caught.value.codes == {IssueCode.INVALID_CONFIG}


@pytest.mark.parametrize("timeout", [math.inf, math.nan])
def test_wait_for_event_timeouts_must_be_finite(timeout: float) -> None:
    """A WaitForEvent timeout of inf or NaN is an invalid config, not a run-time failure."""
    with pytest.raises(WorkflowDefinitionError) as caught:

        class NeverTimesOut(Workflow):
            start_step = (WaitForEvent, {"timeout": timeout})
            transitions = {(WaitForEvent, "received"): Done, (WaitForEvent, "timeout"): Done}

    assert caught.value.codes == {IssueCode.INVALID_CONFIG}


def test_a_malformed_transition_does_not_add_config_issues() -> None:
    """A bad timeout transition is reported alone, without a spurious 'no timeout route' issue."""
    with pytest.raises(WorkflowDefinitionError) as caught:

        class BrokenRoute(Workflow):
            start_step = (WaitForEvent, {"timeout": 5})
            transitions = {
                (WaitForEvent, "received"): Done,
                (WaitForEvent, "timeout"): "Done",  # type: ignore[dict-item]  # deliberately wrong
            }

    assert caught.value.codes == {IssueCode.INVALID_TARGET}


def test_umbrella_current_must_be_an_integer_version() -> None:
    """current = True is refused although True == 1 in Python."""
    with pytest.raises(WorkflowDefinitionError) as caught:

        class BoolCurrent(Workflow):
            versions = {1: LimitsV1}
            current = True

    assert caught.value.codes == {IssueCode.INVALID_VERSIONS}


def test_umbrella_retry_is_refused() -> None:
    """A retry policy on an umbrella would apply to nothing, so it is an option error."""
    with pytest.raises(WorkflowDefinitionError) as caught:

        class RetryingUmbrella(Workflow):
            versions = {1: LimitsV1}
            retry = RetryPolicy(max_attempts=2)

    assert caught.value.codes == {IssueCode.INVALID_OPTION}
