"""The app hands its resources to steps, the same on every runner, and tests swap them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from hephaestus import (
    Done,
    Hephaestus,
    Ok,
    RetryPolicy,
    Status,
    Step,
    StepContext,
    StepRun,
    Unique,
    Workflow,
)
from hephaestus.errors import MissingResourceError
from hephaestus.testing import run_until_idle

if TYPE_CHECKING:
    from collections.abc import Callable

    from hephaestus import Config, StepResult
    from hephaestus.runners import Runner
    from hephaestus.storage import Storage
    from hephaestus.testing import FakeClock


class Gateway:
    """Stands in for a payment client: records what it charged."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.charged: list[str] = []

    def charge(self, order: str) -> str:
        self.charged.append(order)
        return f"{self.name}:{order}"


class Charge(Step):
    """An async step using the app's gateway and settings."""

    events = ("charged",)
    retry = RetryPolicy(max_attempts=1)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        gateway: Gateway = run.resources["gateway"]
        currency = run.resources.get("currency", "EUR")
        return Ok("charged", {"receipt": gateway.charge(run.id), "currency": currency})


class Notify(Step):
    """A plain ``def`` step (run in a thread) reading the same resources."""

    events = ("sent",)
    seen: ClassVar[list[Any]] = []

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        Notify.seen.append(run.resources["gateway"])
        return "sent"


class Checkout(Workflow):
    unique = Unique(key="checkout")
    start_step = Charge
    transitions = {(Charge, "charged"): Notify, (Notify, "sent"): Done}


async def test_steps_read_the_resources_the_app_was_given(
    storage: Storage, clock: FakeClock, new_runner: Callable[[], Runner]
) -> None:
    """Async and thread steps get the very objects given to ``Hephaestus(resources=...)``."""
    Notify.seen.clear()
    gateway = Gateway("live")
    resources = {"gateway": gateway, "currency": "CHF"}
    async with Hephaestus(
        storage=storage, clock=clock, runner=new_runner(), resources=resources
    ) as app:
        await Checkout.start("o1")
        await run_until_idle(app)
        run = await Checkout.get("o1")
    assert run.status is Status.COMPLETED
    assert run.context.steps["charge"] == {"receipt": "live:checkout::o1", "currency": "CHF"}
    assert gateway.charged == ["checkout::o1"]
    assert Notify.seen == [gateway]


async def test_a_test_swaps_a_resource_on_an_open_app(app: Hephaestus) -> None:
    """``app.resources[name] = fake`` is what the next steps see."""
    Notify.seen.clear()
    fake = Gateway("fake")
    app.resources["gateway"] = fake
    await Checkout.start("o2")
    await run_until_idle(app)
    assert (await Checkout.get("o2")).context.steps["charge"]["receipt"] == "fake:checkout::o2"
    assert fake.charged == ["checkout::o2"]


async def test_a_missing_resource_fails_the_step_saying_how_to_give_it(app: Hephaestus) -> None:
    """Reading a resource the app lacks fails the attempt with ``MissingResourceError``."""
    await Checkout.start("o3")
    await run_until_idle(app)
    run = await Checkout.get("o3")
    assert run.status is Status.FAILED
    assert run.error is not None
    assert run.error.type == "hephaestus.errors.MissingResourceError"
    assert "no resource 'gateway'" in run.error.message
    assert "Hephaestus(resources={'gateway': ...})" in run.error.message


async def test_a_step_built_by_hand_takes_resources() -> None:
    """A unit test calls ``execute`` with a ``StepRun`` carrying its own resources, no app."""
    context = StepContext(initial={}, steps={}, instance_id="checkout::u1", run_id="r1")
    fake = Gateway("unit")
    run = StepRun(context, "Checkout", 1, resources={"gateway": fake})
    result = await Charge().execute(run, None, context)
    assert result == Ok("charged", {"receipt": "unit:checkout::u1", "currency": "EUR"})
    error = MissingResourceError("no resource 'db'", name="db")
    assert isinstance(error, KeyError)
    assert str(error) == "no resource 'db'"
