"""``PostgresStorage``: the storage protocol on PostgreSQL, psycopg 3 async and psycopg_pool.

This class ties the adapter together: ``_pool`` runs statements (and retries them after a
lost connection), ``_errors`` translates driver errors, ``_rows`` encodes a run as rows and
decodes it back, ``_writes`` group-commits puts, and ``_queries`` holds every statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.errors

from hephaestus.codec import dumps, encode_input
from hephaestus.errors import (
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
    process_registry,
)
from hephaestus.storage._rows import (
    containment,
    decode_refreshed,
    decode_row,
    decode_rows,
    held_params,
    insert_params,
    put_item,
)
from hephaestus.storage.postgres._caller import PostgresCallerTransaction
from hephaestus.storage.postgres._errors import wrap_exceptions
from hephaestus.storage.postgres._listen import Listener
from hephaestus.storage.postgres._pool import CONNECTION_ATTEMPTS, Connections
from hephaestus.storage.postgres._queries import Queries
from hephaestus.storage.postgres._transaction import (
    UNIQUE_INDEX,
    PostgresTransaction,
    already_running,
)
from hephaestus.storage.postgres._writes import WriteBatcher

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Collection, Mapping

    import psycopg_pool

    from hephaestus._core.commands import Cancel, Changes, Resume, ScheduleResume
    from hephaestus._core.instance import Instance
    from hephaestus._core.registry import WorkflowRegistry
    from hephaestus.storage import CountKey, InstanceQuery, Unwatch
    from hephaestus.storage._rows import Row

__all__ = ["UNIQUE_INDEX", "PostgresStorage"]

log = logging.getLogger("hephaestus.storage")


class PostgresStorage:
    """Runs stored in PostgreSQL, in the tables of one schema (a tenant).

    Give a ``dsn`` (the storage owns a pool of ``min_size``..``max_size`` connections) or your
    own ``pool`` (opened and closed by you; autocommit connections save a round trip). ``open``
    fails with ``StorageError`` if no connection succeeds within ``open_timeout`` seconds. The
    schema must be installed first (``hephaestus db install`` or ``install()``). Step
    references in stored values resolve through ``registry`` (default: the workflows of the
    app that opens it, or every defined workflow before that).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: psycopg_pool.AsyncConnectionPool | None = None,
        schema: str = "public",
        registry: WorkflowRegistry | None = None,
        min_size: int = 2,
        max_size: int = 10,
        open_timeout: float = 10.0,
    ) -> None:
        if (dsn is None) == (pool is None):
            raise InvalidArgumentError("give PostgresStorage exactly one of dsn= or pool=")
        self._connections = Connections(
            dsn, pool, min_size=min_size, max_size=max_size, open_timeout=open_timeout
        )
        self.schema = schema
        self._queries = Queries(schema)
        self.owner: int | None = None
        """This process's owner id while registered (``OwningStorage``), else ``None``."""
        self._owning = False
        self._registered = asyncio.Event()
        self._open_timeout = open_timeout
        self._lost_callback: Callable[[], object] | None = None
        self._writes = WriteBatcher(self._connections, self._queries, lambda: self.owner)
        self._listener = Listener(
            self._connections.connect,
            self._queries,
            timeout=open_timeout,
            session=self._hold_owner,
            lost=self._owner_lost,
        )
        self._given = registry
        self._registry = registry if registry is not None else process_registry()

    def bind_registry(self, registry: WorkflowRegistry) -> None:
        """Decode with the opening app's workflows, unless given a ``registry`` at construction."""
        if self._given is None:
            self._registry = registry

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def pool(self) -> psycopg_pool.AsyncConnectionPool:
        """The connection pool (raises ``StorageError`` before ``open``)."""
        return self._connections.pool

    async def open(self) -> None:
        await self._connections.open()

    async def close(self) -> None:
        self._owning = False
        await self._listener.close()
        self.owner = None
        await self._writes.drain()  # let writes already submitted finish
        await self._connections.close()

    # -- protocol ---------------------------------------------------------------------------

    async def create(self, instance: Instance) -> None:
        params = insert_params(instance, await self._owner_now())
        with wrap_exceptions():
            await self._create(instance, params)

    async def _create(self, instance: Instance, params: Mapping[str, Any]) -> None:
        for attempt in range(CONNECTION_ATTEMPTS):
            try:
                await self._connections.fetch_once(self._queries.insert_instance, params)
                return
            except psycopg.errors.UniqueViolation as exc:
                error = already_running(instance, exc)
                if isinstance(error, InstanceAlreadyRunningError):
                    raise error from exc
                if attempt and await self._stored_revision(instance.run_id) == instance.revision:
                    return  # our first attempt committed before its connection was lost
                raise error from exc
            except psycopg.OperationalError as exc:
                await self._connections.connection_lost(attempt, exc)

    async def put(
        self,
        instance: Instance,
        previous: Instance | None = None,
        changes: Changes | None = None,
    ) -> None:
        await self._writes.put(instance, previous, changes)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        """A unit of work: one transaction on a pooled connection, committed when the block
        exits without error (rolled back otherwise).

        ``tx.connection`` is the transaction's connection, for the caller's own statements.
        Inside the block use ``tx`` only: other calls on the storage take other connections.
        """
        async with self._connections.slots:
            with wrap_exceptions():
                async with self._connections.pool.connection() as conn, conn.transaction():
                    tx = PostgresTransaction(conn, self._queries, self._registry, self.owner)
                    yield tx
        tx.committed()

    async def get(self, run_id: str) -> Instance:
        rows = await self._connections.fetch(self._queries.get_instance, {"run_id": run_id})
        if not rows:
            raise InstanceNotFoundError(f"run {run_id} does not exist", instance_id=run_id)
        return decode_row(rows[0], self._registry)

    async def refresh(self, instance: Instance) -> Instance:
        """The run as stored now, for a process that holds it as ``instance``: ``instance``
        itself while it is the stored revision (only the run's header is read); else only
        what was written since, merged into it, when every write since added or replaced
        parts and appended history; else the whole run read again. A runner that keeps the
        runs it handles reads a wide fan-out's run once, not once per branch."""
        found = await self.refresh_many({instance.run_id: instance})
        if instance.run_id not in found:
            raise InstanceNotFoundError(
                f"run {instance.run_id} does not exist", instance_id=instance.id
            )
        return found[instance.run_id]

    async def refresh_many(self, held: Mapping[str, Instance | None]) -> dict[str, Instance]:
        """``refresh`` for several runs in one statement, by run id; ``None``: no copy (the
        run is read whole). A run that does not exist is left out of the result."""
        params = {"held": json.dumps([held_params(run, copy) for run, copy in held.items()])}
        rows = await self._connections.fetch(self._queries.refresh_instance, params)
        return decode_refreshed(rows, held, self._registry)

    async def delete(self, run_id: str) -> None:
        await self._connections.fetch(self._queries.delete_instance, {"run_id": run_id})

    async def query(self, query: InstanceQuery) -> list[Instance]:
        rows = await self._select(query, query.limit)
        return decode_rows(rows, self._registry, skip_corrupt=query.skip_corrupt)

    async def page(self, query: InstanceQuery) -> Page:
        limit = query.limit
        rows = await self._select(query, None if limit is None else limit + 1)
        cursor = None
        if limit is not None and len(rows) > limit:
            rows = rows[:limit]
            cursor = encode_cursor(rows[-1][6], int(rows[-1][7]))
        return Page(decode_rows(rows, self._registry, skip_corrupt=query.skip_corrupt), cursor)

    async def count(
        self, query: InstanceQuery, *, by: tuple[CountKey, ...] = ("status", "workflow")
    ) -> dict[tuple[str, ...], int]:
        columns = count_columns(by)
        params = self._params(query, None)
        if params is None:
            return {}
        rows = await self._connections.fetch(self._queries.count_runs[columns], params)
        return group_counts(rows, columns, by)

    async def explain(self, query: InstanceQuery) -> str:
        """PostgreSQL's plan for a page of ``query`` (header rows), to check indexes serve it."""
        params = self._params(query, query.limit)
        if params is None:
            return "(no rows can match)"
        statement = self._queries.explain_runs[1 if query.newest_first else 0]
        rows = await self._connections.fetch(statement, params)
        return "\n".join(str(row[0]) for row in rows)

    async def _select(self, query: InstanceQuery, limit: int | None) -> list[Row]:
        read = self.read_statement(query, limit)
        if read is None:
            return []
        rows: list[Row] = await self._connections.fetch(*read)
        return rows

    def read_statement(
        self, query: InstanceQuery, limit: int | None
    ) -> tuple[bytes, dict[str, Any]] | None:
        """The statement and parameters that read ``query``'s runs (``None``: none can match)."""
        params = self._params(query, limit)
        if params is None:
            return None
        if query.id is not None:  # resume, cancel, get: only that id's runs, by its index
            statement = self._queries.query_by_id[1 if query.newest_first else 0]
        elif query.newest_first:
            statement = self._queries.query_newest
        else:
            statement = self._queries.query_oldest
        return statement, params

    def _params(self, query: InstanceQuery, limit: int | None) -> dict[str, Any] | None:
        """The statement parameters of ``query`` (``None``: it cannot match any run)."""
        filters = filters_of(query, self._registry, limit)
        if filters is None:
            return None
        after_created, after_seq = (None, None) if filters.after is None else filters.after
        return {
            "id": filters.id,
            "id_pattern": None if filters.id_prefix is None else _like_prefix(filters.id_prefix),
            "statuses": filters.statuses,
            "workflows": filters.workflows,
            "workflow_version": filters.workflow_version,
            "contains": filters.contains,
            "created_after": filters.created_after,
            "created_before": filters.created_before,
            "updated_after": filters.updated_after,
            "updated_before": filters.updated_before,
            "after_created": after_created,
            "after_seq": after_seq,
            "limit": filters.limit,
            "offset": filters.offset,
        }

    # -- the caller's transaction (JoinableStorage) -----------------------------------------

    @property
    def queries(self) -> Queries:
        """Every statement of this storage, rendered for its schema."""
        return self._queries

    @property
    def registry(self) -> WorkflowRegistry:
        """What stored step references resolve through."""
        return self._registry

    def write_item(
        self, instance: Instance, previous: Instance | None, changes: Changes | None
    ) -> str:
        """One run's next revision as an item of ``queries.write_runs``' batch (JSON), for a
        runner that writes runs in a statement of its own; ``UnencodableValueError`` if a
        value cannot be stored."""
        return put_item(instance, previous, changes, self.owner)

    def join(self, connection: object) -> PostgresCallerTransaction:
        """Reads and writes through the caller's open ``connection`` (see ``_caller``)."""
        return PostgresCallerTransaction(self, connection)

    async def watch(self, callback: Callable[[str | None], object]) -> Unwatch:
        """Hear of every run started or signalled in a committed caller's transaction, from
        any process, through one dedicated ``LISTEN`` connection (see ``JoinableStorage``).

        An announcement that names the run's owner (``"run_id owner"``) reaches only that
        owner's watchers: the others would only find that the run is not theirs.
        """

        def heard(payload: str | None) -> object:
            if payload is None:
                return callback(None)
            run_id, _, owner = payload.partition(" ")
            if owner and self.owner is not None and owner != str(self.owner):
                return None  # a live process owns it: that one was told too
            return callback(run_id)

        return await self._listener.watch(heard)

    # -- ownership (OwningStorage): one owning process per active run ----------------------

    async def register(self, lost: Callable[[], object]) -> int:
        """Draw an owner id and hold it as a session advisory lock on the listener's
        connection (which is always reading, so its loss is seen at once)."""
        await self._connections.fetch(self._queries.probe_owners, {})  # installed? migrated?
        self._owning = True
        self._lost_callback = lost
        self._unregister = await self._listener.watch(_ignore)
        if self.owner is None:
            raise StorageError("could not register as an owner")
        return self.owner

    async def _owner_now(self) -> int | None:
        """The owner id new runs get: while the session holding it is being re-established
        (a lost connection), wait for the new one rather than create a run nobody owns."""
        if not self._owning or self.owner is not None:
            return self.owner
        try:
            await asyncio.wait_for(self._registered.wait(), self._open_timeout)
        except TimeoutError:
            raise StorageError(
                "PostgreSQL connection lost: could not register this process again as an owner"
            ) from None
        return self.owner

    async def _hold_owner(self, connection: psycopg.AsyncConnection[Any]) -> None:
        if not self._owning:
            return
        cursor = await connection.execute(
            self._queries.register_owner, {"namespace": self._queries.namespace}
        )
        row = await cursor.fetchone()
        if row is None:  # pragma: no cover - the statement always returns one row
            raise StorageError("registering as an owner returned nothing")
        self.owner = int(row[0])
        self._registered.set()
        log.info("registered as owner %d of schema %s", self.owner, self.schema)

    def _owner_lost(self) -> None:
        if self.owner is None:
            return
        log.warning(
            "lost the session holding owner %d: its runs are now the other processes' to take",
            self.owner,
        )
        self.owner = None
        self._registered.clear()
        if self._lost_callback is not None:
            self._lost_callback()

    async def claim(self, run_id: str) -> bool:
        owner = await self._owner_now()
        if owner is None:
            return False
        rows = await self._connections.fetch(
            self._queries.claim_run,
            {"run_id": run_id, "owner": owner, "namespace": self._queries.namespace},
        )
        return bool(rows)

    async def claim_orphans(
        self, *, limit: int = 100, workflows: Collection[str] | None = None
    ) -> list[str]:
        owner = await self._owner_now()
        if owner is None:
            return []
        names = None if workflows is None else list(workflows)
        with wrap_exceptions():  # not retried: a lost reply would hide runs claimed
            rows = await self._connections.fetch_once(
                self._queries.claim_orphans,
                {
                    "owner": owner,
                    "namespace": self._queries.namespace,
                    "limit": limit,
                    "workflows": names,
                },
            )
        return [str(row[0]) for row in rows]

    async def release(self) -> list[str]:
        if self.owner is None:
            return []
        with wrap_exceptions():
            rows = await self._connections.fetch_once(
                self._queries.release_runs,
                {"owner": self.owner, "channel": self._queries.channel},
            )
        return [str(row[0]) for row in rows]

    async def forward(self, run_id: str, input: Resume | Cancel | ScheduleResume) -> None:
        params = {
            "run_id": run_id,
            "input": dumps(encode_input(input)),
            "channel": self._queries.channel,
        }
        with wrap_exceptions():  # an insert: never retried blindly
            await self._connections.fetch_once(self._queries.enqueue_input, params)

    async def awaiting(self, *, older_than: float, limit: int = 1000) -> list[str]:
        before = datetime.now(UTC) - timedelta(seconds=older_than)
        rows = await self._connections.fetch(
            self._queries.awaiting_runs, {"before": before, "limit": limit}
        )
        return [str(row[0]) for row in rows]

    # -- beyond the protocol ----------------------------------------------------------------

    async def find(
        self,
        contains: Mapping[str, Any],
        *,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[Instance]:
        """Runs whose state document contains ``contains`` (JSONB ``@>``, GIN-indexed).

        ``await storage.find({"context": {"initial": {"order_id": 123}}})`` finds the runs
        started with ``order_id`` 123. See ``containment`` for what the document holds.
        """
        params = {
            "pattern": dumps(containment(contains)),
            "limit": limit,
            "offset": offset,
        }
        statement = self._queries.query_contains[1 if newest_first else 0]
        rows = await self._connections.fetch(statement, params)
        return decode_rows(rows, self._registry, skip_corrupt=True)

    async def explain_find(self, contains: Mapping[str, Any]) -> str:
        """PostgreSQL's plan for ``find(contains)``'s filter, to check the index serves it."""
        params = {"pattern": dumps(containment(contains))}
        rows = await self._connections.fetch(self._queries.explain_contains, params)
        return "\n".join(str(row[0]) for row in rows)

    # -- internals --------------------------------------------------------------------------

    async def _stored_revision(self, run_id: str) -> int | None:
        rows = await self._connections.fetch(self._queries.stored_revision, {"run_id": run_id})
        return None if not rows else int(rows[0][0])


def _ignore(run_id: str | None) -> None:
    """The owner's own subscription to the listener: the session is what it wants."""
    del run_id


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching the texts that start with ``prefix`` (taken literally)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
