"""The Oban runner in worker mode: real ``oban`` producers, stager and lifeline, real time.

The runner contract suite runs the Oban runner inline (jobs due on a ``FakeClock``); these
tests run what a deployment runs, in one process: jobs fetched by ``oban``, timers and retry
delays staged by its stager, and the errors a misconfigured node gets.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from hephaestus import Hephaestus, HistoryKind, Status
from hephaestus.errors import AppError
from hephaestus.runners.oban import ObanRunner
from hephaestus.storage import InMemoryStorage
from hephaestus.storage.postgres import PostgresStorage
from hephaestus.testing import FakeClock
from tests._pg import create_installed_database, drop_database, dsn, require_postgres
from tests.oban._flows import (
    BRANCHES,
    EFFECTS,
    EXECUTING,
    STOPPED,
    Echoes,
    Event,
    Held,
    Linear,
    Retries,
    Timer,
    Wide,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    from hephaestus import Instance

BOUND = 20.0
"""Seconds a scenario gets; a failure, never a hang."""


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    require_postgres()
    name = create_installed_database("hx_oban", schemas=("public", "tenant_b"))
    yield name
    drop_database(name)


@pytest.fixture(autouse=True)
def _fresh_effects() -> None:
    EFFECTS.clear()
    STOPPED.clear()
    EXECUTING.clear()


def node(**options: Any) -> ObanRunner:
    """A worker node tuned for tests: timers staged every 50 ms."""
    return ObanRunner(stage_interval=0.05, **options)


@pytest.fixture
async def app(database: str) -> AsyncIterator[Hephaestus]:
    with psycopg.connect(dsn(database), autocommit=True) as conn:
        conn.execute("TRUNCATE workflow_instances, oban_jobs RESTART IDENTITY CASCADE")
    async with Hephaestus(storage=PostgresStorage(dsn(database)), runner=node()) as opened:
        yield opened


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(BOUND):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


async def ended(
    workflow: type[Linear | Wide | Retries | Timer | Event | Held | Echoes],
    value: str,
) -> Instance:
    async def check() -> bool:
        return (await workflow.get(value)).is_terminal

    await until(check)
    return await workflow.get(value)


def transitions_once(run: Instance) -> bool:
    """Each step completed once in the run's history."""
    completed = [entry.step for entry in run.history if entry.kind is HistoryKind.STEP_COMPLETED]
    return len(completed) == len(set(completed))


async def test_linear_fan_out_retries_timers_and_events_complete(app: Hephaestus) -> None:
    """Every shape completes on real ``oban`` nodes; each step's result is applied once and
    its side effect happens once when nothing crashes."""
    await Linear.start("l1")
    await Wide.start("w1")
    await Retries.start("r1")
    await Timer.start("t1")
    await Event.start("e1")

    async def waiting() -> bool:
        return (await Event.get("e1")).status is Status.WAITING

    await until(waiting)
    await Event.resume("e1", "received", {"by": "test"})
    runs = [
        await ended(Linear, "l1"),
        await ended(Wide, "w1"),
        await ended(Retries, "r1"),
        await ended(Timer, "t1"),
        await ended(Event, "e1"),
    ]
    assert [run.status for run in runs] == [Status.COMPLETED] * 5
    assert all(transitions_once(run) for run in runs)
    wide = runs[1]
    assert wide.context.steps["gather"] == {"branches": len(BRANCHES)}
    assert runs[3].steps["pause"].event == "elapsed"
    assert runs[4].context.steps["wait_for_event"] == {"by": "test"}
    retried = [key for key in EFFECTS if "/flaky/" in key]
    assert sorted(retried) == sorted(f"{runs[2].id}/{runs[2].run_id}/flaky/{n}" for n in (1, 2, 3))
    assert set(EFFECTS.values()) == {1}  # no crash here: each attempt executed exactly once
    async with app.storage.pool.connection() as conn:  # type: ignore[attr-defined]
        cursor = await conn.execute(
            "SELECT state, count(*) FROM oban_jobs GROUP BY state ORDER BY state"
        )
        states = dict(await cursor.fetchall())
    assert set(states) == {"completed"}, states  # every job completed, none left behind


async def test_cancel_stops_the_executing_step_and_no_further_step_starts(
    app: Hephaestus,
) -> None:
    """A cancel while a step executes stops it; the run ends cancelled, nothing runs after."""
    await Held.start("h1")

    async def executing() -> bool:
        return bool(EXECUTING) and all(event.is_set() for event in EXECUTING.values())

    await until(executing)
    await Held.cancel("h1", reason="stop")

    async def stopped() -> bool:
        return len(STOPPED) == 1

    await until(stopped)
    await asyncio.sleep(0.3)
    run = await Held.get("h1")
    assert run.status is Status.CANCELLED
    assert not [key for key in EFFECTS if "/third/" in key]
    async with app.storage.pool.connection() as conn:  # type: ignore[attr-defined]
        cursor = await conn.execute(
            "SELECT count(*) FROM oban_jobs WHERE state IN "
            "('available', 'scheduled', 'executing', 'retryable')"
        )
        row = await cursor.fetchone()
    assert row == (0,)


async def test_a_start_in_the_callers_transaction_commits_or_rolls_back_with_it(
    app: Hephaestus, database: str
) -> None:
    """``conn=``: the run and its first job exist once the caller commits, never on rollback."""
    async with await psycopg.AsyncConnection.connect(dsn(database)) as conn:
        await Linear.start("rolled", conn=conn)
        await conn.rollback()
        await Linear.start("kept", conn=conn)
        await conn.commit()
    run = await ended(Linear, "kept")
    assert run.status is Status.COMPLETED
    assert [run.id for run in await Linear.list()] == [run.id]  # not "rolled"
    async with await psycopg.AsyncConnection.connect(dsn(database)) as conn:
        await Event.start("e2", conn=conn)
        await conn.commit()

    async def waiting() -> bool:
        return (await Event.get("e2")).status is Status.WAITING

    await until(waiting)
    async with await psycopg.AsyncConnection.connect(dsn(database)) as conn:
        await Event.resume("e2", "received", conn=conn)
        await conn.commit()
    assert (await ended(Event, "e2")).status is Status.COMPLETED


async def test_a_run_without_a_live_job_is_dispatched_again_by_the_reconciler(
    app: Hephaestus, database: str
) -> None:
    """A job deleted by hand leaves its run stuck until the reconciler dispatches it again."""
    await Event.start("lost")

    async def waiting() -> bool:
        return (await Event.get("lost")).status is Status.WAITING

    await until(waiting)
    runner = app.runner
    assert isinstance(runner, ObanRunner)
    await Event.resume("lost", "received")
    with psycopg.connect(dsn(database), autocommit=True) as conn:  # the job is lost
        conn.execute("DELETE FROM oban_jobs WHERE state <> 'completed'")
    await asyncio.sleep(0.2)
    assert (await Event.get("lost")).status is Status.RUNNING  # stuck: no job for `second`
    assert await runner.reconcile(before=None) == 1
    assert (await ended(Event, "lost")).status is Status.COMPLETED
    assert await runner.reconcile(before=None) == 0


async def test_two_tenants_in_one_database_run_apart(database: str) -> None:
    """Two schemas of one database, each with its own jobs table and runner."""
    with psycopg.connect(dsn(database), autocommit=True) as conn:
        conn.execute("TRUNCATE tenant_b.workflow_instances, tenant_b.oban_jobs CASCADE")
        conn.execute("TRUNCATE workflow_instances, oban_jobs CASCADE")
    first = Hephaestus(storage=PostgresStorage(dsn(database)), runner=node())
    second = Hephaestus(storage=PostgresStorage(dsn(database), schema="tenant_b"), runner=node())
    async with first, second:
        await Linear.start("same", app=first)
        await Linear.start("same", app=second)

        async def both() -> bool:
            runs = [await Linear.get("same", app=first), await Linear.get("same", app=second)]
            return all(run.status is Status.COMPLETED for run in runs)

        await until(both)
        a, b = await Linear.get("same", app=first), await Linear.get("same", app=second)
    assert a.run_id != b.run_id
    with psycopg.connect(dsn(database), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT (SELECT count(*) FROM public.oban_jobs),"
            " (SELECT count(*) FROM tenant_b.oban_jobs)"
        ).fetchone()
    assert rows == (3, 3)


async def test_a_misconfigured_node_is_refused_when_the_app_opens(database: str) -> None:
    """Another storage, a fake clock in worker mode, or a schema without the jobs table: each
    is a clear error at open, naming the fix."""
    with pytest.raises(AppError, match="PostgreSQL storage"):
        async with Hephaestus(storage=InMemoryStorage(), runner=ObanRunner()):
            pass
    with pytest.raises(AppError, match="mode='inline'"):
        async with Hephaestus(
            storage=PostgresStorage(dsn(database)), runner=ObanRunner(), clock=FakeClock()
        ):
            pass
    with pytest.raises(AppError, match="hephaestus db migrate --schema nowhere"):
        async with Hephaestus(
            storage=PostgresStorage(dsn(database), schema="nowhere"), runner=ObanRunner()
        ):
            pass
    with pytest.raises(ValueError, match="mode"):
        ObanRunner(mode="elsewhere")  # type: ignore[arg-type]


async def test_a_routed_workflow_runs_on_its_own_queue(database: str) -> None:
    """``routes`` sends a workflow's jobs to its queue; each job carries the run in its meta."""
    with psycopg.connect(dsn(database), autocommit=True) as conn:
        conn.execute("TRUNCATE workflow_instances, oban_jobs RESTART IDENTITY CASCADE")
    runner = node(queues={"hephaestus": 5, "fast": 2}, routes={Linear: "fast"})
    async with Hephaestus(storage=PostgresStorage(dsn(database)), runner=runner):
        await Linear.start("routed")
        await Event.start("default")
        run = await ended(Linear, "routed")
    with psycopg.connect(dsn(database), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT queue, meta ->> 'workflow', meta ->> 'instance_id', meta ->> 'step', tags"
            " FROM oban_jobs ORDER BY id"
        ).fetchall()
    assert run.status is Status.COMPLETED
    assert {queue for queue, workflow, *_ in rows if workflow == Linear.name} == {"fast"}
    assert {queue for queue, workflow, *_ in rows if workflow == Event.name} == {"hephaestus"}
    first = next(row for row in rows if row[1] == Linear.name)
    assert first[2:] == (run.id, "first", ["linear"])


async def test_a_job_of_a_deleted_run_completes_doing_nothing(app: Hephaestus) -> None:
    """A run deleted by an operator leaves jobs behind: each completes without retrying."""
    await Held.start("gone")

    async def executing() -> bool:
        return bool(EXECUTING)

    await until(executing)
    run = await Held.get("gone")
    await Held.cancel("gone")
    await app.storage.delete(run.run_id)
    runner = app.runner
    assert isinstance(runner, ObanRunner)
    args = {"schema": "public", "run": run.run_id, "kind": "step", "step": "hold", "attempt": 1}
    await runner.perform(0, args)  # returns: nothing to continue
    await runner.perform(0, {**args, "kind": "take"})


async def test_results_written_together_fail_alone_when_one_cannot_be_stored(
    app: Hephaestus,
) -> None:
    """The results that finish together on a node are written in one statement; a value that
    cannot be stored (a NUL character) in one of them fails that step's attempts alone
    (``invalid_result``), and every other run completes with its result."""
    texts = {f"ok{n}": f"text {n}" for n in range(30)}
    texts["bad"] = "nul"
    await asyncio.gather(*(Echoes.start(key, {"text": text}) for key, text in texts.items()))
    runs = {key: await ended(Echoes, key) for key in texts}
    bad = runs.pop("bad")
    assert bad.status is Status.FAILED
    assert bad.error is not None
    assert (bad.error.kind, bad.error.step) == ("invalid_result", "echo")
    assert {key: run.status for key, run in runs.items()} == dict.fromkeys(runs, Status.COMPLETED)
    assert {key: run.context.steps["echo"]["text"] for key, run in runs.items()} == {
        key: texts[key] for key in runs
    }
    assert all(transitions_once(run) for run in runs.values())
