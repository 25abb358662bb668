"""A worker node process of ``bench_oban``: raw ``oban`` or the Oban runner, on one database.

Usage: ``python -m benchmarks._oban_node KIND DSN LIMIT``, KIND ``raw`` (an ``oban`` node
executing the no-op and hop jobs below) or ``hephaestus`` (an app with ``ObanRunner`` in
worker mode executing the benchmark's workflows). Prints ``ready`` once started; on end of
input it stops and prints ``fetches N`` (``oban`` producer fetches it made) and exits.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from oban import Job, Oban, telemetry, worker

from benchmarks._shapes import chain, fan_out
from hephaestus import Hephaestus
from hephaestus.runners.oban import ObanRunner
from hephaestus.storage.postgres import PostgresStorage

QUEUE = "hephaestus"
POOL = 10

Chain10 = chain("Ob", 10)
Chain100 = chain("Oblong", 100)
Fan20 = fan_out("Obfan", 20)
WORKFLOWS = [Chain10, Chain100, Fan20]


@worker(queue=QUEUE)
class Noop:
    """The raw baseline: a job that does nothing."""

    async def process(self, job: Any) -> None:
        return None


@worker(queue=QUEUE)
class Hop:
    """The raw chained hop: each job enqueues the next until ``n`` reaches 0."""

    async def process(self, job: Any) -> None:
        left = int(job.args["n"])
        if left > 0:
            next_hop = Job(worker="benchmarks._oban_node.Hop", queue=QUEUE, args={"n": left - 1})
            await Oban.get_instance().enqueue(next_hop)


async def main(kind: str, dsn: str, limit: int) -> None:
    fetches = 0

    def count(name: str, metadata: dict[str, Any]) -> None:
        nonlocal fetches
        fetches += 1

    telemetry.attach("bench-fetches", ["oban.producer.get.stop"], count)
    if kind == "raw":
        pool = await Oban.create_pool(dsn, max_size=POOL)
        node: Any = Oban(pool=pool, queues={QUEUE: limit}, stager={"interval": 0.1})
        await node.start()
    else:
        pool = None
        node = Hephaestus(
            storage=PostgresStorage(dsn, max_size=POOL),
            runner=ObanRunner(queues={QUEUE: limit}, stage_interval=0.1),
            workflows=WORKFLOWS,
        )
        await node.open()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        pass
    if kind == "raw":
        await node.stop()
        if pool is not None:
            await pool.close()
    else:
        await node.close()
    print(f"fetches {fetches}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
