"""PostgreSQL restarted under Oban worker nodes: they reconnect and every run completes.

The server is a private cluster of the test (``tests._private_pg``), never the shared one.
Two worker nodes and a client process (``tests.multiprocess._worker``) run the workflows of
``test_oban_nodes`` while the server is restarted once with steps in flight: every client,
pool, listener and ``oban`` producer loses its connections at once, and gets them back only
once the server is up again.

A start or resume sent while the server is down may fail: the client is told so, as a web
request would be. The test retries such a command, as a caller would, and checks that:

- every failure is an outage error (a ``StorageError`` or a driver/pool connection error)
  reported after the restart began; any other error, or one before the restart, is a problem;
- a start is retried only after the test found no run for it (the failed attempt may have
  committed before its answer was lost); a resume retried after an earlier attempt was
  delivered may answer that the step no longer waits, which counts as delivered;
- then every run completes within ``BOUND``, no step attempt runs in two processes at once
  or twice (nothing is killed), each transition is recorded once, and both nodes execute
  steps after the restart (they reconnected).

A step executing during the restart records itself through the database too (``_flows``):
when its recorder loses the connection the step raises, and its retry policy runs a new
attempt. That is a failed attempt of the step, not of the runner, and the checks allow it.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
import pytest

from tests._private_pg import PrivateCluster, StopMode
from tests.multiprocess._cluster import (
    Cluster,
    Worker,
    concurrent_doubles,
    database_now,
    describe,
    executions,
    history_repeats,
    report,
    runs,
    unexplained_repeats,
    until_in_flight,
    wait_completed,
)
from tests.multiprocess._flows import EXECUTIONS_TABLE

if TYPE_CHECKING:
    from collections.abc import Iterator

FLOWS = ("Chain", "FanOut", "Timed", "Approval")
COUNT = 80
BOUND = 90.0
"""Seconds the runs get to complete after the restart: the nodes' pools and ``oban``'s
producers reconnect, results that could not be saved are saved again, steps that failed on
a lost connection are retried (their policy's backoff), and a job left executing by a lost
connection is rescued after 3 s."""
RETRY_SECONDS = 60.0
"""How long the test keeps retrying one start or resume that failed during the outage."""
OUTAGE_ERRORS = ("StorageError", "OperationalError", "PoolTimeout", "ConnectionTimeout")
"""Exception names a command may fail with while the server is down or just back (a pooled
connection the restart closed)."""
DELIVERED = ("StepNotWaitingError", "InstanceNotActiveError")
"""A retried resume answering one of these was delivered by an earlier attempt."""


@dataclass
class Outage:
    """When the restart began (``time.monotonic``), and every failed command."""

    began: float | None = None
    failures: list[tuple[float, str]] = field(default_factory=list)

    def unexplained(self) -> list[str]:
        """Failures that are not outage errors, or came before the restart began."""
        return [
            f"{at:.2f}: {error}"
            for at, error in self.failures
            if self.began is None
            or at < self.began
            or error.split(":", 1)[0].strip() not in OUTAGE_ERRORS
        ]


async def started(dsn: str, run_id: str) -> bool:
    """Whether storage holds a run ``run_id``, asking until the server answers."""
    async with asyncio.timeout(RETRY_SECONDS):
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=2) as conn:
                    cursor = await conn.execute(
                        "SELECT count(*) FROM workflow_instances WHERE id = %s", (run_id,)
                    )
                    row = await cursor.fetchone()
            except psycopg.OperationalError:
                await asyncio.sleep(0.2)
            else:
                return bool(row and row[0])


async def start_until_acknowledged(
    dsn: str, client: Worker, flow: str, value: str, outage: Outage
) -> bool:
    """Start a run; after an outage error, retry only once storage shows no run for it."""
    deadline = time.monotonic() + RETRY_SECONDS
    while time.monotonic() < deadline:
        error = await client.call("start", flow, value)
        if error is None:
            return True
        outage.failures.append((time.monotonic(), f"{error} (start {flow} {value})"))
        if error.split(":", 1)[0] not in OUTAGE_ERRORS:
            return False
        if await started(dsn, f"{flow.lower()}::{value}"):
            return True
        await asyncio.sleep(0.2)
    return False


async def resume_until_acknowledged(
    sender: Worker, flow: str, value: str, event: str, outage: Outage
) -> bool:
    """Resume a run; retry an outage error (a retry told the step no longer waits means an
    earlier attempt was delivered)."""
    deadline = time.monotonic() + RETRY_SECONDS
    retried = False
    while time.monotonic() < deadline:
        error = await sender.call("resume", flow, value, event)
        if error is None:
            return True
        kind = error.split(":", 1)[0]
        if retried and kind in DELIVERED:
            return True
        outage.failures.append((time.monotonic(), f"{error} (resume {flow} {value})"))
        if kind not in OUTAGE_ERRORS:
            return False
        retried = True
        await asyncio.sleep(0.2)
    return False


def identifiers(count: int) -> list[str]:
    return [f"{FLOWS[index % len(FLOWS)].lower()}::r{index}" for index in range(count)]


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    """A private PostgreSQL server of this test, started; stopped and removed afterwards."""
    with PrivateCluster.init() as cluster:
        cluster.start()
        yield cluster


@pytest.fixture
def restart_url(private_pg: PrivateCluster) -> str:
    """A database on the private server with the storage and the ``executions`` table."""
    url = private_pg.create_database("hx_restart")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(EXECUTIONS_TABLE)
    return url


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_oban_nodes_reconnect_after_postgres_restarts_and_complete_every_run(
    private_pg: PrivateCluster, restart_url: str, mode: StopMode
) -> None:
    """80 runs over two nodes and a client; PostgreSQL is restarted (``pg_ctl restart -m
    mode``) with steps in flight: the nodes reconnect, every run completes, no attempt runs
    in two processes at once, each transition is recorded once."""
    rng = random.Random(mode)
    outage = Outage()
    acknowledged: dict[str, bool] = {}
    async with Cluster(restart_url) as cluster:
        workers = await cluster.spawn(2, prefix="node", runner="oban")
        [client] = await cluster.spawn(1, prefix="client", runner="oban-client")
        senders = [client, *workers]

        async def run(index: int) -> None:
            flow, value = FLOWS[index % len(FLOWS)], f"r{index}"
            await asyncio.sleep(index * 0.02)  # spread the starts over the restart
            ok = await start_until_acknowledged(restart_url, client, flow, value, outage)
            if ok and flow == "Approval":
                await asyncio.sleep(rng.uniform(0.0, 0.4))
                sender = senders[index % len(senders)]
                ok = await resume_until_acknowledged(sender, flow, value, "received", outage)
            acknowledged[f"{flow.lower()}::{value}"] = ok

        tasks = [asyncio.create_task(run(index)) for index in range(COUNT)]
        await until_in_flight(restart_url, workers[0])
        in_flight = len([e for e in executions(restart_url) if e.ended is None])
        outage.began = time.monotonic()
        await asyncio.to_thread(private_pg.restart, mode)
        restarted_at = database_now(restart_url)
        await asyncio.gather(*tasks)
        not_completed, waited = await wait_completed(restart_url, identifiers(COUNT), BOUND)
        exits = [await worker.quit() for worker in cluster.workers]
    found = executions(restart_url)
    stored = await runs(restart_url)
    problems = {
        "runs not completed": not_completed,
        "starts and resumes never acknowledged": sorted(
            run_id for run_id, ok in acknowledged.items() if not ok
        ),
        "failures not explained by the restart": outage.unexplained(),
        "concurrent double executions": describe(concurrent_doubles(found, ended_by={})),
        "re-executions (nothing was killed)": unexplained_repeats(found, []),
        "transitions recorded twice": history_repeats(stored),
        "nodes that executed nothing after the restart": [
            worker.name
            for worker in workers
            if not any(e.pid == worker.pid and e.started > restarted_at for e in found)
        ],
        "processes that did not exit cleanly": [f"exit {code}" for code in exits if code != 0],
    }
    numbers = {
        "executions": len(found),
        "in_flight_at_restart": in_flight,
        "failed_commands": len(outage.failures),
        "seconds_waited": round(waited, 1),
    }
    assert in_flight, "the server was restarted with no step in flight"
    broken = sorted(name for name, found in problems.items() if found)
    assert not broken, report(f"PostgreSQL restarted ({mode})", problems, numbers)
