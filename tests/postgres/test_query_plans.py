"""The statements behind resume, cancel and get read one id's rows through an index."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from hashlib import md5
from typing import Any

import psycopg
import psycopg_pool
from psycopg import sql

from hephaestus import Context, Instance, Status
from hephaestus.storage import InstanceQuery
from hephaestus.storage._query import decode_cursor, encode_cursor
from hephaestus.storage.postgres import PostgresStorage

ROWS = 20_000
PLAN_ROWS = 100_000
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


async def test_operator_queries_use_indexes_at_a_hundred_thousand_runs(database_url: str) -> None:
    """Keyset pages, id prefixes, metadata containment and time ranges never scan every run."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO workflow_instances (run_id, id, workflow, workflow_version, status, "
            "revision, state, created_at, updated_at) "
            "SELECT 'run-' || g, 'order::' || md5(g::text), 'plans.Flow', 1, "
            "(ARRAY['running', 'waiting', 'completed', 'failed'])[g %% 4 + 1], 1, "
            "jsonb_build_object('metadata', jsonb_build_object('tenant', 't' || g %% 1000)), "
            "%(t0)s + g * interval '1 second', %(t0)s + (%(rows)s - g) * interval '1 second' "
            "FROM generate_series(1, %(rows)s) AS g",
            {"t0": T0, "rows": PLAN_ROWS},
        )
        await conn.execute("ANALYZE workflow_instances")
        row = await (
            await conn.execute(
                "SELECT created_at, seq FROM workflow_instances WHERE run_id = 'run-50000'"
            )
        ).fetchone()
        assert row is not None
    cursor = encode_cursor(row[0], row[1])
    middle = T0 + timedelta(seconds=PLAN_ROWS // 2)
    hour = timedelta(hours=1)
    queries = {
        "keyset page": InstanceQuery(after=cursor, limit=50),
        "keyset page, newest first": InstanceQuery(after=cursor, limit=50, newest_first=True),
        "keyset page of a status": InstanceQuery(after=cursor, limit=50, status=Status.FAILED),
        "id prefix": InstanceQuery(id_prefix="order::ab", limit=50),
        "id prefix, every run": InstanceQuery(id_prefix="order::ab"),
        "metadata containment": InstanceQuery(metadata={"tenant": "t7"}, limit=50),
        "created range": InstanceQuery(created_after=middle, created_before=middle + hour),
        "updated range": InstanceQuery(updated_after=middle, updated_before=middle + hour),
    }
    storage = PostgresStorage(database_url, min_size=1, max_size=1)
    await storage.open()
    try:
        for name, query in queries.items():
            plan = await storage.explain(query)
            assert "Seq Scan on workflow_instances" not in plan, f"{name}:\n{plan}"
            assert "workflow_instances_" in plan, f"{name}:\n{plan}"
            if name == "id prefix, every run":  # the prefix itself is an index condition
                assert "workflow_instances_id_pattern" in plan, plan
        # The raw rows are not decodable runs (they are skipped), but the cursor moves on.
        page = await storage.page(InstanceQuery(after=cursor, limit=3))
        assert page.next_cursor is not None
        assert decode_cursor(page.next_cursor) == (row[0] + timedelta(seconds=3), row[1] + 3)
        counts = await storage.count(InstanceQuery(), by=("status",))
        assert sum(counts.values()) == PLAN_ROWS
        hashes = (
            md5(str(g).encode(), usedforsecurity=False).hexdigest() for g in range(1, PLAN_ROWS + 1)
        )
        expected = sum(1 for text in hashes if text.startswith("ab"))
        assert await storage.count(InstanceQuery(id_prefix="order::ab"), by=()) == {(): expected}
    finally:
        await storage.close()
