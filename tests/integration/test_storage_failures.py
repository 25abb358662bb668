"""A storage that fails for a while loses nothing: results are recorded once it is back."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from hephaestus import (
    Config,
    Done,
    Hephaestus,
    Instance,
    Ok,
    RetryPolicy,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    Workflow,
)
from hephaestus.errors import StorageError, UnencodableValueError
from hephaestus.storage import InMemoryStorage, Storage
from hephaestus.testing import FakeClock, advance, run_until_idle

if TYPE_CHECKING:
    from hephaestus.runners import Changes

executions: list[str] = []


class Count(Step):
    events = ("counted",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        executions.append(context.idempotency_key)
        return Ok("counted", {"n": len(executions)})


class Counting(Workflow):
    unique = Unique(key="counting")
    start_step = Count
    transitions = {(Count, "counted"): Done}


class FlakyStorage(InMemoryStorage):
    """In-memory storage whose next ``failures`` writes raise, like a database restarting."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    async def put(
        self,
        instance: Instance,
        previous: Instance | None = None,
        changes: Changes | None = None,
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise StorageError("connection lost")
        await super().put(instance, previous, changes)


async def test_a_step_result_is_recorded_once_storage_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Writes failing three times delay the result; the step ran once and the run completes."""
    executions.clear()
    storage = FlakyStorage()
    async with Hephaestus(storage=storage, clock=FakeClock()) as app:
        storage.failures = 3
        with caplog.at_level(logging.WARNING, logger="hephaestus.runner.local"):
            await Counting.start("one")
            await run_until_idle(app)
        run = await Counting.get("one")
    assert run.status is Status.COMPLETED
    assert run.context.steps["count"] == {"n": 1}
    assert len(executions) == 1
    assert storage.failures == 0
    assert sum("storage failed" in r.getMessage() for r in caplog.records) == 3


class Opaque:
    """A value no JSON codec can hold."""


class ReturnsOpaque(Step):
    events = ("made",)
    retry = RetryPolicy(max_attempts=2, initial_delay=1)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        executions.append(f"attempt {context.attempt}")
        return Ok("made", {"thing": Opaque()})


class MakesOpaque(Workflow):
    unique = Unique(key="opaque")
    start_step = ReturnsOpaque
    transitions = {(ReturnsOpaque, "made"): Done}


async def test_a_result_the_storage_cannot_encode_fails_the_step_cleanly(
    app: Hephaestus, storage: Storage
) -> None:
    """On every storage an unencodable result fails each attempt (per its policy), then the run."""
    del storage  # the same on each: values are checked before any storage sees them
    executions.clear()
    await MakesOpaque.start("one")
    await advance(app, seconds=5)
    run = await MakesOpaque.get("one")
    assert executions == ["attempt 1", "attempt 2"]
    assert run.status is Status.FAILED
    assert run.error is not None
    assert (run.error.kind, run.error.step) == ("invalid_result", "returns_opaque")
    assert "cannot be stored" in run.error.message
    with pytest.raises(UnencodableValueError):
        await MakesOpaque.start("two", {"bad": Opaque()})
