"""Business ids people have (``ORD-2024-0001``, ``customer_42``) work the same on every storage."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from hephaestus import Done, InstanceAlreadyRunningError, Unique, WaitForEvent, Workflow
from hephaestus.errors import InvalidInstanceIdError

if TYPE_CHECKING:
    from hephaestus import Hephaestus


class Order(Workflow):
    unique = Unique(key="order")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


async def test_hyphens_underscores_dots_and_case_are_kept(app: Hephaestus) -> None:
    """Such values start, are found by value and by id, and differ by case, on each storage."""
    values = ["ORD-2024-0001", "ord-2024-0001", "customer_42", "v1.2.3"]
    for value in values:
        assert await Order.start(value) == f"order::{value}"
    for value in values:
        assert (await Order.get(value)).id == f"order::{value}"
        assert (await app.get_instance(f"order::{value}")).id == f"order::{value}"
    with pytest.raises(InstanceAlreadyRunningError):
        await Order.start("ORD-2024-0001")
    await Order.resume("customer_42", "received")


async def test_an_id_prefix_takes_underscore_and_dot_literally(app: Hephaestus) -> None:
    """``_`` and ``.`` in a prefix match themselves (no pattern wildcard on any storage)."""
    for value in ("customer_42", "customerx42", "a.b", "axb"):
        await Order.start(value)
    assert [run.id for run in await Order.list(id_prefix="order::customer_")] == [
        "order::customer_42"
    ]
    assert [run.id for run in await Order.list(id_prefix="order::a.")] == ["order::a.b"]


@pytest.mark.parametrize("value", ["-ord", "ord 1", "ord:1", "ord/1", "ordé"])
async def test_other_values_are_refused_before_any_storage(app: Hephaestus, value: str) -> None:
    """Any other value is an ``InvalidInstanceIdError`` naming the rule, on each storage."""
    with pytest.raises(InvalidInstanceIdError, match=r"letters, digits, '-', '_' and '\.'"):
        await Order.start(value)
    assert await Order.list() == []
