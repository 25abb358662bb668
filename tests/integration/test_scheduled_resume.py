"""schedule_resume end to end: durable delayed resumes through the app, on every storage."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from hephaestus import (
    Config,
    Done,
    Hephaestus,
    HistoryKind,
    Instance,
    InstanceNotActiveError,
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
from hephaestus.errors import InvalidEventError, StepNotWaitingError
from hephaestus.storage.postgres import PostgresStorage
from hephaestus.testing import advance, run_until_idle
from tests._pg import dsn, truncate

if TYPE_CHECKING:
    from hephaestus.storage import Storage
    from hephaestus.testing import FakeClock


class AwaitApproval(WaitForEvent):
    """Waits for ``approved``; its optional ``timeout`` is routed to ``Expire``."""

    events = ("approved",)


class Expire(Step):
    events = ("expired",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("expired")


class Approval(Workflow):
    unique = Unique(key="approval")
    start_step = AwaitApproval
    transitions = {
        (AwaitApproval, "approved"): Done,
        (AwaitApproval, "timeout"): Expire,
        (Expire, "expired"): Done,
    }


class NoTimeout(Workflow):
    """``WaitForEvent`` routes only ``received``: ``timeout`` is not routable here."""

    unique = Unique(key="notimeout")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


class Cooldown(Workflow):
    """A timer first, so ``await_approval`` is not waiting yet for the first 10 s."""

    unique = Unique(key="cooldown")
    start_step = (Wait, {"duration": 10, "unit": "second"})
    transitions = {(Wait, "timeout"): AwaitApproval, (AwaitApproval, "approved"): Done}


def _resumed(instance: Instance) -> list[tuple[str | None, str | None, str | None]]:
    return [
        (e.step, e.event, e.source) for e in instance.history if e.kind is HistoryKind.STEP_RESUMED
    ]


async def test_a_scheduled_resume_fires_after_its_delay_and_completes_the_run(
    app: Hephaestus,
) -> None:
    """Scheduled with a payload, the resume is delivered exactly when due and the run ends."""
    await Approval.start("one")
    await run_until_idle(app)
    item = await Approval.schedule_resume(
        "one", "await_approval", 60, event="approved", payload={"by": "timer"}
    )
    assert (item.step, item.event, item.payload) == ("await_approval", "approved", {"by": "timer"})
    stored = await Approval.get("one")
    assert stored.scheduled == (item,)
    await advance(app, 59)
    assert (await Approval.get("one")).status is Status.WAITING
    await advance(app, 1)
    done = await Approval.get("one")
    assert done.status is Status.COMPLETED
    assert done.scheduled == ()
    assert done.context.steps["await_approval"] == {"by": "timer"}
    assert _resumed(done) == [("await_approval", "approved", "scheduled")]


async def test_schedule_resume_by_id_defaults_to_the_timeout_event(
    app: Hephaestus, clock: FakeClock
) -> None:
    """app.schedule_resume(id, step, timedelta) resumes with 'timeout', routed to Expire."""
    instance_id = await Approval.start("one")
    await run_until_idle(app)
    item = await app.schedule_resume(instance_id, "await_approval", timedelta(minutes=2))
    assert (item.event, item.at) == ("timeout", clock.now() + timedelta(minutes=2))
    await advance(app, 120)
    done = await app.get_instance(instance_id)
    assert done.status is Status.COMPLETED
    assert done.steps["expire"].status is StepStatus.COMPLETED
    assert _resumed(done) == [("await_approval", "timeout", "scheduled")]


async def test_a_resume_that_comes_first_cancels_the_scheduled_one(
    app: Hephaestus, clock: FakeClock
) -> None:
    """Resuming the step before the delay drops the scheduled resume and disarms its timer."""
    await Approval.start("one")
    await run_until_idle(app)
    await Approval.schedule_resume("one", "await_approval", 60)
    assert clock.pending == 1
    await Approval.resume("one", "approved")
    await run_until_idle(app)
    done = await Approval.get("one")
    assert done.status is Status.COMPLETED
    assert done.scheduled == ()
    assert clock.pending == 0
    await advance(app, 120)
    after = await Approval.get("one")
    assert (after.revision, after.history) == (done.revision, done.history)
    assert after.steps["expire"].status is StepStatus.SKIPPED


async def test_cancelling_the_run_drops_its_scheduled_resumes(
    app: Hephaestus, clock: FakeClock
) -> None:
    """A cancelled run keeps no scheduled resume and no armed timer."""
    await Approval.start("one")
    await run_until_idle(app)
    await Approval.schedule_resume("one", "await_approval", 60, event="approved")
    await Approval.cancel("one")
    cancelled = await Approval.get("one")
    assert cancelled.scheduled == ()
    assert clock.pending == 0


async def test_an_unroutable_event_is_refused_and_nothing_changes(app: Hephaestus) -> None:
    """'timeout' where no transition routes it (and undeclared events) raise InvalidEventError."""
    await NoTimeout.start("one")
    await run_until_idle(app)
    before = await NoTimeout.get("one")
    with pytest.raises(InvalidEventError, match=r"\['received'\]"):
        await NoTimeout.schedule_resume("one", "wait_for_event", 5)
    with pytest.raises(InvalidEventError):
        await NoTimeout.schedule_resume("one", "wait_for_event", 5, event="approved")
    with pytest.raises(StepNotWaitingError):
        await NoTimeout.schedule_resume("one", "no_such_step", 5, event="received")
    with pytest.raises(ValueError, match="delay"):
        await NoTimeout.schedule_resume("one", "wait_for_event", -1, event="received")
    after = await NoTimeout.get("one")
    assert (after.revision, after.history, after.scheduled) == (before.revision, before.history, ())


async def test_a_finished_run_cannot_get_a_scheduled_resume(app: Hephaestus) -> None:
    """schedule_resume of a completed run raises InstanceNotActiveError."""
    instance_id = await NoTimeout.start("one")
    await NoTimeout.resume("one", "received")
    await run_until_idle(app)
    with pytest.raises(InstanceNotActiveError):
        await app.schedule_resume(instance_id, "wait_for_event", 5, event="received")


async def test_a_resume_due_before_its_step_waits_is_delivered_when_it_does(
    app: Hephaestus,
) -> None:
    """Due while the step is not reached yet, the resume is kept and delivered once it waits."""
    await Cooldown.start("one")
    await run_until_idle(app)
    await Cooldown.schedule_resume("one", "await_approval", 5, event="approved")
    await advance(app, 5)
    kept = await Cooldown.get("one")
    assert kept.status is Status.WAITING
    assert [(p.step, p.source) for p in kept.inbox] == [("await_approval", "scheduled")]
    await advance(app, 5)
    done = await Cooldown.get("one")
    assert done.status is Status.COMPLETED
    assert _resumed(done) == [
        ("wait", "timeout", "timer"),
        ("await_approval", "approved", "scheduled"),
    ]


async def test_a_scheduled_resume_survives_close_and_reopen(
    storage: Storage, clock: FakeClock
) -> None:
    """Scheduled before the app closes, the resume fires at its time after the app reopens."""
    async with Hephaestus(storage=storage, clock=clock) as app:
        await Approval.start("one")
        await run_until_idle(app)
        await Approval.schedule_resume("one", "await_approval", 60, event="approved")
    assert clock.pending == 0
    async with Hephaestus(storage=storage, clock=clock) as app:
        assert len((await Approval.get("one")).scheduled) == 1
        await advance(app, 60)
        done = await Approval.get("one")
        assert done.status is Status.COMPLETED
        assert _resumed(done) == [("await_approval", "approved", "scheduled")]


async def test_a_scheduled_resume_survives_a_new_postgres_storage(
    integration_database: str, clock: FakeClock
) -> None:
    """A second app on a fresh PostgreSQL connection re-arms and fires the stored resume."""
    truncate(integration_database)
    first = PostgresStorage(dsn(integration_database), min_size=1, max_size=2)
    async with Hephaestus(storage=first, clock=clock) as app:
        await Approval.start("one")
        await run_until_idle(app)
        await Approval.schedule_resume("one", "await_approval", 30, event="approved")
    await advance_clock(clock, 45)  # due while no app is open
    second = PostgresStorage(dsn(integration_database), min_size=1, max_size=2)
    async with Hephaestus(storage=second, clock=clock) as app:
        await run_until_idle(app, skip_timers=True)
        done = await Approval.get("one")
        assert done.status is Status.COMPLETED
        assert done.scheduled == ()
        assert _resumed(done) == [("await_approval", "approved", "scheduled")]


async def advance_clock(clock: FakeClock, seconds: float) -> None:
    """Move a clock no app is using (nothing is armed on it)."""
    assert clock.pending == 0
    clock.advance(seconds)
