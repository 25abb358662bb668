"""A failed run, and a step that failed for good, are logged at WARNING with no setup at all."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, ClassVar

from hephaestus import (
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
    import pytest

    from hephaestus import Config, Hephaestus, StepResult
    from hephaestus.testing import FakeClock

LOGGER = "hephaestus.runs"


class Charge(Step):
    """Fails every attempt with a ``ConnectionError`` (retried per its policy)."""

    events = ("ok",)
    retry = RetryPolicy(max_attempts=2, initial_delay=1)
    attempts: ClassVar[int] = 0

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        Charge.attempts += 1
        raise ConnectionError(f"gateway down (attempt {context.attempt})")


class Pay(Workflow):
    unique = Unique(key="pay")
    start_step = Charge
    transitions = {(Charge, "ok"): Done}


class Fine(Step):
    events = ("ok",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("ok")


class Calm(Workflow):
    unique = Unique(key="calm")
    start_step = Fine
    transitions = {(Fine, "ok"): Done}


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


async def test_a_failed_run_is_logged_once_with_its_ids_and_error(
    app: Hephaestus, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A retried attempt logs nothing; when the retries run out, one WARNING line names the run
    id, the instance id, the step, the attempt and the error."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    await Pay.start("p1")
    await run_until_idle(app)
    assert warnings(caplog) == []  # attempt 1 failed, a retry is due
    await advance(app, 1)
    run = await Pay.get("p1")
    assert run.status is Status.FAILED
    [record] = warnings(caplog)
    message = record.getMessage()
    assert "pay::p1" in message
    assert run.run_id in message
    assert "at step charge (attempt 2" in message
    assert "builtins.ConnectionError: gateway down (attempt 2)" in message
    assert record.__dict__["run_id"] == run.run_id
    assert record.__dict__["step"] == "charge"


async def test_a_completed_run_logs_no_warning(
    app: Hephaestus, caplog: pytest.LogCaptureFixture
) -> None:
    """Only failures are logged: a run that completes writes nothing at WARNING."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    await Calm.start("c1")
    await run_until_idle(app)
    assert (await Calm.get("c1")).status is Status.COMPLETED
    assert warnings(caplog) == []


def test_with_no_logging_set_up_the_failure_reaches_stderr() -> None:
    """Without any handler or telemetry, Python's last-resort handler prints the line."""
    program = textwrap.dedent(
        """
        import asyncio
        from hephaestus import Done, Hephaestus, Step, Unique, Workflow
        from hephaestus.testing import run_until_idle

        class Boom(Step):
            events = ("ok",)

            async def execute(self, run, config, context):
                raise TypeError("execute() got an unexpected keyword argument 'amount'")

        class Flow(Workflow):
            unique = Unique(key="flow")
            start_step = Boom
            transitions = {(Boom, "ok"): Done}

        async def main():
            async with Hephaestus() as app:
                await Flow.start("x1")
                await run_until_idle(app)

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert "run flow::x1" in result.stderr
    assert "failed at step boom (attempt 1" in result.stderr
    assert "unexpected keyword argument 'amount'" in result.stderr
