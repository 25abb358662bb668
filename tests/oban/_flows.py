"""Workflows of the Oban runner's tests: short steps on the real clock, with side effects
counted by idempotency key in this process (``EFFECTS``)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, ClassVar

from hephaestus import Async, Done, Error, Ok, RetryPolicy, Step, Unique, WaitForEvent, Workflow

if TYPE_CHECKING:
    from hephaestus import Config, StepContext, StepResult, StepRun

EFFECTS: Counter[str] = Counter()
"""Executions per idempotency key, in this process."""

STOPPED: list[str] = []
"""Steps whose execution was stopped by a cancel (their idempotency keys)."""

EXECUTING: dict[str, asyncio.Event] = {}


class _Effect(Step):
    events = ("next",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        EFFECTS[run.idempotency_key] += 1
        return Ok("next", {"step": context.step})


class First(_Effect):
    pass


class Second(_Effect):
    pass


class Third(_Effect):
    pass


class Linear(Workflow):
    unique = Unique(key="olinear")
    start_step = First
    transitions = {(First, "next"): Second, (Second, "next"): Third, (Third, "next"): Done}


class Spread(_Effect):
    pass


class Branch(Step):
    events = ("next",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        EFFECTS[run.idempotency_key] += 1  # a plain def step: a thread
        return Ok("next", {"step": context.step})


BRANCHES: list[type[Step]] = [type(f"Branch{n}", (Branch,), {}) for n in range(20)]
"""Twenty branch steps (a step class appears once in a graph: one subclass each)."""


class Gather(Step):
    events = ("next",)
    join = "all"

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        EFFECTS[run.idempotency_key] += 1
        return Ok("next", {"branches": sum(1 for key in context.steps if key.startswith("branch"))})


class Wide(Workflow):
    """A 20-way fan-out and its fan-in."""

    unique = Unique(key="owide")
    start_step = Spread
    transitions: ClassVar = {
        (Spread, "next"): [*BRANCHES],
        **{(branch, "next"): Gather for branch in BRANCHES},
        (Gather, "next"): Done,
    }


class Flaky(Step):
    events = ("next",)
    retry = RetryPolicy(max_attempts=3, backoff="constant", initial_delay=0.2)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        EFFECTS[run.idempotency_key] += 1
        if context.attempt < 3:
            return Error(f"attempt {context.attempt} fails")
        return Ok("next")


class Retries(Workflow):
    unique = Unique(key="oretries")
    start_step = Flaky
    transitions = {(Flaky, "next"): Done}


class Pause(Step):
    events = ("elapsed", "early")

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        EFFECTS[run.idempotency_key] += 1
        return Async(timeout=0.3, timeout_event="elapsed")


class Timer(Workflow):
    unique = Unique(key="otimer")
    start_step = Pause
    transitions = {(Pause, "elapsed"): Third, (Pause, "early"): Done, (Third, "next"): Done}


class Event(Workflow):
    unique = Unique(key="oevent")
    start_step = First
    transitions = {
        (First, "next"): WaitForEvent,
        (WaitForEvent, "received"): Second,
        (Second, "next"): Done,
    }


class Hold(Step):
    """Runs until cancelled; notes that it was."""

    events = ("next",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        EXECUTING.setdefault(run.idempotency_key, asyncio.Event()).set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            STOPPED.append(run.idempotency_key)
            raise
        return Ok("next")


class Held(Workflow):
    unique = Unique(key="oheld")
    start_step = Hold
    transitions = {(Hold, "next"): Third, (Third, "next"): Done}


FLOWS: dict[str, type[Workflow]] = {
    flow.__name__: flow for flow in (Linear, Wide, Retries, Timer, Event, Held)
}


class Echo(Step):
    """Returns the run's ``text``, with a NUL character (which cannot be stored) for "nul"."""

    events = ("echoed",)
    retry = RetryPolicy(max_attempts=2, initial_delay=0.05)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        EFFECTS[run.idempotency_key] += 1
        text = str(context.initial["text"])
        return Ok("echoed", {"text": "a\x00b" if text == "nul" else text})


class Echoes(Workflow):
    unique = Unique(key="oechoes")
    start_step = Echo
    transitions = {(Echo, "echoed"): Done}
