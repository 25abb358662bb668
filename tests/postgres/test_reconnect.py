"""A lost connection is retried: the app keeps working after its backends are terminated."""

from __future__ import annotations

import asyncio

import psycopg

from hephaestus import (
    Config,
    Done,
    Hephaestus,
    HistoryKind,
    Instance,
    Ok,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    Workflow,
)
from hephaestus.storage import InstanceQuery
from hephaestus.storage.postgres import PostgresStorage
from hephaestus.testing import run_until_idle

BOUND = 10.0

gate = asyncio.Event()


class Quick(Step):
    events = ("done",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("done", {"ok": True})


class Gated(Step):
    events = ("done",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        await gate.wait()
        return Ok("done", {"gated": True})


class QuickFlow(Workflow):
    unique = Unique(key="quick")
    start_step = Quick
    transitions = {(Quick, "done"): Done}


class GatedFlow(Workflow):
    unique = Unique(key="gated")
    start_step = Gated
    transitions = {(Gated, "done"): Done}


async def terminate_backends(database_url: str) -> int:
    """Kill every other connection to the test database, as a PostgreSQL restart would."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def wait_for(app: Hephaestus, flow: type[Workflow], value: str) -> Instance:
    """The run of ``flow`` named ``value`` once the app has nothing left to execute."""
    async with asyncio.timeout(BOUND):
        await run_until_idle(app)
    return await flow.get(value)


async def test_the_app_keeps_working_after_idle_connections_are_terminated(
    database_url: str,
) -> None:
    """Every pooled connection killed while idle: the next operations succeed on new ones."""
    storage = PostgresStorage(database_url, min_size=3, max_size=3)
    async with Hephaestus(storage=storage) as app:
        await QuickFlow.start("a1", {})
        await wait_for(app, QuickFlow, "a1")
        assert await terminate_backends(database_url) >= 3
        await QuickFlow.start("a2", {})
        done = await wait_for(app, QuickFlow, "a2")
        assert done.status is Status.COMPLETED
        assert done.context.steps["quick"] == {"ok": True}
        assert len(await app.storage.query(InstanceQuery(status=Status.COMPLETED))) == 2


async def test_a_step_result_is_recorded_after_connections_are_terminated_mid_run(
    database_url: str,
) -> None:
    """Backends killed while steps run: their results are still recorded, each exactly once."""
    gate.clear()
    storage = PostgresStorage(database_url, min_size=2, max_size=2)
    async with Hephaestus(storage=storage) as app:
        for index in range(5):
            await GatedFlow.start(f"g{index}", {})
        assert await terminate_backends(database_url) >= 2
        gate.set()
        for index in range(5):
            done = await wait_for(app, GatedFlow, f"g{index}")
            assert done.status is Status.COMPLETED
            completions = [e for e in done.history if e.kind is HistoryKind.STEP_COMPLETED]
            assert [e.step for e in completions] == ["gated", "done"]
