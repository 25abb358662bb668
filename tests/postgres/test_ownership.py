"""Several apps on one database each own the runs they execute (issue 11), in one process.

Each app here has its own ``PostgresStorage``, so its own session and owner id, exactly as
separate processes would; the real multi-process tests live in tests/multiprocess.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import psycopg
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
    Unique,
    WaitForEvent,
    Workflow,
)
from hephaestus.errors import ConcurrentUpdateError
from hephaestus.runners import LocalRunner
from hephaestus.storage.postgres import PostgresStorage
from tests.integration.test_storage_contract import bump, make

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

BOUND = 20.0
executed_by: list[tuple[str, int | None]] = []


class Record(Step):
    """Notes which owner executed it (the owner id of the storage of the app executing it)."""

    events = ("recorded",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        from hephaestus._app import resolve_app

        storage = resolve_app().storage
        assert isinstance(storage, PostgresStorage)
        executed_by.append((run.id, storage.owner))
        return Ok("recorded")


class Handoff(Workflow):
    unique = Unique(key="handoff")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Record, (Record, "recorded"): Done}


def owner_of(database_url: str, instance_id: str) -> int | None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT owner FROM workflow_instances WHERE id = %s", (instance_id,)
        ).fetchone()
    assert row is not None
    return None if row[0] is None else int(row[0])


def end_session_of(database_url: str, owner: int | None) -> None:
    """Terminate the backend holding ``owner``'s advisory lock, as a dead process would."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE locktype = 'advisory' AND objsubid = 2 AND objid = %s::oid"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (owner,),
        ).fetchall()
    assert ended, f"no session holds owner {owner}"


async def until(check: Callable[[], Awaitable[bool]]) -> float:
    """Seconds until ``check()`` holds (bounded)."""
    began = time.monotonic()
    async with asyncio.timeout(BOUND):
        while not await check():  # noqa: ASYNC110 - polling the database, no event to await
            await asyncio.sleep(0.02)
    return time.monotonic() - began


@pytest.fixture(autouse=True)
def _reset() -> None:
    executed_by.clear()


def app_on(
    database_url: str, *, sweep_interval: float = 5.0, recover: bool = True
) -> tuple[Hephaestus, PostgresStorage]:
    """An app on its own storage (its own session and owner id, like a process of its own)."""
    storage = PostgresStorage(database_url)
    app = Hephaestus(
        storage=storage,
        runner=LocalRunner(sweep_interval=sweep_interval),
        workflows=[Handoff],
        recover=recover,
    )
    return app, storage


async def test_a_resume_sent_from_another_app_is_applied_by_the_owner(database_url: str) -> None:
    """B resumes A's run: nothing fails, and A (the owner) executes what follows."""
    (a, a_storage), (b, _) = app_on(database_url), app_on(database_url)
    async with a, b:
        await Handoff.start("r1", app=a)
        assert owner_of(database_url, "handoff::r1") == a_storage.owner
        await Handoff.resume("r1", "received", app=b)

        async def done() -> bool:
            return (await Handoff.get("r1", app=b)).status is Status.COMPLETED

        await until(done)
        assert executed_by == [("handoff::r1", a_storage.owner)]


async def test_runs_of_a_dead_owner_are_taken_over_within_the_sweep_interval(
    database_url: str,
) -> None:
    """A's session ends (as if its process died): B claims A's runs and finishes them."""
    (b, b_storage) = app_on(database_url, sweep_interval=0.1)
    (a, a_storage) = app_on(database_url, recover=False)  # A does not sweep: B must take over
    async with b, a:
        await Handoff.start("r2", app=a)
        end_session_of(database_url, a_storage.owner)

        async def taken() -> bool:
            return owner_of(database_url, "handoff::r2") == b_storage.owner

        await until(taken)
        await Handoff.resume("r2", "received", app=b)

        async def done() -> bool:
            return (await Handoff.get("r2", app=b)).status is Status.COMPLETED

        await until(done)
        assert executed_by == [("handoff::r2", b_storage.owner)]


async def test_a_closing_app_hands_its_runs_over_at_once(database_url: str) -> None:
    """A closes: its runs are released and B (sweeping only once a minute) takes them now."""
    (b, b_storage), (a, _) = app_on(database_url, sweep_interval=60.0), app_on(database_url)
    async with b:
        await a.open()
        for n in range(5):
            await Handoff.start(f"h{n}", app=a)
        await a.close()

        async def all_taken() -> bool:
            owners = {owner_of(database_url, f"handoff::h{n}") for n in range(5)}
            return owners == {b_storage.owner}

        seconds = await until(all_taken)
        assert seconds < 5.0  # by the release's announcements, not the one-minute sweep


async def test_a_deposed_owner_cannot_write(database_url: str) -> None:
    """Once another process has claimed a run, the old owner's next write is refused."""
    a, b = PostgresStorage(database_url), PostgresStorage(database_url)
    await a.open()
    await b.open()
    try:
        await a.register(lambda: None)
        await b.register(lambda: None)
        first = make("run-1")
        await a.create(first)
        assert not await b.claim("run-1")  # A is alive and owns it
        end_session_of(database_url, a.owner)
        assert await b.claim("run-1")  # A is gone: B takes it
        with pytest.raises(ConcurrentUpdateError):
            await a.put(bump(first), first)
        await b.put(bump(first), first)
        assert (await b.get("run-1")).revision == 2
    finally:
        await a.close()
        await b.close()


async def test_a_resume_scheduled_from_another_app_is_stored_as_returned(
    database_url: str,
) -> None:
    """B schedules a resume of A's run: the owner stores the very item B was given, and it
    completes the run when due."""
    (a, _), (b, _) = app_on(database_url), app_on(database_url)
    async with a, b:
        await Handoff.start("s1", app=a)
        scheduled = await b.schedule_resume("handoff::s1", "wait_for_event", 1.0, event="received")

        async def stored() -> bool:
            return (await Handoff.get("s1", app=b)).scheduled == (scheduled,)

        await until(stored)

        async def done() -> bool:
            return (await Handoff.get("s1", app=b)).status is Status.COMPLETED

        await until(done)
