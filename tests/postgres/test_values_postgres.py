"""PostgreSQL under hostile data: refusals are not outages, and floats stay floats."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

import psycopg_pool
import pytest

from hephaestus import (
    Config,
    Context,
    Done,
    Hephaestus,
    Instance,
    Ok,
    RetryPolicy,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    Workflow,
)
from hephaestus.errors import StorageError, ValueRejectedError
from hephaestus.storage.postgres import PostgresStorage
from hephaestus.testing import FakeClock, advance

T0 = datetime(2026, 1, 1, tzinfo=UTC)
attempts: list[int] = []


class ReturnsNul(Step):
    events = ("made",)
    retry = RetryPolicy(max_attempts=2, initial_delay=1)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        attempts.append(context.attempt)
        return Ok("made", {"name": "a\x00b"})


class NulFlow(Workflow):
    unique = Unique(key="nul")
    start_step = ReturnsNul
    transitions = {(ReturnsNul, "made"): Done}


@pytest.fixture
def pool_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the pool re-checks a storage asks for (it does after a lost connection)."""
    checks: list[int] = []
    original = psycopg_pool.AsyncConnectionPool.check

    async def check(self: psycopg_pool.AsyncConnectionPool) -> None:
        checks.append(1)
        await original(self)

    monkeypatch.setattr(psycopg_pool.AsyncConnectionPool, "check", check)
    return checks


async def test_a_result_postgresql_refuses_fails_the_attempt_at_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch, pool_checks: list[int]
) -> None:
    """A refused result is no outage: the attempt fails (invalid_result), retries, the run ends."""
    # Let the value through the boundary and the codec, so that only PostgreSQL sees the NUL.
    monkeypatch.setattr("hephaestus._core.results.check_value", lambda value, what: dict(value))
    monkeypatch.setattr("hephaestus.codec.check_string", lambda text: None)
    attempts.clear()
    began = time.monotonic()
    async with Hephaestus(storage=PostgresStorage(database_url), clock=FakeClock()) as app:
        await NulFlow.start("one")
        await advance(app, seconds=5)
        run = await NulFlow.get("one")
    assert time.monotonic() - began < 10  # not the runner's 30 s of storage retries
    assert attempts == [1, 2]  # the step's retry policy, like any failure
    assert run.status is Status.FAILED
    assert run.error is not None
    assert run.error.kind == "invalid_result"
    assert "SQLSTATE 22" in run.error.message
    assert pool_checks == []


def make(instance_id: str, initial: dict[str, Any]) -> Instance:
    return Instance(
        id=instance_id,
        run_id=secrets.token_hex(8),
        workflow="shop.Order",
        workflow_version=1,
        family="shop.Order",
        status=Status.RUNNING,
        context=Context(initial=initial, steps={}),
        created_at=T0,
        updated_at=T0,
        unique_key=f"shop.Order|{instance_id}",
    )


async def test_an_id_too_long_for_the_index_is_a_refused_value_not_a_lost_connection(
    pg_storage: PostgresStorage, pool_checks: list[int]
) -> None:
    """Past the facade's id limit, PostgreSQL's index limit (54000) is raised at once, typed."""
    began = time.monotonic()
    with pytest.raises(ValueRejectedError) as caught:
        await pg_storage.create(make("order::" + secrets.token_hex(1500), {}))
    assert time.monotonic() - began < 2
    assert caught.value.sqlstate is not None
    assert caught.value.sqlstate.startswith("54")
    assert not isinstance(caught.value, StorageError)
    assert "connection lost" not in str(caught.value)
    assert pool_checks == []


async def test_large_floats_stay_floats_and_containment_finds_them(
    pg_storage: PostgresStorage,
) -> None:
    """1e16 and 1.5e300 come back as equal floats; a containment query on one matches."""
    initial = {"big": 1.5e300, "round": 1e16, "tiny": 5e-324, "zero": -0.0, "n": 10**20}
    run = make("order::floats", initial)
    await pg_storage.create(run)
    got = (await pg_storage.get(run.run_id)).context.initial
    assert got == initial
    assert [type(got[key]) for key in ("big", "round", "tiny", "zero", "n")] == [
        float,
        float,
        float,
        float,
        int,
    ]
    assert str(got["zero"]) == "-0.0"
    found = await pg_storage.find({"context": {"initial": {"big": 1.5e300}}})
    assert [found_run.run_id for found_run in found] == [run.run_id]
    assert await pg_storage.find({"context": {"initial": {"round": 1e16}}}) == found
