"""Apps own their workflows and are found per task or thread: two apps never see each other's."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from hephaestus import (
    Config,
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
    Wait,
    WaitForEvent,
    Workflow,
    WorkflowRegistry,
)
from hephaestus.errors import AmbiguousAppError, InvalidArgumentError, UnknownWorkflowError
from hephaestus.storage import InstanceQuery
from hephaestus.testing import advance, run_until_idle

if TYPE_CHECKING:
    from hephaestus.storage import Storage
    from hephaestus.testing import FakeClock


class Billing(Workflow):
    unique = Unique(key="bill")
    tags = ("team",)
    start_step = (Wait, {"duration": 10})
    transitions = {(Wait, "timeout"): Done}


class Shipping(Workflow):
    unique = Unique(key="ship")
    tags = ("team",)
    start_step = (Wait, {"duration": 10})
    transitions = {(Wait, "timeout"): Done}


class Child(Workflow):
    unique = Unique(key="child")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


class StartChild(Step):
    """Starts a ``Child`` run without naming an app: the app executing this step must get it."""

    events = ("started",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        await Child.start(run.id.split("::")[1])
        return "started"


class StartChildSync(Step):
    """The same from a sync step (it runs in a worker thread), through ``Child.sync``."""

    events = ("started",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        Child.sync.start(run.id.split("::")[1])
        return Ok("started")


class Parent(Workflow):
    unique = Unique(key="parent")
    start_step = StartChild
    transitions = {(StartChild, "started"): Done}


class SyncParent(Workflow):
    unique = Unique(key="syncparent")
    start_step = StartChildSync
    transitions = {(StartChildSync, "started"): Done}


class ShipV1(Workflow):
    version = 1
    unique = Unique(key="scoped")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


class ShipV2(Workflow):
    version = 2
    unique = Unique(key="scoped")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


class Ship(Workflow):
    unique = Unique(key="scoped")
    versions = {1: ShipV1, 2: ShipV2}
    current = 2


async def test_an_app_refuses_a_workflow_it_was_not_given() -> None:
    """``workflows=`` is exactly what the app runs; another workflow is refused, saying how."""
    async with Hephaestus(workflows=[Billing]) as app:
        assert app.has(Billing)
        assert not app.has(Shipping)
        assert await Billing.start("a") == "bill::a"
        with pytest.raises(UnknownWorkflowError, match=r"Hephaestus\(workflows=\[\.\.\., Shipping"):
            await Shipping.start("a")
        with pytest.raises(UnknownWorkflowError):
            await Shipping.list()
        with pytest.raises(UnknownWorkflowError):
            await app.get(Shipping, "a")


async def test_an_app_without_workflows_has_every_defined_workflow() -> None:
    """By default an app runs every workflow defined in the process, as before."""
    async with Hephaestus() as app:
        assert app.has(Billing)
        assert app.has(Shipping)
        assert await Shipping.start("a") == "ship::a"


async def test_an_umbrella_brings_its_versions() -> None:
    """Listing a versioned workflow gives the app its versions; a version alone is refused."""
    async with Hephaestus(workflows=[Ship]) as app:
        assert app.has(ShipV1)
        await ShipV1.start("a")
        await Ship.start("b")
        await run_until_idle(app)
        runs = {run.id: run.workflow_version for run in await Ship.list()}
        assert runs == {"scoped::a": 1, "scoped::b": 2}
    with pytest.raises(InvalidArgumentError, match="list the versioned workflow"):
        Hephaestus(workflows=[ShipV1])
    with pytest.raises(InvalidArgumentError, match="each of workflows= must be a Workflow"):
        Hephaestus(workflows=["Ship"])  # type: ignore[list-item]


async def test_two_apps_in_one_process_never_see_each_others_workflows() -> None:
    """Two apps with different workflows: facade calls reach the app that has the workflow."""
    billing = Hephaestus(workflows=[Billing])
    shipping = Hephaestus(workflows=[Shipping])
    await asyncio.gather(billing.open(), shipping.open())  # opened elsewhere: none current here
    try:
        await Billing.start("a")
        await Shipping.start("a")
        assert [run.id for run in await billing.list()] == ["bill::a"]
        assert [run.id for run in await shipping.list()] == ["ship::a"]
        with pytest.raises(UnknownWorkflowError):
            await Billing.get("a", app=shipping)
        with pytest.raises(AmbiguousAppError):
            await Child.start("a")  # neither app has it: nothing to choose by
    finally:
        await billing.close()
        await shipping.close()


async def test_a_step_starting_a_workflow_uses_the_app_executing_it() -> None:
    """A step's facade call resolves to the app running the step, not to the caller's app."""
    inner = Hephaestus()
    async with Hephaestus() as outer, inner, Hephaestus() as innermost:
        # innermost is current here; the steps must not pick it
        await Parent.start("p", app=inner)
        await SyncParent.start("s", app=inner)
        await run_until_idle(inner)
        assert (await Parent.get("p", app=inner)).status is Status.COMPLETED
        assert (await SyncParent.get("s", app=inner)).status is Status.COMPLETED
        assert sorted(run.id for run in await Child.list(app=inner)) == [
            "child::p",
            "child::s",
        ]
        assert await Child.list(app=outer) == []
        assert await Child.list(app=innermost) == []


async def test_recovery_leaves_runs_of_other_apps_workflows_alone(
    storage: Storage, clock: FakeClock
) -> None:
    """On a shared storage, an app recovers its own runs and does not touch another app's."""
    async with Hephaestus(storage=storage, clock=clock) as app:
        await Billing.start("a")
        await Shipping.start("a")
        await run_until_idle(app)
    async with Hephaestus(storage=storage, clock=clock, workflows=[Billing]) as billing:
        await advance(billing, 10)
        assert (await Billing.get("a")).status is Status.COMPLETED
        shipped = await billing.get_instance("ship::a")  # operators still see every run
        assert shipped.status is Status.WAITING
        with pytest.raises(UnknownWorkflowError, match="not one of this app's workflows"):
            await billing.cancel_instance("ship::a")
    async with Hephaestus(storage=storage, clock=clock, workflows=[Shipping]) as shipping:
        await advance(shipping, 0)
        assert (await Shipping.get("a")).status is Status.COMPLETED
        assert (await Shipping.get("a")).revision == shipped.revision + 1


async def test_the_storage_reads_through_the_opening_apps_workflows(
    storage: Storage, clock: FakeClock
) -> None:
    """A storage given no registry resolves tags (and step references) with the app's workflows."""
    async with Hephaestus(storage=storage, clock=clock) as app:
        await Billing.start("a")
        await Shipping.start("a")
        await run_until_idle(app)
        tagged = await storage.query(InstanceQuery(tags=["team"]))
        assert sorted(run.id for run in tagged) == ["bill::a", "ship::a"]
    async with Hephaestus(storage=storage, clock=clock, workflows=[Billing]):
        tagged = await storage.query(InstanceQuery(tags=["team"]))
        assert [run.id for run in tagged] == ["bill::a"]
        assert [run.id for run in await Billing.list(tags=["team"])] == ["bill::a"]


async def test_a_registry_can_be_given_as_the_workflows() -> None:
    """``workflows=`` also takes a ``WorkflowRegistry`` (tools that hold definitions)."""
    registry = WorkflowRegistry([Billing.definition()])
    async with Hephaestus(workflows=registry) as app:
        assert app.registry is registry
        assert app.has(Billing)
        assert not app.has(Shipping)


async def test_the_facade_list_takes_the_query_filters(clock: FakeClock) -> None:
    """``Workflow.list`` filters like ``Hephaestus.list``: prefix, metadata, time, cursor."""
    async with Hephaestus(clock=clock) as app:
        await Billing.start("a1", metadata={"region": "eu"})
        await advance(app, 1)
        await Billing.start("a2", metadata={"region": "us"})
        await Billing.start("b1", metadata={"region": "eu"})
        since = clock.now()
        await Shipping.start("a1")

        def ids(runs: list[Instance]) -> list[str]:
            return [run.id for run in runs]

        assert ids(await Billing.list(id_prefix="bill::a")) == ["bill::a1", "bill::a2"]
        assert ids(await Billing.list(metadata={"region": "eu"})) == ["bill::a1", "bill::b1"]
        assert ids(await Billing.list(created_after=since)) == ["bill::a2", "bill::b1"]
        assert ids(await Billing.list(created_before=since)) == ["bill::a1"]
        assert ids(await Billing.list(updated_before=since + timedelta(seconds=1))) == [
            "bill::a1",
            "bill::a2",
            "bill::b1",
        ]
        page = await app.storage.page(InstanceQuery(workflow=Billing.name, limit=1))
        assert page.next_cursor is not None
        assert ids(await Billing.list(after=page.next_cursor)) == ["bill::a2", "bill::b1"]
