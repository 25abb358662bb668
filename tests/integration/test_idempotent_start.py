"""An idempotent start returns the run the same start made, instead of a conflict."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from hephaestus import (
    Done,
    InstanceAlreadyRunningError,
    Status,
    Unique,
    WaitForEvent,
    Workflow,
)
from hephaestus.errors import InvalidArgumentError
from hephaestus.testing import advance, run_until_idle

if TYPE_CHECKING:
    from hephaestus import Hephaestus

ORDER: dict[str, Any] = {
    "items": [1, 2],
    "amount": Decimal("10.10"),
    "at": datetime(2026, 1, 1, tzinfo=UTC),
    "tags": {"gift"},
    "pair": (1.5, "x"),
}


class Checkout(Workflow):
    unique = Unique(key="checkout")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


class Fresh(Workflow):
    unique = Unique(key="fresh", scope="none")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


async def test_the_same_start_returns_the_active_run(app: Hephaestus) -> None:
    """Starting the same id with the same context returns the active run; nothing is added."""
    first = await Checkout.start("ORD-1", ORDER, idempotent=60)
    again = await Checkout.start("ORD-1", dict(ORDER), idempotent=60)
    assert again == first == "checkout::ORD-1"
    assert len(await Checkout.list()) == 1


async def test_a_different_context_is_still_a_conflict(app: Hephaestus) -> None:
    """Another context for an active id raises ``InstanceAlreadyRunningError`` saying why."""
    await Checkout.start("ORD-1", ORDER, idempotent=60)
    with pytest.raises(InstanceAlreadyRunningError, match="different initial context"):
        await Checkout.start("ORD-1", {**ORDER, "amount": Decimal("10.11")}, idempotent=60)
    assert len(await Checkout.list()) == 1


async def test_without_the_option_a_repeat_is_a_conflict(app: Hephaestus) -> None:
    """The default is unchanged: a second start of an active id is refused."""
    await Checkout.start("ORD-1", ORDER)
    with pytest.raises(InstanceAlreadyRunningError):
        await Checkout.start("ORD-1", ORDER)


async def test_an_ended_run_is_returned_within_the_window_only(app: Hephaestus) -> None:
    """After its end, the run is returned for ``idempotent`` seconds; later a new run starts."""
    await Checkout.start("ORD-1", ORDER)
    await Checkout.resume("ORD-1", "received")
    await run_until_idle(app)
    ended = await Checkout.get("ORD-1")
    assert ended.status is Status.COMPLETED

    await advance(app, 59)
    assert await Checkout.start("ORD-1", ORDER, idempotent=timedelta(minutes=1)) == ended.id
    assert [run.run_id for run in await Checkout.list()] == [ended.run_id]

    await advance(app, 2)
    await Checkout.start("ORD-1", ORDER, idempotent=60)
    runs = await Checkout.list(newest_first=True)
    assert len(runs) == 2
    assert runs[0].run_id != ended.run_id
    assert runs[0].status is not Status.COMPLETED


async def test_a_zero_window_returns_active_runs_only(app: Hephaestus) -> None:
    """``idempotent=0`` returns an active run, never an ended one."""
    await Checkout.start("ORD-1", ORDER)
    assert await Checkout.start("ORD-1", ORDER, idempotent=0) == "checkout::ORD-1"
    await Checkout.cancel("ORD-1")
    await run_until_idle(app)
    await Checkout.start("ORD-1", ORDER, idempotent=0)
    assert len(await Checkout.list()) == 2


async def test_concurrent_idempotent_starts_make_one_run(app: Hephaestus) -> None:
    """Two retries racing: one starts the run, the other returns it (its start conflicted)."""
    ids = await asyncio.gather(*(Checkout.start("ORD-9", ORDER, idempotent=60) for _ in range(3)))
    assert ids == ["checkout::ORD-9"] * 3
    assert len(await Checkout.list()) == 1


async def test_an_idempotent_start_needs_a_business_id(app: Hephaestus) -> None:
    """Scope ``none`` (a new id per start) and a malformed window are refused."""
    with pytest.raises(InvalidArgumentError, match="unique scope 'none'"):
        await Fresh.start("a1", idempotent=60)
    with pytest.raises(InvalidArgumentError, match="idempotent= must be a window"):
        await Checkout.start("a1", idempotent=-1)
    assert await Checkout.list() == []
