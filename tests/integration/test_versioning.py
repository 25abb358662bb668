"""Versioned umbrellas: picking a version at start, pinning runs to it, uniqueness per scope."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from hephaestus import (
    Config,
    Done,
    InstanceAlreadyRunningError,
    Ok,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    VersionedDefinition,
    WaitForEvent,
    Workflow,
)
from hephaestus.errors import AmbiguousInstanceError, UnknownVersionError
from hephaestus.testing import run_until_idle

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hephaestus import Hephaestus
    from hephaestus.testing import FakeClock


class LegacyFulfil(Step):
    events = ("fulfilled",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("fulfilled", {"by": "legacy"})


class ModernFulfil(Step):
    events = ("fulfilled",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("fulfilled", {"by": "modern"})


class FulfilV1(Workflow):
    version = 1
    unique = Unique(key="fulfil")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): LegacyFulfil, (LegacyFulfil, "fulfilled"): Done}


class FulfilV2(Workflow):
    version = 2
    unique = Unique(key="fulfil")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): ModernFulfil, (ModernFulfil, "fulfilled"): Done}


class Fulfil(Workflow):
    """Scope ``workflow``: one active run per value across all versions."""

    unique = Unique(key="fulfil")
    versions = {1: FulfilV1, 2: FulfilV2}
    current = 2

    @classmethod
    def version_for(cls, value: str, context: Mapping[str, Any]) -> int | None:
        return 1 if context.get("legacy") else None


class PerVersion(Workflow):
    """Scope ``version``: one active run per value in each version."""

    unique = Unique(key="fulfil", scope="version")
    versions = {1: FulfilV1, 2: FulfilV2}
    current = 2


async def test_start_uses_the_current_version_and_pins_the_run(app: Hephaestus) -> None:
    """A run started without a version uses ``current`` and runs that version's graph."""
    assert isinstance(Fulfil.definition(), VersionedDefinition)
    await Fulfil.start("a1")
    await run_until_idle(app)
    waiting = await Fulfil.get("a1")
    assert (waiting.workflow, waiting.workflow_version) == (FulfilV2.name, 2)
    await Fulfil.resume("a1", "received")
    await run_until_idle(app)
    done = await Fulfil.get("a1")
    assert done.status is Status.COMPLETED
    assert done.context.steps["modern_fulfil"] == {"by": "modern"}
    assert "legacy_fulfil" not in done.steps


async def test_version_argument_and_version_for_pick_other_versions(app: Hephaestus) -> None:
    """``version=`` and an overridden ``version_for`` pick older versions with their own graphs."""
    await Fulfil.start("b1", version=1)
    await Fulfil.start("b2", {"legacy": True})
    await Fulfil.start("b3", {"legacy": False})
    await run_until_idle(app)
    assert (await Fulfil.get("b1")).workflow_version == 1
    assert (await Fulfil.get("b2")).workflow_version == 1
    assert (await Fulfil.get("b3")).workflow_version == 2
    for value in ("b1", "b2", "b3"):
        await Fulfil.resume(value, "received")
    await run_until_idle(app)
    assert (await Fulfil.get("b1")).context.steps["legacy_fulfil"] == {"by": "legacy"}
    assert (await Fulfil.get("b2")).context.steps["legacy_fulfil"] == {"by": "legacy"}
    assert (await Fulfil.get("b3")).context.steps["modern_fulfil"] == {"by": "modern"}


async def test_unknown_versions_are_refused(app: Hephaestus) -> None:
    """Starting, getting or listing a version the umbrella does not have raises."""
    with pytest.raises(UnknownVersionError):
        await Fulfil.start("c1", version=3)
    with pytest.raises(UnknownVersionError):
        await Fulfil.get("c1", version=3)
    with pytest.raises(UnknownVersionError):
        await Fulfil.list(version=0)
    with pytest.raises(UnknownVersionError):
        await FulfilV1.start("c1", version=2)
    assert await Fulfil.list() == []


async def test_list_returns_the_runs_of_every_version(app: Hephaestus, clock: FakeClock) -> None:
    """An umbrella's list covers all its versions' runs; ``version=`` narrows it to one."""
    await Fulfil.start("d1", version=1)
    clock.advance(1)
    await Fulfil.start("d2")
    clock.advance(1)
    await FulfilV1.start("d3")  # a version class is a workflow of its own, too
    await run_until_idle(app)
    assert [r.id for r in await Fulfil.list()] == ["fulfil::d1", "fulfil::d2", "fulfil::d3"]
    assert [r.id for r in await Fulfil.list(version=1)] == ["fulfil::d1", "fulfil::d3"]
    assert [r.id for r in await Fulfil.list(version=2)] == ["fulfil::d2"]
    assert [r.id for r in await FulfilV1.list()] == ["fulfil::d1", "fulfil::d3"]


async def test_scope_workflow_allows_one_active_run_across_versions(app: Hephaestus) -> None:
    """With scope ``workflow`` a value active in v1 cannot start in v2."""
    await Fulfil.start("e1", version=1)
    with pytest.raises(InstanceAlreadyRunningError):
        await Fulfil.start("e1", version=2)
    with pytest.raises(InstanceAlreadyRunningError):
        await Fulfil.start("e1")


async def test_scope_version_lets_each_version_run_the_same_value(
    app: Hephaestus, clock: FakeClock
) -> None:
    """With scope ``version`` v1 and v2 hold the same value at once; ambiguity needs version=."""
    await PerVersion.start("f1", version=1)
    clock.advance(1)
    await PerVersion.start("f1", version=2)
    with pytest.raises(InstanceAlreadyRunningError):
        await PerVersion.start("f1", version=1)
    await run_until_idle(app)

    assert (await PerVersion.get("f1")).workflow_version == 2
    assert (await PerVersion.get("f1", version=1)).workflow_version == 1
    with pytest.raises(AmbiguousInstanceError, match=r"pass version= \(one of \[1, 2\]\)"):
        await PerVersion.resume("f1", "received")
    with pytest.raises(AmbiguousInstanceError):
        await PerVersion.cancel("f1")
    # The calls by id have no version= to pass: the hint sends them to the workflow's call.
    with pytest.raises(AmbiguousInstanceError, match=r"calls by id cannot.*version=1") as by_id:
        await app.cancel_instance("fulfil::f1")
    assert "pass version=" not in str(by_id.value)

    await PerVersion.resume("f1", "received", version=1)
    await PerVersion.cancel("f1", version=2)
    await run_until_idle(app)
    v1 = await PerVersion.get("f1", version=1)
    v2 = await PerVersion.get("f1", version=2)
    assert (v1.status, v2.status) == (Status.COMPLETED, Status.CANCELLED)
    assert v1.context.steps["legacy_fulfil"] == {"by": "legacy"}


class ShipV1(Workflow):
    version = 1
    unique = Unique(key="ship")
    start_step = LegacyFulfil
    transitions = {(LegacyFulfil, "fulfilled"): WaitForEvent, (WaitForEvent, "received"): Done}


class ShipV2(Workflow):
    version = 2
    unique = Unique(key="ship")
    start_step = ModernFulfil
    transitions = {(ModernFulfil, "fulfilled"): WaitForEvent, (WaitForEvent, "received"): Done}


class Ship(Workflow):
    unique = Unique(key="ship")
    versions = {1: ShipV1, 2: ShipV2}


async def test_a_version_class_started_directly_shares_its_umbrella_ids(app: Hephaestus) -> None:
    """Starting a listed version class directly is the umbrella's start pinned to that version."""
    await Ship.start("x")
    with pytest.raises(InstanceAlreadyRunningError):
        await ShipV1.start("x")
    await Ship.cancel("x")
    assert await ShipV1.start("y") == "ship::y"
    run = await Ship.get("y")
    assert (run.workflow_version, run.family) == (1, Ship.name)
    assert [r.id for r in await ShipV1.list()] == ["ship::y"]
    assert {r.id for r in await Ship.list()} == {"ship::x", "ship::y"}
    with pytest.raises(UnknownVersionError):
        await ShipV1.start("z", version=2)
