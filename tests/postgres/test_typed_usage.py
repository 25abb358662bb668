"""The documented PostgreSQL API, as a user writes it; mypy checks it, pytest runs it."""

from __future__ import annotations

from typing import assert_type

from hephaestus import (
    Config,
    Done,
    Hephaestus,
    Instance,
    Ok,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    Workflow,
)
from hephaestus.codec import JSONValue
from hephaestus.storage.postgres import PostgresStorage, containment, install, schema_sql
from hephaestus.testing import run_until_idle


class ValidateTyped(Step):
    events = ("valid",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("valid", {"count": len(context.initial["items"])})


class TypedOrder(Workflow):
    unique = Unique(key="orderid")
    start_step = ValidateTyped
    transitions = {(ValidateTyped, "valid"): Done}


async def test_the_documented_postgres_usage_type_checks_and_runs(database_url: str) -> None:
    """Install a schema, run a workflow on it, and find it by its initial data."""
    assert_type(schema_sql("shop"), str)
    await install(database_url, "shop")
    storage = PostgresStorage(database_url, schema="shop")
    async with Hephaestus(storage=storage) as app:
        await TypedOrder.start("abc123", {"order_id": 123, "items": [1, 2]})
        await run_until_idle(app)
        run = await TypedOrder.get("abc123")
        assert_type(run, Instance)
        assert run.status is Status.COMPLETED
        assert run.context.steps["validate_typed"] == {"count": 2}
        found = await storage.find({"context": {"initial": {"order_id": 123}}})
        assert_type(found, list[Instance])
        assert [item.run_id for item in found] == [run.run_id]
    pattern = containment({"order_id": 123})
    assert_type(pattern, dict[str, JSONValue])
