"""Rows damaged with raw SQL: recovery and listing carry on, and the damaged run is named.

Each case corrupts one waiting run beside two healthy ones, in a different table or column.
Opening the app recovers the healthy runs (they complete when resumed), ``list`` returns them,
and every operation on the damaged run raises ``CorruptInstanceError`` (or its subclass
``IncompatibleInstanceError`` when the row decodes but no longer fits the workflow), with
one log line naming the run: never ``KeyError``, ``AttributeError`` or a blocked ``open()``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, LiteralString

import psycopg
import pytest

from hephaestus import Done, Hephaestus, Status, Unique, WaitForEvent, Workflow
from hephaestus.errors import CorruptInstanceError, IncompatibleInstanceError
from hephaestus.storage.postgres import PostgresStorage
from hephaestus.testing import run_until_idle

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


class Crate(Workflow):
    unique = Unique(key="crate")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


UNDECODABLE: dict[str, LiteralString] = {
    "state is an array": "UPDATE workflow_instances SET state = '[]' WHERE run_id = %(run)s",
    "state is a string": "UPDATE workflow_instances SET state = '\"x\"' WHERE run_id = %(run)s",
    "state lacks its context": (
        "UPDATE workflow_instances SET state = state - 'context' WHERE run_id = %(run)s"
    ),
    "status is unknown": (
        "UPDATE workflow_instances SET state = jsonb_set(state, '{status}', '\"lost\"')"
        " WHERE run_id = %(run)s"
    ),
    "extra is a number": "UPDATE workflow_instances SET extra = '42' WHERE run_id = %(run)s",
    "a step row is garbage": (
        "UPDATE workflow_instance_parts SET data = '\"garbage\"'"
        " WHERE run_id = %(run)s AND kind = 'step'"
    ),
    "a step row has a bad timestamp": (
        "UPDATE workflow_instance_parts SET data = jsonb_set(data, '{run_after}', '\"soon\"')"
        " WHERE run_id = %(run)s AND kind = 'step'"
    ),
    "a join member without its join": (
        "INSERT INTO workflow_instance_parts (run_id, kind, key, position, data)"
        ' VALUES (%(run)s, \'member\', \'x\', 0, \'{"join": "nope", "member": "y"}\')'
    ),
    "a history entry is an array": (
        "UPDATE workflow_instance_history SET entry = '[1, 2]' WHERE run_id = %(run)s"
    ),
    "an unknown class reference": (
        "UPDATE workflow_instances SET state = jsonb_set(state, '{context,initial}',"
        ' \'{"next": {"$type": "step", "value": "elsewhere.Missing"}}\')'
        " WHERE run_id = %(run)s"
    ),
    "a deeply nested value": (
        "UPDATE workflow_instances SET state = jsonb_set(state, '{context,initial}',"
        " ('{\"a\": ' || repeat('[', 5000) || repeat(']', 5000) || '}')::jsonb)"
        " WHERE run_id = %(run)s"
    ),
}

INCOMPATIBLE: dict[str, LiteralString] = {
    "a renamed waiting step": (
        "UPDATE workflow_instance_parts SET key = 'wait_for_crate'"
        " WHERE run_id = %(run)s AND kind = 'step'"
    ),
    "an unknown version": (
        "UPDATE workflow_instances SET workflow_version = 7,"
        " state = jsonb_set(state, '{workflow_version}', '7') WHERE run_id = %(run)s"
    ),
}


async def damaged_app(url: str, corruption: LiteralString) -> str:
    """Start ``h1``, ``h2`` and ``bad`` (all waiting), then damage ``bad``; its run id."""
    async with Hephaestus(storage=PostgresStorage(url)) as app:
        for value in ("h1", "h2", "bad"):
            await Crate.start(value)
        await run_until_idle(app)
        run_id = (await Crate.get("bad")).run_id
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(corruption, {"run": run_id})
    return run_id


def operations(app: Hephaestus, *, cancel: bool = False) -> list[Callable[[], Awaitable[object]]]:
    found: list[Callable[[], Awaitable[object]]] = [
        lambda: Crate.get("bad"),
        lambda: Crate.resume("bad", "received"),
        lambda: app.resume_instance("crate::bad", "received"),
    ]
    if cancel:
        found.append(lambda: Crate.cancel("bad"))
    return found


async def recover_the_healthy_runs(app: Hephaestus) -> None:
    for value in ("h1", "h2"):
        await Crate.resume(value, "received")
    await run_until_idle(app)
    for value in ("h1", "h2"):
        assert (await Crate.get(value)).status is Status.COMPLETED


def lines_naming(caplog: pytest.LogCaptureFixture, run_id: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and run_id in r.getMessage()
    ]


@pytest.mark.parametrize("corruption", list(UNDECODABLE.values()), ids=list(UNDECODABLE))
async def test_an_undecodable_row_is_skipped_and_named(
    database_url: str, corruption: LiteralString, caplog: pytest.LogCaptureFixture
) -> None:
    """Open and list skip the row (one log line each); every operation on it is typed."""
    run_id = await damaged_app(database_url, corruption)
    with caplog.at_level(logging.ERROR, logger="hephaestus"):
        async with Hephaestus(storage=PostgresStorage(database_url)) as app:
            assert len(lines_naming(caplog, run_id)) == 1  # recovery skipped it, once
            await recover_the_healthy_runs(app)
            assert sorted(run.id for run in await app.list()) == ["crate::h1", "crate::h2"]
            for operation in operations(app, cancel=True):
                with pytest.raises(CorruptInstanceError) as caught:
                    await operation()
                assert caught.value.run_id == run_id
                assert not isinstance(caught.value, IncompatibleInstanceError)
                assert "repair or delete the stored run" in str(caught.value)


@pytest.mark.parametrize("corruption", list(INCOMPATIBLE.values()), ids=list(INCOMPATIBLE))
async def test_a_row_that_no_longer_fits_is_skipped_and_named(
    database_url: str, corruption: LiteralString, caplog: pytest.LogCaptureFixture
) -> None:
    """A run that decodes but does not fit is listed, not recovered, and can be cancelled."""
    run_id = await damaged_app(database_url, corruption)
    with caplog.at_level(logging.ERROR, logger="hephaestus"):
        async with Hephaestus(storage=PostgresStorage(database_url)) as app:
            assert len(lines_naming(caplog, run_id)) == 1
            await recover_the_healthy_runs(app)
            assert len(await app.list()) == 3
            for operation in operations(app):
                with pytest.raises(IncompatibleInstanceError) as caught:
                    await operation()
                assert caught.value.run_id == run_id
            await Crate.cancel("bad")
            assert (await Crate.get("bad")).status is Status.CANCELLED
