"""The caller's transaction on SQLite: runs started and inputs sent through the caller's own
``sqlite3.Connection`` to the storage's file.

A run started there is inserted ``pending`` and an input queued in the run's inbox, each with
an announcement row, in the caller's transaction: until it commits no other connection sees
them, and a rollback leaves no trace. The runner's watcher sees the commit (``PRAGMA
data_version``) and reads the announcements, or its sweep finds the rows.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hephaestus.codec import dumps, encode_input
from hephaestus.errors import InvalidArgumentError
from hephaestus.storage._rows import decode_rows
from hephaestus.storage.sqlite._database import translated
from hephaestus.storage.sqlite._storage import (
    _apply,
    _encode_create,
    announce,
    enqueue,
    micros,
    register_functions,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from hephaestus._core.commands import Cancel, Resume
    from hephaestus._core.instance import Instance
    from hephaestus.storage import InstanceQuery, Work
    from hephaestus.storage.sqlite._storage import SQLiteStorage

__all__ = ["SQLiteCallerTransaction"]

type Step = Callable[[sqlite3.Connection], Any]
"""What a SQLite ``Work`` yields: a function of the connection, sent back its result."""


class SQLiteCallerTransaction:
    """``CallerTransaction`` on SQLite (sync API only: ``sqlite3`` connections are sync).

    ``run`` fences the work in a savepoint inside the caller's transaction, so an error
    (``InstanceAlreadyRunningError``, say) undoes only the work's writes. In ``sqlite3``'s
    default mode the transaction is opened if it is not yet (as the caller's first write
    would) and left for the caller to commit; a connection in autocommit mode
    (``isolation_level=None``) with no transaction open gets one for the work, committed at
    once.
    """

    __slots__ = ("_connection", "_storage", "is_async")

    def __init__(self, storage: SQLiteStorage, connection: object) -> None:
        if not isinstance(connection, sqlite3.Connection):
            raise InvalidArgumentError(
                "conn= takes a sqlite3.Connection to the storage's database file, got "
                f"{type(connection).__name__}"
            )
        self.is_async = False
        self._storage = storage
        self._connection = connection
        register_functions(connection)

    def create(self, instance: Instance) -> Work[None]:
        write = _encode_create(instance, None)
        at = micros(datetime.now(UTC))

        def insert(connection: sqlite3.Connection) -> Exception | None:
            error = _apply(connection, write)
            if error is None:
                announce(connection, [instance.run_id], at)
            return error

        error = yield insert
        if error is not None:
            raise error

    def query(self, query: InstanceQuery) -> Work[list[Instance]]:
        read = self._storage.read_statement(query, query.limit)
        if read is None:
            return []
        statement, params = read
        rows = yield lambda connection: connection.execute(statement, params).fetchall()
        return decode_rows(rows, self._storage.registry, skip_corrupt=query.skip_corrupt)

    def send(self, run_id: str, input: Resume | Cancel) -> Work[None]:
        text = dumps(encode_input(input))
        at = micros(datetime.now(UTC))
        yield lambda connection: enqueue(connection, run_id, text, at)

    def run[T](self, work: Work[T]) -> T:
        connection = self._connection
        own = not connection.in_transaction and connection.isolation_level is None
        with translated(self._storage.path):
            if own:
                connection.execute("BEGIN IMMEDIATE")
            else:
                if not connection.in_transaction:
                    # sqlite3's default mode opens a transaction before the caller's first
                    # write, and the caller commits it: open it now, for our writes.
                    connection.execute("BEGIN")
                connection.execute("SAVEPOINT hephaestus_work")
            try:
                result = _drive(connection, work)
            except BaseException:
                if connection.in_transaction:
                    if own:
                        connection.execute("ROLLBACK")
                    else:
                        connection.execute("ROLLBACK TO hephaestus_work")
                        connection.execute("RELEASE hephaestus_work")
                raise
            connection.execute("COMMIT" if own else "RELEASE hephaestus_work")
        return result

    async def run_async[T](self, work: Work[T]) -> T:
        del work
        raise InvalidArgumentError(
            "conn= is a sqlite3.Connection, which is sync: pass it to the sync API "
            "(Flow.sync.start(..., conn=...), app.sync.start(...))"
        )


def _drive[T](connection: sqlite3.Connection, work: Work[T]) -> T:
    try:
        step = next(work)
        while True:
            if not callable(step):  # the work is ours: this is a bug, not bad input
                raise TypeError(f"a SQLite Work yields functions of the connection, got {step!r}")
            try:
                outcome = step(connection)
            except sqlite3.Error as exc:
                step = work.throw(exc)
            else:
                step = work.send(outcome)
    except StopIteration as stop:
        result: T = stop.value
        return result
