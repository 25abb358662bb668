"""The seed's example workflows, whose graph renderings are pinned as golden files.

Linear, branch, fan-out/fan-in, dynamic route and versioned: each shape the renderers must
draw. The steps do real (tiny) work so the instances tests can run them too.
"""

from __future__ import annotations

from typing import Any

from hephaestus import (
    Config,
    Context,
    Done,
    Ok,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    Wait,
    WaitForEvent,
    Workflow,
    route,
)

__all__ = [
    "BranchFlow",
    "FanOutFlow",
    "LinearFlow",
    "OrderFlow",
    "OrderFlowV1",
    "OrderFlowV2",
    "RouteFlow",
]


class Fetch(Step):
    """Fetches the document."""

    events = ("fetched",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("fetched", {"size": 3})


class Parse(Step):
    """Parses it."""

    events = ("parsed",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("parsed")


class Store(Step):
    """Stores the result."""

    events = ("stored",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("stored")


class LinearFlow(Workflow):
    """Three steps, one after the other."""

    unique = Unique(key="doc")
    start_step = Fetch
    transitions = {
        (Fetch, "fetched"): Parse,
        (Parse, "parsed"): Store,
        (Store, "stored"): Done,
    }


class Review(Step):
    """Approves or rejects, from the initial data."""

    events = ("approved", "rejected")

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("approved" if context.initial.get("ok", True) else "rejected")


class Publish(Step):
    """Publishes an approved document."""

    events = ("published",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("published")


class Archive(Step):
    """Archives a rejected document."""

    events = ("archived",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("archived")


class BranchFlow(Workflow):
    """Two exclusive branches, both reaching Done."""

    unique = Unique(key="review")
    start_step = Review
    transitions = {
        (Review, "approved"): Publish,
        (Review, "rejected"): Archive,
        (Publish, "published"): Done,
        (Archive, "archived"): Done,
    }


class Validate(Step):
    """Checks the order."""

    events = ("valid", "invalid")

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("valid" if context.initial.get("items") else "invalid")


class Charge(Step):
    """Charges the card (in parallel with Reserve)."""

    events = ("charged",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("charged")


class Reserve(Step):
    """Reserves the stock (in parallel with Charge)."""

    events = ("reserved",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("reserved")


class Ship(Step):
    """Ships once both are done (the fan-in)."""

    events = ("shipped",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("shipped")


class Reject(Step):
    """Rejects an invalid order."""

    events = ("rejected",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("rejected")


class AwaitDelivery(WaitForEvent):
    """Waits for the courier's ``delivered``."""

    events = ("delivered",)


class FanOutFlow(Workflow):
    """Fan-out to payment and stock, fan-in at Ship, then wait for the courier."""

    unique = Unique(key="order")
    tags = ("shop", "shipping")
    start_step = Validate
    transitions = {
        (Validate, "valid"): [Charge, Reserve],
        (Validate, "invalid"): Reject,
        (Charge, "charged"): Ship,
        (Reserve, "reserved"): Ship,
        (Ship, "shipped"): AwaitDelivery,
        (AwaitDelivery, "delivered"): Done,
        (Reject, "rejected"): Done,
    }


class Pack(Step):
    """Packs the parcel."""

    events = ("packed",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("packed")


class ExpressShipping(Step):
    """Ships overnight."""

    events = ("sent",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("sent")


class StandardShipping(Step):
    """Ships by post."""

    events = ("sent",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("sent")


@route(ExpressShipping, StandardShipping)
def pick_shipping(context: Context) -> type[Step]:
    """Express when the order asks for it."""
    return ExpressShipping if context.initial.get("express") else StandardShipping


class Transit(Wait):
    """The parcel travels; the route sends one shipping, so the merge runs when either arrives."""

    join = "any"


class RouteFlow(Workflow):
    """A dynamic route picks the shipping, then a timer with a config."""

    unique = Unique(key="parcel")
    start_step = (Pack, {"fragile": True})
    transitions = {
        (Pack, "packed"): pick_shipping,
        (ExpressShipping, "sent"): (Transit, {"duration": 1, "unit": "day"}),
        (StandardShipping, "sent"): (Transit, {"duration": 3, "unit": "day"}),
        (Transit, "timeout"): Done,
    }


class OrderFlowV1(Workflow):
    """Version 1: validate, then ship."""

    version = 1
    start_step = Validate
    transitions = {
        (Validate, "valid"): Ship,
        (Validate, "invalid"): Reject,
        (Ship, "shipped"): Done,
        (Reject, "rejected"): Done,
    }


class OrderFlowV2(Workflow):
    """Version 2: validate, charge, wait for the courier."""

    version = 2
    start_step = Validate
    transitions = {
        (Validate, "valid"): Charge,
        (Validate, "invalid"): Reject,
        (Charge, "charged"): AwaitDelivery,
        (AwaitDelivery, "delivered"): Done,
        (Reject, "rejected"): Done,
    }


class OrderFlow(Workflow):
    """The umbrella over both versions."""

    unique = Unique(key="vorder", scope="version")
    tags = ("shop",)
    versions = {1: OrderFlowV1, 2: OrderFlowV2}
    current = 2


EXAMPLES: dict[str, Any] = {
    "linear": LinearFlow,
    "branch": BranchFlow,
    "fan_out_fan_in": FanOutFlow,
    "dynamic_route": RouteFlow,
    "versioned": OrderFlow,
}
"""Golden-file stem -> workflow class."""
