"""One bad stored run never blocks the healthy ones: recovery and listing skip it, get names it.

A run can be bad in two ways. It may not decode (a foreign row, a step class this process does
not define): storages skip it in listings with one log line and raise ``CorruptInstanceError``
for it. Or it may decode but no longer fit its workflow (a waiting step renamed by a deploy):
recovery skips it with one log line, and operations on it raise ``IncompatibleInstanceError``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
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
    StepState,
    StepStatus,
    Unique,
    WaitForEvent,
    Workflow,
)
from hephaestus._core.registry import WorkflowRegistry
from hephaestus.errors import CorruptInstanceError, IncompatibleInstanceError
from hephaestus.storage import InMemoryStorage, InstanceQuery, Storage
from hephaestus.testing import run_until_idle
from tests._pg import dsn, truncate

if TYPE_CHECKING:
    from hephaestus.testing import FakeClock


class Parcel(Workflow):
    unique = Unique(key="parcel")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


class Foreign(Step):
    """A step of a workflow the storage's registry does not know (another service's code)."""

    events = ("ok",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("ok")


class ForeignFlow(Workflow):
    start_step = Foreign
    transitions = {(Foreign, "ok"): Done}


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def start_healthy(storage: Storage, clock: FakeClock, registry: WorkflowRegistry) -> Instance:
    """Two waiting Parcel runs, ``h1`` and ``h2``; returns a stored one to derive bad runs from."""
    async with Hephaestus(storage=storage, clock=clock, workflows=registry) as app:
        await Parcel.start("h1")
        await Parcel.start("h2")
        await run_until_idle(app)
        return await Parcel.get("h1")


def as_run(template: Instance, value: str, **changes: object) -> Instance:
    """A stored-shaped run of ``parcel::<value>`` derived from ``template``."""
    fields: dict[str, object] = {
        "id": f"parcel::{value}",
        "run_id": f"{value}-run",
        "unique_key": f"{template.family}|parcel::{value}",
        **changes,
    }
    return replace(template, **fields)  # type: ignore[arg-type]


async def store(storage: Storage, *instances: Instance) -> None:
    await storage.open()
    try:
        for instance in instances:
            await storage.create(instance)
    finally:
        await storage.close()


async def finish_healthy(app: Hephaestus) -> None:
    """The healthy runs were recovered: resumed, they complete."""
    for value in ("h1", "h2"):
        await Parcel.resume(value, "received")
    await run_until_idle(app)
    for value in ("h1", "h2"):
        assert (await Parcel.get(value)).status is Status.COMPLETED


def parcel_registry() -> WorkflowRegistry:
    registry = WorkflowRegistry()
    registry.register(Parcel.definition())
    return registry


async def test_a_run_whose_waiting_step_was_renamed_is_skipped_and_reported(
    storage: Storage, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Recovery skips a run waiting in a step the workflow no longer has; operations name it."""
    template = await start_healthy(storage, clock, parcel_registry())
    renamed = as_run(template, "old", steps={"wait_for_parcel": StepState(StepStatus.WAITING)})
    await store(storage, renamed)

    with caplog.at_level(logging.ERROR, logger="hephaestus"):
        async with Hephaestus(storage=storage, clock=clock, workflows=parcel_registry()) as app:
            await finish_healthy(app)
            with pytest.raises(IncompatibleInstanceError, match="'wait_for_parcel'") as caught:
                await Parcel.get("old")
            assert caught.value.run_id == "old-run"
            with pytest.raises(IncompatibleInstanceError):
                await Parcel.resume("old", "received")
            assert len(await app.list()) == 3  # listed: it decodes, and tools may show it
            assert await app.get_instance("parcel::old") == renamed
            await Parcel.cancel("old")  # cancelling needs no step: the way to clear it
            assert (await Parcel.get("old")).status is Status.CANCELLED
    lines = [line for line in errors(caplog) if "old-run" in line]
    assert len(lines) == 1
    assert "does not fit the current definition" in lines[0]


async def test_runs_of_an_unknown_workflow_are_reported_once_per_workflow(
    storage: Storage, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Three runs of a workflow nobody defines make one log line, and the rest recover."""
    template = await start_healthy(storage, clock, parcel_registry())
    ghosts = [
        as_run(template, f"g{index}", workflow="gone.Flow", family="gone.Flow", unique_key=None)
        for index in range(3)
    ]
    await store(storage, *ghosts)
    with caplog.at_level(logging.ERROR, logger="hephaestus"):
        async with Hephaestus(storage=storage, clock=clock, workflows=parcel_registry()) as app:
            await finish_healthy(app)
    lines = [line for line in errors(caplog) if "gone.Flow" in line]
    assert len(lines) == 1
    assert all(f"g{index}-run" in lines[0] for index in range(3))
    assert "import the module" in lines[0]


@pytest.fixture(params=["memory-json", "postgres"])
def narrow_storage(request: pytest.FixtureRequest) -> Storage:
    """A decoding storage whose registry knows Parcel only (not ForeignFlow's steps)."""
    if request.param == "memory-json":
        return InMemoryStorage(serialize=True, registry=parcel_registry())
    from hephaestus.storage.postgres import PostgresStorage

    database: str = request.getfixturevalue("integration_database")
    truncate(database)
    return PostgresStorage(dsn(database), registry=parcel_registry(), min_size=1, max_size=4)


async def test_a_run_that_cannot_be_decoded_never_blocks_the_others(
    narrow_storage: Storage, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A run naming an unknown step class: open and list skip it, get and resume name it."""
    template = await start_healthy(narrow_storage, clock, parcel_registry())
    foreign = as_run(template, "foreign", context=Context(initial={"next": Foreign}, steps={}))
    await store(narrow_storage, foreign)

    with caplog.at_level(logging.ERROR, logger="hephaestus"):
        async with Hephaestus(
            storage=narrow_storage, clock=clock, workflows=parcel_registry()
        ) as app:
            await finish_healthy(app)
            assert sorted(run.id for run in await app.list()) == ["parcel::h1", "parcel::h2"]
            for operation in (
                lambda: Parcel.get("foreign"),
                lambda: Parcel.resume("foreign", "received"),
                lambda: Parcel.cancel("foreign"),
                lambda: app.get_instance("parcel::foreign"),
                lambda: app.storage.get("foreign-run"),
            ):
                with pytest.raises(CorruptInstanceError, match="Foreign") as caught:
                    await operation()
                assert caught.value.run_id == "foreign-run"
            listed = await app.storage.query(InstanceQuery(status=Status.COMPLETED))
            assert len(listed) == 2
    skipped = [line for line in errors(caplog) if "foreign-run" in line]
    assert skipped  # one line per listing that met it: recovery, list, the last query
    assert all("import the modules that define" in line for line in skipped)
