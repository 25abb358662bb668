"""Workflow shapes shared by the benchmarks: long chains and wide fan-outs of no-op steps."""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from hephaestus.storage import Storage


def make_step(name: str) -> type[Step]:
    """A step class named ``name`` that completes at once with ``next`` and a small result."""

    async def execute(self: Step, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("next", {"n": 1})

    return type(name, (Step,), {"events": ("next",), "execute": execute})


def chain(prefix: str, length: int) -> type[Workflow]:
    """A linear workflow of ``length`` steps, then ``Done``."""
    steps = [make_step(f"{prefix}Step{i}") for i in range(length)]
    transitions: dict[Any, Any] = {
        **{(a, "next"): b for a, b in itertools.pairwise(steps)},
        (steps[-1], "next"): Done,
    }
    namespace = {
        "unique": Unique(key=prefix.lower(), scope="none"),
        "start_step": steps[0],
        "transitions": transitions,
    }
    return type(f"{prefix}Chain", (Workflow,), namespace)


def fan_out(prefix: str, width: int) -> type[Workflow]:
    """A start step fanning out to ``width`` branches that join in one step, then ``Done``."""
    start = make_step(f"{prefix}Start")
    join = make_step(f"{prefix}Join")
    branches = [make_step(f"{prefix}Branch{i}") for i in range(width)]
    transitions: dict[Any, Any] = {
        (start, "next"): branches,
        **{(branch, "next"): join for branch in branches},
        (join, "next"): Done,
    }
    namespace = {
        "unique": Unique(key=prefix.lower(), scope="none"),
        "start_step": start,
        "transitions": transitions,
    }
    return type(f"{prefix}Flow", (Workflow,), namespace)


async def ms_per_step_alone(
    app: Hephaestus, flow: type[Workflow], steps: int, runs: int
) -> list[float]:
    """Wall milliseconds per step of ``runs`` runs of ``flow`` (``steps`` steps each, the
    built-in ones counted), executed one after the other on ``app``."""
    samples: list[float] = []
    for i in range(runs):
        gc.collect()
        began = time.perf_counter()
        await flow.start(f"{i}", app=app)
        await run_until_idle(app)
        samples.append((time.perf_counter() - began) / steps * 1e3)
    return samples


async def many_at_once(
    storage: Storage, flow: type[Workflow], count: int, steps: int
) -> dict[str, float]:
    """Start ``count`` runs of ``flow`` (``steps`` steps each) at once on an app over
    ``storage`` and wait for all: steps/s, wall and client-CPU ms per step, elapsed seconds."""
    from hephaestus.storage import InstanceQuery

    async with Hephaestus(storage=storage) as app:
        gc.collect()
        began = time.perf_counter()
        cpu = time.process_time()
        await asyncio.gather(*(flow.start(f"{i}", {"n": i}, app=app) for i in range(count)))
        await run_until_idle(app)
        elapsed = time.perf_counter() - began
        cpu_used = time.process_time() - cpu
        done = await storage.query(InstanceQuery(status=Status.COMPLETED))
    if len(done) != count:
        raise RuntimeError(f"{flow.__name__}: {len(done)} of {count} runs completed")
    total = count * steps
    return {
        "steps_per_s": total / elapsed,
        "ms_per_step": elapsed / total * 1e3,
        "client_cpu_ms_per_step": cpu_used / total * 1e3,
        "elapsed_s": elapsed,
    }
