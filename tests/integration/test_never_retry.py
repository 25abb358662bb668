"""A retry policy names exceptions never retried; by default, errors in the step's own code."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from hephaestus import (
    DEFAULT_NEVER_RETRY,
    DEFAULT_RETRY,
    Done,
    Ok,
    RetryPolicy,
    Status,
    Step,
    StepContext,
    StepRun,
    Unique,
    Workflow,
)
from hephaestus.testing import advance, run_until_idle

if TYPE_CHECKING:
    from hephaestus import Config, Hephaestus, StepResult
    from hephaestus.testing import FakeClock


class Raises(Step):
    """Raises ``TypeError`` on its first attempt (``KeyError`` with ``config["key"]``)."""

    events = ("ok",)
    attempts: ClassVar[list[int]] = []

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        Raises.attempts.append(context.attempt)
        if context.attempt == 1:
            if config and config.get("key"):
                raise KeyError("sku")
            raise TypeError("execute() got an unexpected keyword argument 'amount'")
        return Ok("ok")


class CodeError(Workflow):
    unique = Unique(key="codeerror")
    start_step = Raises
    transitions = {(Raises, "ok"): Done}


class RetriesAll(Workflow):
    unique = Unique(key="retriesall")
    retry = RetryPolicy(max_attempts=2, initial_delay=1, never_retry=())
    start_step = Raises
    transitions = {(Raises, "ok"): Done}


class KeyNeverRetried(Workflow):
    unique = Unique(key="keynever")
    retry = RetryPolicy(never_retry=(LookupError,))
    start_step = Raises, {"key": True}
    transitions = {(Raises, "ok"): Done}


def test_the_default_never_retries_errors_of_the_code() -> None:
    """``DEFAULT_RETRY`` never retries the ``DEFAULT_NEVER_RETRY`` errors; it retries the rest."""
    assert DEFAULT_RETRY.never_retry == DEFAULT_NEVER_RETRY
    assert not DEFAULT_RETRY.retries(TypeError("wrong call"))
    assert not DEFAULT_RETRY.retries(AttributeError("no such attribute"))
    assert DEFAULT_RETRY.retries(ConnectionError("the carrier is down"))
    assert DEFAULT_RETRY.retries(KeyError("sku"))


async def test_a_type_error_fails_the_run_at_its_first_attempt(
    app: Hephaestus, clock: FakeClock
) -> None:
    """With the default policy a ``TypeError`` is not retried: the run fails with no backoff."""
    Raises.attempts.clear()
    await CodeError.start("a1")
    await run_until_idle(app)
    run = await CodeError.get("a1")
    assert run.status is Status.FAILED
    assert run.error is not None
    assert run.error.type == "builtins.TypeError"
    assert run.error.attempt == 1
    assert Raises.attempts == [1]
    assert clock.pending == 0  # no retry timer


async def test_an_empty_never_retry_retries_everything(app: Hephaestus, clock: FakeClock) -> None:
    """``never_retry=()`` retries the ``TypeError`` like any other exception."""
    Raises.attempts.clear()
    await RetriesAll.start("a1")
    await run_until_idle(app)
    await advance(app, 1)
    assert (await RetriesAll.get("a1")).status is Status.COMPLETED
    assert Raises.attempts == [1, 2]


async def test_a_named_exception_and_its_subclasses_are_never_retried(app: Hephaestus) -> None:
    """``never_retry=(LookupError,)`` fails a ``KeyError`` at once, attempts notwithstanding."""
    Raises.attempts.clear()
    await KeyNeverRetried.start("a1")
    await run_until_idle(app)
    run = await KeyNeverRetried.get("a1")
    assert run.status is Status.FAILED
    assert run.error is not None
    assert run.error.type == "builtins.KeyError"
    assert Raises.attempts == [1]
