"""Four app processes on one database, one of them SIGKILLed mid-run (issue 11)."""

from __future__ import annotations

import asyncio
import random
import signal

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

RUNS = 200
FLOWS = ("Chain", "FanOut", "Timed", "Approval")
VICTIM = 1
BOUND = 60.0
"""Seconds the runs get to complete after the kill (they need about one when all goes well)."""


@pytest.mark.timeout(180)
async def test_four_processes_complete_every_run_once_when_one_is_killed(
    database_url: str,
) -> None:
    """200 runs over four processes, one SIGKILLed with steps in flight: every run completes,
    no step attempt runs in two processes at once, only the dead process's unrecorded
    attempts run again, each transition is recorded once, and no start or resume fails."""
    rng = random.Random(11)
    async with Cluster(database_url) as cluster:
        workers = await cluster.spawn(4)
        victim = workers[VICTIM]
        resumers = [worker for worker in workers if worker is not victim]

        started = [asyncio.Event() for _ in range(RUNS)]

        def starter(index: int) -> Worker:
            return workers[index // len(FLOWS) % len(workers)]  # each starts every flow

        async def run(index: int) -> None:
            flow = FLOWS[index % len(FLOWS)]
            try:
                failed = await starter(index).call("start", flow, f"r{index}")
            finally:
                started[index].set()
            if flow == "Approval" and failed is None:  # from another process, often mid-step
                others = [worker for worker in resumers if worker is not starter(index)]
                await asyncio.sleep(rng.uniform(0.0, 0.4))
                await others[index % len(others)].call("resume", flow, f"r{index}", "received")

        tasks = [asyncio.create_task(run(index)) for index in range(RUNS)]
        for index in range(RUNS):  # the victim has started all of its runs
            if starter(index) is victim:
                await started[index].wait()
        await until_in_flight(database_url, victim)
        victim.signal(signal.SIGKILL)
        killed_at = database_now(database_url)
        await victim.exited(10)
        await asyncio.gather(*tasks)
        unfinished_at_kill = [
            execution
            for execution in executions(database_url)
            if execution.pid == victim.pid and execution.ended is None
        ]
        ids = [f"{FLOWS[index % len(FLOWS)].lower()}::r{index}" for index in range(RUNS)]
        not_completed, waited = await wait_completed(database_url, ids, BOUND)
        exits = [await worker.quit() for worker in workers if worker is not victim]

    found = executions(database_url)
    stored = await runs(database_url)
    doubles = concurrent_doubles(found, ended_by={victim.pid: killed_at})
    problems = {
        "runs not completed": not_completed,
        "failed starts and resumes": cluster.errors,
        "concurrent double executions": describe(doubles),
        "re-executions not explained by the kill": unexplained_repeats(found, [victim.pid]),
        "transitions recorded twice": history_repeats(stored),
        "workers that did not exit cleanly": [f"exit code {code}" for code in exits if code != 0],
    }
    numbers = {
        "executions": len(found),
        "executed_twice": len(found) - len({execution.key for execution in found}),
        "in_flight_at_kill": len(unfinished_at_kill),
        "seconds_waited": round(waited, 1),
    }
    assert unfinished_at_kill, "the victim was killed with no step in flight"
    broken = sorted(name for name, found in problems.items() if found)
    assert not broken, report("four processes, one killed", problems, numbers)
