"""``PostgresStorage``: the storage protocol on PostgreSQL, psycopg 3 async and psycopg_pool.

A run is three kinds of rows: its header in ``workflow_instances`` (status, revision and a
bounded ``state`` document for queries), one row per step state, step result, join and join
member in ``workflow_instance_parts``, and one row per history entry in
``workflow_instance_history``. ``put`` writes only what changed since ``previous``, in one
statement, so the cost of a step does not grow with the run; puts of different runs that
arrive together share a statement and a commit.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import operator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import psycopg
import psycopg.errors
import psycopg_pool

from hephaestus._core.instance import Instance, JoinState, Status
from hephaestus.codec import (
    FORMAT,
    JSONValue,
    decode_instance,
    dumps,
    encode_error_info,
    encode_history_entry,
    encode_join_state,
    encode_pending_resume,
    encode_scheduled_resume,
    encode_step_state,
    to_json,
)
from hephaestus.errors import (
    ConcurrentUpdateError,
    CorruptInstanceError,
    HephaestusError,
    InstanceAlreadyRunningError,
    InstanceNotFoundError,
    StorageError,
    ValueRejectedError,
)
from hephaestus.storage._corrupt import corrupt, log_skipped
from hephaestus.storage.postgres._queries import Queries

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Mapping

    from hephaestus._core.registry import WorkflowRegistry
    from hephaestus.storage import InstanceQuery

__all__ = ["UNIQUE_INDEX", "PostgresStorage", "containment"]

UNIQUE_INDEX = "workflow_instances_active_unique_key"
"""The partial unique index that lets one active run hold a unique key."""

CONNECTION_ATTEMPTS = 3
"""Tries of one statement when the connection is lost (the database restarted, say)."""

type Row = tuple[str, int, str, str, str, str]
type PartKind = Literal["step", "join", "member", "result"]


def containment(pattern: Mapping[str, Any]) -> dict[str, JSONValue]:
    """``pattern`` encoded as stored, for a JSONB ``state @> pattern`` query.

    Values are encoded with the codec, so a ``datetime`` or ``Decimal`` in the pattern matches
    the tagged value stored for it. The state document holds ``id``, ``run_id``, ``workflow``,
    ``workflow_version``, ``family``, ``status``, ``context.initial``, ``metadata``,
    ``unique_key`` and ``trace_context``. Write it as text with ``hephaestus.codec.dumps``
    (large floats are carried as marked strings until then).
    """
    encoded = to_json(pattern)
    if not isinstance(encoded, dict):  # pragma: no cover - a Mapping encodes to a dict
        raise TypeError("a containment pattern must be a mapping")
    return encoded


@contextmanager
def wrap_exceptions() -> Iterator[None]:
    """Driver and pool errors become Hephaestus errors (chained); ours pass through.

    A deterministic refusal of the data (SQLSTATE class 22, data exception, or 54, program limit
    exceeded: a character the database cannot hold, an index row too large) becomes
    ``ValueRejectedError``: retrying cannot help, so it is no outage. The rest is
    ``StorageError``.
    """
    try:
        yield
    except HephaestusError:
        raise
    except (psycopg.Error, psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed) as exc:
        raise _translate(exc) from exc


REJECTED_CLASSES = frozenset({"22", "54"})
"""SQLSTATE classes that refuse the data itself: ``ValueRejectedError``, never retried."""

RETRIED_STATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03"})
"""Errors that can succeed on retry besides a lost connection: a serialization failure, a
deadlock, and a server shutting down or starting (its connections are lost)."""


def _translate(exc: BaseException) -> HephaestusError:
    state = exc.sqlstate if isinstance(exc, psycopg.Error) else None
    if state is not None and state[:2] in REJECTED_CLASSES:
        return ValueRejectedError(
            f"PostgreSQL refused a value (SQLSTATE {state}): {exc}; this is not an outage and "
            "a retry would fail the same way: change the value (see the limits in the docs)",
            sqlstate=state,
        )
    return StorageError(f"PostgreSQL storage failed: {type(exc).__name__}: {exc}")


def _retryable(exc: psycopg.Error) -> bool:
    """Whether a statement that failed with ``exc`` may succeed if run again."""
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in RETRIED_STATES


class PostgresStorage:
    """Runs stored in PostgreSQL, in the tables of one schema (a tenant).

    Give a ``dsn`` (the storage owns a pool of ``min_size``..``max_size`` connections) or your
    own ``pool`` (opened and closed by you; autocommit connections save a round trip). ``open``
    fails with ``StorageError`` if no connection succeeds within ``open_timeout`` seconds. The
    schema must be installed first (``hephaestus db install`` or ``install()``). Step
    references in stored values resolve through ``registry`` (default: every defined workflow).
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
            raise ValueError("give PostgresStorage exactly one of dsn= or pool=")
        self._dsn = dsn
        self._own_pool = pool is None
        self._pool = pool
        self._min_size = min_size
        self._max_size = max_size
        self._open_timeout = open_timeout
        self._slots = asyncio.Semaphore(max_size if pool is None else pool.max_size)
        self._pending: dict[str, _Write] = {}  # run_id -> the put waiting for the next batch
        self._flushers: set[asyncio.Task[None]] = set()
        self.schema = schema
        self._queries = Queries(schema)
        if registry is None:
            from hephaestus._core.registry import default_registry

            registry = default_registry
        self._registry = registry

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def pool(self) -> psycopg_pool.AsyncConnectionPool:
        """The connection pool (raises ``StorageError`` before ``open``)."""
        if self._pool is None:
            raise StorageError("PostgresStorage is not open; the app opens it (or call open())")
        return self._pool

    async def open(self) -> None:
        if not self._own_pool:  # the caller's pool: they open and close it
            self._slots = asyncio.Semaphore(self.pool.max_size)
            return
        if self._pool is not None or self._dsn is None:
            return  # already open
        pool = psycopg_pool.AsyncConnectionPool(
            self._dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            kwargs={"autocommit": True},
            open=False,
        )
        with wrap_exceptions():
            try:
                await pool.open(wait=True, timeout=self._open_timeout)
            except BaseException:
                await pool.close()
                raise
        self._pool = pool
        self._slots = asyncio.Semaphore(self._max_size)

    async def close(self) -> None:
        if self._flushers:  # let writes already submitted finish
            await asyncio.gather(*self._flushers, return_exceptions=True)
        if self._own_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    # -- protocol ---------------------------------------------------------------------------

    async def create(self, instance: Instance) -> None:
        params = _header_params(instance)
        params["parts"] = _all_parts(instance)
        params.update(_history_params(instance, 0))
        with wrap_exceptions():
            await self._create(instance, params)

    async def _create(self, instance: Instance, params: Mapping[str, Any]) -> None:
        for attempt in range(CONNECTION_ATTEMPTS):
            try:
                await self._fetch_once(self._queries.insert_instance, params)
                return
            except psycopg.errors.UniqueViolation as exc:
                if exc.diag.constraint_name == UNIQUE_INDEX:
                    raise InstanceAlreadyRunningError(
                        f"an active instance {instance.id} already exists ({instance.unique_key})",
                        instance_id=instance.id,
                        unique_key=instance.unique_key or "",
                    ) from exc
                if attempt and await self._stored_revision(instance.run_id) == instance.revision:
                    return  # our first attempt committed before its connection was lost
                raise StorageError(f"run {instance.run_id} already exists") from exc
            except psycopg.OperationalError as exc:
                await self._connection_lost(attempt, exc)

    async def put(self, instance: Instance, previous: Instance | None = None) -> None:
        item = _put_item(instance, previous)  # encoding errors surface here, in the caller
        loop = asyncio.get_running_loop()
        write = _Write(instance, item, loop.create_future())
        earlier = self._pending.get(instance.run_id)
        if earlier is not None:  # two writes of one run never share a statement
            await asyncio.wait([earlier.future])
        self._pending[instance.run_id] = write
        if len(self._pending) == 1:
            flusher = loop.create_task(self._flush())
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)
        await write.future

    async def _flush(self) -> None:
        """Write every pending ``put`` in one statement once a connection is free.

        Writes that arrive while a batch waits for a connection join it: under load, many
        steps share one round trip and one commit (group commit); alone, a write goes at once.
        """
        async with self._slots:
            batch = list(self._pending.values())
            self._pending.clear()
            try:
                with wrap_exceptions():
                    await self._write_batch(batch)
            except BaseException as exc:
                for write in batch:
                    if not write.future.done():
                        write.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

    async def _write_batch(self, batch: list[_Write]) -> None:
        params = {"batch": "[" + ",".join(write.item for write in batch) + "]"}
        attempt = 0
        while True:
            try:
                rows = await self._execute_on_pool(self._queries.update_instances, params)
                break
            except psycopg.Error as exc:
                if _retryable(exc):
                    await self._connection_lost(attempt, exc)
                    attempt += 1
                    continue
                if len(batch) == 1:
                    raise
                for write in batch:  # so that one bad run fails alone
                    try:
                        with wrap_exceptions():
                            await self._write_batch([write])
                    except Exception as exc:
                        write.future.set_exception(exc)
                return
        written = {row[0] for row in rows}
        missing = [write for write in batch if write.instance.run_id not in written]
        stored: dict[str, int] = {}
        if missing:
            found = await self._execute_on_pool(
                self._queries.stored_revisions,
                {"run_ids": [write.instance.run_id for write in missing]},
            )
            stored = {str(run_id): int(revision) for run_id, revision in found}
        for write in batch:
            if write.future.done():
                continue
            instance = write.instance
            if instance.run_id in written:
                write.future.set_result(None)
            elif instance.run_id not in stored:
                write.future.set_exception(
                    InstanceNotFoundError(
                        f"run {instance.run_id} of {instance.id} does not exist",
                        instance_id=instance.id,
                    )
                )
            elif attempt and stored[instance.run_id] == instance.revision:
                write.future.set_result(None)  # committed before its connection was lost
            else:
                write.future.set_exception(
                    ConcurrentUpdateError(
                        f"run {instance.run_id} of {instance.id} is at revision "
                        f"{stored[instance.run_id]}; cannot write revision {instance.revision}",
                        instance_id=instance.id,
                    )
                )

    async def get(self, run_id: str) -> Instance:
        rows = await self._fetch(self._queries.get_instance, {"run_id": run_id})
        if not rows:
            raise InstanceNotFoundError(f"run {run_id} does not exist", instance_id=run_id)
        return self._decode(rows[0])

    async def delete(self, run_id: str) -> None:
        await self._execute(self._queries.delete_instance, {"run_id": run_id})

    async def query(self, query: InstanceQuery) -> list[Instance]:
        statuses = _statuses(query.status, query.status_in)
        if (statuses is not None and not statuses) or query.limit == 0:
            return []
        workflows: list[str] | None
        if query.workflow is None:
            workflows = None
        elif isinstance(query.workflow, str):
            workflows = [query.workflow]
        else:
            workflows = list(query.workflow)
        params: dict[str, Any] = {
            "id": query.id,
            "statuses": statuses,
            "workflows": workflows,
            "workflow_version": query.workflow_version,
            "limit": query.limit,
            "offset": query.offset,
        }
        if query.id is not None:  # resume, cancel, get: only that id's runs, by its index
            statement = self._queries.query_by_id[1 if query.newest_first else 0]
        elif query.newest_first:
            statement = self._queries.query_newest
        else:
            statement = self._queries.query_oldest
        rows = await self._fetch(statement, params)
        return self._decode_all(rows, skip_corrupt=query.skip_corrupt)

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
        return self._decode_all(await self._fetch(statement, params), skip_corrupt=True)

    async def explain_find(self, contains: Mapping[str, Any]) -> str:
        """PostgreSQL's plan for ``find(contains)``'s filter, to check the index serves it."""
        params = {"pattern": dumps(containment(contains))}
        rows = await self._fetch(self._queries.explain_contains, params)
        return "\n".join(str(row[0]) for row in rows)

    # -- internals --------------------------------------------------------------------------

    async def _fetch_once(self, statement: bytes, params: Mapping[str, Any]) -> list[Any]:
        """Run one statement on a pooled connection; driver errors are raised as they are."""
        # Queue on a semaphore rather than in the pool: a pool waiter costs a task and a
        # timeout per wait, which at hundreds of concurrent runs is a visible share of the CPU.
        async with self._slots:
            return await self._execute_on_pool(statement, params)

    async def _execute_on_pool(self, statement: bytes, params: Mapping[str, Any]) -> list[Any]:
        """``_fetch_once`` for a caller already holding one of ``_slots``."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(statement, params, prepare=True)
            return await cursor.fetchall() if cursor.description else []

    async def _fetch(self, statement: bytes, params: Mapping[str, Any]) -> list[Any]:
        """Run one statement and return its rows, retrying on a lost connection.

        Only for statements that are safe to run twice (reads, idempotent deletes); writes
        retry themselves, because they must tell a lost commit from a conflict.
        """
        with wrap_exceptions():
            for attempt in range(CONNECTION_ATTEMPTS):
                try:
                    return await self._fetch_once(statement, params)
                except psycopg.OperationalError as exc:
                    await self._connection_lost(attempt, exc)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _execute(self, statement: bytes, params: Mapping[str, Any]) -> None:
        await self._fetch(statement, params)

    async def _connection_lost(self, attempt: int, exc: psycopg.Error) -> None:
        """After a statement failed: retry what may succeed again, translate the rest.

        A lost connection lets the pool drop broken ones first; a serialization failure or a
        deadlock is simply run again. Anything else (a refused value, a program limit) is
        raised at once, translated: retrying cannot help and the pool is fine.
        """
        if not _retryable(exc):
            raise _translate(exc) from exc
        if attempt + 1 >= CONNECTION_ATTEMPTS:
            if exc.sqlstate in ("40001", "40P01"):
                raise StorageError(f"PostgreSQL kept failing to commit: {exc}") from exc
            raise StorageError(f"PostgreSQL connection lost: {exc}") from exc
        if exc.sqlstate is None or exc.sqlstate[:2] in ("08", "57"):
            with wrap_exceptions():
                await self.pool.check()
        await asyncio.sleep(0.05 * (attempt + 1))

    async def _stored_revision(self, run_id: str) -> int | None:
        rows = await self._fetch(self._queries.stored_revision, {"run_id": run_id})
        return None if not rows else int(rows[0][0])

    def _decode_all(self, rows: list[Row], *, skip_corrupt: bool) -> list[Instance]:
        """``rows`` decoded; one that cannot be is logged and skipped (or raised, if asked)."""
        found: list[Instance] = []
        for row in rows:
            try:
                found.append(self._decode(row))
            except CorruptInstanceError as exc:
                if not skip_corrupt:
                    raise
                log_skipped(exc)
        return found

    def _decode(self, row: Row) -> Instance:
        run_id, revision, state_text, extra_text, parts_text, history_text = row
        try:
            document = json.loads(state_text)
            document.update(json.loads(extra_text))
            document["revision"] = revision
            steps: dict[str, JSONValue] = {}
            joins: dict[str, JSONValue] = {}
            resolved: dict[str, list[JSONValue]] = {}
            missed: dict[str, list[JSONValue]] = {}
            results: dict[str, JSONValue] = {}
            for kind, key, data in json.loads(parts_text):
                if kind == "step":
                    steps[key] = data
                elif kind == "result":
                    results[key] = data
                elif kind == "join":
                    joins[key] = {
                        **data,
                        "resolved": resolved.setdefault(key, []),
                        "missed": missed.setdefault(key, []),
                    }
                else:  # "member": joins sort before members, so the lists exist
                    resolved[data["join"]].append(data["member"])
                    if data.get("missed"):  # absent in rows written before join policies
                        missed[data["join"]].append(data["member"])
            document["steps"] = steps
            document["joins"] = joins
            document["context"]["steps"] = results
            document["history"] = json.loads(history_text)
            return decode_instance(document, self._registry, strict=False)
        except Exception as exc:  # whatever a row holds, the caller gets a typed error
            raise corrupt(run_id, exc) from exc


# -- encoding rows ---------------------------------------------------------------------------


def _state_unchanged(instance: Instance, previous: Instance) -> bool:
    """Whether the queryable ``state`` document of ``instance`` is the stored one's."""
    return (
        instance.status is previous.status
        and instance.context.initial is previous.context.initial
        and instance.metadata is previous.metadata
        and instance.trace_context is previous.trace_context
        and instance.workflow == previous.workflow
        and instance.workflow_version == previous.workflow_version
        and instance.unique_key == previous.unique_key
        and instance.id == previous.id
        and instance.family == previous.family
    )


def _state_document(instance: Instance) -> str:
    """The queryable, GIN-indexed document: what identifies a run and what it started with."""
    document: dict[str, JSONValue] = {
        "format": FORMAT,
        "id": instance.id,
        "run_id": instance.run_id,
        "workflow": instance.workflow,
        "workflow_version": instance.workflow_version,
        "family": instance.family,
        "status": instance.status.value,
        "context": {"initial": to_json(instance.context.initial, path="$.context.initial")},
        "unique_key": instance.unique_key,
        "metadata": to_json(instance.metadata, path="$.metadata"),
        "trace_context": to_json(instance.trace_context, path="$.trace_context"),
    }
    return dumps(document)


def _extra_document(instance: Instance) -> str:
    """What changes with every step and is never queried: timestamps, inbox, error, scheduled
    resumes (absent in rows written before they existed: decoded as none)."""
    document: dict[str, JSONValue] = {
        "created_at": instance.created_at.isoformat(),
        "updated_at": instance.updated_at.isoformat(),
        "inbox": [encode_pending_resume(resume) for resume in instance.inbox],
        "error": encode_error_info(instance.error),
        "runtime_metadata": to_json(instance.runtime_metadata, path="$.runtime_metadata"),
    }
    if instance.scheduled:
        document["scheduled"] = [encode_scheduled_resume(item) for item in instance.scheduled]
    return dumps(document)


def _header_params(instance: Instance, previous: Instance | None = None) -> dict[str, Any]:
    unchanged = previous is not None and _state_unchanged(instance, previous)
    return {
        "run_id": instance.run_id,
        "id": instance.id,
        "workflow": instance.workflow,
        "workflow_version": instance.workflow_version,
        "status": instance.status.value,
        "revision": instance.revision,
        "unique_key": instance.unique_key,
        "state": None if unchanged else _state_document(instance),
        "extra": _extra_document(instance),
        "created_at": instance.created_at,
        "updated_at": instance.updated_at,
    }


class _Write:
    """One ``put`` waiting for (or in) a batch: the instance, its JSON item, its outcome."""

    __slots__ = ("future", "instance", "item")

    def __init__(self, instance: Instance, item: str, future: asyncio.Future[None]) -> None:
        self.instance = instance
        self.item = item
        self.future = future


def _put_item(instance: Instance, previous: Instance | None) -> str:
    """The JSON object ``update_instances.sql`` reads for one run (pre-encoded parts inlined)."""
    state: str | None
    if previous is not None and previous.revision == instance.revision - 1:
        state = None if _state_unchanged(instance, previous) else _state_document(instance)
        changes = _changes(instance, previous)
    else:  # no usable previous state: write the whole run
        state = _state_document(instance)
        changes = {
            "parts": _all_parts(instance),
            "drop": "[]",
            "full": True,
            **_history_params(instance, 0),
        }
    scalars = json.dumps(
        {
            "run_id": instance.run_id,
            "expected": instance.revision - 1,
            "revision": instance.revision,
            "workflow": instance.workflow,
            "workflow_version": instance.workflow_version,
            "status": instance.status.value,
            "unique_key": instance.unique_key,
            "updated_at": instance.updated_at.isoformat(),
            "full": changes["full"],
            "history_start": changes["history_start"],
            "history_length": len(instance.history),
        }
    )
    return (
        f'{scalars[:-1]}, "state": {"null" if state is None else state}, '
        f'"extra": {_extra_document(instance)}, "parts": {changes["parts"]}, '
        f'"drop": {changes["drop"]}, "history": {changes["history"]}}}'
    )


def _encode_part(kind: PartKind, key: str, position: int, value: Any) -> str:
    """One part as the JSON text ``[kind, key, position, data]``."""
    data: JSONValue
    if kind == "step":
        data = encode_step_state(value)
    elif kind == "join":
        data = _join_header(value)
    elif kind == "member":
        data = value
    else:
        data = to_json(value, path=f"$.context.steps.{key}")
    return dumps([kind, key, position, data])


def _join_header(state: JoinState) -> JSONValue:
    """A join's row without its members (each resolved predecessor is a row of its own)."""
    encoded = encode_join_state(state)
    del encoded["resolved"], encoded["missed"]
    return encoded


def _member_part(join: str, member: str, missed: bool) -> str:
    # One row per resolved predecessor, so a 1,000-way fan-in writes one small row per branch
    # instead of rewriting an ever-longer list. \x1f cannot occur in a step key. ``missed``:
    # the predecessor's edge resolved not taken.
    data: dict[str, JSONValue] = {"join": join, "member": member}
    if missed:
        data["missed"] = True
    return _encode_part("member", f"{join}\x1f{member}", 0, data)


def _changed_joins(
    new: Mapping[str, JoinState],
    old: Mapping[str, JoinState],
    parts: list[str],
    dropped: list[list[str]],
) -> None:
    """Like ``_changed`` for joins, writing only the members a join gained."""
    if new is old:
        return
    for key, state in new.items():
        before = old.get(key)
        if before is state:
            continue
        if before is None or before.taken != state.taken or before.config is not state.config:
            parts.append(_encode_part("join", key, 0, state))
        gained = state.resolved if before is None else state.resolved - before.resolved
        parts.extend(_member_part(key, member, member in state.missed) for member in sorted(gained))
        if before is not None:
            dropped.extend(
                ["member", f"{key}\x1f{member}"] for member in before.resolved - state.resolved
            )
    for key, before in old.items():
        if key not in new:  # the join fired: its rows go
            dropped.append(["join", key])
            dropped.extend(["member", f"{key}\x1f{member}"] for member in before.resolved)


def _changed(
    kind: PartKind,
    new: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    parts: list[str],
    dropped: list[list[str]],
) -> None:
    """Append ``new``'s entries that are not the very objects ``old`` holds; note removals.

    The engine derives each mapping from the previous one, so keys keep their order and new
    keys come last. Then the comparison runs in C (``map``/``compress`` over the values),
    which keeps the cost of a step flat even when a run has a thousand steps.
    """
    if new is old:
        return
    if not old:
        for position, (key, value) in enumerate(new.items()):
            parts.append(_encode_part(kind, key, position, value))
        return
    keys = list(new)
    if keys[: len(old)] == list(old):
        positions = itertools.chain(
            itertools.compress(range(len(old)), map(operator.is_not, new.values(), old.values())),
            range(len(old), len(keys)),
        )
        for position in positions:
            key = keys[position]
            parts.append(_encode_part(kind, key, position, new[key]))
        return
    for position, (key, value) in enumerate(new.items()):  # reordered or shrunk: compare all
        if old.get(key) is not value:
            parts.append(_encode_part(kind, key, position, value))
    dropped.extend([kind, key] for key in old if key not in new)


def _all_parts(instance: Instance) -> str:
    parts: list[str] = []
    _changed("step", instance.steps, None, parts, [])
    _changed_joins(instance.joins, {}, parts, [])
    _changed("result", instance.context.steps, None, parts, [])
    return "[" + ",".join(parts) + "]"


def _history_params(instance: Instance, start: int) -> dict[str, Any]:
    entries: list[JSONValue] = [encode_history_entry(entry) for entry in instance.history[start:]]
    return {"history_start": start, "history": dumps(entries)}


def _changes(instance: Instance, previous: Instance) -> dict[str, Any]:
    """Parameters writing only what differs from ``previous`` (the stored revision)."""
    parts: list[str] = []
    dropped: list[list[str]] = []
    _changed("step", instance.steps, previous.steps, parts, dropped)
    _changed_joins(instance.joins, previous.joins, parts, dropped)
    if instance.context is not previous.context:
        _changed("result", instance.context.steps, previous.context.steps, parts, dropped)
    params: dict[str, Any] = {
        "parts": "[" + ",".join(parts) + "]",
        "drop": json.dumps(dropped),
        "full": False,
    }
    known = len(previous.history)
    if len(instance.history) >= known and (
        known == 0 or instance.history[known - 1] is previous.history[-1]
    ):
        params.update(_history_params(instance, known))
    else:  # history was rewritten, not appended to: write all of it
        params.update(_history_params(instance, 0))
    return params


def _statuses(status: Status | None, status_in: Collection[Status] | None) -> list[str] | None:
    if status is None and status_in is None:
        return None
    allowed = set(Status) if status_in is None else {Status(s) for s in status_in}
    if status is not None:
        allowed &= {status}
    return sorted(s.value for s in allowed)
