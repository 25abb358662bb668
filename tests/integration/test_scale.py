"""Costs that must not grow with the number of stored runs, and what a waiting run holds."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from hephaestus import (
    Config,
    Context,
    Done,
    Hephaestus,
    Instance,
    Ok,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    WaitForEvent,
    Workflow,
)
from hephaestus.errors import ConcurrentUpdateError, HephaestusError
from hephaestus.runners import LocalRunner
from hephaestus.storage import InMemoryStorage, InstanceQuery, Storage
from hephaestus.testing import run_until_idle

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# The event loop's own bookkeeping of the test's last tasks (freed lazily) is not a run's.
NOT_ASYNCIO = (
    tracemalloc.Filter(False, f"{os.path.dirname(asyncio.__file__)}/*"),
    tracemalloc.Filter(False, "*/_weakrefset.py"),
    tracemalloc.Filter(False, __file__),
)


class ScaleWait(Workflow):
    unique = Unique(key="scale")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


class Pay(WaitForEvent):
    events = ("paid",)


class ScalePay(Workflow):
    unique = Unique(key="scalepay")
    start_step = Pay
    transitions = {(Pay, "paid"): Done}


def make(
    run_id: str, instance_id: str, *, at: float = 0, status: Status = Status.WAITING
) -> Instance:
    created = T0 + timedelta(seconds=at)
    return Instance(
        id=instance_id,
        run_id=run_id,
        workflow="scale.Flow",
        workflow_version=1,
        family="scale.Flow",
        status=status,
        context=Context(initial={}, steps={}),
        created_at=created,
        updated_at=created,
    )


@pytest.fixture
async def store(storage: Storage) -> AsyncIterator[Storage]:
    """The backend under test, opened and empty."""
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


async def test_a_query_by_id_sees_that_ids_runs_after_creates_and_deletes(store: Storage) -> None:
    """Runs of one id are found in creation order (ties too) whatever else is stored or deleted."""
    await store.create(make("a1", "flow::a", at=0, status=Status.COMPLETED))
    await store.create(make("b1", "flow::b", at=0))
    await store.create(make("a2", "flow::a", at=1, status=Status.COMPLETED))
    await store.create(make("a3", "flow::a", at=1))
    await store.delete("a2")
    await store.create(make("a4", "flow::a", at=2, status=Status.CANCELLED))
    await store.delete("b1")

    oldest = await store.query(InstanceQuery(id="flow::a"))
    newest = await store.query(InstanceQuery(id="flow::a", newest_first=True, limit=2))
    active = await store.query(InstanceQuery(id="flow::a", status=Status.WAITING))

    assert [row.run_id for row in oldest] == ["a1", "a3", "a4"]
    assert [row.run_id for row in newest] == ["a4", "a3"]
    assert [row.run_id for row in active] == ["a3"]
    assert await store.query(InstanceQuery(id="flow::b")) == []


async def test_a_memory_lookup_by_id_examines_only_that_ids_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding a run by business id reads its own runs, not every stored run."""
    store = InMemoryStorage()
    for n in range(500):
        await store.create(make(f"r{n}", f"flow::{n}", at=n))
    await store.create(make("x1", "flow::x", at=600, status=Status.COMPLETED))
    await store.create(make("x2", "flow::x", at=601))
    examined: list[str] = []
    matches = InstanceQuery.matches

    def counting(self: InstanceQuery, instance: Instance) -> bool:
        examined.append(instance.run_id)
        return matches(self, instance)

    monkeypatch.setattr(InstanceQuery, "matches", counting)

    rows = await store.query(InstanceQuery(id="flow::x", status_in={Status.WAITING}))

    assert [row.run_id for row in rows] == ["x2"]
    assert sorted(examined) == ["x1", "x2"]


async def test_concurrent_resumes_of_a_waiting_run_share_one_writer(app: Hephaestus) -> None:
    """Two resumes racing on a run that waits are applied one after the other, never as rivals."""
    for value in ("1", "2", "3"):
        await ScaleWait.start(value, app=app)
    await run_until_idle(app)

    results = await asyncio.gather(
        ScaleWait.resume("2", "received", app=app),
        ScaleWait.resume("2", "received", app=app),
        ScaleWait.cancel("3", app=app),
        ScaleWait.resume("3", "received", app=app),
        return_exceptions=True,
    )
    await run_until_idle(app)

    assert not any(isinstance(r, ConcurrentUpdateError) for r in results)
    assert all(r is None or isinstance(r, HephaestusError) for r in results)
    assert [results[0], results[1]].count(None) == 1  # one resume wins, the other is refused
    assert None in (results[2], results[3])
    assert (await ScaleWait.get("1", app=app)).status is Status.WAITING
    assert (await ScaleWait.get("2", app=app)).status is Status.COMPLETED
    assert (await ScaleWait.get("3", app=app)).status in {Status.CANCELLED, Status.COMPLETED}
    await ScaleWait.resume("1", "received", app=app)
    await run_until_idle(app)
    assert (await ScaleWait.get("1", app=app)).status is Status.COMPLETED


async def test_a_waiting_run_is_resumed_from_storage_after_a_restart_without_recovery(
    storage: Storage,
) -> None:
    """A run that only waits needs nothing but its stored state to be resumed or cancelled."""
    async with Hephaestus(storage=storage, recover=False) as app:
        await ScalePay.start("1", app=app)
        await ScalePay.start("2", app=app)
        await run_until_idle(app)
    async with Hephaestus(storage=storage, recover=False) as app:
        await ScalePay.resume("1", "paid", app=app)
        await ScalePay.cancel("2", app=app)
        await run_until_idle(app)
        assert (await ScalePay.get("1", app=app)).status is Status.COMPLETED
        assert (await ScalePay.get("2", app=app)).status is Status.CANCELLED


async def test_built_in_waiting_steps_need_no_worker_thread() -> None:
    """A run reaches a built-in wait (or a subclass of it) while every worker thread is busy."""
    gate = threading.Event()

    class Blocking(Step):
        events = ("done",)

        def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
            gate.wait(10)
            return Ok("done")

    class BlockingFlow(Workflow):
        unique = Unique(key="blocking")
        start_step = Blocking
        transitions = {(Blocking, "done"): Done}

    async with Hephaestus(runner=LocalRunner(max_threads=1)) as app:
        try:
            await BlockingFlow.start("1", app=app)
            await ScaleWait.start("1", app=app)
            await ScalePay.start("1", app=app)
            for _ in range(100):  # a few loop turns, no clock: nothing here waits on time
                await asyncio.sleep(0)
            assert (await ScaleWait.get("1", app=app)).status is Status.WAITING
            assert (await ScalePay.get("1", app=app)).status is Status.WAITING
            assert (await BlockingFlow.get("1", app=app)).status is Status.RUNNING
        finally:
            gate.set()
        await run_until_idle(app)
        assert (await BlockingFlow.get("1", app=app)).status is Status.COMPLETED


async def test_a_waiting_run_holds_little_memory() -> None:
    """Runs left waiting for an event cost well under 2 KB each (about 1.2 KB: the runner keeps
    nothing, and empty mappings are shared)."""
    runs = 2_000
    async with Hephaestus() as app:
        await ScaleWait.start("warm", app=app)
        await run_until_idle(app)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot().filter_traces(NOT_ASYNCIO)
            for first in range(0, runs, 500):
                await asyncio.gather(
                    *(ScaleWait.start(str(n), app=app) for n in range(first, first + 500))
                )
                await run_until_idle(app)
            gc.collect()
            after = tracemalloc.take_snapshot().filter_traces(NOT_ASYNCIO)
            held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        finally:
            tracemalloc.stop()
        assert len(await app.list(ScaleWait, status=Status.WAITING)) == runs + 1

    assert held / runs < 1_500


async def test_a_run_starting_with_a_built_in_wait_is_waiting_when_start_returns(
    app: Hephaestus,
) -> None:
    """Starting such a run stores it already waiting, with no task left running for it."""
    before = len(asyncio.all_tasks())

    await asyncio.gather(*(ScalePay.start(str(n), app=app) for n in range(20)))

    assert len(asyncio.all_tasks()) == before
    for n in range(20):
        run = await ScalePay.get(str(n), app=app)
        assert run.status is Status.WAITING
        assert run.waiting_steps == ("pay",)
        assert [entry.kind.value for entry in run.history] == ["started", "step_waiting"]
    await ScalePay.resume("7", "paid", app=app)
    await run_until_idle(app)
    assert (await ScalePay.get("7", app=app)).status is Status.COMPLETED
