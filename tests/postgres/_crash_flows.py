"""A workflow for the crash test, defined in both the child process and the test process.

Each step sleeps a little, so a run is mid-way when the child is killed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from hephaestus import Done, Ok, Step, Unique, Workflow

if TYPE_CHECKING:
    from hephaestus import Config, StepContext, StepResult, StepRun

STEP_SECONDS = 0.05


class _Slow(Step):
    events = ("next",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        await asyncio.sleep(STEP_SECONDS)
        return Ok("next", {"attempt": context.attempt})


class CrashA(_Slow):
    pass


class CrashB(_Slow):
    pass


class CrashC(_Slow):
    pass


class CrashD(_Slow):
    pass


class CrashE(_Slow):
    pass


CHAIN = (CrashA, CrashB, CrashC, CrashD, CrashE)


class CrashChain(Workflow):
    unique = Unique(key="crash")
    start_step = CrashA
    transitions = {
        (CrashA, "next"): CrashB,
        (CrashB, "next"): CrashC,
        (CrashC, "next"): CrashD,
        (CrashD, "next"): CrashE,
        (CrashE, "next"): Done,
    }
