"""A ``CancelledError`` that a step raises on its own is a failed attempt, not a stop signal."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import TYPE_CHECKING

import pytest

from hephaestus import (
    Config,
    Done,
    HistoryKind,
    Ok,
    RetryPolicy,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    StepStatus,
    Unique,
    Workflow,
)
from hephaestus.testing import advance, run_until_idle

if TYPE_CHECKING:
    from hephaestus import Hephaestus

BOUND = 5.0
"""Seconds a test waits for something that should happen at once; a failure, never a hang."""

attempts: list[int] = []


@pytest.fixture(autouse=True)
def _fresh_attempts() -> None:
    attempts.clear()


async def _cancelled_inner_task() -> None:
    """What a step sees when a task it awaits is cancelled by someone else."""
    inner = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    inner.cancel()
    await inner  # raises CancelledError in the step, though nobody cancelled the step


class InnerTaskCancelled(Step):
    events = ("ok",)
    retry = RetryPolicy(max_attempts=3, backoff="constant", initial_delay=1.0)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        attempts.append(context.attempt)
        if context.attempt < 3:
            await _cancelled_inner_task()
        return Ok("ok", {"attempt": context.attempt})


class InnerCancelFlow(Workflow):
    unique = Unique(key="innercancel")
    start_step = InnerTaskCancelled
    transitions = {(InnerTaskCancelled, "ok"): Done}


class AlwaysCancelled(Step):
    events = ("ok",)
    retry = RetryPolicy(max_attempts=2, backoff="constant", initial_delay=1.0)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        attempts.append(context.attempt)
        raise asyncio.CancelledError("gave up waiting")


class AlwaysCancelledFlow(Workflow):
    unique = Unique(key="alwayscancelled")
    start_step = AlwaysCancelled
    transitions = {(AlwaysCancelled, "ok"): Done}


class ThreadCancelled(Step):
    events = ("ok",)
    retry = RetryPolicy(max_attempts=1)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        attempts.append(context.attempt)
        raise concurrent.futures.CancelledError  # a cancelled future awaited in a thread


class ThreadCancelledFlow(Workflow):
    unique = Unique(key="threadcancelled")
    start_step = ThreadCancelled
    transitions = {(ThreadCancelled, "ok"): Done}


async def test_a_cancelled_inner_task_fails_the_attempt_and_is_retried(app: Hephaestus) -> None:
    """A step whose awaited inner task was cancelled fails that attempt; the retry succeeds."""
    await InnerCancelFlow.start("one")
    async with asyncio.timeout(BOUND):
        await run_until_idle(app)
    instance = await InnerCancelFlow.get("one")
    assert instance.status is Status.RUNNING  # attempt 2 is due after its backoff
    retrying = [e for e in instance.history if e.kind is HistoryKind.STEP_RETRYING]
    assert [e.attempt for e in retrying] == [1]
    assert retrying[0].error is not None
    assert retrying[0].error.type == "asyncio.exceptions.CancelledError"

    await advance(app, 1)
    await advance(app, 1)
    instance = await InnerCancelFlow.get("one")
    assert instance.status is Status.COMPLETED
    assert attempts == [1, 2, 3]
    assert instance.context.steps["inner_task_cancelled"] == {"attempt": 3}


async def test_a_step_raising_cancelled_error_fails_the_run_when_retries_run_out(
    app: Hephaestus,
) -> None:
    """A step that keeps raising ``CancelledError`` ends the run failed, never running forever."""
    await AlwaysCancelledFlow.start("one")
    async with asyncio.timeout(BOUND):
        await run_until_idle(app)
        await advance(app, 1)
    instance = await AlwaysCancelledFlow.get("one")
    assert attempts == [1, 2]
    assert instance.status is Status.FAILED
    assert instance.steps["always_cancelled"].status is StepStatus.FAILED
    assert instance.error is not None
    assert instance.error.kind == "exception"
    assert instance.error.message == "gave up waiting"


async def test_a_sync_step_raising_a_futures_cancelled_error_fails(app: Hephaestus) -> None:
    """A plain ``def`` step raising ``concurrent.futures.CancelledError`` fails, not hangs."""
    await ThreadCancelledFlow.start("one")
    async with asyncio.timeout(BOUND):
        await run_until_idle(app)
    instance = await ThreadCancelledFlow.get("one")
    assert attempts == [1]
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert instance.error.step == "thread_cancelled"
