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
import sqlite3
from concurrent.futures import ThreadPoolExecutor
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
    there). It is in autocommit mode: whoever writes begins and commits explicitly."""

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
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix=f"hephaestus-sqlite-{self._label}"
        )
        loop = asyncio.get_running_loop()
        try:
            with translated(self.path):
                self._connection = await loop.run_in_executor(self._executor, self._connect)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,  # autocommit: BEGIN IMMEDIATE ... COMMIT are ours
            check_same_thread=False,  # used from this thread only, created on the loop's
            cached_statements=256,
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or (str(mode[0]).lower() != "wal" and self.path != ":memory:"):
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
        if self._executor is None or self._connection is None:
            raise StorageError(f"SQLite database {self.path} is not open")
        loop = asyncio.get_running_loop()
        with translated(self.path):
            return await loop.run_in_executor(self._executor, function, self._connection)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        connection, self._connection = self._connection, None
        if executor is None:
            return
        if connection is not None:
            loop = asyncio.get_running_loop()
            with contextlib.suppress(sqlite3.Error):
                await loop.run_in_executor(executor, _close, connection)
        executor.shutdown(wait=True)


def _close(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.execute("ROLLBACK")
    connection.close()


def fetch(connection: sqlite3.Connection, statement: str, params: Any = ()) -> list[Any]:
    """The rows of one statement."""
    return connection.execute(statement, params).fetchall()
