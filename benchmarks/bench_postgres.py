"""Local runner + PostgreSQL storage, against raw psycopg upserts measured in the same run.

Scenarios (issue 4, "Tests and performance"):

* ``concurrent``: 200 instances of a 10-step linear workflow started at once; steps/s.
* ``raw``: the baseline: 200 asyncio tasks, each doing 10 psycopg async upserts (one per step)
  of a JSONB row the size of what one of our steps writes, over a pool of the same size.
* ``scaling``: the cost per step of one run alone: a 10-step chain, a 1,000-step chain and a
  1,000-branch fan-out (+ join). Flat means the 1,000-step figures stay within 1.5x of the
  10-step one, i.e. no step rewrites the run's whole (growing) document.

Run: ``uv run python -m benchmarks.bench_postgres [--rounds R]``. It creates and drops its own
database on 127.0.0.1:5432 (override with ``--server``). Prints one JSON line per round and a
summary with medians; ratios are computed inside each round.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from typing import Any

import psycopg
import psycopg_pool

from benchmarks._databases import admin_dsn, create_database, drop_database
from benchmarks._shapes import chain, fan_out, many_at_once, ms_per_step_alone
from hephaestus import (
    Hephaestus,
    Status,
    Workflow,
)
from hephaestus.storage import InstanceQuery
from hephaestus.storage.postgres import PostgresStorage

CONCURRENCY = 200
POOL_SIZE = 10
STEPS = 10


Chain10 = chain("Ten", STEPS)
Chain1000 = chain("Thousand", 1_000)
Fan1000 = fan_out("Fan", 1_000)


async def truncate(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("TRUNCATE workflow_instances RESTART IDENTITY CASCADE")
        await conn.execute("CHECKPOINT")


async def written_bytes_per_step(dsn: str) -> int:
    """JSON bytes one step of a 10-step run sends: ``extra``, three parts, one history entry.

    A step completes its own state, activates the next step and adds its result (three part
    rows), appends one history entry and rewrites the header's small ``extra`` document; the
    ``state`` document is sent only when it changes (twice per run here), so it is left out.
    """
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cursor = await conn.execute(
            "SELECT (SELECT avg(length(extra::text)) FROM workflow_instances)"
            " + 3 * (SELECT avg(length(data::text)) FROM workflow_instance_parts)"
            " + (SELECT avg(length(entry::text)) FROM workflow_instance_history)"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(float(row[0]))


async def bench_concurrent(dsn: str) -> dict[str, float]:
    await truncate(dsn)
    storage = PostgresStorage(dsn, min_size=POOL_SIZE, max_size=POOL_SIZE)
    return await many_at_once(storage, Chain10, CONCURRENCY, STEPS)


async def bench_raw(dsn: str, row_bytes: int) -> dict[str, float]:
    """200 tasks x 10 autocommit upserts of a ``row_bytes`` JSONB document, pool of 10."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_raw (id text PRIMARY KEY, doc jsonb NOT NULL)"
        )
        await conn.execute("TRUNCATE bench_raw")
    filler = "x" * max(row_bytes - 40, 0)
    statement = (
        "INSERT INTO bench_raw (id, doc) VALUES (%s, %s::jsonb) "
        "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc"
    )
    async with psycopg_pool.AsyncConnectionPool(
        dsn, min_size=POOL_SIZE, max_size=POOL_SIZE, kwargs={"autocommit": True}
    ) as pool:

        async def task(index: int) -> None:
            for step in range(STEPS):
                doc = json.dumps({"run": index, "step": step, "pad": filler})
                async with pool.connection() as conn:
                    await conn.execute(statement, (f"run{index}", doc), prepare=True)

        gc.collect()
        began = time.perf_counter()
        await asyncio.gather(*(task(i) for i in range(CONCURRENCY)))
        elapsed = time.perf_counter() - began
    upserts = CONCURRENCY * STEPS
    return {"upserts_per_s": upserts / elapsed, "ms_per_upsert": elapsed / upserts * 1e3}


async def run_alone(dsn: str, flow: type[Workflow], steps: int, runs: int) -> dict[str, float]:
    """Per-step wall time of ``runs`` runs of ``flow`` executed one after the other."""
    await truncate(dsn)
    storage = PostgresStorage(dsn, min_size=2, max_size=POOL_SIZE)
    async with Hephaestus(storage=storage) as app:
        samples = await ms_per_step_alone(app, flow, steps, runs)
        done = await storage.query(InstanceQuery(status=Status.COMPLETED))
    if len(done) != runs:
        raise RuntimeError(f"{flow.__name__}: {len(done)} of {runs} runs completed")
    return {"ms_per_step": statistics.median(samples), "min_ms_per_step": min(samples)}


async def one_round(dsn: str) -> dict[str, Any]:
    concurrent = await bench_concurrent(dsn)
    row_bytes = await written_bytes_per_step(dsn)
    raw = await bench_raw(dsn, row_bytes)
    ten = await run_alone(dsn, Chain10, STEPS + 1, 20)
    chain = await run_alone(dsn, Chain1000, 1_000 + 1, 1)
    fan = await run_alone(dsn, Fan1000, 1_000 + 3, 1)
    return {
        "concurrent_10_step_x200": concurrent,
        "raw_upserts_x200": {**raw, "row_bytes": row_bytes},
        "ratio_to_raw": concurrent["steps_per_s"] / raw["upserts_per_s"],
        "alone_10_step": ten,
        "alone_1000_chain": chain,
        "alone_1000_fanout": fan,
        "chain_vs_10": chain["ms_per_step"] / ten["ms_per_step"],
        "fanout_vs_10": fan["ms_per_step"] / ten["ms_per_step"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", default="host=127.0.0.1 port=5432 user=postgres")
    parser.add_argument("--output", default=None, help="also append the JSON lines here")
    args = parser.parse_args()
    database = create_database(args.server)
    rounds: list[dict[str, Any]] = []
    try:
        for _ in range(args.rounds):
            result = asyncio.run(one_round(admin_dsn(args.server, database)))
            rounds.append(result)
            line = json.dumps(result)
            print(line, flush=True)
            if args.output:
                with open(args.output, "a", encoding="utf-8") as out:
                    out.write(line + "\n")
    finally:
        drop_database(args.server, database)

    def med(*path: str) -> float:
        values = []
        for entry in rounds:
            value: Any = entry
            for key in path:
                value = value[key]
            values.append(float(value))
        return statistics.median(values)

    print(
        f"\nsummary (median of {len(rounds)} rounds):\n"
        f"  200 x 10-step at once: {med('concurrent_10_step_x200', 'steps_per_s'):,.0f} steps/s"
        f" (client CPU {med('concurrent_10_step_x200', 'client_cpu_ms_per_step'):.3f} ms/step)\n"
        f"  raw psycopg upserts, 200 tasks, pool {POOL_SIZE}, "
        f"{med('raw_upserts_x200', 'row_bytes'):.0f} B: "
        f"{med('raw_upserts_x200', 'upserts_per_s'):,.0f} upserts/s\n"
        f"  ratio (ours / raw, per round): {med('ratio_to_raw'):.3f}\n"
        f"  per step, one run alone: 10-step {med('alone_10_step', 'ms_per_step'):.3f} ms, "
        f"1,000-step chain {med('alone_1000_chain', 'ms_per_step'):.3f} ms "
        f"({med('chain_vs_10'):.2f}x), 1,000-branch fan-out "
        f"{med('alone_1000_fanout', 'ms_per_step'):.3f} ms ({med('fanout_vs_10'):.2f}x)"
    )


if __name__ == "__main__":
    main()
