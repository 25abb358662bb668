"""The Oban runner against raw ``oban`` on the same database, measured in one run (issue 12).

Every figure comes from worker node processes (``benchmarks._oban_node``) started fresh for
it, each with a pool of 10 connections; this process only inserts work and watches the
database. Scenarios:

* ``throughput``: raw ``oban`` draining 2,000 no-op jobs inserted beforehand, and raw
  ``oban`` running 200 chains of 10 no-op jobs each enqueuing the next (one job per step, as
  ours), against 200 runs of a 10-step chain and 200 runs of a 20-way fan-out (22 steps each)
  started at once from a client app (the Oban runner in client mode); queue concurrency 10
  and 50, 1 and 2 worker processes. Steps/s divided by the raw jobs/s of the same
  configuration (the target is >= 0.7, since one step is one job).
* ``latency``: one job that enqueues the next, 100 hops, against one run of a 100-step chain;
  mean milliseconds per hop or step. Target: ours <= 1.5x raw.
* ``scaling``: 2 processes / 1 process, ours next to raw ``oban``'s own.
* ``fetches``: ``oban`` producer fetches per job (summed over nodes) at 1, 2 and 4 nodes
  draining 2,000 no-op jobs (raw) and 200 10-step runs (ours): the cost of every insert
  waking every node.

Selected alone with ``--only`` (not run otherwise):

* ``wide``: one run of a 1,000-way fan-out (1,002 steps) against 50 runs of a 20-way fan-out
  (1,100 steps: as many branch steps), queue concurrency 10, 1 then 2 worker nodes; steps/s
  of each and wide / narrow (the branches of a wide fan-out must not serialise on the run's
  row). With each, the nodes' counts of how runs were read and results applied
  (``_oban_node``: read statements and runs read, locked reads, group writes and runs
  written, runs applied alone). ``--profile DIR`` adds one more
  run of each on 1 node under ``py-spy`` (raw stacks in DIR, not part of the figures).
* ``wakeups``: jobs arriving one at a time to idle nodes: 200 no-op jobs inserted one by one
  (each its own transaction, an insert and its ``pg_notify``) 20 ms apart (raw), against
  200 runs of a one-step workflow (one job each) started one by one 20 ms apart from a
  client app (ours); producer fetches per job summed over 1, 2 and 4 idle nodes (those
  made while the nodes started left out).

Run: ``uv run python -m benchmarks.bench_oban [--rounds R] [--quick] [--only wide|wakeups]
[--profile DIR]``. It creates and drops its own database on 127.0.0.1:5432 (``--server``).
Prints one JSON line per measurement and a summary of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks._databases import admin_dsn, create_database, drop_database
from benchmarks._oban_node import (
    COUNTED,
    QUEUE,
    WORKFLOWS,
    Chain1,
    Chain10,
    Chain100,
    Fan20,
    Fan1000,
)
from hephaestus import Hephaestus
from hephaestus.runners.oban import ObanRunner
from hephaestus.storage.postgres import PostgresStorage

ROOT = Path(__file__).resolve().parents[1]
RUNS = 200
RAW_JOBS = 2_000
HOPS = 100
WIDTH = 1_000
NARROW = 20
NARROW_RUNS = WIDTH // NARROW
ARRIVALS = 200
GAP = 0.02


def reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE workflow_instances, oban_jobs, oban_producers, oban_leaders CASCADE")


def scalar(dsn: str, query: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query.encode()).fetchone()
    return int(row[0]) if row else 0


class Nodes:
    """``count`` worker node processes of ``kind`` with queue concurrency ``limit``."""

    def __init__(
        self, kind: str, dsn: str, limit: int, count: int, *, counting: bool = False
    ) -> None:
        self.kind, self.dsn, self.limit, self.count = kind, dsn, limit, count
        self.counting = counting
        self.processes: list[asyncio.subprocess.Process] = []
        self.fetches = 0
        self.counts = dict.fromkeys(COUNTED, 0)

    async def __aenter__(self) -> Nodes:
        code = (
            "import asyncio, sys; from benchmarks._oban_node import main; "
            "asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))"
        )
        for _ in range(self.count):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                code,
                self.kind,
                self.dsn,
                str(self.limit),
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={
                    **os.environ,
                    "PYTHONPATH": str(ROOT),
                    "HX_BENCH_COUNT": "1" if self.counting else "0",
                },
            )
            self.processes.append(process)
        for process in self.processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line.startswith(b"ready"), line
        return self

    async def __aexit__(self, *exc: object) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.close()
        for process in self.processes:
            assert process.stdout is not None
            output = (await asyncio.wait_for(process.stdout.read(), 60)).decode().split()
            if "fetches" in output:
                self.fetches += int(output[output.index("fetches") + 1])
            for name in COUNTED:
                if name in output:
                    self.counts[name] += int(output[output.index(name) + 1])
            await process.wait()

    async def mark(self) -> int:
        """The producer fetches the nodes made so far (summed)."""
        total = 0
        for process in self.processes:
            assert process.stdin is not None
            assert process.stdout is not None
            process.stdin.write(b"mark\n")
            await process.stdin.drain()
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line.startswith(b"mark "), line
            total += int(line.split()[1])
        return total


async def until(dsn: str, query: str, target: int, bound: float = 300.0) -> float:
    """Poll ``query`` (a count) every 10 ms on one connection until it reaches ``target``;
    the monotonic time it did."""
    deadline = time.monotonic() + bound
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            cursor = await conn.execute(query.encode())
            row = await cursor.fetchone()
            if row is not None and int(row[0]) >= target:
                return time.monotonic()
            await asyncio.sleep(0.01)
    raise TimeoutError(f"{query!r} did not reach {target} in {bound}s")


COMPLETED_JOBS = "SELECT count(*) FROM oban_jobs WHERE state = 'completed'"
COMPLETED_RUNS = "SELECT count(*) FROM workflow_instances WHERE status = 'completed'"


async def raw_drain(dsn: str, limit: int, count: int, jobs: int = RAW_JOBS) -> dict[str, float]:
    reset(dsn)
    async with Nodes("raw", dsn, limit, count) as nodes:
        began = time.monotonic()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO oban_jobs (worker, queue, args) SELECT %s, %s, '{}'::jsonb"
                " FROM generate_series(1, %s)",
                ("benchmarks._oban_node.Noop", QUEUE, jobs),
            )
            conn.execute(
                "SELECT pg_notify('public.oban_insert', %s)", (json.dumps({"queue": QUEUE}),)
            )
        ended = await until(dsn, COMPLETED_JOBS, jobs)
    return {"per_s": jobs / (ended - began), "fetches_per_job": nodes.fetches / jobs}


async def raw_chains(dsn: str, limit: int, count: int) -> dict[str, float]:
    """200 chains of 10 hops: each job enqueues the next (its own insert, as a step's)."""
    reset(dsn)
    jobs = RUNS * 10
    async with Nodes("raw", dsn, limit, count) as nodes:
        began = time.monotonic()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO oban_jobs (worker, queue, args) SELECT %s, %s, %s::jsonb"
                " FROM generate_series(1, %s)",
                ("benchmarks._oban_node.Hop", QUEUE, json.dumps({"n": 9}), RUNS),
            )
            conn.execute(
                "SELECT pg_notify('public.oban_insert', %s)", (json.dumps({"queue": QUEUE}),)
            )
        ended = await until(dsn, COMPLETED_JOBS, jobs)
    return {"per_s": jobs / (ended - began), "fetches_per_job": nodes.fetches / jobs}


async def client_app(dsn: str) -> Hephaestus:
    app = Hephaestus(
        storage=PostgresStorage(dsn, max_size=10),
        runner=ObanRunner(mode="client"),
        workflows=WORKFLOWS,
    )
    await app.open()
    return app


async def ours_drain(dsn: str, limit: int, count: int, flow: Any, steps: int) -> dict[str, float]:
    reset(dsn)
    async with Nodes("hephaestus", dsn, limit, count) as nodes:
        app = await client_app(dsn)
        try:
            began = time.monotonic()
            await asyncio.gather(*(flow.start(f"r{n}", app=app) for n in range(RUNS)))
            ended = await until(dsn, COMPLETED_RUNS, RUNS)
        finally:
            await app.close()
    jobs = scalar(dsn, COMPLETED_JOBS)
    return {
        "per_s": RUNS * steps / (ended - began),
        "fetches_per_job": nodes.fetches / max(jobs, 1),
    }


async def raw_hops(dsn: str) -> float:
    reset(dsn)
    async with Nodes("raw", dsn, 10, 1):
        began = time.monotonic()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO oban_jobs (worker, queue, args) VALUES (%s, %s, %s::jsonb)",
                ("benchmarks._oban_node.Hop", QUEUE, json.dumps({"n": HOPS - 1})),
            )
            conn.execute(
                "SELECT pg_notify('public.oban_insert', %s)", (json.dumps({"queue": QUEUE}),)
            )
        ended = await until(dsn, COMPLETED_JOBS, HOPS)
    return (ended - began) / HOPS * 1000


async def ours_hops(dsn: str) -> float:
    reset(dsn)
    async with Nodes("hephaestus", dsn, 10, 1):
        app = await client_app(dsn)
        try:
            began = time.monotonic()
            await Chain100.start("long", app=app)
            ended = await until(dsn, COMPLETED_RUNS, 1)
        finally:
            await app.close()
    return (ended - began) / HOPS * 1000


async def spy(pid: int, out: Path) -> asyncio.subprocess.Process:
    """``py-spy`` sampling process ``pid`` at 250 Hz into ``out`` (raw stacks) until SIGINT."""
    program = shutil.which("py-spy") or "py-spy"
    process = await asyncio.create_subprocess_exec(
        program,
        "record",
        "-p",
        str(pid),
        "-o",
        str(out),
        "-f",
        "raw",
        "-r",
        "250",
        "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(1.0)  # attached
    return process


async def unspy(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGINT)
    await asyncio.wait_for(process.wait(), 60)


async def ours_runs(
    dsn: str,
    limit: int,
    count: int,
    flow: Any,
    *,
    runs: int,
    steps: int,
    profile: Path | None = None,
) -> dict[str, Any]:
    """``runs`` runs of ``flow`` (``steps`` steps each) started at once, drained by ``count``
    counting nodes; ``profile``: the first node under ``py-spy``, its stacks written there."""
    reset(dsn)
    async with Nodes("hephaestus", dsn, limit, count, counting=True) as nodes:
        spying = None if profile is None else await spy(nodes.processes[0].pid, profile)
        app = await client_app(dsn)
        try:
            began = time.monotonic()
            await asyncio.gather(*(flow.start(f"r{n}", app=app) for n in range(runs)))
            ended = await until(dsn, COMPLETED_RUNS, runs, bound=900.0)
        finally:
            await app.close()
            if spying is not None:
                await unspy(spying)
    jobs = scalar(dsn, COMPLETED_JOBS)
    return {
        "per_s": runs * steps / (ended - began),
        "seconds": ended - began,
        "jobs": jobs,
        "fetches_per_job": nodes.fetches / max(jobs, 1),
        "counts": nodes.counts,
    }


async def wide_round(dsn: str, profile: Path | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for count in (1, 2):
        wide = await ours_runs(dsn, 10, count, Fan1000, runs=1, steps=WIDTH + 2)
        narrow = await ours_runs(dsn, 10, count, Fan20, runs=NARROW_RUNS, steps=NARROW + 2)
        row = {
            "scenario": "wide",
            "limit": 10,
            "processes": count,
            "wide_steps_per_s": round(wide["per_s"]),
            "narrow_steps_per_s": round(narrow["per_s"]),
            "ratio": round(wide["per_s"] / narrow["per_s"], 3),
            "wide_seconds": round(wide["seconds"], 2),
            "narrow_seconds": round(narrow["seconds"], 2),
            "wide_fetches_per_job": round(wide["fetches_per_job"], 2),
            "narrow_fetches_per_job": round(narrow["fetches_per_job"], 2),
            "wide_counts": wide["counts"],
            "narrow_counts": narrow["counts"],
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    if profile is not None:
        await asyncio.to_thread(profile.mkdir, parents=True, exist_ok=True)
        for name, flow, runs, steps in (
            (f"wide-{WIDTH}", Fan1000, 1, WIDTH + 2),
            (f"narrow-{NARROW}x{NARROW_RUNS}", Fan20, NARROW_RUNS, NARROW + 2),
        ):
            out = profile / f"oban-{name}.txt"
            profiled = await ours_runs(dsn, 10, 1, flow, runs=runs, steps=steps, profile=out)
            row = {
                "scenario": "wide_profiled",
                "shape": name,
                "processes": 1,
                "steps_per_s": round(profiled["per_s"]),
                "seconds": round(profiled["seconds"], 2),
                "counts": profiled["counts"],
                "stacks": str(out),
            }
            print(json.dumps(row), flush=True)
    return rows


async def raw_arrivals(dsn: str, count: int) -> dict[str, float]:
    """``ARRIVALS`` no-op jobs inserted one by one, ``GAP`` apart, to ``count`` idle nodes."""
    reset(dsn)
    async with Nodes("raw", dsn, 10, count) as nodes:
        await asyncio.sleep(1.0)  # idle
        before = await nodes.mark()
        began = time.monotonic()
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            for _ in range(ARRIVALS):
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO oban_jobs (worker, queue, args) VALUES (%s, %s, '{}'::jsonb)",
                        ("benchmarks._oban_node.Noop", QUEUE),
                    )
                    await conn.execute(
                        "SELECT pg_notify('public.oban_insert', %s)",
                        (json.dumps({"queue": QUEUE}),),
                    )
                await asyncio.sleep(GAP)
        ended = await until(dsn, COMPLETED_JOBS, ARRIVALS)
        after = await nodes.mark()
    return {"fetches_per_job": (after - before) / ARRIVALS, "seconds": ended - began}


async def ours_arrivals(dsn: str, count: int) -> dict[str, float]:
    """``ARRIVALS`` runs of a one-step workflow started one by one, ``GAP`` apart."""
    reset(dsn)
    async with Nodes("hephaestus", dsn, 10, count) as nodes:
        app = await client_app(dsn)
        try:
            await asyncio.sleep(1.0)  # idle
            before = await nodes.mark()
            began = time.monotonic()
            for n in range(ARRIVALS):
                await Chain1.start(f"a{n}", app=app)
                await asyncio.sleep(GAP)
            ended = await until(dsn, COMPLETED_RUNS, ARRIVALS)
            after = await nodes.mark()
        finally:
            await app.close()
    jobs = scalar(dsn, COMPLETED_JOBS)
    return {
        "fetches_per_job": (after - before) / max(jobs, 1),
        "seconds": ended - began,
        "jobs": jobs,
    }


async def wakeups_round(dsn: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for count in (1, 2, 4):
        raw = await raw_arrivals(dsn, count)
        ours = await ours_arrivals(dsn, count)
        row = {
            "scenario": "wakeups",
            "processes": count,
            "arrivals": ARRIVALS,
            "gap_ms": round(GAP * 1000),
            "raw_fetches_per_job": round(raw["fetches_per_job"], 2),
            "ours_fetches_per_job": round(ours["fetches_per_job"], 2),
            "ours_jobs": ours["jobs"],
            "raw_seconds": round(raw["seconds"], 2),
            "ours_seconds": round(ours["seconds"], 2),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


async def one_round(dsn: str, quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    limits = (10,) if quick else (10, 50)
    for limit in limits:
        for count in (1, 2):
            raw = await raw_drain(dsn, limit, count)
            hops = await raw_chains(dsn, limit, count)
            chain = await ours_drain(dsn, limit, count, Chain10, 10)
            fan = await ours_drain(dsn, limit, count, Fan20, 22)
            row = {
                "scenario": "throughput",
                "limit": limit,
                "processes": count,
                "raw_jobs_per_s": round(raw["per_s"]),
                "raw_chain_jobs_per_s": round(hops["per_s"]),
                "chain_steps_per_s": round(chain["per_s"]),
                "fan_steps_per_s": round(fan["per_s"]),
                "chain_ratio": round(chain["per_s"] / raw["per_s"], 3),
                "fan_ratio": round(fan["per_s"] / raw["per_s"], 3),
                "chain_ratio_to_raw_chains": round(chain["per_s"] / hops["per_s"], 3),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    raw_ms, ours_ms = await raw_hops(dsn), await ours_hops(dsn)
    row = {
        "scenario": "latency",
        "raw_ms_per_hop": round(raw_ms, 2),
        "ours_ms_per_step": round(ours_ms, 2),
        "ratio": round(ours_ms / raw_ms, 3),
    }
    print(json.dumps(row), flush=True)
    rows.append(row)
    for count in (1, 2, 4):
        raw = await raw_drain(dsn, 10, count)
        ours = await ours_drain(dsn, 10, count, Chain10, 10)
        row = {
            "scenario": "fetches",
            "nodes": count,
            "raw_fetches_per_job": round(raw["fetches_per_job"], 2),
            "ours_fetches_per_job": round(ours["fetches_per_job"], 2),
            "raw_jobs_per_s": round(raw["per_s"]),
            "ours_steps_per_s": round(ours["per_s"]),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def summary(rounds: list[list[dict[str, Any]]]) -> dict[str, Any]:
    def med(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    out: dict[str, Any] = {}
    flat = [row for rows in rounds for row in rows]
    for row in flat:
        if row["scenario"] == "throughput":
            key = f"limit{row['limit']}_p{row['processes']}"
            for field in (
                "raw_jobs_per_s",
                "raw_chain_jobs_per_s",
                "chain_steps_per_s",
                "fan_steps_per_s",
                "chain_ratio",
                "fan_ratio",
                "chain_ratio_to_raw_chains",
            ):
                out.setdefault(key, {}).setdefault(field, []).append(row[field])
        elif row["scenario"] == "latency":
            for field in ("raw_ms_per_hop", "ours_ms_per_step", "ratio"):
                out.setdefault("latency", {}).setdefault(field, []).append(row[field])
        elif row["scenario"] == "fetches":
            key = f"fetches_n{row['nodes']}"
            for field in ("raw_fetches_per_job", "ours_fetches_per_job"):
                out.setdefault(key, {}).setdefault(field, []).append(row[field])
        else:  # wide, wakeups
            key = f"{row['scenario']}_p{row['processes']}"
            for field, value in row.items():
                if field.endswith(("per_s", "ratio", "per_job")):
                    out.setdefault(key, {}).setdefault(field, []).append(value)
    result = {key: {f: med(v) for f, v in fields.items()} for key, fields in out.items()}
    for limit in (10, 50):
        one, two = result.get(f"limit{limit}_p1"), result.get(f"limit{limit}_p2")
        if one and two:
            result[f"scaling_limit{limit}"] = {
                "raw": round(two["raw_jobs_per_s"] / one["raw_jobs_per_s"], 3),
                "raw_chains": round(two["raw_chain_jobs_per_s"] / one["raw_chain_jobs_per_s"], 3),
                "chain": round(two["chain_steps_per_s"] / one["chain_steps_per_s"], 3),
                "fan": round(two["fan_steps_per_s"] / one["fan_steps_per_s"], 3),
            }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="queue concurrency 10 only")
    parser.add_argument("--server", default="host=127.0.0.1 port=5432 user=postgres")
    parser.add_argument(
        "--only", choices=("wide", "wakeups"), help="run this scenario alone (not run otherwise)"
    )
    parser.add_argument(
        "--profile", type=Path, help="--only wide: also profile 1 node under py-spy, stacks here"
    )
    options = parser.parse_args()
    name = create_database(options.server, "hx_bench_oban")
    try:
        dsn = admin_dsn(options.server, name)
        rounds: list[list[dict[str, Any]]] = []
        for _ in range(options.rounds):
            if options.only == "wide":
                rounds.append(asyncio.run(wide_round(dsn, options.profile)))
            elif options.only == "wakeups":
                rounds.append(asyncio.run(wakeups_round(dsn)))
            else:
                rounds.append(asyncio.run(one_round(dsn, options.quick)))
    finally:
        drop_database(options.server, name)
    print(json.dumps({"summary": summary(rounds)}, indent=1))


if __name__ == "__main__":
    main()
