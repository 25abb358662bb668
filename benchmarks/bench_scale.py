"""Many waiting runs, in memory with the local runner: cost per resume and memory per run.

Scenarios (issue 9, items 10 and 11), each measured in a fresh process:

* ``resume``: start N runs of a ``WaitForEvent`` workflow (in batches of 1,000), then resume
  every one by business key (``Flow.resume(value, "received")``, one after another) and, in a
  second app, by run id (``app.runner.resume``). Reports the wall and CPU time per resume; run
  with N = 1,000 and N = 100,000, the cost per resume should stay flat (<= 1.5x).
* ``memory``: RSS growth over N runs each left waiting on its event, divided by N, with the
  runs started in batches of 1,000 (``gather`` per batch, then ``run_until_idle``) or all at
  once (one ``asyncio.gather`` of N starts).

How memory is measured: RSS from ``/proc/self/statm`` before the runs are started (after the
app is open and one run has warmed every code path up) and after they all wait, each time
after ``gc.collect()`` and glibc's ``malloc_trim(0)`` (so memory that malloc has freed but not
yet returned to the kernel does not count; Python's own arenas are returned only when empty,
which is what the figure then shows). The runs' stored state stays referenced until the second
reading.

Run: ``uv run python -m benchmarks.bench_scale [--runs 1000 100000] [--sample K]``. Prints
one JSON line per measurement and a summary. ``--sample K`` resumes only K runs of the N (for
code where resuming all N would take too long).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

from hephaestus import Done, Hephaestus, Status, Unique, WaitForEvent, Workflow
from hephaestus.runners import Resume
from hephaestus.testing import run_until_idle

BATCH = 1_000


class WaitBench(Workflow):
    unique = Unique(key="wait")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}  # noqa: RUF012 - class-level definition


def _trim() -> None:
    gc.collect()
    name = ctypes.util.find_library("c")
    if name is not None:
        libc = ctypes.CDLL(name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _start_batched(app: Hephaestus, first: int, count: int) -> None:
    for begin in range(first, first + count, BATCH):
        end = min(begin + BATCH, first + count)
        await asyncio.gather(*(WaitBench.start(str(i), app=app) for i in range(begin, end)))
        await run_until_idle(app)


async def _start_at_once(app: Hephaestus, first: int, count: int) -> None:
    await asyncio.gather(*(WaitBench.start(str(i), app=app) for i in range(first, first + count)))
    await run_until_idle(app)


async def _check_waiting(app: Hephaestus, expected: int) -> None:
    waiting = await app.list(WaitBench, status=Status.WAITING)
    if len(waiting) != expected:
        raise RuntimeError(f"expected {expected} waiting runs, found {len(waiting)}")


async def bench_resume(runs: int, sample: int | None) -> dict[str, Any]:
    resumed = runs if sample is None else min(sample, runs)
    step = max(1, runs // resumed)
    values = [str(i) for i in range(0, runs, step)][:resumed]
    result: dict[str, Any] = {"scenario": "resume", "runs": runs, "resumed": len(values)}
    async with Hephaestus() as app:
        await _start_batched(app, 0, runs)
        await _check_waiting(app, runs)
        gc.collect()
        began, cpu = time.perf_counter(), time.process_time()
        for value in values:
            await WaitBench.resume(value, "received", app=app)
        await run_until_idle(app)
        elapsed, cpu_used = time.perf_counter() - began, time.process_time() - cpu
        done = await app.list(WaitBench, status=Status.COMPLETED)
        if len(done) != len(values):
            raise RuntimeError(f"expected {len(values)} completed runs, found {len(done)}")
    result["by_key_us"] = elapsed / len(values) * 1e6
    result["by_key_cpu_us"] = cpu_used / len(values) * 1e6
    async with Hephaestus() as app:
        await _start_batched(app, 0, runs)
        wanted = set(values)
        run_ids = [run.run_id for run in await app.list(WaitBench) if run.id[6:] in wanted]
        gc.collect()
        began, cpu = time.perf_counter(), time.process_time()
        for run_id in run_ids:
            await app.runner.apply(run_id, Resume("received"))
        await run_until_idle(app)
        elapsed, cpu_used = time.perf_counter() - began, time.process_time() - cpu
    result["by_run_id_us"] = elapsed / len(run_ids) * 1e6
    result["by_run_id_cpu_us"] = cpu_used / len(run_ids) * 1e6
    return result


async def bench_memory(runs: int, how: str) -> dict[str, Any]:
    async with Hephaestus() as app:
        await _start_batched(app, runs, 1)  # warm every code path up with a run of its own
        await WaitBench.resume(str(runs), "received", app=app)
        await run_until_idle(app)
        _trim()
        before = _rss()
        began = time.perf_counter()
        if how == "batches":
            await _start_batched(app, 0, runs)
        else:
            await _start_at_once(app, 0, runs)
        elapsed = time.perf_counter() - began
        # Let the loop drop the handle that woke this task: it holds the finished gather (the
        # caller's N tasks and results) until the next callback runs.
        await asyncio.sleep(0)
        _trim()
        after = _rss()
        await _check_waiting(app, runs)
    return {
        "scenario": f"memory-{how}",
        "runs": runs,
        "bytes_per_run": (after - before) / runs,
        "rss_before_mb": before / 2**20,
        "rss_after_mb": after / 2**20,
        "start_us_per_run": elapsed / runs * 1e6,
    }


def _child(argv: list[str]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter (so memory figures do not mix)."""
    output = subprocess.run(  # noqa: S603 - this interpreter, this module, our own arguments
        [sys.executable, "-m", "benchmarks.bench_scale", "--one", *argv],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--memory-runs", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=None)
    parser.add_argument("--skip-resume", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        scenario, runs, extra = args.one[0], int(args.one[1]), args.one[2]
        if scenario == "resume":
            sample = None if extra == "all" else int(extra)
            print(json.dumps(asyncio.run(bench_resume(runs, sample))))
        else:
            print(json.dumps(asyncio.run(bench_memory(runs, extra))))
        return
    resume: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    if not args.skip_resume:
        how_many = "all" if args.sample is None else str(args.sample)
        resume = [_child(["resume", str(n), how_many]) for n in args.runs]
    if not args.skip_memory:
        memory = [_child(["memory", str(args.memory_runs), how]) for how in ("batches", "gather")]
    print("\nsummary:")
    for row in resume:
        print(
            f"  resume {row['resumed']:,} of {row['runs']:,} waiting runs: "
            f"by key {row['by_key_us']:.1f} us (cpu {row['by_key_cpu_us']:.1f}), "
            f"by run id {row['by_run_id_us']:.1f} us (cpu {row['by_run_id_cpu_us']:.1f})"
        )
    if len(resume) >= 2:
        first, last = resume[0], resume[-1]
        print(
            f"  ratio {last['runs']:,} / {first['runs']:,} runs: "
            f"by key {last['by_key_us'] / first['by_key_us']:.2f}x "
            f"(cpu {last['by_key_cpu_us'] / first['by_key_cpu_us']:.2f}x), "
            f"by run id {last['by_run_id_us'] / first['by_run_id_us']:.2f}x"
        )
    for row in memory:
        print(
            f"  {row['scenario']}: {row['bytes_per_run']:,.0f} bytes per waiting run "
            f"({row['runs']:,} runs, RSS {row['rss_before_mb']:.0f} -> "
            f"{row['rss_after_mb']:.0f} MB)"
        )


if __name__ == "__main__":
    main()
