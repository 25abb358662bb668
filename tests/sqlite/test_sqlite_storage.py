"""What only the SQLite storage has: its durability settings, its errors for a file that
cannot serve, its migrations, its caller's transaction and its owners on one file.

The storage and runner contract suites (tests/integration, tests/runners) run on it too;
several real processes on one file are in tests/multiprocess/test_sqlite_processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hephaestus import (
    Config,
    Done,
    Hephaestus,
    InstanceAlreadyRunningError,
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
from hephaestus.errors import (
    ConcurrentUpdateError,
    CorruptInstanceError,
    InvalidArgumentError,
    StorageConfigError,
    StorageError,
)
from hephaestus.runners import LocalRunner
from hephaestus.storage import InstanceQuery
from hephaestus.storage.sqlite import (
    MIGRATIONS,
    Migration,
    SQLiteStorage,
    applied_versions,
    migrate,
)
from hephaestus.storage.sqlite import _migrations as migrations_module
from tests.integration.test_storage_contract import bump, make

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

BOUND = 20.0
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
def path(tmp_path: Path) -> str:
    return str(tmp_path / "runs.db")


@contextlib.asynccontextmanager
async def opened(storage: SQLiteStorage) -> AsyncIterator[SQLiteStorage]:
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


async def until(check: Callable[[], Awaitable[bool]]) -> float:
    """Seconds until ``check()`` holds (bounded)."""
    began = time.monotonic()
    async with asyncio.timeout(BOUND):
        while not await check():  # noqa: ASYNC110 - polling the database, no event to await
            await asyncio.sleep(0.01)
    return time.monotonic() - began


def rows(path: str, statement: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read ``path`` with a connection of the test's own."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return connection.execute(statement, params).fetchall()


def execute(path: str, statement: str, params: tuple[object, ...] = ()) -> None:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute(statement, params)
        connection.commit()


# -- durability settings ------------------------------------------------------------------------


async def test_the_database_is_durable_by_default(path: str) -> None:
    """WAL mode, synchronous FULL on the storage's connections, the busy timeout set."""
    async with opened(SQLiteStorage(path, busy_timeout=3.5)) as storage:
        settings = await storage._writer.call(
            lambda c: [
                c.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "busy_timeout")
            ]
        )
        assert settings == ["wal", 2, 3500]  # 2 is FULL
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]  # a property of the file


async def test_synchronous_can_be_relaxed(path: str) -> None:
    async with opened(SQLiteStorage(path, synchronous="normal")) as storage:
        level = await storage._writer.call(lambda c: c.execute("PRAGMA synchronous").fetchone())
        assert level == (1,)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"path": ":memory:"}, "InMemoryStorage"),
        ({"path": ""}, "database file"),
        ({"synchronous": "sometimes"}, "synchronous must be one of"),
        ({"busy_timeout": -1.0}, "busy_timeout"),
        ({"poll_interval": 0.0}, "poll_interval"),
    ],
)
def test_bad_arguments_are_refused(path: str, arguments: dict[str, object], message: str) -> None:
    given: dict[str, object] = {"path": path, **arguments}
    with pytest.raises(InvalidArgumentError, match=message):
        SQLiteStorage(**given)  # type: ignore[arg-type]


# -- a file that cannot serve -------------------------------------------------------------------


@contextlib.contextmanager
def immutable(path: str) -> Iterator[None]:
    """The file made read-only even for root (``chattr +i``), as a read-only mount would."""
    subprocess.run(["chattr", "+i", path], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", path], check=True)


async def test_a_read_only_file_is_a_clear_error_and_loses_nothing(path: str) -> None:
    async with opened(SQLiteStorage(path)) as storage:
        await storage.create(make("kept"))
    with immutable(path), pytest.raises(StorageConfigError, match="read-only"):
        await SQLiteStorage(path).open()
    async with opened(SQLiteStorage(path)) as storage:
        assert (await storage.get("kept")).run_id == "kept"


async def test_a_file_that_is_not_a_database_is_a_clear_error(path: str) -> None:
    Path(path).write_bytes(b"these are not the pages you are looking for\n" * 200)  # noqa: ASYNC240
    with pytest.raises(StorageConfigError, match="not a SQLite database"):
        await SQLiteStorage(path).open()


async def test_a_damaged_file_is_a_clear_error(path: str) -> None:
    """Pages overwritten (a bad disk, a copy taken mid-write): reading says the file is corrupt
    and how to find out more, whether at open or at the first read."""
    async with opened(SQLiteStorage(path)) as storage:
        for n in range(60):
            await storage.create(make(f"run-{n}"))
    damage = random.Random(7).randbytes(4096 * 4)
    with open(path, "r+b") as file:  # noqa: ASYNC230 - the test's own setup, nothing else runs
        file.seek(4096 * 2)
        file.write(damage)
    with pytest.raises(StorageConfigError, match="corrupt"):
        async with opened(SQLiteStorage(path)) as storage:
            await storage.query(InstanceQuery())


async def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageConfigError, match="cannot be opened"):
        await SQLiteStorage(tmp_path / "nowhere" / "runs.db").open()


async def test_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageConfigError, match="is a directory"):
        await SQLiteStorage(tmp_path).open()


async def test_another_applications_database_is_refused(path: str) -> None:
    execute(path, "CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    with pytest.raises(StorageConfigError, match="no Hephaestus schema"):
        await SQLiteStorage(path).open()


async def test_a_corrupt_row_is_reported_and_skipped_not_fatal(path: str) -> None:
    async with opened(SQLiteStorage(path)) as storage:
        await storage.create(make("healthy"))
        await storage.create(make("damaged"))
        execute(path, "UPDATE workflow_instances SET extra = '{' WHERE run_id = 'damaged'")
        with pytest.raises(CorruptInstanceError) as raised:
            await storage.get("damaged")
        assert raised.value.run_id == "damaged"
        assert [run.run_id for run in await storage.query(InstanceQuery())] == ["healthy"]


async def test_a_locked_database_is_a_clear_error_and_loses_nothing(path: str) -> None:
    """Another connection holds the write lock past the busy timeout: the write fails with
    ``StorageError`` saying so; committed runs stay, and the write succeeds once it is free."""
    async with opened(SQLiteStorage(path, busy_timeout=0.2)) as storage:
        await storage.create(make("before"))
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(StorageError, match="locked"):
                await storage.create(make("during"))
            assert [run.run_id for run in await storage.query(InstanceQuery())] == ["before"]
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await storage.create(make("during"))
        ids = [run.run_id for run in await storage.query(InstanceQuery())]
        assert ids == ["before", "during"]


# -- migrations ---------------------------------------------------------------------------------


def test_migrate_creates_and_records_the_schema(path: str, tmp_path: Path) -> None:
    assert applied_versions(str(tmp_path / "absent.db")) == []
    assert not (tmp_path / "absent.db").exists()  # asking does not create it
    assert [m.version for m in migrate(path)] == [m.version for m in MIGRATIONS]
    assert applied_versions(path) == [m.version for m in MIGRATIONS]
    assert migrate(path) == []  # up to date: nothing to do


async def test_a_new_file_is_installed_on_open(path: str) -> None:
    async with opened(SQLiteStorage(path)):
        pass
    assert applied_versions(path) == [m.version for m in MIGRATIONS]


async def test_a_schema_newer_than_the_code_is_refused(path: str) -> None:
    migrate(path)
    execute(path, "INSERT INTO hephaestus_migrations (version, name) VALUES (9999, 'future')")
    with pytest.raises(StorageConfigError, match="newer than this code"):
        await SQLiteStorage(path, migrate=True).open()
    with pytest.raises(StorageConfigError, match="newer than this code"):
        migrate(path)


async def test_pending_migrations_apply_on_open_only_when_asked(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An existing file behind the code: refused with what to run, unless ``migrate=True``;
    then the migration applies once, in order, and is recorded."""
    async with opened(SQLiteStorage(path)) as storage:
        await storage.create(make("old"))
    later = Migration(
        MIGRATIONS[-1].version + 1,
        "owner_note",
        ("ALTER TABLE workflow_owners ADD COLUMN note TEXT",),
    )
    monkeypatch.setattr(migrations_module, "MIGRATIONS", (*MIGRATIONS, later))
    with pytest.raises(StorageConfigError, match="hephaestus db migrate"):
        await SQLiteStorage(path).open()
    async with opened(SQLiteStorage(path, migrate=True)) as storage:
        assert (await storage.get("old")).run_id == "old"
    assert applied_versions(path)[-1] == later.version
    assert "note" in [row[1] for row in rows(path, "PRAGMA table_info(workflow_owners)")]
    async with opened(SQLiteStorage(path)):  # up to date now: opens without asking
        pass


# -- writes ---------------------------------------------------------------------------------------


async def test_a_refused_put_in_a_shared_commit_leaves_the_others_written(path: str) -> None:
    """Puts made at once share one commit; a stale one is refused alone."""
    async with opened(SQLiteStorage(path)) as storage:
        first, second = make("a"), make("b")
        await asyncio.gather(storage.create(first), storage.create(second))
        outcomes = await asyncio.gather(
            storage.put(bump(first), first),
            storage.put(bump(bump(second)), second),  # skips a revision: stale
            return_exceptions=True,
        )
        assert outcomes[0] is None
        assert isinstance(outcomes[1], ConcurrentUpdateError)
        assert (await storage.get("a")).revision == 2
        assert (await storage.get("b")).revision == 1


async def test_the_database_decides_uniqueness_between_storages_on_one_file(path: str) -> None:
    """Two storages on one file (as two processes) start the same key at once: one wins."""
    async with opened(SQLiteStorage(path)) as one, opened(SQLiteStorage(path)) as two:
        attempts = [
            (one if n % 2 else two).create(make(f"run-{n}", unique_key="payment|p1"))
            for n in range(10)
        ]
        outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    won = [outcome for outcome in outcomes if outcome is None]
    lost = [outcome for outcome in outcomes if isinstance(outcome, InstanceAlreadyRunningError)]
    assert (len(won), len(lost)) == (1, 9)


async def test_tenants_are_separate_files(tmp_path: Path) -> None:
    async with (
        opened(SQLiteStorage(tmp_path / "acme.db")) as acme,
        opened(SQLiteStorage(tmp_path / "globex.db")) as globex,
    ):
        await acme.create(make("shared-name"))
        await globex.create(make("shared-name"))
        await acme.put(bump(make("shared-name")), make("shared-name"))
        assert (await acme.get("shared-name")).revision == 2
        assert (await globex.get("shared-name")).revision == 1


# -- the caller's transaction -------------------------------------------------------------------


def test_a_run_started_in_a_callers_transaction_exists_only_if_it_commits(path: str) -> None:
    """``start(conn=)`` with a ``sqlite3.Connection``: nothing until the caller commits (the
    runner hears the commit through ``PRAGMA data_version``), no trace after a rollback."""
    storage = SQLiteStorage(path, poll_interval=0.01)
    runner = LocalRunner(sweep_interval=60.0)  # the announcement, not the sweep, wakes it
    with Hephaestus(storage=storage, runner=runner, workflows=[Payment]) as app:
        conn = sqlite3.connect(path)
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT)")
            conn.execute("INSERT INTO orders VALUES ('o1')")
            Payment.sync.start("p1", conn=conn)
            assert app.sync.list() == []  # not committed: nobody sees it
            conn.rollback()
            assert rows(path, "SELECT count(*) FROM orders") == [(0,)]
            conn.execute("INSERT INTO orders VALUES ('o2')")
            Payment.sync.start("p2", conn=conn)
            conn.commit()
        finally:
            conn.close()
        deadline = time.monotonic() + BOUND
        while Payment.sync.get("p2").status is not Status.COMPLETED:
            assert time.monotonic() < deadline, "the committed run did not complete"
            time.sleep(0.01)
        assert [run.id for run in app.sync.list()] == ["payment::p2"]
    assert executed == ["payment::p2"]


def test_a_resume_in_a_callers_transaction_applies_after_the_commit(path: str) -> None:
    storage = SQLiteStorage(path, poll_interval=0.01)
    with Hephaestus(storage=storage, runner=LocalRunner(sweep_interval=60.0)):
        Approval.sync.start("a1")
        conn = sqlite3.connect(path)
        try:
            Approval.sync.resume("a1", "received", conn=conn)
            time.sleep(0.1)
            assert Approval.sync.get("a1").status is Status.WAITING  # not yet committed
            conn.commit()
        finally:
            conn.close()
        deadline = time.monotonic() + BOUND
        while Approval.sync.get("a1").status is not Status.COMPLETED:
            assert time.monotonic() < deadline, "the committed resume was not applied"
            time.sleep(0.01)


async def test_the_async_api_refuses_a_sqlite3_connection(path: str) -> None:
    async with Hephaestus(storage=SQLiteStorage(path), workflows=[Payment]):
        conn = sqlite3.connect(path)
        try:
            with pytest.raises(InvalidArgumentError, match="sync API"):
                await Payment.start("p3", conn=conn)
        finally:
            conn.close()


# -- owners on one file -------------------------------------------------------------------------


def app_on(path: str, *, sweep_interval: float = 5.0, recover: bool = True) -> Hephaestus:
    """An app on a storage of its own (its own owner id, like a process of its own)."""
    return Hephaestus(
        storage=SQLiteStorage(path, poll_interval=0.01),
        runner=LocalRunner(sweep_interval=sweep_interval),
        workflows=[Approval],
        recover=recover,
    )


def owner_of(path: str, instance_id: str) -> object:
    found = rows(path, "SELECT owner FROM workflow_instances WHERE id = ?", (instance_id,))
    return found[0][0]


def storage_of(app: Hephaestus) -> SQLiteStorage:
    storage = app.storage
    assert isinstance(storage, SQLiteStorage)
    return storage


async def test_a_resume_from_another_app_is_forwarded_to_the_owner(path: str) -> None:
    a, b = app_on(path), app_on(path, sweep_interval=60.0)
    async with a, b:
        run = await Approval.start("f1", app=a)
        assert owner_of(path, run) == storage_of(a).owner
        await Approval.resume("f1", "received", app=b)

        async def done() -> bool:
            return (await Approval.get("f1", app=b)).status is Status.COMPLETED

        seconds = await until(done)
        assert seconds < 5.0  # announced, not found by a sweep
        assert owner_of(path, run) == storage_of(a).owner


async def test_runs_of_a_dead_owner_are_taken_over(path: str) -> None:
    """A's lock is gone (as when its process dies): B's sweep claims A's runs."""
    b = app_on(path, sweep_interval=0.1)
    a = app_on(path, recover=False)
    async with b, a:
        run = await Approval.start("d1", app=a)
        a_storage = storage_of(a)
        assert a_storage.owner is not None
        a_storage._locks.let_go(a_storage.owner)  # what the kernel does when A dies

        async def taken() -> bool:
            return owner_of(path, run) == storage_of(b).owner

        await until(taken)
        await Approval.resume("d1", "received", app=b)

        async def done() -> bool:
            return (await Approval.get("d1", app=b)).status is Status.COMPLETED

        await until(done)


async def test_a_closing_app_hands_its_runs_over_at_once(path: str) -> None:
    b, a = app_on(path, sweep_interval=60.0), app_on(path)
    async with b:
        await a.open()
        started = [await Approval.start(f"h{n}", app=a) for n in range(5)]
        await a.close()

        async def all_taken() -> bool:
            owners = {owner_of(path, run) for run in started}
            return owners == {storage_of(b).owner}

        seconds = await until(all_taken)
        assert seconds < 5.0  # by the release's announcements, not the one-minute sweep


async def test_a_deposed_owner_cannot_write(path: str) -> None:
    async with opened(SQLiteStorage(path)) as a, opened(SQLiteStorage(path)) as b:
        await a.register(lambda: None)
        await b.register(lambda: None)
        first = make("run-1")
        await a.create(first)
        assert not await b.claim("run-1")  # A lives and owns it
        assert a.owner is not None
        a._locks.let_go(a.owner)  # A dies
        assert await b.claim("run-1")
        with pytest.raises(ConcurrentUpdateError):
            await a.put(bump(first), first)
        await b.put(bump(first), first)
        assert (await b.get("run-1")).revision == 2


async def test_a_failing_watcher_does_not_stop_the_wake_ups(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Announcements keep arriving after a watcher raised (it is logged), to every watcher."""
    from hephaestus.runners import Resume

    async with opened(SQLiteStorage(path, poll_interval=0.01)) as storage:
        heard: list[str | None] = []

        def broken(run_id: str | None) -> None:
            raise RuntimeError(f"bug on {run_id}")

        unwatch_broken = await storage.watch(broken)
        unwatch = await storage.watch(heard.append)
        try:
            await storage.create(make("r1"))
            await storage.create(make("r2"))
            await storage.forward("r1", Resume(event="go"))

            async def heard_r1() -> bool:
                return "r1" in heard

            await until(heard_r1)
            await storage.forward("r2", Resume(event="go"))

            async def heard_r2() -> bool:
                return "r2" in heard

            await until(heard_r2)
        finally:
            await unwatch_broken()
            await unwatch()
    assert "a watcher of" in caplog.text
