"""One SQLite connection on a thread of its own, and SQLite's errors in our terms.

``sqlite3`` blocks: a commit waits for ``fsync``, a write for another process's lock. Each
``Database`` therefore owns one connection and one thread, and hands every call to it, so
the event loop never blocks. The storage keeps three: the writer (every write, in
transactions it begins and commits itself), a reader (queries run beside a commit, which
WAL allows) and the watcher (it polls ``PRAGMA data_version`` for other connections'
commits).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
from typing import TYPE_CHECKING, Any

from hephaestus.errors import StorageConfigError, StorageError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["SYNCHRONOUS_LEVELS", "Database", "translated"]

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
"""The values of ``PRAGMA synchronous``."""

_PERMANENT = {
    sqlite3.SQLITE_READONLY: "it is read-only (check the file's and its directory's "
    "permissions, and that the file system is not mounted read-only)",
    sqlite3.SQLITE_CORRUPT: "it is corrupt (restore it from a backup; `sqlite3 FILE "
    "'PRAGMA integrity_check'` tells what is damaged)",
    sqlite3.SQLITE_NOTADB: "it is not a SQLite database",
    sqlite3.SQLITE_CANTOPEN: "it cannot be opened (does its directory exist, and may this "
    "process write there?)",
    sqlite3.SQLITE_PERM: "access to it is denied",
    sqlite3.SQLITE_AUTH: "access to it is denied",
}
"""Errors no retry can cure: the file, not the moment, is wrong."""


@contextlib.contextmanager
def translated(path: str) -> Iterator[None]:
    """Turn ``sqlite3`` errors into ``hephaestus.errors`` types: ``StorageConfigError`` for
    a file that cannot serve (read-only, corrupt, not a database), ``StorageError`` for a
    moment's trouble (locked past the busy timeout, disk full, I/O)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise translate(exc, path) from exc


def translate(exc: sqlite3.Error, path: str) -> Exception:
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    if primary in _PERMANENT:
        return StorageConfigError(f"SQLite database {path}: {_PERMANENT[primary]}: {exc}")
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StorageError(
            f"SQLite database {path} is locked: another process held its write lock longer "
            f"than the busy timeout; retry, or give SQLiteStorage a longer busy_timeout ({exc})"
        )
    if primary == sqlite3.SQLITE_FULL:
        return StorageError(f"SQLite database {path}: the disk is full ({exc})")
    return StorageError(f"SQLite database {path}: {exc}")


class Database:
    """A connection to ``path`` used only from its own thread (``call`` runs a function
    there). It is in autocommit mode: whoever writes begins and commits explicitly.

    The thread takes calls from a ``queue.SimpleQueue`` and hands each result back with
    ``call_soon_threadsafe``: a little cheaper per call than ``run_in_executor``, as cheap as
    ``aiosqlite`` (benchmarks/bench_sqlite_bridge.py), without a dependency.
    """

    def __init__(
        self,
        path: str,
        *,
        label: str,
        busy_timeout: float,
        synchronous: str,
        setup: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self.path = path
        self._label = label
        self._busy_timeout = busy_timeout
        self._synchronous = synchronous
        self._setup = setup
        self._calls: queue.SimpleQueue[_Call | None] | None = None
        self._thread: threading.Thread | None = None

    async def open(self) -> None:
        calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        thread = threading.Thread(
            target=self._serve, args=(calls,), name=f"hephaestus-sqlite-{self._label}", daemon=True
        )
        thread.start()
        self._calls, self._thread = calls, thread
        try:
            await self.call(_nothing)  # the connection is made first thing on the thread
        except BaseException:
            await self.close()
            raise

    def _serve(self, calls: queue.SimpleQueue[_Call | None]) -> None:
        """The thread: connect, then run each call in turn until told to stop."""
        connection: sqlite3.Connection | None = None
        failure: BaseException | None = None
        try:
            connection = self._connect()
        except BaseException as exc:  # reported to every call, the first being open's
            failure = exc
        while (item := calls.get()) is not None:
            loop, future, function = item
            if failure is not None or connection is None:
                outcome: tuple[bool, Any] = (False, failure)
            else:
                try:
                    outcome = (True, function(connection))
                except BaseException as exc:  # handed to the caller, whatever it is
                    outcome = (False, exc)
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(_resolve, future, outcome)
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                _close(connection)

    def _connect(self) -> sqlite3.Connection:
        if os.path.isdir(self.path):
            raise StorageConfigError(
                f"SQLite database {self.path} is a directory: give the path of a file in it"
            )
        connection = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,  # autocommit: BEGIN IMMEDIATE ... COMMIT are ours
            check_same_thread=False,
            cached_statements=256,
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise StorageConfigError(
                    f"SQLite database {self.path}: cannot use write-ahead logging (journal "
                    f"mode is {mode and mode[0]!r}); is it on a network file system?"
                )
            connection.execute(f"PRAGMA synchronous = {self._synchronous}")
            connection.execute("PRAGMA foreign_keys = OFF")
            if self._setup is not None:
                self._setup(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    async def call[T](self, function: Callable[[sqlite3.Connection], T]) -> T:
        """``function(connection)`` on the connection's thread."""
        calls = self._calls
        if calls is None:
            raise StorageError(f"SQLite database {self.path} is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        calls.put((loop, future, function))
        with translated(self.path):
            return await future

    async def close(self) -> None:
        calls, self._calls = self._calls, None
        thread, self._thread = self._thread, None
        if calls is None or thread is None:
            return
        calls.put(None)
        await asyncio.to_thread(thread.join)


type _Call = tuple[
    asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[sqlite3.Connection], Any]
]


def _resolve(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # the caller was cancelled; the call ran all the same
        return
    succeeded, value = outcome
    if succeeded:
        future.set_result(value)
    else:
        future.set_exception(value)


def _nothing(connection: sqlite3.Connection) -> None:
    del connection


def _close(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.execute("ROLLBACK")
    connection.close()


def fetch(connection: sqlite3.Connection, statement: str, params: Any = ()) -> list[Any]:
    """The rows of one statement."""
    return connection.execute(statement, params).fetchall()
