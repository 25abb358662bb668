"""The workflows of the SQLite multiprocess tests: one of every shape the engine has.

Shapes: a long linear chain (sync and async steps), routing (``route``), fan-out and join, a
timer (``Wait``), a ``WaitForEvent`` resumed by the test, a retried step that recovers, a
retried step that never does (the run fails) and a wait the test cancels.

Every step but the built-in waits records each execution as two lines (``S`` at its start,
``E`` at its end: key, pid, wall time) appended with ``O_APPEND`` to the file named by
``open_recorder``, so a test can tell how often, and by which process, each step attempt ran.
Each step's result is fixed (``{"step": <its key>}``; ``Pick`` adds its choice), so a run's
final context can be checked exactly.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

from hephaestus import (
    Done,
    Error,
    Ok,
    RetryPolicy,
    Step,
    Unique,
    Wait,
    WaitForEvent,
    Workflow,
    context_key,
    route,
)

if TYPE_CHECKING:
    from hephaestus import Config, Context, StepContext, StepResult, StepRun

_recorder: int | None = None


def open_recorder(path: str | os.PathLike[str]) -> None:
    """Append this process's step executions to ``path``."""
    global _recorder  # noqa: PLW0603 - one recorder per worker process, set before the app opens
    _recorder = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def close_recorder() -> None:
    global _recorder  # noqa: PLW0603
    if _recorder is not None:
        os.close(_recorder)
        _recorder = None


def _mark(mark: str, key: str) -> None:
    if _recorder is None:
        raise RuntimeError("open_recorder() was not called in this process")
    # One write of a short line to a file opened with O_APPEND: lines never interleave.
    os.write(_recorder, f"{mark} {key} {os.getpid()} {time.time():.6f}\n".encode())


def _result(run: StepRun) -> dict[str, Any]:
    return {"step": run.step}


class _Sync(Step):
    """A plain (``def``) step, run in a thread: sleeps ``seconds``, then emits ``next``."""

    events = ("next",)
    seconds: ClassVar[float] = 0.1

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        _mark("S", run.idempotency_key)
        time.sleep(self.seconds)
        _mark("E", run.idempotency_key)
        return Ok("next", _result(run))


class _Async(Step):
    """An ``async`` step, run on the loop: sleeps ``seconds``, then emits ``next``."""

    events = ("next",)
    seconds: ClassVar[float] = 0.1

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        _mark("S", run.idempotency_key)
        await asyncio.sleep(self.seconds)
        _mark("E", run.idempotency_key)
        return Ok("next", _result(run))


class Prepare(_Sync):
    pass


class Finish(_Async):
    seconds = 0.05


LINKS: list[type[Step]] = [
    type(f"Link{n}", (_Async if n % 2 else _Sync,), {"seconds": 0.2}) for n in range(10)
]
"""Ten chain links, sync and async in turn (a step class appears once in a graph)."""


class SqChain(Workflow):
    """A linear chain of ten 0.2 s steps: long enough to be cut by several kills."""

    unique = Unique(key="sqchain")
    start_step = LINKS[0]
    transitions: ClassVar = {
        **{(a, "next"): b for a, b in itertools.pairwise(LINKS)},
        (LINKS[-1], "next"): Done,
    }


class Pick(_Sync):
    """Chooses the express path for odd values (``value`` ends with a digit)."""

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        _mark("S", run.idempotency_key)
        time.sleep(self.seconds)
        _mark("E", run.idempotency_key)
        return Ok("next", {**_result(run), "express": int(run.id[-1]) % 2 == 1})


class Express(_Async):
    seconds = 0.2


class Standard(_Sync):
    seconds = 0.3


class Deliver(_Sync):
    """Where both paths meet (only one of them ever arrives)."""

    join = "any"
    seconds = 0.05


@route(Express, Standard)
def pick_path(context: Context) -> type[Step]:
    return Express if context.steps[context_key(Pick)]["express"] else Standard


class SqRoute(Workflow):
    """A step whose outcome routes to one of two paths (``route``)."""

    unique = Unique(key="sqroute")
    start_step = Pick
    transitions: ClassVar = {
        (Pick, "next"): pick_path,
        (Express, "next"): Deliver,
        (Standard, "next"): Deliver,
        (Deliver, "next"): Done,
    }


class Split(_Sync):
    pass


class Left(_Async):
    seconds = 0.3


class Middle(_Sync):
    seconds = 0.2


class Right(_Async):
    seconds = 0.1


class Join(_Sync):
    seconds = 0.05


class SqFanOut(Workflow):
    """Fan-out to three branches (sync and async), fan-in at ``Join``."""

    unique = Unique(key="sqfanout")
    start_step = Split
    transitions: ClassVar = {
        (Split, "next"): [Left, Middle, Right],
        (Left, "next"): Join,
        (Middle, "next"): Join,
        (Right, "next"): Join,
        (Join, "next"): Done,
    }


class Pause(Wait):
    pass


class SqTimer(Workflow):
    """A 0.5 s timer (``Wait``) between two steps."""

    unique = Unique(key="sqtimer")
    start_step = Prepare
    transitions: ClassVar = {
        (Prepare, "next"): (Pause, {"duration": 0.5, "unit": "second"}),
        (Pause, "timeout"): Finish,
        (Finish, "next"): Done,
    }


class Approve(WaitForEvent):
    pass


class SqApproval(Workflow):
    """Waits for ``received``, which the test sends."""

    unique = Unique(key="sqapproval")
    start_step = Prepare
    transitions: ClassVar = {
        (Prepare, "next"): Approve,
        (Approve, "received"): Finish,
        (Finish, "next"): Done,
    }


class Flaky(Step):
    """Fails its first attempt; the retry comes 0.2 s later and succeeds."""

    events = ("next",)
    retry = RetryPolicy(max_attempts=3, backoff="constant", initial_delay=0.2)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        _mark("S", run.idempotency_key)
        time.sleep(0.05)
        _mark("E", run.idempotency_key)
        if context.attempt == 1:
            return Error("the first attempt fails")
        return Ok("next", _result(run))


class SqFlaky(Workflow):
    """A step retried once after a failure (a backoff on the real clock)."""

    unique = Unique(key="sqflaky")
    start_step = Prepare
    transitions: ClassVar = {
        (Prepare, "next"): Flaky,
        (Flaky, "next"): Finish,
        (Finish, "next"): Done,
    }


class Doomed(Step):
    """Fails every attempt (async); two attempts, 0.2 s apart, then the run fails."""

    events = ("next",)
    retry = RetryPolicy(max_attempts=2, backoff="constant", initial_delay=0.2)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        _mark("S", run.idempotency_key)
        await asyncio.sleep(0.05)
        _mark("E", run.idempotency_key)
        return Error("this step always fails")


class SqDoomed(Workflow):
    """A step that exhausts its retries: the run ends ``failed``."""

    unique = Unique(key="sqdoomed")
    start_step = Prepare
    transitions: ClassVar = {(Prepare, "next"): Doomed, (Doomed, "next"): Done}


class Hold(WaitForEvent):
    pass


class SqCancelled(Workflow):
    """Waits for an event that never comes: the test cancels it."""

    unique = Unique(key="sqcancelled")
    start_step = Prepare
    transitions: ClassVar = {
        (Prepare, "next"): Hold,
        (Hold, "received"): Finish,
        (Finish, "next"): Done,
    }


class Blocked(Step):
    """Runs until its run is cancelled (an async step: cancellation reaches it)."""

    events = ("next",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        _mark("S", run.idempotency_key)
        try:
            await asyncio.sleep(120)
        finally:
            _mark("E", run.idempotency_key)
        return Ok("next", _result(run))


class SqBlocking(Workflow):
    """Blocks in its first step until cancelled; ``Finish`` must never run."""

    unique = Unique(key="sqblocking")
    start_step = Blocked
    transitions: ClassVar = {(Blocked, "next"): Finish, (Finish, "next"): Done}


class LongPause(Wait):
    pass


class SqHold(Workflow):
    """Waits on a 1 s timer between two steps: long enough to hand the run over meanwhile."""

    unique = Unique(key="sqhold")
    start_step = Prepare
    transitions: ClassVar = {
        (Prepare, "next"): (LongPause, {"duration": 1, "unit": "second"}),
        (LongPause, "timeout"): Finish,
        (Finish, "next"): Done,
    }


class Fork(Step):
    """Forks a child process that outlives its parent by up to ``CHILD_SECONDS`` (a step
    that starts a helper process, say) and records the child's pid (an ``F`` line)."""

    events = ("next",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        with warnings.catch_warnings():  # "this process is multi-threaded": the child only sleeps
            warnings.simplefilter("ignore", DeprecationWarning)
            child = os.fork()
        if child == 0:  # off the worker's pipes, which the test reads to their end
            null = os.open(os.devnull, os.O_RDWR)
            for stdio in (0, 1, 2):
                os.dup2(null, stdio)
            time.sleep(CHILD_SECONDS)
            os._exit(0)
        _mark("F", f"{run.idempotency_key}>{child}")
        return Ok("next", _result(run))


CHILD_SECONDS = 60.0


class SqForked(Workflow):
    """Forks a child, then waits for ``received``."""

    unique = Unique(key="sqforked")
    start_step = Fork
    transitions: ClassVar = {(Fork, "next"): Approve, (Approve, "received"): Done}


FLOWS: dict[str, type[Workflow]] = {
    flow.__name__: flow
    for flow in (
        SqChain,
        SqRoute,
        SqFanOut,
        SqTimer,
        SqApproval,
        SqFlaky,
        SqDoomed,
        SqCancelled,
        SqBlocking,
        SqHold,
        SqForked,
    )
}
"""The workflows by class name, as the workers' commands name them."""
