"""Every mistake a caller can make is a documented ``hephaestus.errors`` type saying what to do."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest

from hephaestus import Done, Hephaestus, Ok, Step, StepContext, StepRun, Unique, Workflow
from hephaestus.errors import InputError, InvalidArgumentError, WorkflowDefinitionError
from hephaestus.runners import LocalRunner
from hephaestus.storage import InstanceQuery
from hephaestus.telemetry import attach, detach

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from hephaestus import Config, StepResult


class Finish(Step):
    events = ("ok",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("ok")


class Shipment(Workflow):
    unique = Unique(key="shipment")
    start_step = Finish
    transitions = {(Finish, "ok"): Done}


class Base(Workflow, abstract=True):
    unique = Unique(key="base")


class NotAWorkflow:
    """A plain class, passed where a workflow class belongs."""


BAD_WORKFLOWS: list[Any] = [NotAWorkflow, Finish, Base, "Shipment", Shipment()]


@pytest.mark.parametrize("bad", BAD_WORKFLOWS, ids=repr)
async def test_a_non_workflow_class_is_an_invalid_argument(app: Hephaestus, bad: Any) -> None:
    """``start``, ``get``, ``resume``, ``list`` given something other than a concrete Workflow
    class raise ``InvalidArgumentError`` naming what they got, never ``AttributeError``."""
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: app.start(bad, "a1"),
        lambda: app.get(bad, "a1"),
        lambda: app.resume(bad, "a1", "received"),
        lambda: app.cancel(bad, "a1"),
        lambda: app.list(bad),
    ]
    for call in calls:
        with pytest.raises(InvalidArgumentError, match=r"Workflow subclass|abstract") as caught:
            await call()
        assert isinstance(caught.value, InputError)
    assert await app.storage.query(InstanceQuery()) == []


def test_an_app_refuses_a_non_workflow_in_workflows() -> None:
    """``Hephaestus(workflows=[...])`` names the entry that is no workflow class."""
    with pytest.raises(InvalidArgumentError, match="each of workflows= must be a Workflow"):
        Hephaestus(workflows=[Shipment, cast(Any, NotAWorkflow)])


def test_a_malformed_unique_key_is_refused_when_the_class_is_defined() -> None:
    """``Unique(key="Bad-Key")`` fails at class definition, not at the first start."""
    with pytest.raises(WorkflowDefinitionError, match="unique key") as caught:

        class BadKey(Workflow):
            unique = Unique(key="Bad-Key")
            start_step = Finish
            transitions = {(Finish, "ok"): Done}

    assert caught.value.codes == {"invalid_unique"}
    assert "use 'badkey'" in str(caught.value)


async def test_argument_errors_are_invalid_arguments(app: Hephaestus) -> None:
    """Out-of-range or malformed arguments are ``InvalidArgumentError`` (still ``ValueError``
    and ``TypeError`` for code written before) with a message that names the fix."""
    await Shipment.start("a1")
    checks: list[tuple[Callable[[], Awaitable[object]], str]] = [
        (lambda: app.schedule_resume("shipment::a1", "Finish", timedelta(days=-1)), "delay"),
        (lambda: app.resume(Shipment, "a1", ""), "event must be a non-empty string"),
        (lambda: app.list(Shipment, statuss="failed"), "the filters are"),  # type: ignore[call-arg]
        (lambda: app.count(Shipment, by=cast(Any, ("colour",))), "status and/or workflow"),
        (lambda: app.page(Shipment, after="nonsense"), "next_cursor of a Page"),
    ]
    for call, message in checks:
        with pytest.raises(InvalidArgumentError, match=message) as caught:
            await call()
        assert isinstance(caught.value, ValueError)
        assert isinstance(caught.value, TypeError)


def test_constructor_and_telemetry_arguments_are_invalid_arguments() -> None:
    """Runner settings and telemetry attachments refuse bad values the same way."""
    with pytest.raises(InvalidArgumentError, match="shutdown_timeout"):
        LocalRunner(shutdown_timeout=-1)
    with pytest.raises(InvalidArgumentError, match="sweep_interval"):
        LocalRunner(sweep_interval=0)
    with pytest.raises(InvalidArgumentError, match="unknown telemetry events"):
        attach("user-errors", ["hephaestus.step.stopp"], lambda *args: None)
    attach("user-errors", ["hephaestus.step.stop"], lambda *args: None)
    try:
        with pytest.raises(InvalidArgumentError, match=r"detach\('user-errors'\) first"):
            attach("user-errors", ["hephaestus.step.stop"], lambda *args: None)
    finally:
        detach("user-errors")
