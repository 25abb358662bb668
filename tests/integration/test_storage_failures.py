"""A storage that fails for a while loses nothing: results are recorded once it is back."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hephaestus import (
    Config,
    Done,
    Hephaestus,
    Instance,
    Ok,
    Status,
    Step,
    StepContext,
    StepResult,
    Unique,
    Workflow,
)
from hephaestus.errors import StorageError
from hephaestus.storage import InMemoryStorage
from hephaestus.testing import FakeClock, run_until_idle

if TYPE_CHECKING:
    import pytest

executions: list[str] = []


class Count(Step):
    events = ("counted",)

    async def execute(self, instance: Instance, config: Config, context: StepContext) -> StepResult:
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

    async def put(self, instance: Instance, previous: Instance | None = None) -> None:
        if self.failures:
            self.failures -= 1
            raise StorageError("connection lost")
        await super().put(instance, previous)


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
