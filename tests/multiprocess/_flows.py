"""The workflows of the multiprocess tests, defined in the workers and in the test process.

Every step but the built-in waits records each execution in the ``executions`` table (key,
pid, start and end, by the database clock) through its own small connection pool, and sleeps
a little so that executions overlap in time. The tests read that table to find steps that ran
twice, or in two processes at once.
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, ClassVar

from psycopg_pool import ConnectionPool

from hephaestus import Async, Done, Error, Ok, RetryPolicy, Step, Unique, WaitForEvent, Workflow

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hephaestus import Config, StepContext, StepResult, StepRun

EXECUTIONS_TABLE = """
CREATE TABLE IF NOT EXISTS executions (
    id bigserial PRIMARY KEY,
    idempotency_key text NOT NULL,
    pid int NOT NULL,
    started timestamptz NOT NULL,
    ended timestamptz,
    stopped boolean NOT NULL DEFAULT false
)
"""

_pool: ConnectionPool | None = None


def open_recorder(dsn: str) -> None:
    """Record this process's step executions through ``dsn`` (a pool of its own)."""
    global _pool  # noqa: PLW0603 - one recorder per worker process, set before the app opens
    _pool = ConnectionPool(
        dsn, min_size=1, max_size=4, kwargs={"autocommit": True}, open=True, timeout=30
    )


def close_recorder() -> None:
    """Close the recorder's connections."""
    global _pool  # noqa: PLW0603
    if _pool is not None:
        _pool.close()
        _pool = None


@contextmanager
def recorded(key: str) -> Iterator[None]:
    """Record one execution of ``key`` by this process around the block."""
    if _pool is None:
        raise RuntimeError("open_recorder() was not called in this process")
    pid = os.getpid()
    with _pool.connection() as conn:
        row = conn.execute(
            "INSERT INTO executions (idempotency_key, pid, started)"
            " VALUES (%s, %s, clock_timestamp()) RETURNING id",
            (key, pid),
        ).fetchone()
    assert row is not None
    yield
    with _pool.connection() as conn:
        conn.execute("UPDATE executions SET ended = clock_timestamp() WHERE id = %s", (row[0],))


class _Recorded(Step):
    """Sleeps ``seconds`` while its execution is recorded, then emits ``next``."""

    events = ("next",)
    seconds: ClassVar[float] = 0.03

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        with recorded(run.idempotency_key):
            time.sleep(self.seconds)
        return Ok("next", {"pid": os.getpid()})


class Prepare(_Recorded):
    pass


class Slow(_Recorded):
    seconds = 0.3


class Check(_Recorded):
    pass


class Finish(_Recorded):
    pass


class Split(_Recorded):
    pass


class Left(_Recorded):
    seconds = 0.05


class Middle(_Recorded):
    seconds = 0.05


class Right(_Recorded):
    seconds = 0.05


class Join(_Recorded):
    pass


class ShortPause(Step):
    """Waits on a 0.3 s timer (a real clock) after a recorded execution."""

    events = ("elapsed",)
    seconds: ClassVar[float] = 0.3

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        with recorded(run.idempotency_key):
            time.sleep(0.02)
        return Async(timeout=self.seconds, timeout_event="elapsed")


class LongPause(ShortPause):
    """Waits on a 1 s timer: long enough to hand the run over while it waits."""

    seconds = 1.0


class Flaky(Step):
    """Fails its first attempt; the retry comes 0.2 s later (a real clock) and succeeds."""

    events = ("next",)
    retry = RetryPolicy(max_attempts=3, backoff="constant", initial_delay=0.2)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        with recorded(run.idempotency_key):
            time.sleep(0.02)
        if context.attempt == 1:
            return Error("the first attempt fails")
        return Ok("next")


class Blocked(Step):
    """Runs until its run is cancelled (an async step: cancellation reaches it); a stop is
    recorded as the end of its execution, with ``stopped`` set."""

    events = ("next",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        if _pool is None:
            raise RuntimeError("open_recorder() was not called in this process")
        with _pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO executions (idempotency_key, pid, started)"
                " VALUES (%s, %s, clock_timestamp()) RETURNING id",
                (run.idempotency_key, os.getpid()),
            ).fetchone()
        assert row is not None
        try:
            await asyncio.sleep(120)
        except asyncio.CancelledError:
            with _pool.connection() as conn:
                conn.execute(
                    "UPDATE executions SET ended = clock_timestamp(), stopped = true WHERE id = %s",
                    (row[0],),
                )
            raise
        return Ok("next")


class Approve(WaitForEvent):
    pass


class Chain(Workflow):
    """A linear chain with one slow step: a killed owner has steps in flight."""

    unique = Unique(key="chain")
    start_step = Prepare
    transitions = {
        (Prepare, "next"): Slow,
        (Slow, "next"): Check,
        (Check, "next"): Finish,
        (Finish, "next"): Done,
    }


class FanOut(Workflow):
    """Fan-out to three steps, fan-in at ``Join``."""

    unique = Unique(key="fanout")
    start_step = Split
    transitions = {
        (Split, "next"): [Left, Middle, Right],
        (Left, "next"): Join,
        (Middle, "next"): Join,
        (Right, "next"): Join,
        (Join, "next"): Done,
    }


class Timed(Workflow):
    """A timer (``ShortPause``) and a retry after a backoff (``Flaky``), both on the real clock."""

    unique = Unique(key="timed")
    start_step = Prepare
    transitions = {
        (Prepare, "next"): ShortPause,
        (ShortPause, "elapsed"): Flaky,
        (Flaky, "next"): Finish,
        (Finish, "next"): Done,
    }


class Approval(Workflow):
    """Waits for ``received``, which the tests send from a process other than the starter,
    often while ``Slow`` still runs (a resume that has to wait for the step to finish)."""

    unique = Unique(key="approval")
    start_step = Slow
    transitions = {
        (Slow, "next"): Approve,
        (Approve, "received"): [Left, Right],
        (Left, "next"): Join,
        (Right, "next"): Join,
        (Join, "next"): Done,
    }


class Hold(Workflow):
    """Waits on a 1 s timer between two steps: the run of the SIGTERM hand-off."""

    unique = Unique(key="hold")
    start_step = Prepare
    transitions = {
        (Prepare, "next"): LongPause,
        (LongPause, "elapsed"): Finish,
        (Finish, "next"): Done,
    }


BRANCHES: list[type[Step]] = [
    type(f"Branch{n}", (_Recorded,), {"seconds": 0.01}) for n in range(20)
]
"""Twenty recorded branch steps (a step class appears once in a graph: one subclass each)."""


class Wide(Workflow):
    """A 20-way fan-out and its fan-in."""

    unique = Unique(key="wide")
    start_step = Split
    transitions: ClassVar = {
        (Split, "next"): [*BRANCHES],
        **{(branch, "next"): Join for branch in BRANCHES},
        (Join, "next"): Done,
    }


class Blocking(Workflow):
    """Blocks in its first step until cancelled; ``Finish`` must never run."""

    unique = Unique(key="blocking")
    start_step = Blocked
    transitions = {(Blocked, "next"): Finish, (Finish, "next"): Done}


FLOWS: dict[str, type[Workflow]] = {
    flow.__name__: flow for flow in (Chain, FanOut, Timed, Approval, Hold, Blocking, Wide)
}
"""The workflows by class name, as the workers' commands name them."""
