"""``SQLiteStorage``: the storage protocol on a SQLite file, with the standard ``sqlite3``.

Three connections, each on its own thread (``_database``): the writer makes every write, in
transactions it begins (``BEGIN IMMEDIATE``) and commits; puts and creates that arrive while a
commit is under way share the next one (group commit, one ``fsync`` for many steps). A reader
serves queries beside it (WAL lets readers run during a write), and a watcher polls ``PRAGMA
data_version`` for the commits of other connections (SQLite has no ``NOTIFY``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hephaestus.codec import dumps, encode_input
from hephaestus.errors import (
    ConcurrentUpdateError,
    InstanceAlreadyRunningError,
    InstanceNotFoundError,
    InvalidArgumentError,
    StorageError,
)
from hephaestus.storage._query import (
    Page,
    count_columns,
    encode_cursor,
    filters_of,
    group_counts,
    json_contains,
    process_registry,
)
from hephaestus.storage._rows import (
    decode_inbox_entry,
    decode_row,
    decode_rows,
    extra_document,
    insert_params,
    write_changes,
)
from hephaestus.storage.sqlite import _schema as sql
from hephaestus.storage.sqlite._database import SYNCHRONOUS_LEVELS, Database, fetch
from hephaestus.storage.sqlite._migrations import check_schema
from hephaestus.storage.sqlite._owners import OwnerLocks

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Collection

    from hephaestus._core.commands import Cancel, Changes, Resume, ScheduleResume
    from hephaestus._core.instance import Instance
    from hephaestus._core.registry import WorkflowRegistry
    from hephaestus.storage import CountKey, InboxEntry, InstanceQuery, Unwatch
    from hephaestus.storage._rows import Row
    from hephaestus.storage.sqlite._caller import SQLiteCallerTransaction

__all__ = ["SQLiteStorage", "SQLiteTransaction"]

log = logging.getLogger("hephaestus.storage")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
ANNOUNCEMENTS_KEPT = 300.0
"""Seconds an announcement is kept for watchers that fall behind (the sweep finds the rest)."""


def micros(at: datetime) -> int:
    """``at`` as integer microseconds since the epoch (a naive time is taken as local)."""
    if at.tzinfo is None:
        at = at.astimezone()
    return (at - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


# -- writes, as the writer thread applies them ------------------------------------------------


@dataclass(slots=True)
class _Write:
    """One run's create or next revision, encoded on the loop, applied on the writer."""

    instance: Instance
    create: bool
    params: dict[str, Any]
    parts: str = "[]"
    drop: str = "[]"
    full: bool = False
    history_start: int = 0
    history: str = "[]"
    future: asyncio.Future[None] | None = field(default=None, repr=False)


def _encode_create(instance: Instance, owner: int | None) -> _Write:
    params = insert_params(instance, owner)
    write = _Write(instance, True, params, parts=params.pop("parts"))
    write.history = params.pop("history")
    write.history_start = params.pop("history_start")
    params["created_at"] = micros(instance.created_at)
    params["updated_at"] = micros(instance.updated_at)
    return write


def _encode_put(
    instance: Instance, previous: Instance | None, declared: Changes | None, owner: int | None
) -> _Write:
    state, changes = write_changes(instance, previous, declared)
    params = {
        "run_id": instance.run_id,
        "expected": instance.revision - 1,
        "revision": instance.revision,
        "workflow": instance.workflow,
        "workflow_version": instance.workflow_version,
        "status": instance.status.value,
        "unique_key": instance.unique_key,
        "state": state,
        "extra": extra_document(instance),
        "updated_at": micros(instance.updated_at),
        "owner": owner,
    }
    return _Write(
        instance,
        False,
        params,
        parts=changes["parts"],
        drop=changes["drop"],
        full=changes["full"],
        history_start=changes["history_start"],
        history=changes["history"],
    )


def _apply(connection: sqlite3.Connection, write: _Write) -> Exception | None:
    """Apply ``write`` inside the writer's open transaction; the error it meets, if any (a
    refused write changes nothing, and the transaction goes on for the others)."""
    instance = write.instance
    run_id = instance.run_id
    if write.create:
        try:
            connection.execute(sql.INSERT_RUN, write.params)
        except sqlite3.IntegrityError as exc:
            return _already_running(instance, exc)
    elif connection.execute(sql.UPDATE_RUN, write.params).rowcount != 1:
        return _refused(connection, instance)
    if write.full and not write.create:
        connection.execute(sql.KEEP_ONLY_PARTS, {"run_id": run_id, "parts": write.parts})
    if write.parts != "[]":
        connection.execute(sql.UPSERT_PARTS, {"run_id": run_id, "parts": write.parts})
    if write.drop != "[]":
        connection.execute(sql.DROP_PARTS, {"run_id": run_id, "drop": write.drop})
    if write.history != "[]":
        connection.execute(
            sql.WRITE_HISTORY,
            {"run_id": run_id, "history_start": write.history_start, "history": write.history},
        )
    if write.history_start == 0 and not write.create:  # rewritten, maybe shorter
        connection.execute(
            sql.TRIM_HISTORY, {"run_id": run_id, "history_length": len(instance.history)}
        )
    return None


def _already_running(instance: Instance, exc: sqlite3.IntegrityError) -> Exception:
    message = str(exc)
    if "workflow_instances_active_unique_key" in message or "unique_key" in message:
        return InstanceAlreadyRunningError(
            f"an active instance {instance.id} already exists ({instance.unique_key})",
            instance_id=instance.id,
            unique_key=instance.unique_key or "",
        )
    if "run_id" in message:
        return StorageError(f"run {instance.run_id} already exists")
    return StorageError(f"run {instance.run_id} could not be stored: {exc}")


def _refused(connection: sqlite3.Connection, instance: Instance) -> Exception:
    row = connection.execute(sql.STORED_REVISION, (instance.run_id,)).fetchone()
    if row is None:
        return InstanceNotFoundError(
            f"run {instance.run_id} of {instance.id} does not exist", instance_id=instance.id
        )
    return ConcurrentUpdateError(
        f"run {instance.run_id} of {instance.id} is at revision {row[0]} (or owned by "
        f"another process); cannot write revision {instance.revision}",
        instance_id=instance.id,
    )


def _write_batch(connection: sqlite3.Connection, writes: list[_Write]) -> list[Exception | None]:
    """Apply ``writes`` in one transaction: one commit (one ``fsync``) for all of them."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        outcomes = [_apply(connection, write) for write in writes]
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return outcomes


def _in_transaction[T](
    function: Callable[[sqlite3.Connection], T],
) -> Callable[[sqlite3.Connection], T]:
    """``function`` run in its own ``BEGIN IMMEDIATE`` transaction on the writer."""

    def run(connection: sqlite3.Connection) -> T:
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = function(connection)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return result

    return run


def _contains(document: str | None, pattern: str | None) -> bool:
    """``hephaestus_contains(state, pattern)``: JSONB ``@>`` on SQLite."""
    if document is None or pattern is None:
        return False
    try:
        return json_contains(json.loads(document), json.loads(pattern))
    except ValueError:
        return False


def register_functions(connection: sqlite3.Connection) -> None:
    """The SQL functions the storage's statements use, on ``connection``."""
    connection.create_function("hephaestus_contains", 2, _contains, deterministic=True)


# -- the storage ------------------------------------------------------------------------------


class SQLiteStorage:
    """Runs stored in a SQLite database file, durable across restarts with nothing to install.

    ``path`` is the database file (created, with its schema, on first open; a tenant is a file
    of its own). It runs in WAL mode with ``synchronous`` ``FULL`` by default: a step whose
    write returned survives a power loss, not only a crash (``NORMAL`` keeps the database
    consistent but may lose the last commits on power loss). ``busy_timeout`` is how long a
    write waits for another process's write lock before ``StorageError``. Pending schema
    migrations are applied on open only with ``migrate=True`` (else: ``StorageConfigError``
    saying what to run). ``poll_interval`` is how often, in seconds, a watching process looks
    for other processes' commits (``PRAGMA data_version``).

    Several processes may share one file: each owns the runs it executes (``OwningStorage``),
    its liveness shown by an ``flock`` on ``<path>-owners/<id>``; see ``docs/sqlite.md``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 10.0,
        migrate: bool = False,
        poll_interval: float = 0.025,
        registry: WorkflowRegistry | None = None,
    ) -> None:
        self.path = os.fspath(path)
        if not self.path or self.path == ":memory:" or self.path.startswith("file::memory:"):
            raise InvalidArgumentError(
                "SQLiteStorage needs a database file; for runs kept in memory use InMemoryStorage"
            )
        level = synchronous.upper()
        if level not in SYNCHRONOUS_LEVELS:
            raise InvalidArgumentError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}, got {synchronous!r}"
            )
        if not busy_timeout >= 0:
            raise InvalidArgumentError(f"busy_timeout must be >= 0 seconds, got {busy_timeout!r}")
        if not poll_interval > 0:
            raise InvalidArgumentError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
        self.synchronous = level
        self.busy_timeout = busy_timeout
        self.poll_interval = poll_interval
        self._migrate = migrate
        options: dict[str, Any] = {
            "busy_timeout": busy_timeout,
            "synchronous": level,
            "setup": register_functions,
        }
        self._writer = Database(self.path, label="writer", **options)
        self._reader = Database(self.path, label="reader", **options)
        self._watcher = Database(self.path, label="watcher", **options)
        self._writing = asyncio.Lock()  # the writer connection, for one batch or transaction
        self._queued: list[_Write] = []
        self._flushing: asyncio.Task[None] | None = None
        self._locks = OwnerLocks(self.path)
        self.owner: int | None = None
        """This process's owner id while registered (``OwningStorage``), else ``None``."""
        self._watchers: list[Callable[[str | None], object]] = []
        self._polling: asyncio.Task[None] | None = None
        self._given = registry
        self._registry = registry if registry is not None else process_registry()

    def bind_registry(self, registry: WorkflowRegistry) -> None:
        """Decode with the opening app's workflows, unless given a ``registry`` at construction."""
        if self._given is None:
            self._registry = registry

    @property
    def registry(self) -> WorkflowRegistry:
        """What stored step references resolve through."""
        return self._registry

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        self._writing = asyncio.Lock()
        await self._writer.open()
        try:
            applied = await self._writer.call(
                lambda c: check_schema(c, self.path, migrate=self._migrate)
            )
            await self._writer.call(_probe_writable)
            for migration in applied:
                log.info(
                    "applied migration %04d_%s to %s", migration.version, migration.name, self.path
                )
            await self._reader.open()
        except BaseException:
            await self._writer.close()
            raise

    async def close(self) -> None:
        await self._stop_polling()
        flushing = self._flushing
        if flushing is not None:
            await asyncio.gather(flushing, return_exceptions=True)
        self._locks.close()
        self.owner = None
        await self._reader.close()
        await self._writer.close()

    # -- protocol ---------------------------------------------------------------------------

    async def create(self, instance: Instance) -> None:
        await self._submit(_encode_create(instance, self.owner))

    async def put(
        self,
        instance: Instance,
        previous: Instance | None = None,
        changes: Changes | None = None,
    ) -> None:
        await self._submit(_encode_put(instance, previous, changes, self.owner))

    async def _submit(self, write: _Write) -> None:
        """Queue ``write`` for the next commit and wait until it is durable (or refused)."""
        loop = asyncio.get_running_loop()
        write.future = loop.create_future()
        self._queued.append(write)
        if self._flushing is None:
            self._flushing = loop.create_task(self._flush())
        await write.future

    async def _flush(self) -> None:
        try:
            while self._queued:
                async with self._writing:
                    writes, self._queued = self._queued, []
                    try:
                        outcomes = await self._writer.call(
                            functools.partial(_write_batch, writes=writes)
                        )
                    except Exception as exc:
                        for write in writes:
                            _settle(write, exc)
                        continue
                for write, outcome in zip(writes, outcomes, strict=True):
                    _settle(write, outcome)
        finally:
            self._flushing = None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteTransaction]:
        """A unit of work: one ``BEGIN IMMEDIATE`` transaction on the writer, committed when
        the block exits without error (rolled back otherwise). It holds the database's write
        lock throughout, so every run it reads is locked; keep it short. Inside the block use
        ``tx`` only (the storage's own writes wait for the block)."""
        async with self._writing:
            await self._writer.call(_begin)
            tx = SQLiteTransaction(self)
            try:
                yield tx
            except BaseException:
                await asyncio.shield(self._writer.call(_rollback))
                raise
            await self._writer.call(_commit)
        tx.committed()

    async def get(self, run_id: str) -> Instance:
        rows = await self._reader.call(lambda c: fetch(c, sql.GET_RUN, (run_id,)))
        if not rows:
            raise InstanceNotFoundError(f"run {run_id} does not exist", instance_id=run_id)
        return decode_row(rows[0], self._registry)

    async def delete(self, run_id: str) -> None:
        def delete(connection: sqlite3.Connection) -> None:
            for statement in sql.DELETE_RUN:
                connection.execute(statement, (run_id,))

        async with self._writing:
            await self._writer.call(_in_transaction(delete))

    async def query(self, query: InstanceQuery) -> list[Instance]:
        rows = await self._select(query, query.limit)
        return decode_rows(rows, self._registry, skip_corrupt=query.skip_corrupt)

    async def page(self, query: InstanceQuery) -> Page:
        limit = query.limit
        rows = await self._select(query, None if limit is None else limit + 1)
        cursor = None
        if limit is not None and len(rows) > limit:
            rows = rows[:limit]
            last: tuple[Any, ...] = rows[-1]
            cursor = encode_cursor(from_micros(int(last[6])), int(last[7]))
        return Page(decode_rows(rows, self._registry, skip_corrupt=query.skip_corrupt), cursor)

    async def count(
        self, query: InstanceQuery, *, by: tuple[CountKey, ...] = ("status", "workflow")
    ) -> dict[tuple[str, ...], int]:
        columns = count_columns(by)
        params = self.query_params(query, None)
        if params is None:
            return {}
        statement = sql.count_runs(columns)
        rows = await self._reader.call(lambda c: fetch(c, statement, params))
        return group_counts(rows, columns, by)

    async def _select(self, query: InstanceQuery, limit: int | None) -> list[Row]:
        read = self.read_statement(query, limit)
        if read is None:
            return []
        statement, params = read
        rows: list[Row] = await self._reader.call(lambda c: fetch(c, statement, params))
        return rows

    def read_statement(
        self, query: InstanceQuery, limit: int | None
    ) -> tuple[str, dict[str, Any]] | None:
        """The statement and parameters that read ``query``'s runs (``None``: none can match)."""
        params = self.query_params(query, limit)
        if params is None:
            return None
        statement = sql.query_runs(
            newest_first=query.newest_first, after=params["after_created"] is not None
        )
        return statement, params

    def query_params(self, query: InstanceQuery, limit: int | None) -> dict[str, Any] | None:
        """The statement parameters of ``query`` (``None``: it cannot match any run)."""
        filters = filters_of(query, self._registry, limit)
        if filters is None:
            return None
        after_created, after_seq = (None, None) if filters.after is None else filters.after
        return {
            "id": filters.id,
            "id_prefix": filters.id_prefix,
            "statuses": _json_list(filters.statuses),
            "workflows": _json_list(filters.workflows),
            "workflow_version": filters.workflow_version,
            "contains": filters.contains,
            "created_after": _optional_micros(filters.created_after),
            "created_before": _optional_micros(filters.created_before),
            "updated_after": _optional_micros(filters.updated_after),
            "updated_before": _optional_micros(filters.updated_before),
            "after_created": _optional_micros(after_created),
            "after_seq": after_seq,
            "limit": -1 if filters.limit is None else filters.limit,  # SQLite: -1, no limit
            "offset": filters.offset,
        }

    # -- the caller's transaction (JoinableStorage) -----------------------------------------

    def join(self, connection: object) -> SQLiteCallerTransaction:
        """Reads and writes through the caller's open ``sqlite3.Connection`` to this file."""
        from hephaestus.storage.sqlite._caller import SQLiteCallerTransaction

        return SQLiteCallerTransaction(self, connection)

    async def watch(self, callback: Callable[[str | None], object]) -> Unwatch:
        """Hear of runs announced by any process on this file (started or signalled in a
        caller's transaction, forwarded to this owner, released by a stopping owner): the
        watcher polls ``PRAGMA data_version`` every ``poll_interval`` seconds and reads the
        announcements committed since."""
        self._watchers.append(callback)
        if self._polling is None:
            await self._watcher.open()
            last = await self._watcher.call(_first_poll)
            self._polling = asyncio.get_running_loop().create_task(self._poll(last))

        async def unwatch() -> None:
            with contextlib.suppress(ValueError):
                self._watchers.remove(callback)
            if not self._watchers:
                await self._stop_polling()

        return unwatch

    async def _poll(self, last: tuple[int, int]) -> None:
        version, seen = last
        missed = False
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                version, seen, found = await self._watcher.call(
                    functools.partial(_poll_once, version=version, seen=seen)
                )
            except StorageError as exc:
                if not missed:
                    log.warning("could not read announcements from %s: %s", self.path, exc)
                missed = True
                continue
            if missed:  # announcements may have been pruned meanwhile: sweep
                missed = False
                found = [(None, None), *found]
            for run_id, owner in found:
                if owner is not None and self.owner is not None and owner != self.owner:
                    continue  # a live process owns it, and was told too
                for callback in list(self._watchers):
                    try:
                        callback(run_id)
                    except Exception:  # one watcher's bug must not stop the wake-ups
                        log.exception("a watcher of %s failed on run %s", self.path, run_id)

    async def _stop_polling(self) -> None:
        polling, self._polling = self._polling, None
        if polling is None:
            return
        polling.cancel()
        await asyncio.gather(polling, return_exceptions=True)
        await self._watcher.close()

    async def awaiting(self, *, older_than: float, limit: int = 1000) -> list[str]:
        before = micros(datetime.now(UTC) - timedelta(seconds=older_than))
        params = {"before": before, "limit": limit}
        rows = await self._reader.call(lambda c: fetch(c, sql.AWAITING, params))
        return [str(row[0]) for row in rows]

    # -- ownership (OwningStorage) ----------------------------------------------------------

    async def register(self, lost: Callable[[], object]) -> int:
        """Become an owner: a new owner id, whose lock file this process holds while it
        lives. ``lost`` is never called: the kernel holds the lock as long as the process
        lives, and nothing else can take it away."""
        del lost
        if self.owner is not None:
            return self.owner

        def register(connection: sqlite3.Connection) -> int:
            row = connection.execute(
                sql.REGISTER_OWNER, (os.getpid(), socket.gethostname(), micros(_now()))
            ).fetchone()
            owner = int(row[0])
            try:
                self._locks.hold(owner)
            except OSError as exc:
                raise StorageError(
                    f"cannot create the owner lock file in {self._locks.directory}: {exc}"
                ) from exc
            return owner

        async with self._writing:
            self.owner = await self._writer.call(_in_transaction(register))
        log.info("registered as owner %d of %s", self.owner, self.path)
        return self.owner

    async def claim(self, run_id: str) -> bool:
        owner = self.owner
        if owner is None:
            return False

        def claim(connection: sqlite3.Connection) -> bool:
            row = connection.execute(sql.OWNER_OF, (run_id,)).fetchone()
            if row is None or not row[1]:
                return False
            if row[0] == owner:
                return True
            if row[0] is not None and self._locks.alive(int(row[0])):
                return False
            connection.execute(sql.TAKE_RUN, (owner, run_id))
            return True

        async with self._writing:
            return await self._writer.call(_in_transaction(claim))

    async def claim_orphans(
        self, *, limit: int = 100, workflows: Collection[str] | None = None
    ) -> list[str]:
        owner = self.owner
        if owner is None:
            return []
        names = None if workflows is None else json.dumps(list(workflows))

        def claim(connection: sqlite3.Connection) -> tuple[list[str], list[int]]:
            owners = {int(row[0]) for row in connection.execute(sql.OTHER_OWNERS, (owner,))}
            owners.update(
                int(row[0]) for row in connection.execute(sql.REGISTERED_OWNERS, (owner,))
            )
            gone = [other for other in sorted(owners) if not self._locks.alive(other)]
            params = {"owner": owner, "gone": json.dumps(gone), "workflows": names, "limit": limit}
            taken = [str(row[0]) for row in connection.execute(sql.TAKE_ORPHANS, params)]
            if gone and len(taken) < limit:
                left = {int(row[0]) for row in connection.execute(sql.OTHER_OWNERS, (owner,))}
                gone = [other for other in gone if other not in left]
                connection.execute(sql.FORGET_OWNERS, (json.dumps(gone),))
            else:
                gone = []
            return taken, gone

        async with self._writing:
            taken, forgotten = await self._writer.call(_in_transaction(claim))
        self._locks.remove(forgotten)
        return taken

    async def release(self) -> list[str]:
        owner = self.owner
        if owner is None:
            return []
        at = micros(_now())

        def release(connection: sqlite3.Connection) -> list[str]:
            released = [str(row[0]) for row in connection.execute(sql.RELEASE_RUNS, (owner,))]
            if released:
                announce(connection, released, at)
            connection.execute(sql.FORGET_OWNERS, (json.dumps([owner]),))
            return released

        async with self._writing:
            released = await self._writer.call(_in_transaction(release))
        self._locks.let_go(owner)
        self.owner = None
        return released

    async def forward(self, run_id: str, input: Resume | Cancel | ScheduleResume) -> None:
        text = dumps(encode_input(input))
        at = micros(_now())

        def forward(connection: sqlite3.Connection) -> None:
            enqueue(connection, run_id, text, at)

        async with self._writing:
            await self._writer.call(_in_transaction(forward))


def enqueue(connection: sqlite3.Connection, run_id: str, input: str, at: int) -> None:
    """Queue ``input`` (encoded) in the run's inbox and announce it, in the connection's open
    transaction."""
    connection.execute(sql.ENQUEUE_INPUT, (run_id, input, at))
    announce(connection, [run_id], at)


def announce(connection: sqlite3.Connection, run_ids: list[str], at: int) -> None:
    """Tell the watchers of every process that ``run_ids`` have something new (each row
    names the run's owner), and drop announcements older than ``ANNOUNCEMENTS_KEPT``."""
    connection.executemany(sql.ANNOUNCE, [{"run_id": run_id, "at": at} for run_id in run_ids])
    connection.execute(sql.PRUNE_ANNOUNCEMENTS, (at - int(ANNOUNCEMENTS_KEPT * 1e6),))


def _first_poll(connection: sqlite3.Connection) -> tuple[int, int]:
    version = int(connection.execute("PRAGMA data_version").fetchone()[0])
    seen = int(connection.execute(sql.LAST_ANNOUNCEMENT).fetchone()[0])
    return version, seen


def _poll_once(
    connection: sqlite3.Connection, version: int, seen: int
) -> tuple[int, int, list[tuple[str | None, int | None]]]:
    now = int(connection.execute("PRAGMA data_version").fetchone()[0])
    if now == version:
        return version, seen, []
    found: list[tuple[str | None, int | None]] = []
    for announcement, run_id, owner in connection.execute(sql.ANNOUNCED_SINCE, (seen,)):
        seen = int(announcement)
        found.append((str(run_id), None if owner is None else int(owner)))
    return now, seen, found


def _settle(write: _Write, outcome: BaseException | None) -> None:
    future = write.future
    if future is None or future.done():
        return
    if outcome is None:
        future.set_result(None)
    else:
        future.set_exception(outcome)


def _probe_writable(connection: sqlite3.Connection) -> None:
    """Fail now, not at the first step, on a file this process cannot write: a write that
    changes nothing still needs the file writable (``SQLITE_READONLY`` otherwise)."""
    connection.execute("DELETE FROM hephaestus_migrations WHERE 0")


def _delete_input(connection: sqlite3.Connection, entry: int) -> None:
    connection.execute(sql.DELETE_INPUT, (entry,))


def _begin(connection: sqlite3.Connection) -> None:
    connection.execute("BEGIN IMMEDIATE")


def _commit(connection: sqlite3.Connection) -> None:
    try:
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def _now() -> datetime:
    return datetime.now(UTC)


def _optional_micros(at: datetime | None) -> int | None:
    return None if at is None else micros(at)


def _json_list(values: list[str] | None) -> str | None:
    return None if values is None else json.dumps(values)


# -- the unit of work -------------------------------------------------------------------------


class SQLiteTransaction:
    """Reads and writes of runs inside the writer's open ``BEGIN IMMEDIATE`` transaction.

    Nothing here commits: the storage's ``transaction()`` block does. ``run(function)`` runs
    ``function(connection)`` on the transaction's connection (on its thread), for a runner's
    own statements in the same transaction.
    """

    __slots__ = ("_callbacks", "_storage")

    def __init__(self, storage: SQLiteStorage) -> None:
        self._storage = storage
        self._callbacks: list[Callable[[], object]] = []

    async def run[T](self, function: Callable[[sqlite3.Connection], T]) -> T:
        """``function(connection)`` inside this transaction."""
        return await self._storage._writer.call(function)

    async def get(self, run_id: str, *, lock: bool = True) -> Instance:
        """The run (the transaction holds the database's write lock: it is locked)."""
        del lock
        rows = await self.run(lambda c: fetch(c, sql.GET_RUN, (run_id,)))
        if not rows:
            raise InstanceNotFoundError(f"run {run_id} does not exist", instance_id=run_id)
        return decode_row(rows[0], self._storage.registry)

    async def create(self, instance: Instance) -> None:
        write = _encode_create(instance, self._storage.owner)
        error = await self.run(lambda c: _apply(c, write))
        if error is not None:
            raise error

    async def put(
        self,
        instance: Instance,
        previous: Instance | None = None,
        changes: Changes | None = None,
    ) -> None:
        write = _encode_put(instance, previous, changes, self._storage.owner)
        error = await self.run(lambda c: _apply(c, write))
        if error is not None:
            raise error

    async def next_input(self, run_id: str) -> InboxEntry | None:
        """The oldest entry of the run's inbox; one that cannot be decoded is logged (with
        its stored text) and deleted, so it never blocks the entries behind it."""
        while True:
            rows = await self.run(lambda c: fetch(c, sql.NEXT_INPUT, (run_id,)))
            if not rows:
                return None
            entry_id, text, created_at = rows[0]
            at = from_micros(int(created_at))
            entry = decode_inbox_entry(run_id, entry_id, text, at, self._storage.registry)
            if entry is not None:
                return entry
            await self.run(functools.partial(_delete_input, entry=int(entry_id)))

    async def remove_input(self, entry: InboxEntry) -> None:
        await self.run(functools.partial(_delete_input, entry=entry.id))

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once the transaction committed (never if it rolls back)."""
        self._callbacks.append(callback)

    def committed(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()
