"""The caller's transaction (``conn=``): runs start, resume and cancel if and only if the
caller commits, and nothing executes before it does (NOTIFY at commit, inbox, sweep)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import psycopg
import pytest

from hephaestus import (
    Config,
    Done,
    Hephaestus,
    Instance,
    InstanceAlreadyRunningError,
    InstanceNotActiveError,
    Ok,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    WaitForEvent,
    Workflow,
    WorkflowDefinition,
)
from hephaestus._core import engine
from hephaestus.codec import dumps, encode_input
from hephaestus.errors import InvalidEventError, TransactionNotSupportedError
from hephaestus.runners import LocalRunner, Resume
from hephaestus.storage import InMemoryStorage
from hephaestus.storage.postgres import PostgresStorage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

WAIT_SECONDS = 10.0
"""How long a run may take to get where a test expects it (a bound, never a measurement)."""

executed: list[str] = []


class Charge(Step):
    events = ("charged",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        executed.append(run.id)
        return Ok("charged")


class Payment(Workflow):
    unique = Unique(key="payment")
    start_step = Charge
    transitions = {(Charge, "charged"): Done}


class Approval(Workflow):
    unique = Unique(key="approval")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Charge, (Charge, "charged"): Done}


@pytest.fixture(autouse=True)
def _forget_executions() -> None:
    executed.clear()


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[Hephaestus]:
    """An open app on this test's database, sweeping every 0.2 s."""
    async with Hephaestus(
        storage=PostgresStorage(database_url, min_size=1, max_size=4),
        runner=LocalRunner(sweep_interval=0.2),
    ) as opened:
        yield opened


async def eventually[T](read: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    """Poll ``read`` until ``done`` holds (bounded by ``WAIT_SECONDS``)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        value = await read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {WAIT_SECONDS}s")
        await asyncio.sleep(0.01)


async def status_of(app: Hephaestus, workflow: type[Workflow], value: str) -> Status:
    return (await app.get(workflow, value)).status


async def reach(app: Hephaestus, workflow: type[Workflow], value: str, status: Status) -> None:
    await eventually(lambda: status_of(app, workflow, value), lambda s: s is status)


async def test_a_run_started_in_a_committed_transaction_executes(
    app: Hephaestus, database_url: str
) -> None:
    """``start(conn=)`` in a transaction that commits creates the run, and it completes."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        async with conn.transaction():
            instance_id = await app.start(Payment, "p1", conn=conn)
        await reach(app, Payment, "p1", Status.COMPLETED)
    assert instance_id == "payment::p1"
    assert executed == ["payment::p1"]


async def test_a_rolled_back_start_leaves_no_run_and_executes_nothing(
    app: Hephaestus, database_url: str
) -> None:
    """A rollback after ``start(conn=)``, or an exception in the caller's block, leaves no
    trace: no run is stored, none waits for a sweep, no step executes."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await app.start(Payment, "rolledback", conn=conn)
        await conn.rollback()

        async def order_refused() -> None:
            async with conn.transaction():
                await app.start(Payment, "raised", conn=conn)
                raise RuntimeError("business rule")

        with pytest.raises(RuntimeError, match="business rule"):
            await order_refused()
        async with conn.transaction():  # a later run goes through while the others had time
            await app.start(Payment, "later", conn=conn)
    await reach(app, Payment, "later", Status.COMPLETED)
    storage = app.storage
    assert isinstance(storage, PostgresStorage)
    assert await storage.awaiting(older_than=0.0) == []
    assert [run.id for run in await app.list()] == ["payment::later"]
    assert executed == ["payment::later"]


async def test_nothing_executes_until_a_late_caller_commits(
    app: Hephaestus, database_url: str
) -> None:
    """While the caller's transaction stays open (through many sweeps) the run is invisible
    and nothing executes; once it commits, the run completes."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        async with conn.transaction():
            await app.start(Payment, "late", conn=conn)
            await asyncio.sleep(2.0)  # ten sweep intervals
            assert await app.list() == []
            assert executed == []
        await reach(app, Payment, "late", Status.COMPLETED)
    assert executed == ["payment::late"]


async def test_resume_and_cancel_apply_only_when_the_caller_commits(
    app: Hephaestus, database_url: str
) -> None:
    """``resume(conn=)`` and ``cancel(conn=)`` are delivered once the caller commits and
    dropped with its rollback; the run is not locked meanwhile."""
    await app.start(Approval, "a1")
    await app.start(Approval, "a2")
    await reach(app, Approval, "a1", Status.WAITING)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await app.resume(Approval, "a1", "received", {"by": "ann"}, conn=conn)
        await app.cancel(Approval, "a2", reason="changed mind", conn=conn)
        await conn.rollback()
        await asyncio.sleep(0.5)  # sweeps come and go: nothing to find
        assert await status_of(app, Approval, "a1") is Status.WAITING
        assert await status_of(app, Approval, "a2") is Status.WAITING
        async with conn.transaction():
            await app.resume(Approval, "a1", "received", {"by": "ann"}, conn=conn)
            await app.cancel(Approval, "a2", reason="changed mind", conn=conn)
            # The caller's transaction holds no lock the runner needs: others still write.
            await app.start(Approval, "a3")
            await app.cancel(Approval, "a3")
        await reach(app, Approval, "a1", Status.COMPLETED)
        await reach(app, Approval, "a2", Status.CANCELLED)
    resumed = await app.get(Approval, "a1")
    assert resumed.context.steps["wait_for_event"] == {"by": "ann"}
    assert executed == ["approval::a1"]


async def test_a_run_started_and_resumed_in_one_transaction_takes_both_in_order(
    app: Hephaestus, database_url: str
) -> None:
    """A resume sent in the transaction that started the run (which it sees, pending) is
    applied after the run begins: the wait receives it."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        async with conn.transaction():
            await app.start(Approval, "both", conn=conn)
            await app.resume(Approval, "both", "received", {"early": True}, conn=conn)
        await reach(app, Approval, "both", Status.COMPLETED)
    done = await app.get(Approval, "both")
    assert done.context.steps["wait_for_event"] == {"early": True}
    assert executed == ["approval::both"]


async def test_invalid_input_is_refused_in_the_callers_block(
    app: Hephaestus, database_url: str
) -> None:
    """Resume and cancel are checked against the run as the caller's transaction sees it,
    and raise there; the caller's transaction stays usable."""
    await app.start(Payment, "done")
    await reach(app, Payment, "done", Status.COMPLETED)
    await app.start(Approval, "w")
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        with pytest.raises(InstanceNotActiveError):
            await app.cancel(Payment, "done", conn=conn)
        with pytest.raises(InvalidEventError):
            await app.resume(Approval, "w", "nonsense", conn=conn)
        await conn.execute("SELECT 1")


async def test_a_duplicate_start_raises_in_the_callers_block(
    app: Hephaestus, database_url: str
) -> None:
    """The insert decides uniqueness: a second start of an active id raises
    ``InstanceAlreadyRunningError`` in the caller's block, which can go on and commit."""
    await app.start(Approval, "dup")
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        with pytest.raises(InstanceAlreadyRunningError):
            await app.start(Approval, "dup", conn=conn)
        await app.start(Payment, "after", conn=conn)
        with pytest.raises(InstanceAlreadyRunningError):
            await app.start(Payment, "after", conn=conn)
    await reach(app, Payment, "after", Status.COMPLETED)


async def test_an_idempotent_start_in_the_callers_transaction_returns_the_run(
    app: Hephaestus, database_url: str
) -> None:
    """``start(conn=, idempotent=)`` returns the active run started with the same context (also
    one started earlier in the same transaction), and a different context still conflicts."""
    await app.start(Approval, "idem", {"amount": 5})
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        again = await app.start(Approval, "idem", {"amount": 5}, idempotent=60, conn=conn)
        assert again == "approval::idem"
        with pytest.raises(InstanceAlreadyRunningError):
            await app.start(Approval, "idem", {"amount": 6}, idempotent=60, conn=conn)
        await app.start(Approval, "fresh", {"amount": 1}, conn=conn)
        assert await app.start(Approval, "fresh", {"amount": 1}, idempotent=0, conn=conn) == (
            "approval::fresh"
        )
    assert sorted(run.id for run in await app.list()) == ["approval::fresh", "approval::idem"]


async def test_an_input_that_no_longer_applies_is_dropped_with_a_warning(
    app: Hephaestus, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two resumes committed together both pass the check; the second finds the step no
    longer waiting and is deleted, logged as a warning naming the run."""
    await app.start(Approval, "twice")
    await reach(app, Approval, "twice", Status.WAITING)
    caplog.set_level(logging.WARNING, "hephaestus.runner")
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        run = await app.resume_instance("approval::twice", "received", conn=conn)
        await app.resume_instance("approval::twice", "received", conn=conn)
    await reach(app, Approval, "twice", Status.COMPLETED)
    storage = app.storage
    assert isinstance(storage, PostgresStorage)
    await eventually(lambda: storage.awaiting(older_than=0.0), lambda found: found == [])
    assert any(run.run_id in record.getMessage() for record in caplog.records)


def unannounced(app: Hephaestus, value: str) -> Instance:
    """A pending ``Payment`` run, to store without a notification (as if it were lost)."""
    definition = Payment.definition()
    assert isinstance(definition, WorkflowDefinition)
    return engine.pending(
        definition,
        instance_id=f"payment::{value}",
        run_id=f"{value}run",
        family=Payment.name,
        initial={},
        now=app.clock.now(),
        unique_key=f"payment::{value}",
    )


async def test_the_sweep_finds_what_no_notification_announced(
    app: Hephaestus, database_url: str
) -> None:
    """A pending run and an inbox entry written without NOTIFY (a lost notification) are
    found by the periodic sweep and processed."""
    await app.start(Approval, "quiet")
    await reach(app, Approval, "quiet", Status.WAITING)
    waiting = await app.get(Approval, "quiet")
    storage = app.storage
    assert isinstance(storage, PostgresStorage)
    await storage.create(unannounced(app, "quiet"))  # Storage.create sends no notification
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO workflow_inbox (run_id, input) VALUES (%s, %s::jsonb)",
            (waiting.run_id, dumps(encode_input(Resume("received")))),
        )
    await reach(app, Payment, "quiet", Status.COMPLETED)
    await reach(app, Approval, "quiet", Status.COMPLETED)


async def test_a_reconnected_listener_sweeps_at_once(database_url: str) -> None:
    """When the listener's connection is lost, it reconnects and the runner sweeps at once,
    without waiting for the (here very long) sweep interval."""
    async with Hephaestus(
        storage=PostgresStorage(database_url, min_size=1, max_size=4),
        runner=LocalRunner(sweep_interval=3600),
    ) as app:
        storage = app.storage
        assert isinstance(storage, PostgresStorage)
        await storage.create(unannounced(app, "missed"))  # no notification: as if it was lost
        await asyncio.sleep(0.3)
        assert executed == []
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE '%%LISTEN %%' "
                "AND pid <> pg_backend_pid()"
            )
            assert [row[0] for row in await cursor.fetchall()] == [True]
        await reach(app, Payment, "missed", Status.COMPLETED)


def test_the_sync_api_takes_a_sync_connection(database_url: str) -> None:
    """``app.sync`` runs ``start``/``resume``/``cancel`` with a psycopg ``Connection`` in the
    caller's thread, in the caller's transaction."""
    storage = PostgresStorage(database_url, min_size=1, max_size=4)
    with (
        Hephaestus(storage=storage, runner=LocalRunner(sweep_interval=0.2)) as app,
        psycopg.connect(database_url) as conn,
    ):
        app.sync.start(Approval, "s1", conn=conn)
        app.sync.start(Approval, "s2", conn=conn)
        conn.rollback()
        assert app.sync.list() == []
        app.sync.start(Approval, "s1", conn=conn)
        app.sync.start(Approval, "s2", conn=conn)
        conn.commit()
        wait_sync(app, Approval, "s1", Status.WAITING)
        wait_sync(app, Approval, "s2", Status.WAITING)
        with conn.transaction():
            app.sync.resume(Approval, "s1", "received", conn=conn)
            app.sync.cancel(Approval, "s2", conn=conn)
        wait_sync(app, Approval, "s1", Status.COMPLETED)
        wait_sync(app, Approval, "s2", Status.CANCELLED)


async def test_the_facade_takes_conn(app: Hephaestus, database_url: str) -> None:
    """``OrderFlow.start/resume/cancel(..., conn=)`` go through the caller's transaction."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        async with conn.transaction():
            await Approval.start("f1", conn=conn)
            await Approval.start("f2", conn=conn)
        await reach(app, Approval, "f1", Status.WAITING)
        await reach(app, Approval, "f2", Status.WAITING)
        async with conn.transaction():
            await Approval.resume("f1", "received", conn=conn)
            await Approval.cancel("f2", conn=conn)
            assert await status_of(app, Approval, "f1") is Status.WAITING
    await reach(app, Approval, "f1", Status.COMPLETED)
    await reach(app, Approval, "f2", Status.CANCELLED)


def test_the_sync_facade_takes_a_sync_connection(database_url: str) -> None:
    """``OrderFlow.sync.start/resume/cancel(..., conn=)`` run in the caller's thread, in its
    transaction."""
    storage = PostgresStorage(database_url, min_size=1, max_size=4)
    with (
        Hephaestus(storage=storage, runner=LocalRunner(sweep_interval=0.2)) as app,
        psycopg.connect(database_url) as conn,
    ):
        with conn.transaction():
            Approval.sync.start("g1", conn=conn)
            Approval.sync.start("g2", conn=conn)
        wait_sync(app, Approval, "g1", Status.WAITING)
        wait_sync(app, Approval, "g2", Status.WAITING)
        Approval.sync.resume("g1", "received", conn=conn)
        Approval.sync.cancel("g2", reason="no", conn=conn)
        conn.rollback()
        with conn.transaction():
            Approval.sync.resume("g1", "received", conn=conn)
            Approval.sync.cancel("g2", reason="no", conn=conn)
        wait_sync(app, Approval, "g1", Status.COMPLETED)
        wait_sync(app, Approval, "g2", Status.CANCELLED)
        assert Approval.sync.get("g2").status is Status.CANCELLED


def wait_sync(app: Hephaestus, workflow: type[Workflow], value: str, status: Status) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while app.sync.get(workflow, value).status is not status:
        if time.monotonic() > deadline:
            raise AssertionError(f"{value} did not reach {status}")
        time.sleep(0.01)


async def test_a_connection_of_the_other_kind_is_refused_with_what_to_do(
    app: Hephaestus, database_url: str
) -> None:
    """A sync connection given to the async API (or an async one to the sync API) raises a
    ``TypeError`` naming the API to use; so does an object that is no connection."""
    with (
        psycopg.connect(database_url) as sync_conn,
        pytest.raises(TypeError, match=r"sync connection, given to the async API.*\.sync"),
    ):
        await app.start(Payment, "x", conn=sync_conn)
    async with await psycopg.AsyncConnection.connect(database_url) as async_conn:
        with pytest.raises(TypeError, match="async connection, given to the sync API"):
            await asyncio.to_thread(app.sync.start, Payment, "x", conn=async_conn)
    with pytest.raises(TypeError, match="conn= takes a psycopg 3 Connection"):
        await app.start(Payment, "x", conn=object())
    assert await app.list() == []


async def test_a_storage_that_cannot_join_refuses_conn(database_url: str) -> None:
    """The in-memory storage refuses ``conn=`` with ``TransactionNotSupportedError``."""
    async with (
        Hephaestus(storage=InMemoryStorage()) as app,
        await psycopg.AsyncConnection.connect(database_url) as conn,
    ):
        with pytest.raises(TransactionNotSupportedError, match="PostgresStorage"):
            await app.start(Payment, "x", conn=conn)
        with pytest.raises(TransactionNotSupportedError):
            await app.cancel_instance("payment::x", conn=conn)
        assert await app.list() == []
