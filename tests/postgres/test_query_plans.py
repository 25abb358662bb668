"""The statements behind resume, cancel and get read one id's rows through an index."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import psycopg
import psycopg_pool
from psycopg import sql

from hephaestus import Context, Instance, Status
from hephaestus.storage import InstanceQuery
from hephaestus.storage.postgres import PostgresStorage

ROWS = 20_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _generic_plans(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute("SET plan_cache_mode = force_generic_plan")


async def test_a_lookup_by_instance_id_uses_the_id_index_even_with_a_generic_plan(
    database_url: str,
) -> None:
    """However PostgreSQL plans the prepared statement, a lookup by id never scans every run."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO workflow_instances (run_id, id, workflow, workflow_version, status, "
            "revision, created_at, updated_at) "
            "SELECT md5(g::text), 'filler::' || g, 'plans.Flow', 1, 'waiting', 1, "
            "now() - g * interval '1 second', now() FROM generate_series(1, %s) AS g",
            (ROWS,),
        )
        await conn.execute("ANALYZE workflow_instances")
    pool = psycopg_pool.AsyncConnectionPool(
        database_url,
        min_size=1,
        max_size=1,
        kwargs={"autocommit": True},
        configure=_generic_plans,
        open=False,
    )
    await pool.open(wait=True)
    try:
        storage = PostgresStorage(pool=pool)
        await storage.open()
        await storage.create(
            Instance(
                id="wait::77",
                run_id="the-run",
                workflow="plans.Flow",
                workflow_version=1,
                family="plans.Flow",
                status=Status.WAITING,
                context=Context(initial={}, steps={}),
                created_at=T0,
                updated_at=T0,
            )
        )
        active = InstanceQuery(
            id="wait::77", workflow=frozenset({"plans.Flow"}), status_in={Status.WAITING}
        )
        latest = InstanceQuery(id="wait::77", newest_first=True, limit=1)
        assert [run.id for run in await storage.query(active)] == ["wait::77"]
        assert [run.id for run in await storage.query(latest)] == ["wait::77"]
        async with pool.connection() as conn:
            prepared = await (
                await conn.execute(
                    "SELECT name FROM pg_prepared_statements WHERE statement LIKE '%%LIMIT%%'"
                )
            ).fetchall()
            assert prepared
            for (name,) in prepared:
                explain = sql.SQL(
                    "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {}"
                    "('wait::77', NULL, '{{waiting}}', '{{plans.Flow}}', NULL, NULL, NULL, NULL,"
                    " NULL, NULL, NULL, NULL, NULL, 0)"
                ).format(sql.Identifier(name))
                cursor = await conn.execute(explain)
                row = await cursor.fetchone()
                assert row is not None
                plan = json.dumps(row[0])
                assert "workflow_instances_id" in plan
    finally:
        await pool.close()
