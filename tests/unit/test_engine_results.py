"""Pure engine tests of step output: ``interpret`` checks it, failures retry or fail the run."""

# Workflow ``transitions`` are class-level declarations read once, when the class is created:

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType
from typing import Any, cast

import pytest

from hephaestus import (
    DEFAULT_RETRY,
    Async,
    Done,
    Error,
    ErrorInfo,
    HistoryKind,
    Ok,
    RetryPolicy,
    Status,
    StepState,
    StepStatus,
    Workflow,
)
from hephaestus._core import engine
from tests.unit.test_engine import (
    NOW,
    Emits,
    FanFlow,
    Hold,
    LinearFlow,
    Validate,
    begin,
    complete,
    definition,
    fanned_out,
    kinds,
    node,
    returns,
    statuses,
)


class Flaky(Emits):
    events = ("ok",)


class Stubborn(Emits):
    events = ("ok",)
    retry = RetryPolicy(max_attempts=2, backoff="constant", initial_delay=10)


class RetryFlow(Workflow):
    retry = RetryPolicy(max_attempts=3, backoff="linear", initial_delay=5)
    start_step = Flaky
    transitions = {(Flaky, "ok"): Stubborn, (Stubborn, "ok"): Done}


class DefaultRetryFlow(Workflow):
    start_step = Flaky
    transitions = {(Flaky, "ok"): Done}


class HoldFlow(Workflow):
    start_step = Hold
    transitions = {(Hold, "received"): Done, (Hold, "timeout"): Done}


# ---------------------------------------------------------------------------------------------
# interpret()


def test_interpret_accepts_declared_results() -> None:
    """Declared events (also as a bare string), Async without timeout and Ok pass through."""
    validate = node(LinearFlow, "validate")
    assert engine.interpret(validate, "valid") == Ok("valid")
    ok = Ok("valid", {"total": 1}, metadata={"m": 2})
    assert engine.interpret(validate, ok) == ok
    assert engine.interpret(validate, Async()) == Async()
    proxy = Ok("valid", MappingProxyType({"total": 1}))  # any Mapping with str keys will do
    assert engine.interpret(validate, proxy) == Ok("valid", {"total": 1})


def test_interpret_normalises_async_timeouts_to_seconds() -> None:
    """Async timeouts given as timedelta or int become float seconds."""
    hold = node(HoldFlow, "hold")
    assert engine.interpret(hold, Async(timeout=timedelta(minutes=2))) == Async(timeout=120.0)
    assert engine.interpret(hold, Async(timeout=0)) == Async(timeout=0.0)


def test_interpret_turns_error_into_a_failure() -> None:
    """Error(reason) is a retryable failure of kind 'error' unless retryable=False."""
    validate = node(LinearFlow, "validate")
    assert engine.interpret(validate, Error("bank down")) == engine.Failure(
        ErrorInfo(kind="error", message="bank down"), retryable=True
    )
    assert engine.interpret(validate, Error("card stolen", retryable=False)) == engine.Failure(
        ErrorInfo(kind="error", message="card stolen"), retryable=False
    )


_INVALID_RESULTS: list[tuple[str, object]] = [
    ("undeclared event", Ok("maybe")),
    ("undeclared shorthand", "maybe"),
    ("updates not a dict", Ok("valid", cast(Any, [1, 2]))),
    ("metadata not a dict", Ok("valid", metadata=cast(Any, "meta"))),
    ("event not a string", Ok(cast(Any, ["valid"]))),
    ("None", None),
    ("int", 42),
    ("bool", True),
    ("step class", Validate),
]


@pytest.mark.parametrize(
    "raw", [raw for _, raw in _INVALID_RESULTS], ids=[name for name, _ in _INVALID_RESULTS]
)
def test_interpret_rejects_malformed_results(raw: object) -> None:
    """Undeclared events, non-dict updates and unknown shapes are non-retryable invalid_result."""
    outcome = engine.interpret(node(LinearFlow, "validate"), raw)
    assert isinstance(outcome, engine.Failure)
    assert outcome.error.kind == "invalid_result"
    assert not outcome.retryable
    assert "declared events: ['valid']" in outcome.error.message


_UNSTORABLE_RESULTS: list[tuple[str, Ok, str]] = [
    ("updates with int keys", Ok("valid", cast(Any, {1: "x"})), "updates"),
    ("metadata with int keys", Ok("valid", metadata=cast(Any, {1: "x"})), "metadata"),
    ("nested bytes", Ok("valid", {"a": [{"b": b"x"}]}), "updates['a'][0]['b']"),
    ("a NUL character", Ok("valid", {"name": "a\x00b"}), "updates['name']"),
    ("a lone surrogate", Ok("valid", metadata={"k": "\ud800"}), "metadata['k']"),
    ("a dataclass", Ok("valid", {"when": ErrorInfo("k", "m")}), "updates['when']"),
]


@pytest.mark.parametrize(
    ("raw", "path"),
    [(raw, path) for _, raw, path in _UNSTORABLE_RESULTS],
    ids=[name for name, _, _ in _UNSTORABLE_RESULTS],
)
def test_interpret_fails_results_that_cannot_be_stored(raw: Ok, path: str) -> None:
    """A result no storage can hold fails the attempt (invalid_result, retried per policy)."""
    outcome = engine.interpret(node(LinearFlow, "validate"), raw)
    assert isinstance(outcome, engine.Failure)
    assert outcome.error.kind == "invalid_result"
    assert outcome.retryable
    assert f"at {path}" in outcome.error.message
    assert "\x00" not in outcome.error.message
    assert "\ud800" not in outcome.error.message


def test_interpret_copies_the_results_it_accepts() -> None:
    """The outcome holds copies: a step changing its returned dict later changes nothing."""
    updates = {"items": [1, 2], "nested": {"a": 1}}
    metadata = {"tags": ["x"]}
    outcome = engine.interpret(node(LinearFlow, "validate"), Ok("valid", updates, metadata))
    assert isinstance(outcome, Ok)
    updates["items"].append(3)  # type: ignore[attr-defined]
    updates["nested"]["b"] = 2  # type: ignore[index]
    metadata["tags"].append("y")
    assert outcome.updates == {"items": [1, 2], "nested": {"a": 1}}
    assert outcome.metadata == {"tags": ["x"]}


_INVALID_ASYNC: list[tuple[str, Async]] = [
    ("negative seconds", Async(timeout=-1)),
    ("negative timedelta", Async(timeout=timedelta(seconds=-5))),
    ("bool", Async(timeout=cast(Any, True))),
    ("string", Async(timeout=cast(Any, "60"))),
    ("undeclared timeout event", Async(timeout=5, timeout_event="expired")),
    ("timeout event not a string", Async(timeout=5, timeout_event=cast(Any, ["timeout"]))),
    ("infinite", Async(timeout=float("inf"))),
    ("nan", Async(timeout=float("nan"))),
    ("past any datetime", Async(timeout=timedelta.max)),
]


@pytest.mark.parametrize(
    "raw", [raw for _, raw in _INVALID_ASYNC], ids=[name for name, _ in _INVALID_ASYNC]
)
def test_interpret_rejects_invalid_async(raw: Async) -> None:
    """An Async with a bad timeout or an undeclared timeout event is a non-retryable failure."""
    outcome = engine.interpret(node(HoldFlow, "hold"), raw)
    assert isinstance(outcome, engine.Failure)
    assert outcome.error.kind == "invalid_result"
    assert not outcome.retryable


def test_interpret_rejects_timeout_for_a_step_without_the_timeout_event() -> None:
    """Async(timeout=...) on a step that does not declare 'timeout' is invalid."""
    outcome = engine.interpret(node(LinearFlow, "validate"), Async(timeout=10))
    assert isinstance(outcome, engine.Failure)
    assert outcome.error.kind == "invalid_result"


def test_failure_from_exception_keeps_type_message_and_traceback() -> None:
    """An exception becomes a retryable failure naming its qualified type, with a traceback."""
    try:
        raise ValueError("bad amount")
    except ValueError as exc:
        failure = engine.failure_from_exception(exc)
    assert failure.retryable
    assert (failure.error.kind, failure.error.message, failure.error.type) == (
        "exception",
        "bad amount",
        "builtins.ValueError",
    )
    assert failure.error.traceback is not None
    assert "ValueError: bad amount" in failure.error.traceback
    assert engine.failure_from_exception(KeyError()).error.message == "KeyError"


# ---------------------------------------------------------------------------------------------
# Retries and failure


def test_retryable_failure_reschedules_the_step_with_backoff() -> None:
    """A failed attempt with attempts left stays active with attempt+1 and a backoff delay."""
    instance = begin(DefaultRetryFlow)
    decision = returns(DefaultRetryFlow, instance, "flaky", Error("bank timeout"))
    instance = decision.instance
    error = ErrorInfo(kind="error", message="bank timeout", step="flaky", attempt=1)

    assert instance.status is Status.RUNNING
    assert instance.steps["flaky"] == StepState(
        StepStatus.ACTIVE, attempt=2, run_after=NOW + timedelta(seconds=1), error=error
    )
    assert decision.commands == (engine.RunStep("flaky", 2, None, NOW + timedelta(seconds=1)),)
    last = instance.history[-1]
    assert (last.kind, last.step, last.attempt, last.error) == (
        HistoryKind.STEP_RETRYING,
        "flaky",
        1,
        error,
    )

    later = NOW + timedelta(seconds=30)
    decision = returns(DefaultRetryFlow, instance, "flaky", Error("bank timeout"), now=later)
    assert decision.commands == (engine.RunStep("flaky", 3, None, later + timedelta(seconds=2)),)


def test_exception_failures_are_retried_too() -> None:
    """A failure built from an exception is retryable, like Error(reason)."""
    instance = begin(DefaultRetryFlow)
    decision = engine.apply_result(
        definition(DefaultRetryFlow),
        instance,
        step="flaky",
        attempt=1,
        outcome=engine.failure_from_exception(ConnectionError("reset")),
        now=NOW,
    )
    state = decision.instance.steps["flaky"]
    assert (state.status, state.attempt) == (StepStatus.ACTIVE, 2)
    assert state.error is not None
    assert state.error.type == "builtins.ConnectionError"


def test_exhausted_retries_fail_the_step_and_the_run() -> None:
    """The last allowed attempt failing marks the step and the run failed with step and attempt."""
    instance = begin(DefaultRetryFlow)
    for _ in range(DEFAULT_RETRY.max_attempts):
        decision = returns(DefaultRetryFlow, instance, "flaky", Error("still down"))
        instance = decision.instance
    assert decision.commands == ()
    assert instance.status is Status.FAILED
    assert instance.steps["flaky"].status is StepStatus.FAILED
    assert instance.error == ErrorInfo(
        kind="error", message="still down", step="flaky", attempt=DEFAULT_RETRY.max_attempts
    )
    assert [k for k, _ in kinds(instance)][-2:] == [HistoryKind.STEP_FAILED, HistoryKind.FAILED]
    assert [k for k, _ in kinds(instance)].count(HistoryKind.STEP_RETRYING) == 4


@pytest.mark.parametrize(
    "raw", [Error("card stolen", retryable=False), 42], ids=["not-retryable", "invalid"]
)
def test_non_retryable_failure_fails_at_once(raw: object) -> None:
    """A non-retryable failure (or an invalid result) fails the run on the first attempt."""
    decision = returns(DefaultRetryFlow, begin(DefaultRetryFlow), "flaky", raw)
    instance = decision.instance
    assert instance.status is Status.FAILED
    assert instance.steps["flaky"] == StepState(StepStatus.FAILED, attempt=1, error=instance.error)
    assert instance.error is not None
    assert (instance.error.step, instance.error.attempt) == ("flaky", 1)


def test_retry_policy_precedence_step_then_workflow_then_default() -> None:
    """Step.retry beats Workflow.retry, which beats DEFAULT_RETRY."""
    assert node(RetryFlow, "stubborn").retry == Stubborn.retry
    assert node(RetryFlow, "flaky").retry == RetryFlow.retry
    assert node(DefaultRetryFlow, "flaky").retry == DEFAULT_RETRY


def test_workflow_retry_policy_drives_attempts_and_linear_backoff() -> None:
    """Under the workflow's linear policy (3 attempts, 5 s) the third failure is final."""
    instance = begin(RetryFlow)
    delays = []
    for _ in range(2):
        decision = returns(RetryFlow, instance, "flaky", Error("nope"))
        instance = decision.instance
        run_after = instance.steps["flaky"].run_after
        assert run_after is not None
        delays.append(run_after - NOW)
    assert delays == [timedelta(seconds=5), timedelta(seconds=10)]
    instance = returns(RetryFlow, instance, "flaky", Error("nope")).instance
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert instance.error.attempt == 3


def test_step_retry_policy_drives_attempts_and_constant_backoff() -> None:
    """A step's own policy (2 attempts, constant 10 s) applies instead of the workflow's."""
    instance = complete(RetryFlow, begin(RetryFlow), "flaky", "ok")
    decision = returns(RetryFlow, instance, "stubborn", Error("nope"))
    assert decision.commands == (engine.RunStep("stubborn", 2, None, NOW + timedelta(seconds=10)),)
    instance = returns(RetryFlow, decision.instance, "stubborn", Error("nope")).instance
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert (instance.error.step, instance.error.attempt) == ("stubborn", 2)


def test_a_retried_step_that_succeeds_keeps_its_attempt_number() -> None:
    """Success on a later attempt completes the step and records that attempt in history."""
    instance = returns(DefaultRetryFlow, begin(DefaultRetryFlow), "flaky", Error("x")).instance
    instance = complete(DefaultRetryFlow, instance, "flaky", "ok")
    assert instance.status is Status.COMPLETED
    assert instance.steps["flaky"].attempt == 2
    completed = [e for e in instance.history if e.kind is HistoryKind.STEP_COMPLETED]
    assert (completed[0].step, completed[0].attempt) == ("flaky", 2)


def test_a_failing_step_stops_the_other_branches() -> None:
    """When the run fails, active steps get AbortStep and waiting steps' timers are cancelled."""
    instance = returns(FanFlow, fanned_out(), "hold", Async(timeout=30)).instance
    decision = returns(FanFlow, instance, "left", Error("declined", retryable=False))
    instance = decision.instance
    assert instance.status is Status.FAILED
    assert set(decision.commands) == {engine.CancelTimer("hold"), engine.AbortStep("right")}
    assert statuses(instance) == {
        "split": StepStatus.COMPLETED,
        "hold": StepStatus.CANCELLED,
        "left": StepStatus.FAILED,
        "right": StepStatus.CANCELLED,
    }
