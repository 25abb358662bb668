"""Oban worker nodes in separate OS processes on one database (issue 12).

The nodes are ``tests.multiprocess._worker`` processes with the Oban runner in worker mode;
a client process (the Oban runner in client mode, executing nothing) starts runs and sends
the events. The checks are those of the local runner's multiprocess tests: every run
completes, no step attempt runs in two live processes at once, only attempts in flight on a
killed node run again, and each transition is recorded once.
"""

from __future__ import annotations

import asyncio
import random
import signal

import psycopg
import pytest

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

FLOWS = ("Chain", "Wide", "Timed", "Approval")
BOUND = 120.0
"""Seconds the runs get to complete after the last kill: a job left executing by a killed
node is rescued by the leader's lifeline (3 s after it started, checked every 0.5 s), and a
killed leader is replaced once its lease ends (``oban``: 30 s)."""


async def start_all(
    client: Worker, count: int, rng: random.Random, senders: list[Worker]
) -> list[asyncio.Task[None]]:
    """Start ``count`` runs from the client; the events of ``Approval`` runs are sent from
    the other processes, often while the run's first step still executes."""

    async def run(index: int) -> None:
        flow = FLOWS[index % len(FLOWS)]
        failed = await client.call("start", flow, f"r{index}")
        if flow == "Approval" and failed is None:
            await asyncio.sleep(rng.uniform(0.0, 0.4))
            await senders[index % len(senders)].call("resume", flow, f"r{index}", "received")

    return [asyncio.create_task(run(index)) for index in range(count)]


def identifiers(count: int) -> list[str]:
    return [f"{FLOWS[index % len(FLOWS)].lower()}::r{index}" for index in range(count)]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("nodes", [2, 4])
async def test_oban_nodes_complete_every_run_once(database_url: str, nodes: int) -> None:
    """500 runs (a chain, a 20-way fan-out, a timer and a retry, an event sent from another
    process) over ``nodes`` worker nodes and a client: all complete, each attempt executes
    once (nothing is killed), each transition is recorded once."""
    rng = random.Random(nodes)
    count = 500
    async with Cluster(database_url) as cluster:
        workers = await cluster.spawn(nodes, prefix="node", runner="oban")
        [client] = await cluster.spawn(1, prefix="client", runner="oban-client")
        tasks = await start_all(client, count, rng, [client, *workers])
        await asyncio.gather(*tasks)
        not_completed, waited = await wait_completed(database_url, identifiers(count), BOUND)
        exits = [await worker.quit() for worker in cluster.workers]
    found = executions(database_url)
    stored = await runs(database_url)
    pids = {execution.pid for execution in found}
    problems = {
        "runs not completed": not_completed,
        "failed starts and resumes": cluster.errors,
        "concurrent double executions": describe(concurrent_doubles(found, ended_by={})),
        "re-executions (nothing was killed)": unexplained_repeats(found, []),
        "transitions recorded twice": history_repeats(stored),
        "processes that did not exit cleanly": [f"exit {code}" for code in exits if code != 0],
        "nodes that executed nothing": [] if len(pids) == nodes else [f"{len(pids)} of {nodes}"],
        "steps executed by the client": [e.key for e in found if e.pid == client.pid],
    }
    numbers = {"executions": len(found), "seconds_waited": round(waited, 1)}
    broken = sorted(name for name, found in problems.items() if found)
    assert not broken, report(f"{nodes} oban nodes", problems, numbers)


@pytest.mark.timeout(300)
async def test_oban_nodes_killed_three_times_still_complete_every_run(database_url: str) -> None:
    """Three nodes; three times a node with steps in flight is SIGKILLed (and replaced):
    every run completes, only the killed nodes' unfinished attempts run again."""
    rng = random.Random(12)
    count = 160
    async with Cluster(database_url) as cluster:
        workers = await cluster.spawn(3, prefix="node", runner="oban")
        [client] = await cluster.spawn(1, prefix="client", runner="oban-client")
        tasks = await start_all(client, count, rng, [client])
        victims: list[Worker] = []
        killed_at = {}
        for round_ in range(3):
            victim = workers[round_ % len(workers)]
            await until_in_flight(database_url, victim)
            await asyncio.sleep(rng.uniform(0.0, 0.2))
            victim.signal(signal.SIGKILL)
            killed_at[victim.pid] = database_now(database_url)
            await victim.exited(10)
            victims.append(victim)
            [replacement] = await cluster.spawn(1, prefix=f"spare{round_}", runner="oban")
            workers[round_ % len(workers)] = replacement
        await asyncio.gather(*tasks)
        not_completed, waited = await wait_completed(database_url, identifiers(count), BOUND)
        exits = [await worker.quit() for worker in [*workers, client]]
    found = executions(database_url)
    stored = await runs(database_url)
    killed = [victim.pid for victim in victims]
    in_flight = [e for e in found if e.pid in killed and e.ended is None]
    problems = {
        "runs not completed": not_completed,
        "failed starts and resumes": cluster.errors,
        "concurrent double executions": describe(concurrent_doubles(found, ended_by=killed_at)),
        "re-executions not explained by a kill": unexplained_repeats(found, killed),
        "transitions recorded twice": history_repeats(stored),
        "processes that did not exit cleanly": [f"exit {code}" for code in exits if code != 0],
    }
    numbers = {
        "executions": len(found),
        "in_flight_at_kills": len(in_flight),
        "seconds_waited": round(waited, 1),
    }
    assert in_flight, "no node was killed with a step in flight"
    broken = sorted(name for name, found in problems.items() if found)
    assert not broken, report("oban nodes killed three times", problems, numbers)


@pytest.mark.timeout(120)
async def test_a_cancel_from_the_client_stops_the_step_executing_on_a_node(
    database_url: str,
) -> None:
    """Cancelled from another process while its step executes on a node: the step is stopped
    there (``oban``'s signal), no further step starts, the run ends cancelled, no job is left."""
    async with Cluster(database_url) as cluster:
        nodes = await cluster.spawn(2, prefix="node", runner="oban")
        [client] = await cluster.spawn(1, prefix="client", runner="oban-client")
        assert await client.call("start", "Blocking", "b1") is None
        async with asyncio.timeout(30):
            while True:
                found = executions(database_url)
                if found:
                    break
                await asyncio.sleep(0.02)
        [executing] = found
        assert executing.pid in {node.pid for node in nodes}
        assert await client.call("cancel", "Blocking", "b1") is None
        async with asyncio.timeout(30):
            while True:
                if stopped(database_url):
                    break
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # time for anything that would (wrongly) run next
        [run] = await runs(database_url)
        live = live_jobs(database_url)
        exits = [await worker.quit() for worker in cluster.workers]
    assert run.status.value == "cancelled"
    assert [e.key.split("/")[2] for e in executions(database_url)] == ["blocked"]
    assert live == 0
    assert exits == [0, 0, 0]


def stopped(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT bool_or(stopped) FROM executions").fetchone()
    return bool(row and row[0])


def live_jobs(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM oban_jobs"
            " WHERE state IN ('available', 'scheduled', 'executing', 'retryable')"
        ).fetchone()
    return int(row[0]) if row else -1
