"""The workflow facade (start/resume/get/list/cancel) end to end, with business keys."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

import pytest

from hephaestus import (
    Config,
    Done,
    HistoryKind,
    Instance,
    InstanceAlreadyRunningError,
    InstanceNotActiveError,
    InstanceNotFoundError,
    Ok,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    StepStatus,
    Unique,
    Wait,
    WaitForEvent,
    Workflow,
)
from hephaestus.errors import (
    InvalidEventError,
    InvalidInstanceIdError,
    StepNotWaitingError,
    UnencodableValueError,
    UnknownVersionError,
)
from hephaestus.storage import InstanceQuery
from hephaestus.testing import advance, run_until_idle

if TYPE_CHECKING:
    from hephaestus import Hephaestus
    from hephaestus.testing import FakeClock

# -- the OrderFlow --------------------------------------------------------------------


class ValidateOrder(Step):
    events = ("valid", "invalid")

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        items: list[int] = context.initial.get("items", [])
        if not items:
            return Ok("invalid", {"reason": "no items"})
        return Ok("valid", {"total": sum(items)})


charge_gates: dict[str, asyncio.Event] = {}
"""Runs whose ChargePayment waits for a test to let it go (by instance id)."""


class ChargePayment(Step):
    events = ("charged",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        gate = charge_gates.get(run.id)
        if gate is not None:
            await gate.wait()
        return Ok("charged", {"amount": context.steps["validate_order"]["total"]})


class ReserveStock(Step):
    events = ("reserved",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("reserved", {"items": len(context.initial["items"])})


class Ship(Step):
    events = ("shipped",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        confirmation = context.steps["wait_for_event"]["confirmation"]
        return Ok("shipped", {"confirmation": confirmation, "carrier": (config or {})["carrier"]})


class RejectOrder(Step):
    events = ("rejected",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "rejected"


class OrderFlow(Workflow):
    unique = Unique(key="orderid")
    start_step = ValidateOrder
    transitions = {
        (ValidateOrder, "valid"): [ChargePayment, ReserveStock],  # fan-out
        (ValidateOrder, "invalid"): RejectOrder,
        (ChargePayment, "charged"): WaitForEvent,  # the bank confirms later
        (WaitForEvent, "received"): (Ship, {"carrier": "ups"}),
        (ReserveStock, "reserved"): (Wait, {"duration": 2, "unit": "second"}),
        (Wait, "timeout"): (Ship, {"carrier": "ups"}),  # fan-in at Ship
        (Ship, "shipped"): Done,
        (RejectOrder, "rejected"): Done,
    }


async def test_order_flow_runs_end_to_end(app: Hephaestus, clock: FakeClock) -> None:
    """Fan-out, a timer fired by advancing the clock and a resume with payload complete the run."""
    instance_id = await OrderFlow.start("abc123", {"items": [1, 2]})
    assert instance_id == "orderid::abc123"
    await run_until_idle(app)

    waiting = await OrderFlow.get("abc123")
    assert waiting.status is Status.WAITING
    assert sorted(waiting.waiting_steps) == ["wait", "wait_for_event"]
    assert {"validate_order", "charge_payment", "reserve_stock"} <= set(waiting.completed_steps)
    assert waiting.steps["reject_order"].status is StepStatus.SKIPPED
    assert clock.pending == 1

    await advance(app, 2)
    joined = await OrderFlow.get("abc123")
    assert joined.status is Status.WAITING
    assert joined.steps["wait"].status is StepStatus.COMPLETED
    assert "ship" not in joined.steps, "Ship ran before both branches arrived"

    await OrderFlow.resume("abc123", "received", {"confirmation": "c-42"})
    await run_until_idle(app)

    done = await OrderFlow.get("orderid::abc123")
    assert done.status is Status.COMPLETED
    assert done.context.steps["wait_for_event"] == {"confirmation": "c-42"}
    assert done.context.steps["ship"] == {"confirmation": "c-42", "carrier": "ups"}
    assert done.context.steps["charge_payment"] == {"amount": 3}
    assert done.history[0].kind is HistoryKind.STARTED
    assert done.history[-1].kind is HistoryKind.COMPLETED
    assert clock.pending == 0


async def test_a_resume_sent_before_the_step_waits_is_buffered(app: Hephaestus) -> None:
    """A resume for a step not waiting yet is kept and delivered the moment the step waits."""
    gate = charge_gates["orderid::abc124"] = asyncio.Event()  # the step before the wait holds
    try:
        await OrderFlow.start("abc124", {"items": [5]})
        await OrderFlow.resume("abc124", "received", {"confirmation": "early"})

        buffered = await OrderFlow.get("abc124")
        assert [(p.step, p.event) for p in buffered.inbox] == [("wait_for_event", "received")]
        # Other branches keep running meanwhile (a database write yields to them), so the
        # buffered resume is recorded, though not necessarily last.
        assert HistoryKind.RESUME_BUFFERED in [entry.kind for entry in buffered.history]
    finally:
        gate.set()
        del charge_gates["orderid::abc124"]

    await run_until_idle(app)
    waiting = await OrderFlow.get("abc124")
    assert waiting.inbox == ()
    assert waiting.waiting_steps == ("wait",)
    assert waiting.steps["wait_for_event"].status is StepStatus.COMPLETED

    await advance(app, 2)
    done = await OrderFlow.get("abc124")
    assert done.status is Status.COMPLETED
    assert done.context.steps["ship"]["confirmation"] == "early"


async def test_the_invalid_branch_skips_the_fan_out_and_still_completes(app: Hephaestus) -> None:
    """An order without items is rejected; the untaken branch is skipped and Done is reached."""
    await OrderFlow.start("abc125", {"items": []})
    await run_until_idle(app)
    instance = await OrderFlow.get("abc125")
    assert instance.status is Status.COMPLETED
    skipped = set(instance.steps_in(StepStatus.SKIPPED))
    assert skipped == {"charge_payment", "reserve_stock", "wait_for_event", "wait", "ship"}


# -- errors from the facade -------------------------------------------------------------------


class Hold(Workflow):
    unique = Unique(key="hold")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


async def test_cancel_of_a_completed_run_raises_not_active(app: Hephaestus) -> None:
    """A finished run cannot be cancelled; its status stays final."""
    await Hold.start("one")
    await Hold.resume("one", "received")
    await run_until_idle(app)
    with pytest.raises(InstanceNotActiveError) as caught:
        await Hold.cancel("one")
    assert caught.value.status == Status.COMPLETED
    assert caught.value.instance_id == "hold::one"
    assert (await Hold.get("one")).status is Status.COMPLETED


async def test_resume_of_a_finished_run_raises_not_active(app: Hephaestus) -> None:
    """A cancelled run cannot be resumed."""
    await Hold.start("one")
    await run_until_idle(app)
    await Hold.cancel("one")
    with pytest.raises(InstanceNotActiveError):
        await Hold.resume("one", "received")


async def test_resume_with_an_undeclared_event_raises_and_changes_nothing(
    app: Hephaestus,
) -> None:
    """An event the waiting step does not declare is refused and the run keeps waiting."""
    await Hold.start("one")
    await run_until_idle(app)
    before = await Hold.get("one")
    with pytest.raises(InvalidEventError):
        await Hold.resume("one", "approved")
    with pytest.raises(InvalidEventError):
        await Hold.resume("one", "approved", step="wait_for_event")
    with pytest.raises(StepNotWaitingError):
        await Hold.resume("one", "received", step="no_such_step")
    after = await Hold.get("one")
    assert after.status is Status.WAITING
    assert after.revision == before.revision


@pytest.mark.parametrize("step", [None, "wait_for_event"])
async def test_resume_with_an_unrouted_timeout_is_refused_and_changes_nothing(
    app: Hephaestus, step: str | None
) -> None:
    """'timeout' where no transition routes it is refused; revision and history are unchanged."""
    await Hold.start("one")
    await run_until_idle(app)
    before = await Hold.get("one")
    with pytest.raises(InvalidEventError, match=r"\['received'\]"):
        await Hold.resume("one", "timeout", step=step)
    await run_until_idle(app)
    after = await Hold.get("one")
    assert after.status is Status.WAITING
    assert (after.revision, after.history) == (before.revision, before.history)
    await Hold.resume("one", "received")
    await run_until_idle(app)
    assert (await Hold.get("one")).status is Status.COMPLETED


async def test_operations_on_an_unknown_value_raise_not_found(app: Hephaestus) -> None:
    """get, resume and cancel of a value that never ran raise ``InstanceNotFoundError``."""
    with pytest.raises(InstanceNotFoundError) as caught:
        await Hold.get("nobody")
    assert caught.value.instance_id == "hold::nobody"
    with pytest.raises(InstanceNotFoundError):
        await Hold.resume("nobody", "received")
    with pytest.raises(InstanceNotFoundError):
        await Hold.cancel("nobody")


@pytest.mark.parametrize(
    "value",
    ["", "-ab", "a b", "a:b", "a/b", "ünï", "abc\n", "other::abc", "hold::abc::1a2b3c4d", "hold::"],
)
async def test_invalid_business_values_are_refused(app: Hephaestus, value: str) -> None:
    """Values outside ``[A-Za-z0-9][A-Za-z0-9._-]*``, and foreign ids, are refused."""
    with pytest.raises(InvalidInstanceIdError):
        await Hold.start(value)
    with pytest.raises(InvalidInstanceIdError):
        await Hold.get(value)
    assert await Hold.list() == []


async def test_uuid_values_are_accepted(app: Hephaestus) -> None:
    """A lowercase UUID is a valid business value."""
    value = "0b5f6c1e-8d7a-4c3b-9e2f-1a2b3c4d5e6f"
    assert await Hold.start(value) == f"hold::{value}"
    assert (await Hold.get(f"hold::{value}")).id == f"hold::{value}"


# -- uniqueness -------------------------------------------------------------------------------


async def test_concurrent_starts_of_one_value_yield_exactly_one_run(app: Hephaestus) -> None:
    """Of 20 simultaneous starts of the same value one wins; 19 get InstanceAlreadyRunningError."""
    results = await asyncio.gather(*(Hold.start("race") for _ in range(20)), return_exceptions=True)
    ids = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, InstanceAlreadyRunningError)]
    assert ids == ["hold::race"]
    assert len(refused) == 19
    assert all(r.instance_id == "hold::race" for r in refused)
    assert len(await Hold.list()) == 1


class Ticket(Workflow):
    unique = Unique(key="ticket", scope="none")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


async def test_scope_none_gives_each_start_its_own_suffixed_id(app: Hephaestus) -> None:
    """With scope ``none`` every start of a value gets a distinct ``key::value::<8 hex>`` id."""
    first = await Ticket.start("abc")
    second = await Ticket.start("abc")
    assert first != second
    for instance_id in (first, second):
        assert re.fullmatch(r"ticket::abc::[0-9a-f]{8}", instance_id)
    await run_until_idle(app)
    await Ticket.resume(first, "received")
    await run_until_idle(app)
    assert (await Ticket.get(first)).status is Status.COMPLETED
    assert (await Ticket.get(second)).status is Status.WAITING
    with pytest.raises(InvalidInstanceIdError):
        await Ticket.get("abc")


class Alpha(Workflow):
    unique = Unique(key="shared", scope="global")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


class Beta(Workflow):
    unique = Unique(key="shared", scope="global")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


async def test_scope_global_is_shared_across_workflows(app: Hephaestus) -> None:
    """With scope ``global`` an active id blocks the same id in every other workflow."""
    await Alpha.start("abc")
    with pytest.raises(InstanceAlreadyRunningError):
        await Beta.start("abc")
    await Alpha.cancel("abc")
    assert await Beta.start("abc") == "shared::abc"


class Gamma(Workflow):
    unique = Unique(key="shared")  # scope "workflow"
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


class Delta(Workflow):
    unique = Unique(key="shared", scope="version")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


@pytest.mark.parametrize("scoped", [Gamma, Delta], ids=["workflow", "version"])
async def test_scope_global_excludes_an_id_in_workflows_of_any_scope(
    app: Hephaestus, scoped: type[Workflow]
) -> None:
    """A global run blocks the id in a workflow- or version-scoped workflow, and vice versa."""
    await Alpha.start("abc")
    with pytest.raises(InstanceAlreadyRunningError):
        await scoped.start("abc")
    await Alpha.cancel("abc")
    await scoped.start("abc")
    with pytest.raises(InstanceAlreadyRunningError):
        await Alpha.start("abc")
    active = await app.list(status_in=["pending", "running", "waiting"])
    assert [run.workflow for run in active] == [scoped.definition().name]


@pytest.mark.parametrize("storage", ["memory-json", "postgres"], indirect=True)
async def test_a_start_refused_for_its_context_leaves_the_id_free(app: Hephaestus) -> None:
    """A start whose context the storage cannot hold stores nothing: the id starts afterwards."""
    with pytest.raises(UnencodableValueError):
        await Alpha.start("abc", {"bad": object()})
    assert await Alpha.start("abc") == "shared::abc"
    assert len(await app.list()) == 1


async def test_a_value_can_start_again_once_its_run_finished(
    app: Hephaestus, clock: FakeClock
) -> None:
    """After a run completes the value is free; get() then returns the newest run."""
    await Hold.start("again")
    with pytest.raises(InstanceAlreadyRunningError):
        await Hold.start("again")
    await Hold.resume("again", "received")
    await run_until_idle(app)
    first = await Hold.get("again")
    assert first.status is Status.COMPLETED

    clock.advance(1)
    assert await Hold.start("again") == "hold::again"
    await run_until_idle(app)
    newest = await Hold.get("again")
    assert newest.run_id != first.run_id
    assert newest.status is Status.WAITING
    runs = await Hold.list()
    assert [r.run_id for r in runs] == [first.run_id, newest.run_id]


# -- list -------------------------------------------------------------------------------------


class Queue(Workflow):
    unique = Unique(key="queue")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


async def test_list_filters_by_status_and_paginates(app: Hephaestus, clock: FakeClock) -> None:
    """list() returns a workflow's runs oldest first, filtered by status, sliced by limit/offset."""
    values = ["q1", "q2", "q3", "q4", "q5"]
    for value in values:
        await Queue.start(value)
        clock.advance(1)
    await Hold.start("elsewhere")
    await run_until_idle(app)
    await Queue.resume("q2", "received")
    await Queue.resume("q4", "received")
    await Queue.cancel("q5")
    await run_until_idle(app)

    def ids(rows: list[Instance]) -> list[str]:
        return [row.id.removeprefix("queue::") for row in rows]

    assert ids(await Queue.list()) == values
    assert ids(await Queue.list(status="waiting")) == ["q1", "q3"]
    assert ids(await Queue.list(status=Status.COMPLETED)) == ["q2", "q4"]
    assert ids(await Queue.list(status_in=["completed", Status.CANCELLED])) == ["q2", "q4", "q5"]
    assert ids(await Queue.list(limit=2)) == ["q1", "q2"]
    assert ids(await Queue.list(limit=2, offset=2)) == ["q3", "q4"]
    assert ids(await Queue.list(offset=4)) == ["q5"]
    assert ids(await Queue.list(offset=9)) == []
    assert ids(await Queue.list(version=1)) == values
    assert ids(await app.list(Queue, newest_first=True, limit=2)) == ["q5", "q4"]
    everything = await app.list()
    assert {row.workflow for row in everything} == {Queue.name, Hold.name}
    assert len(everything) == 6


async def test_list_newest_first_and_unknown_version(app: Hephaestus, clock: FakeClock) -> None:
    """list() can return the newest runs first, and refuses a version the workflow lacks."""
    for value in ("a", "b", "c"):
        await Ticket.start(value)
        clock.advance(1)
    newest = await Ticket.list(newest_first=True, limit=2)
    assert [run.id.split("::")[1] for run in newest] == ["c", "b"]
    with pytest.raises(UnknownVersionError):
        await Ticket.list(version=2)
    with pytest.raises(UnknownVersionError):
        await Ticket.get("ticket::a::00000000", version=2)


class Invoice(Workflow):
    unique = Unique(key="invoice")
    tags = ("billing",)
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


async def test_list_passes_the_query_filters_through(app: Hephaestus) -> None:
    """``list`` takes the query model's filters; tags resolve through the app's registry."""
    await app.start(Invoice, "ab1", metadata={"team": "a"})
    await app.start(Invoice, "ab2", metadata={"team": "b"})
    await app.start(Invoice, "cd3", metadata={"team": "a"})
    await app.start(Hold, "ab4")

    async def ids(**filters: Any) -> list[str]:
        return [run.id for run in await app.list(**filters)]

    assert await ids(tags=["billing"]) == ["invoice::ab1", "invoice::ab2", "invoice::cd3"]
    assert await ids(tags=["billing"], id_prefix="invoice::ab") == ["invoice::ab1", "invoice::ab2"]
    assert await ids(metadata={"team": "a"}, newest_first=True) == ["invoice::cd3", "invoice::ab1"]
    assert await ids(tags=["nowhere"]) == []
    first = await app.get(Invoice, "ab1")
    assert await ids(created_after=first.created_at, created_before=first.created_at) == []
    page = await app.storage.page(InstanceQuery(tags=["billing"], limit=2))
    assert page.next_cursor is not None
    assert await ids(tags=["billing"], after=page.next_cursor) == ["invoice::cd3"]
