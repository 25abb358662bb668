"""The operator query model on PostgreSQL with 1,000,000 stored runs (issue 10, capability 6).

Loads ``--runs`` valid runs into a private database, then times the queries an operator (the
CLI, a dashboard) sends through ``PostgresStorage``: the first page, a page deep in the keyset
walk against the same page by ``OFFSET``, each filter, and counts.

Loading: six real runs are made by the app (two workflows x waiting, completed, cancelled, with
their step rows and history), then copied in SQL with ``INSERT ... SELECT generate_series``,
each copy with its own run id, instance id (``order::<n>`` / ``invoice::<n>``), tenant in its
metadata (``t<n % 1000>``), and times (created one second apart, updated up to an hour later).
Of every 100 runs, 1 is cancelled, 29 wait and 70 completed. Secondary indexes are dropped
during the copy and rebuilt after it (as a bulk load does), then the tables are analysed and
vacuumed, so the figures are those of a settled table.

Run: ``uv run python -m benchmarks.bench_query [--runs N] [--repeat R]``. It creates and drops
its own database on 127.0.0.1:5432 (``--server``); ``--keep`` leaves it for inspection. Prints
the load time, one JSON line of figures (median and max ms of ``--repeat`` executions of each
query, after one warm-up; the deep OFFSET page twice) and a table. About 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import psycopg

from benchmarks._databases import admin_dsn, create_database, drop_database
from hephaestus import Done, Hephaestus, Status, Unique, WaitForEvent, Workflow
from hephaestus.storage import InstanceQuery
from hephaestus.storage._query import encode_cursor
from hephaestus.storage.postgres import PostgresStorage
from hephaestus.testing import run_until_idle

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIMIT = 50


class Order(Workflow):
    """A run that waits for one event: one step row and two or three history entries."""

    unique = Unique(key="order")
    tags = ("shop",)
    start_step = WaitForEvent
    transitions: ClassVar = {(WaitForEvent, "received"): Done}


class Invoice(Workflow):
    unique = Unique(key="invoice")
    tags = ("billing",)
    start_step = WaitForEvent
    transitions: ClassVar = {(WaitForEvent, "received"): Done}


async def make_templates(dsn: str) -> None:
    """The six runs the load copies: each workflow waiting, completed and cancelled."""
    async with Hephaestus(storage=PostgresStorage(dsn)) as app:
        for workflow in (Order, Invoice):
            for value, status in (("waiting", None), ("completed", "received"), ("cancelled", "")):
                await app.start(workflow, value, {"items": [1, 2, 3]}, metadata={"tenant": "t0"})
                await run_until_idle(app)
                if status:
                    await app.resume(workflow, value, status)
                elif status == "":
                    await app.cancel(workflow, value, reason="bench")
                await run_until_idle(app)


INSERT_HEADERS = """
INSERT INTO workflow_instances (run_id, id, workflow, workflow_version, status, revision,
                                unique_key, state, extra, created_at, updated_at)
SELECT c.run_id, c.key || '::' || c.g, c.workflow, c.workflow_version, c.status, c.revision,
       replace(c.unique_key, c.id, c.key || '::' || c.g),
       c.state || jsonb_build_object('id', c.key || '::' || c.g, 'run_id', c.run_id,
                                     'unique_key',
                                     replace(c.unique_key, c.id, c.key || '::' || c.g),
                                     'metadata', jsonb_build_object('tenant', 't' || c.g %% 1000)),
       c.extra || jsonb_build_object('created_at', %(t0)s + c.g * interval '1 second',
                                     'updated_at', %(t0)s + c.g * interval '1 second'
                                                   + (c.g %% 3600) * interval '1 second'),
       %(t0)s + c.g * interval '1 second',
       %(t0)s + c.g * interval '1 second' + (c.g %% 3600) * interval '1 second'
FROM (SELECT g, 'run-' || g AS run_id, t.key, t.id, t.workflow, t.workflow_version, t.status,
             t.revision, t.unique_key, t.state, t.extra
      FROM generate_series(1, %(runs)s) AS g
      JOIN template AS t
        ON t.k = (CASE WHEN g %% 100 = 0 THEN 0 WHEN g %% 100 < 30 THEN 1 ELSE 2 END) * 2
                 + g %% 2) AS c
ORDER BY c.g
"""

INSERT_PARTS = """
INSERT INTO workflow_instance_parts (run_id, kind, key, position, data)
SELECT 'run-' || g, p.kind, p.key, p.position, p.data
FROM generate_series(1, %(runs)s) AS g
JOIN template AS t
  ON t.k = (CASE WHEN g %% 100 = 0 THEN 0 WHEN g %% 100 < 30 THEN 1 ELSE 2 END) * 2 + g %% 2
JOIN workflow_instance_parts AS p ON p.run_id = t.run_id
"""

INSERT_HISTORY = """
INSERT INTO workflow_instance_history (run_id, position, entry)
SELECT 'run-' || g, e.position, e.entry
FROM generate_series(1, %(runs)s) AS g
JOIN template AS t
  ON t.k = (CASE WHEN g %% 100 = 0 THEN 0 WHEN g %% 100 < 30 THEN 1 ELSE 2 END) * 2 + g %% 2
JOIN workflow_instance_history AS e ON e.run_id = t.run_id
"""


def load(dsn: str, runs: int) -> dict[str, float]:
    """Copy the templates into ``runs`` runs; the seconds each phase took."""
    timings: dict[str, float] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET maintenance_work_mem = '512MB'")
        # Triggers and foreign keys are not checked for the copy (the copies are valid by
        # construction), which also skips the unique-scope trigger's lock per row.
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "CREATE TEMP TABLE template AS "
            "SELECT run_id, id, split_part(id, '::', 1) AS key, workflow, workflow_version, "
            "status, revision, unique_key, state, extra, "
            "(CASE status WHEN 'cancelled' THEN 0 WHEN 'waiting' THEN 1 ELSE 2 END) * 2 "
            "+ (CASE WHEN id LIKE 'order::%%' THEN 0 ELSE 1 END) AS k "
            "FROM workflow_instances"
        )
        count = conn.execute("SELECT count(DISTINCT k) FROM template").fetchone()
        if count is None or count[0] != 6:
            raise RuntimeError(f"expected six template runs, got {count}")
        indexes = [
            str(row[0])
            for row in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' "
                "AND tablename = 'workflow_instances' AND indexname NOT LIKE '%%pkey'"
            ).fetchall()
        ]
        conn.execute(
            "DO $$ DECLARE i record; BEGIN FOR i IN SELECT indexname FROM pg_indexes "
            "WHERE schemaname = 'public' AND tablename = 'workflow_instances' "
            "AND indexname NOT LIKE '%pkey' LOOP EXECUTE 'DROP INDEX ' || quote_ident(i.indexname);"
            " END LOOP; END $$"
        )
        params = {"runs": runs, "t0": T0}
        for name, statement in (
            ("headers", INSERT_HEADERS),
            ("parts", INSERT_PARTS),
            ("history", INSERT_HISTORY),
        ):
            began = time.perf_counter()
            conn.execute(statement, params)
            timings[f"load_{name}_s"] = time.perf_counter() - began
        began = time.perf_counter()
        conn.execute("DELETE FROM workflow_instances WHERE run_id IN (SELECT run_id FROM template)")
        for definition in indexes:
            conn.execute(definition)
        timings["load_indexes_s"] = time.perf_counter() - began
        began = time.perf_counter()
        conn.execute("VACUUM ANALYZE workflow_instances")
        conn.execute("VACUUM ANALYZE workflow_instance_parts")
        conn.execute("VACUUM ANALYZE workflow_instance_history")
        timings["load_vacuum_s"] = time.perf_counter() - began
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        timings["database_mb"] = 0 if size is None else size[0] / 1e6
    return timings


async def cursor_at(dsn: str, position: int) -> str:
    """The cursor of the run at ``position`` (0-based) in creation order."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cursor = await conn.execute(
            "SELECT created_at, seq FROM workflow_instances ORDER BY created_at, seq "
            "OFFSET %s LIMIT 1",
            (position,),
        )
        row = await cursor.fetchone()
    if row is None:
        raise RuntimeError(f"no run at position {position}")
    return encode_cursor(row[0], row[1])


async def timed(repeat: int, call: Any, check: Any = None) -> dict[str, float]:
    """Median and max milliseconds of ``repeat`` calls of ``call()``, after one warm-up."""
    result = await call()
    if check is not None:
        check(result)
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1e3)
    return {"ms": statistics.median(samples), "max_ms": max(samples)}


async def measure(dsn: str, runs: int, repeat: int) -> dict[str, Any]:
    deep_position = runs * 9 // 10
    deep = await cursor_at(dsn, deep_position - 1)
    hour = timedelta(hours=1)
    middle = T0 + timedelta(seconds=runs // 2)
    storage = PostgresStorage(dsn, min_size=1, max_size=2)
    await storage.open()
    figures: dict[str, Any] = {}

    def full(result: Any) -> None:
        runs_ = result.runs if hasattr(result, "runs") else result
        if len(runs_) != LIMIT:
            raise RuntimeError(f"expected a full page, got {len(runs_)} runs")

    def some(result: Any) -> None:
        if not result.runs:
            raise RuntimeError("expected runs, got an empty page")

    def page(**filters: Any) -> Any:
        return lambda: storage.page(InstanceQuery(limit=LIMIT, **filters))

    try:
        scenarios: dict[str, tuple[Any, Any]] = {
            "first page": (page(), full),
            "first page, newest first": (page(newest_first=True), full),
            f"keyset page after {deep_position:,} runs": (page(after=deep), full),
            f"offset page after {deep_position:,} runs": (
                lambda: storage.query(InstanceQuery(limit=LIMIT, offset=deep_position)),
                full,
            ),
            "status cancelled (1%), first page": (page(status=Status.CANCELLED), full),
            "status cancelled, keyset page deep": (
                page(status=Status.CANCELLED, after=deep),
                some,
            ),
            "workflow Invoice (50%), first page": (page(workflow=Invoice.name), full),
            "workflow + status waiting, deep": (
                page(workflow=Invoice.name, status=Status.WAITING, after=deep),
                some,
            ),
            "tag billing (resolved to workflow)": (page(tags=["billing"]), full),
            "id prefix order::1234 (every match)": (
                lambda: storage.query(InstanceQuery(id_prefix="order::1234")),
                None,
            ),
            "metadata tenant t7 (0.1%), first page": (page(metadata={"tenant": "t7"}), some),
            "created in one hour, first page": (
                page(created_after=middle, created_before=middle + hour),
                full,
            ),
            "updated in one hour, first page": (
                page(updated_after=middle, updated_before=middle + hour),
                full,
            ),
        }
        for name, (call, check) in scenarios.items():
            # An OFFSET page deep in the runs takes seconds: a few rounds show it.
            rounds = min(repeat, 2) if name.startswith("offset") else repeat
            figures[name] = await timed(rounds, call, check)
            print(f"  {name}: {figures[name]['ms']:.2f} ms", flush=True)
        counts: dict[str, tuple[Any, Any]] = {
            "count by status and workflow (all runs)": (
                lambda: storage.count(InstanceQuery()),
                lambda found: _total(found, runs),
            ),
            "count by status": (
                lambda: storage.count(InstanceQuery(), by=("status",)),
                lambda found: _total(found, runs),
            ),
            "count waiting of one workflow": (
                lambda: storage.count(
                    InstanceQuery(workflow=Invoice.name, status=Status.WAITING), by=()
                ),
                None,
            ),
            "count of tenant t7 by status": (
                lambda: storage.count(InstanceQuery(metadata={"tenant": "t7"}), by=("status",)),
                None,
            ),
            "count created in one hour by status": (
                lambda: storage.count(
                    InstanceQuery(created_after=middle, created_before=middle + hour),
                    by=("status",),
                ),
                None,
            ),
        }
        for name, (call, check) in counts.items():
            figures[name] = await timed(max(3, repeat // 4), call, check)
            print(f"  {name}: {figures[name]['ms']:.2f} ms", flush=True)
    finally:
        await storage.close()
    first = figures["first page"]["ms"]
    figures["ratio deep keyset / first page"] = (
        figures[f"keyset page after {deep_position:,} runs"]["ms"] / first
    )
    figures["ratio deep offset / first page"] = (
        figures[f"offset page after {deep_position:,} runs"]["ms"] / first
    )
    return figures


def _total(found: dict[tuple[str, ...], int], runs: int) -> None:
    if sum(found.values()) != runs:
        raise RuntimeError(f"counted {sum(found.values())} runs, expected {runs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--server", default="host=127.0.0.1 port=5432 user=postgres")
    parser.add_argument("--output", default=None, help="also append the JSON line here")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    database = create_database(args.server)
    dsn = admin_dsn(args.server, database)
    try:
        asyncio.run(make_templates(dsn))
        began = time.perf_counter()
        loaded = load(dsn, args.runs)
        loaded["load_total_s"] = time.perf_counter() - began
        print(json.dumps(loaded), flush=True)
        figures = asyncio.run(measure(dsn, args.runs, args.repeat))
        line = json.dumps(
            {"runs": args.runs, "repeat": args.repeat, "load": loaded, "queries": figures}
        )
        print(line, flush=True)
        if args.output:
            with open(args.output, "a", encoding="utf-8") as out:
                out.write(line + "\n")
    finally:
        if args.keep:
            print(f"kept database {database}")
        else:
            drop_database(args.server, database)
    print(f"\n{args.runs:,} runs; median of {args.repeat} (counts: fewer) after a warm-up:")
    for name, value in figures.items():
        if isinstance(value, dict):
            print(f"  {name:<45} {value['ms']:9.2f} ms  (max {value['max_ms']:.2f})")
        else:
            print(f"  {name:<45} {value:9.2f}")


if __name__ == "__main__":
    main()
