"""Graceful shutdown: close() lets executing steps finish, starts nothing new, loses nothing."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from hephaestus import (
    Config,
    Done,
    Hephaestus,
    Ok,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    StepStatus,
    Unique,
    Workflow,
)
from hephaestus.runners import LocalRunner
from hephaestus.testing import run_until_idle

if TYPE_CHECKING:
    from hephaestus.storage import Storage
    from hephaestus.testing import FakeClock


class _Gates:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.slow_finished = 0
        self.after_ran = 0


gates = _Gates()


@pytest.fixture(autouse=True)
def _fresh_gates() -> None:
    global gates  # noqa: PLW0603 - each test needs events bound to its own loop
    gates = _Gates()


class SlowStep(Step):
    events = ("finished",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        gates.started.set()
        await gates.release.wait()
        gates.slow_finished += 1
        return Ok("finished")


class AfterStep(Step):
    events = ("ran",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        gates.after_ran += 1
        return Ok("ran")


class Deploy(Workflow):
    unique = Unique(key="deploy")
    start_step = SlowStep
    transitions = {(SlowStep, "finished"): AfterStep, (AfterStep, "ran"): Done}


async def test_close_with_a_shutdown_timeout_lets_the_running_step_finish(
    storage: Storage, clock: FakeClock
) -> None:
    """The executing step completes and is recorded; its successor waits for the next app."""
    app = Hephaestus(storage=storage, clock=clock, runner=LocalRunner(shutdown_timeout=5))
    await app.open()
    await Deploy.start("one", app=app)
    await gates.started.wait()
    closing = asyncio.create_task(app.close())
    gates.release.set()  # the step finishes while close() is draining
    await closing
    assert (gates.slow_finished, gates.after_ran) == (1, 0)

    async with Hephaestus(storage=storage, clock=clock, recover=False):  # look, take nothing
        stored = await Deploy.get("one")
    assert stored.steps["slow_step"].status is StepStatus.COMPLETED
    assert stored.steps["after_step"].status is StepStatus.ACTIVE
    async with Hephaestus(storage=storage, clock=clock) as reopened:
        await run_until_idle(reopened)
        run = await Deploy.get("one")
    assert run.status is Status.COMPLETED
    assert (gates.slow_finished, gates.after_ran) == (1, 1)


async def test_close_without_a_shutdown_timeout_cancels_and_recovery_reruns(
    storage: Storage, clock: FakeClock
) -> None:
    """By default close() cancels the executing step; the next app runs it again."""
    async with Hephaestus(storage=storage, clock=clock):
        await Deploy.start("two")
        await gates.started.wait()
    assert gates.slow_finished == 0

    gates.release.set()
    async with Hephaestus(storage=storage, clock=clock) as reopened:
        await run_until_idle(reopened)
        run = await Deploy.get("two")
    assert run.status is Status.COMPLETED
    assert (gates.slow_finished, gates.after_ran) == (1, 1)


def test_a_negative_shutdown_timeout_is_refused() -> None:
    """shutdown_timeout must be zero or more seconds."""
    with pytest.raises(ValueError, match="shutdown_timeout"):
        LocalRunner(shutdown_timeout=-1)
