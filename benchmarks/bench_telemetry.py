"""What telemetry costs the local runner: one workload, four telemetry settings, in one run.

The workload is ``bench_local``'s: 1,000 instances of a 10-step linear workflow started at
once, on in-memory storage. Each round runs it with

* ``disabled``: ``Hephaestus(telemetry=False)``, the baseline;
* ``no_handler``: telemetry on, nothing attached (the default; target: under 5% slower);
* ``noop_handler``: a handler that only counts, attached to every event (the cost of building
  the events themselves);
* ``log_handler``: ``attach_log_handler()`` at INFO, formatted and written to ``os.devnull``.

Settings run back to back in a rotating order and every ratio is taken inside its round, then
the median over rounds is reported, because shared machines are noisy; so is the ratio of the
best (lowest) CPU time of each setting, the least disturbed estimate. Ratios and overheads use
CPU time (the workload is one thread: every step is a coroutine), which other processes on a
shared machine disturb far less than wall time; wall-clock ratios are printed beside them.

Run: ``uv run python -m benchmarks.bench_telemetry [--instances N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import statistics
import time
from typing import TYPE_CHECKING, Any

from benchmarks.bench_local import LINEAR_STEPS, LinearBench
from hephaestus import Hephaestus, Status, telemetry
from hephaestus.testing import run_until_idle

if TYPE_CHECKING:
    from collections.abc import Mapping

SETTINGS = ("disabled", "no_handler", "noop_handler", "log_handler")


class _Counter:
    """A telemetry handler that only counts the events it receives."""

    def __init__(self) -> None:
        self.events = 0

    def __call__(self, event: str, m: Mapping[str, float], meta: Mapping[str, Any]) -> None:
        self.events += 1


class _LineCounter(logging.Filter):
    """Counts the log lines that reach the sink."""

    def __init__(self) -> None:
        super().__init__()
        self.lines = 0

    def filter(self, record: logging.LogRecord) -> bool:
        self.lines += 1
        return True


async def _workload(instances: int, *, enabled: bool) -> tuple[float, float]:
    """Wall and CPU seconds to start ``instances`` runs and run them all to completion."""
    async with Hephaestus(telemetry=enabled) as app:
        gc.collect()
        began, cpu = time.perf_counter(), time.process_time()
        for i in range(instances):
            await LinearBench.start(f"{i}", {"n": i}, app=app)
        await run_until_idle(app)
        elapsed, cpu_used = time.perf_counter() - began, time.process_time() - cpu
        done = await app.list(status=Status.COMPLETED)
        if len(done) != instances:
            raise RuntimeError(f"expected {instances} completed runs, found {len(done)}")
    return elapsed, cpu_used


def _log_setup() -> tuple[logging.Logger, logging.Handler]:
    logger = logging.getLogger("bench.hephaestus.events")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    sink = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - closed in main
    sink.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.addHandler(sink)
    return logger, sink


def run_setting(setting: str, instances: int, logger: logging.Logger) -> dict[str, float]:
    counter = _Counter()
    lines = _LineCounter()
    if setting == "noop_handler":
        telemetry.attach("bench-noop", telemetry.EVENTS, counter)
    elif setting == "log_handler":
        telemetry.attach_log_handler(logger=logger)
        telemetry.attach("bench-count", telemetry.EVENTS, counter)  # to report cost per event
        logger.addFilter(lines)
    try:
        elapsed, cpu = asyncio.run(_workload(instances, enabled=setting != "disabled"))
    finally:
        telemetry.detach("bench-noop")
        telemetry.detach("bench-count")
        telemetry.detach_log_handler()
        logger.removeFilter(lines)
    steps = instances * len(LINEAR_STEPS)
    return {
        "steps_per_s": steps / elapsed,
        "steps_per_cpu_s": steps / cpu,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "events": float(counter.events),
        "log_lines": float(lines.lines),
    }


def one_round(index: int, instances: int, logger: logging.Logger) -> dict[str, Any]:
    order = SETTINGS[index % len(SETTINGS) :] + SETTINGS[: index % len(SETTINGS)]
    results = {setting: run_setting(setting, instances, logger) for setting in order}
    base = results["disabled"]
    steps = instances * len(LINEAR_STEPS)
    summary: dict[str, Any] = {"order": list(order), **results}
    for setting in SETTINGS[1:]:
        current = results[setting]
        extra = current["cpu_s"] - base["cpu_s"]
        summary[f"ratio_{setting}"] = current["steps_per_cpu_s"] / base["steps_per_cpu_s"]
        summary[f"wall_ratio_{setting}"] = current["steps_per_s"] / base["steps_per_s"]
        summary[f"overhead_us_per_step_{setting}"] = extra / steps * 1e6
        if current["events"]:
            summary[f"us_per_event_{setting}"] = extra / current["events"] * 1e6
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    logger, sink = _log_setup()
    rounds = []
    try:
        for index in range(args.rounds):
            result = one_round(index, args.instances, logger)
            rounds.append(result)
            print(json.dumps(result))
    finally:
        logger.removeHandler(sink)
        sink.close()

    def med(key: str, field: str | None = None) -> float:
        return statistics.median(float(r[key] if field is None else r[key][field]) for r in rounds)

    def best(setting: str) -> float:
        return min(float(r[setting]["cpu_s"]) for r in rounds)

    events_per_run = med("noop_handler", "events") / args.instances
    print(f"\nsummary (median of {len(rounds)} rounds, {args.instances} x 10-step runs):")
    print(f"  events per 10-step run: {events_per_run:.0f}")
    for setting in SETTINGS:
        line = f"  {setting:<13} {med(setting, 'steps_per_s'):>9,.0f} steps/s"
        line += f" ({med(setting, 'steps_per_cpu_s'):>7,.0f} per CPU-s)"
        if setting != "disabled":
            ratio = med(f"ratio_{setting}")
            line += f"  ratio {ratio:.3f} ({(1 - ratio) * 100:+.1f}% lost;"
            line += f" wall {med(f'wall_ratio_{setting}'):.3f})"
            line += f"  +{med(f'overhead_us_per_step_{setting}'):.2f} us/step"
            if f"us_per_event_{setting}" in rounds[0]:
                line += f"  {med(f'us_per_event_{setting}'):.2f} us/event"
            line += f"  best-of ratio {best('disabled') / best(setting):.3f}"
        print(line)


if __name__ == "__main__":
    main()
