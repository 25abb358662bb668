"""Driver errors at the adapter boundary: which become which Hephaestus error, which are retried.

A deterministic refusal of the data becomes ``ValueRejectedError`` (retrying cannot help),
anything else from psycopg or the pool ``StorageError``, raised ``from`` the driver's error.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

import psycopg
import psycopg_pool

from hephaestus.errors import HephaestusError, StorageError, ValueRejectedError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["REJECTED_CLASSES", "RETRIED_STATES", "retryable", "translate", "wrap_exceptions"]


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
        raise translate(exc) from exc


REJECTED_CLASSES = frozenset({"22", "54"})
"""SQLSTATE classes that refuse the data itself: ``ValueRejectedError``, never retried."""

RETRIED_STATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03"})
"""Errors that can succeed on retry besides a lost connection: a serialization failure, a
deadlock, and a server shutting down or starting (its connections are lost)."""


def translate(exc: BaseException) -> HephaestusError:
    """The Hephaestus error that reports the driver's ``exc`` (the caller chains it)."""
    state = exc.sqlstate if isinstance(exc, psycopg.Error) else None
    if _rejected(exc):
        return ValueRejectedError(
            f"PostgreSQL refused a value (SQLSTATE {state or 'none, refused by psycopg'}): {exc}; "
            "this is not an outage and "
            "a retry would fail the same way: change the value (see the limits in the docs)",
            sqlstate=state,
        )
    return StorageError(f"PostgreSQL storage failed: {type(exc).__name__}: {exc}")


def _rejected(exc: BaseException) -> bool:
    """Whether ``exc`` refuses the data itself: a class 22 or 54 SQLSTATE, or a value psycopg
    refuses before sending it (a NUL character in text: a ``DataError`` with no SQLSTATE)."""
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    return isinstance(exc, psycopg.DataError) or (
        state is not None and state[:2] in REJECTED_CLASSES
    )


def retryable(exc: psycopg.Error) -> bool:
    """Whether a statement that failed with ``exc`` may succeed if run again."""
    if _rejected(exc):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in RETRIED_STATES
