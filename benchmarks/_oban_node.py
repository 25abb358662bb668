"""A worker node process of ``bench_oban``: raw ``oban`` or the Oban runner, on one database.

Usage: ``python -m benchmarks._oban_node KIND DSN LIMIT``, KIND ``raw`` (an ``oban`` node
executing the no-op and hop jobs below) or ``hephaestus`` (an app with ``ObanRunner`` in
worker mode executing the benchmark's workflows). Prints ``ready`` once started, ``mark N``
(fetches so far) for each input line ``mark``; on end of input it stops and prints
``fetches N`` (``oban`` producer fetches it made) and exits.

With ``HX_BENCH_COUNT=1`` in its environment a ``hephaestus`` node also counts, by wrapping
private methods of this version of the library, how it read runs and applied step results,
and prints the counts on the same line after the fetches: ``read_batches`` statements
reading the runs of step jobs and ``runs_read`` the runs they read (by difference from the
node's copy), ``locked_reads`` runs read with their row locked, ``group_writes`` statements
writing the results of several runs and ``grouped`` the runs they wrote, ``alone`` runs
applied alone on the locked path (another node wrote them meanwhile, a timer, a refused
value).
"""

from __future__ import annotations

import asyncio
import os
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
Fan1000 = fan_out("Obwide", 1000)
Chain1 = chain("Obone", 1)
WORKFLOWS = [Chain10, Chain100, Fan20, Fan1000, Chain1]
COUNTED = ("read_batches", "runs_read", "locked_reads", "group_writes", "grouped", "alone")


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


def install_counters() -> dict[str, int]:
    """Wrap the private methods that read runs and apply step results to count what they do
    (see the module's docstring); a method this version lacks is left alone (its count
    stays 0)."""
    from hephaestus.storage.postgres._transaction import PostgresTransaction

    counts = dict.fromkeys(COUNTED, 0)

    def wrap(owner: Any, name: str, count: Any) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return

        async def counted(*args: Any, **kwargs: Any) -> Any:
            count(args)
            return await original(*args, **kwargs)

        setattr(owner, name, counted)

    def adds(name: str) -> Any:
        def count(args: Any) -> None:
            counts[name] += 1

        return count

    def group(args: Any) -> None:
        counts["group_writes"] += 1
        counts["grouped"] += len(args[2])

    def read(args: Any) -> None:
        counts["read_batches"] += 1
        counts["runs_read"] += len(args[1])

    wrap(PostgresTransaction, "get", adds("locked_reads"))
    wrap(PostgresTransaction, "refresh", adds("locked_reads"))
    wrap(PostgresStorage, "refresh_many", read)
    wrap(ObanRunner, "_write_group", group)
    wrap(ObanRunner, "_apply_batch", adds("alone"))
    return counts


async def main(kind: str, dsn: str, limit: int) -> None:
    fetches = 0
    counts = install_counters() if os.environ.get("HX_BENCH_COUNT") == "1" else {}

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
    while line := await reader.readline():
        if line.strip() == b"mark":  # the fetches so far, to leave out those of starting
            print(f"mark {fetches}", flush=True)
    if kind == "raw":
        await node.stop()
        if pool is not None:
            await pool.close()
    else:
        await node.close()
    extra = "".join(f" {name} {value}" for name, value in counts.items())
    print(f"fetches {fetches}{extra}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
