"""A FastAPI app under ``uvicorn --workers 2`` on one database (issue 11)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sys
from collections import Counter

import httpx
import pytest

from tests.multiprocess._cluster import (
    ROOT,
    concurrent_doubles,
    describe,
    executions,
    history_repeats,
    report,
    runs,
    unexplained_repeats,
    wait_completed,
)

RUNS = 200
BOUND = 30.0
"""Seconds the runs get to complete after the last request (they need about one)."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.timeout(180)
async def test_uvicorn_workers_execute_each_step_once_and_accept_every_resume(
    database_url: str,
) -> None:
    """Starts and resumes spread over two uvicorn workers (a new connection per request):
    every request succeeds, every run completes, no step runs twice or in both at once."""
    port = _free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "tests.multiprocess._asgi:app",
        "--workers",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HX_MP_DSN": database_url},
    )
    rng = random.Random(11)
    failures: list[str] = []
    served: dict[str, list[int]] = {"start": [], "resume": []}
    limits = httpx.Limits(max_keepalive_connections=0)  # each request on a new connection
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30
        ) as client:
            await _until_both_workers_answer(client)
            gate = asyncio.Semaphore(16)

            async def post(verb: str, value: str) -> bool:
                async with gate:
                    response = await client.post(f"/{verb}/{value}")
                if not response.is_success:
                    failures.append(f"{verb} {value}: {response.status_code} {response.text}")
                    return False
                served[verb].append(response.json()["pid"])
                return True

            async def run(index: int) -> None:
                if await post("start", f"u{index}"):
                    await asyncio.sleep(rng.uniform(0.0, 0.4))  # often while a step runs
                    await post("resume", f"u{index}")

            await asyncio.gather(*(run(index) for index in range(RUNS)))
        ids = [f"approval::u{index}" for index in range(RUNS)]
        not_completed, waited = await wait_completed(database_url, ids, BOUND)
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(server.wait(), 20)
        except TimeoutError:
            server.kill()
            await server.wait()

    found = executions(database_url)
    problems = {
        "runs not completed": not_completed,
        "failed requests": failures,
        "concurrent double executions": describe(concurrent_doubles(found)),
        "steps executed more than once": unexplained_repeats(found),
        "transitions recorded twice": history_repeats(await runs(database_url)),
    }
    numbers = {
        "executions": len(found),
        "executed_twice": len(found) - len({execution.key for execution in found}),
        "starts_per_pid": dict(Counter(served["start"])),
        "resumes_per_pid": dict(Counter(served["resume"])),
        "seconds_waited": round(waited, 1),
    }
    assert len(set(served["start"]) | set(served["resume"])) == 2, (
        f"one worker served all: {numbers}"
    )
    broken = sorted(name for name, found in problems.items() if found)
    assert not broken, report("uvicorn --workers 2", problems, numbers)


async def _until_both_workers_answer(client: httpx.AsyncClient) -> None:
    """Wait until both workers have started (each answers with its pid)."""
    seen: set[int] = set()
    async with asyncio.timeout(30):
        while len(seen) < 2:
            try:
                seen.add((await client.get("/pid")).json()["pid"])
            except httpx.TransportError:
                await asyncio.sleep(0.1)
