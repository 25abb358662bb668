"""Local runner + in-memory storage throughput, against a bare-asyncio baseline in the same run.

Scenarios (issue: core engine, "Performance"):

* ``linear``: 1,000 instances of a 10-step linear workflow started at once; steps/s.
* ``baseline``: the same shape in bare asyncio: 1,000 coroutines, each awaiting 10
  ``create_task`` of a trivial coroutine one after another; tasks/s.
* ``fanout``: one 20-way fan-out/fan-in workflow run alone; wall time per run (p50, min).
* ``scaling``: the cost per step of one run alone: a 10-step chain, a 1,000-step chain and a
  1,000-branch fan-out (+ join). Flat means the 1,000-step figures stay within 1.5x of the
  10-step one (issue 9, item 4: checking and copying values must not grow with the run).

Run: ``uv run python -m benchmarks.bench_local [--instances N] [--rounds R]``. Prints one JSON
line per round and a summary with medians and the ratio computed inside each round.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import statistics
import time
from typing import Any

from benchmarks._shapes import chain, fan_out
from hephaestus import (
    Config,
    Done,
    Hephaestus,
    Ok,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    Workflow,
)
from hephaestus.testing import run_until_idle


def _make_step(index: int) -> type[Step]:
    async def execute(self: Step, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("next")

    return type(f"Step{index}", (Step,), {"events": ("next",), "execute": execute})


LINEAR_STEPS = [_make_step(i) for i in range(10)]
FAN_BRANCHES = [_make_step(100 + i) for i in range(20)]


class FanStart(Step):
    events = ("go",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("go")


class FanJoin(Step):
    events = ("joined",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("joined")


class LinearBench(Workflow):
    unique = Unique(key="lin", scope="none")
    start_step = LINEAR_STEPS[0]
    transitions = {  # noqa: RUF012 - class-level definition, read once
        **{(a, "next"): b for a, b in itertools.pairwise(LINEAR_STEPS)},
        (LINEAR_STEPS[-1], "next"): Done,
    }


class FanBench(Workflow):
    unique = Unique(key="fan", scope="none")
    start_step = FanStart
    transitions = {  # noqa: RUF012 - class-level definition, read once
        (FanStart, "go"): list(FAN_BRANCHES),
        **{(branch, "next"): FanJoin for branch in FAN_BRANCHES},
        (FanJoin, "joined"): Done,
    }


async def _wait_all_done(app: Hephaestus, expected: int) -> None:
    await run_until_idle(app)
    done = await app.list(status=Status.COMPLETED)
    if len(done) != expected:
        raise RuntimeError(f"expected {expected} completed runs, found {len(done)}")


async def bench_linear(instances: int) -> dict[str, float]:
    async with Hephaestus() as app:
        gc.collect()
        began = time.perf_counter()
        cpu = time.process_time()
        for i in range(instances):
            await LinearBench.start(f"{i}", {"n": i}, app=app)
        await _wait_all_done(app, instances)
        elapsed = time.perf_counter() - began
        cpu_used = time.process_time() - cpu
    steps = instances * len(LINEAR_STEPS)
    return {
        "steps_per_s": steps / elapsed,
        "us_per_step": elapsed / steps * 1e6,
        "cpu_us_per_step": cpu_used / steps * 1e6,
        "elapsed_s": elapsed,
    }


async def _trivial() -> None:
    return None


async def _bare_chain(length: int) -> None:
    for _ in range(length):
        await asyncio.create_task(_trivial())


async def bench_baseline(instances: int) -> dict[str, float]:
    gc.collect()
    began = time.perf_counter()
    await asyncio.gather(*(_bare_chain(len(LINEAR_STEPS)) for _ in range(instances)))
    elapsed = time.perf_counter() - began
    tasks = instances * len(LINEAR_STEPS)
    return {"tasks_per_s": tasks / elapsed, "us_per_task": elapsed / tasks * 1e6}


async def bench_fanout(runs: int) -> dict[str, float]:
    samples: list[float] = []
    async with Hephaestus() as app:
        for i in range(runs):
            began = time.perf_counter()
            await FanBench.start(f"{i}", app=app)
            await run_until_idle(app)
            samples.append(time.perf_counter() - began)
        completed = await app.list(FanBench, status=Status.COMPLETED)
        if len(completed) != runs:
            raise RuntimeError(f"fan-out: {len(completed)} of {runs} runs completed")
    return {
        "p50_ms": statistics.median(samples) * 1e3,
        "min_ms": min(samples) * 1e3,
        "max_ms": max(samples) * 1e3,
    }


Chain10 = chain("LocalTen", 10)
Chain1000 = chain("LocalThousand", 1_000)
Fan1000 = fan_out("LocalFan", 1_000)


async def run_alone(flow: type[Workflow], steps: int, runs: int) -> float:
    """Median microseconds per step of ``runs`` runs of ``flow``, each run alone."""
    samples: list[float] = []
    async with Hephaestus() as app:
        for i in range(runs):
            gc.collect()
            began = time.perf_counter()
            await flow.start(f"{i}", app=app)
            await run_until_idle(app)
            samples.append((time.perf_counter() - began) / steps * 1e6)
        completed = await app.list(flow, status=Status.COMPLETED)
        if len(completed) != runs:
            raise RuntimeError(f"{flow.__name__}: {len(completed)} of {runs} runs completed")
    return statistics.median(samples)


async def bench_scaling() -> dict[str, float]:
    ten = await run_alone(Chain10, 10 + 1, 200)
    thousand = await run_alone(Chain1000, 1_000 + 1, 3)
    fan = await run_alone(Fan1000, 1_000 + 3, 3)
    return {
        "chain_10_us_per_step": ten,
        "chain_1000_us_per_step": thousand,
        "fanout_1000_us_per_step": fan,
        "chain_vs_10": thousand / ten,
        "fanout_vs_10": fan / ten,
    }


async def one_round(instances: int, fan_runs: int) -> dict[str, Any]:
    baseline = await bench_baseline(instances)
    linear = await bench_linear(instances)
    fanout = await bench_fanout(fan_runs)
    scaling = await bench_scaling()
    return {
        "linear": linear,
        "baseline": baseline,
        "fanout_20": fanout,
        "scaling": scaling,
        "ratio_linear_to_baseline": linear["steps_per_s"] / baseline["tasks_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fan-runs", type=int, default=50)
    args = parser.parse_args()
    rounds = []
    for _ in range(args.rounds):
        result = asyncio.run(one_round(args.instances, args.fan_runs))
        rounds.append(result)
        print(json.dumps(result))

    def med(path: tuple[str, ...]) -> float:
        values = []
        for r in rounds:
            value: Any = r
            for key in path:
                value = value[key]
            values.append(float(value))
        return statistics.median(values)

    print(
        "\nsummary (median of {n} rounds):\n"
        "  linear 10-step x {i}: {sps:,.0f} steps/s ({us:.1f} us/step, cpu {cpu:.1f} us/step)\n"
        "  bare asyncio baseline: {bps:,.0f} tasks/s ({bus:.1f} us/task)\n"
        "  ratio (ours / baseline, per round): {ratio:.3f}\n"
        "  fan-out 20 + join, run alone: p50 {p50:.2f} ms (min {fmin:.2f} ms)\n"
        "  per step, one run alone: 10-step chain {c10:.1f} us, 1,000-step chain {c1k:.1f} us "
        "({cr:.2f}x), 1,000-branch fan-out {f1k:.1f} us ({fr:.2f}x)".format(
            n=len(rounds),
            i=args.instances,
            sps=med(("linear", "steps_per_s")),
            us=med(("linear", "us_per_step")),
            cpu=med(("linear", "cpu_us_per_step")),
            bps=med(("baseline", "tasks_per_s")),
            bus=med(("baseline", "us_per_task")),
            ratio=med(("ratio_linear_to_baseline",)),
            p50=med(("fanout_20", "p50_ms")),
            fmin=med(("fanout_20", "min_ms")),
            c10=med(("scaling", "chain_10_us_per_step")),
            c1k=med(("scaling", "chain_1000_us_per_step")),
            cr=med(("scaling", "chain_vs_10")),
            f1k=med(("scaling", "fanout_1000_us_per_step")),
            fr=med(("scaling", "fanout_vs_10")),
        )
    )


if __name__ == "__main__":
    main()
