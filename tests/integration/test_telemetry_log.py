"""The ready-made log handler: one line per event, instance id first, structured extra fields."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import pytest

from hephaestus import (
    Config,
    Done,
    Hephaestus,
    Ok,
    RetryPolicy,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    WaitForEvent,
    Workflow,
    telemetry,
)
from hephaestus.testing import run_until_idle

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hephaestus.storage import Storage
    from hephaestus.testing import FakeClock

LOGGER = "tests.hephaestus.events"


class Weigh(Step):
    events = ("weighed",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("weighed", {"kg": 3})


class Label(Step):
    events = ("labelled",)
    retry = RetryPolicy(max_attempts=2, initial_delay=1)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        if context.attempt == 1:
            raise RuntimeError("printer jammed")
        return "labelled"


class Parcel(Workflow):
    unique = Unique(key="parcel")
    start_step = Weigh
    tags = ("shipping", "eu")
    metadata = {"team": "fulfilment"}
    transitions = {(Weigh, "weighed"): Label, (Label, "labelled"): Done}


@pytest.fixture
def log_handler() -> Iterator[str]:
    """The log handler attached to ``LOGGER`` at default levels; detached afterwards."""
    handler_id = telemetry.attach_log_handler(logger=LOGGER)
    yield handler_id
    telemetry.detach_log_handler(handler_id)


async def test_each_event_is_one_line_prefixed_with_the_instance_id(
    app: Hephaestus, log_handler: str, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG every event is one record whose message starts with ``[instance_id]``."""
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        await Parcel.start("p1", metadata={"tenant": "acme"})
        await run_until_idle(app, skip_timers=True)
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [r.telemetry_event for r in records] == [  # type: ignore[attr-defined]
        "hephaestus.workflow.start",
        "hephaestus.step.start",
        "hephaestus.step.stop",
        "hephaestus.workflow.transition",
        "hephaestus.step.start",
        "hephaestus.step.exception",
        "hephaestus.step.start",
        "hephaestus.step.stop",
        "hephaestus.workflow.transition",
        "hephaestus.workflow.stop",
    ]
    assert all(r.getMessage().startswith("[parcel::p1] ") for r in records)
    messages = [r.getMessage().removeprefix("[parcel::p1] ") for r in records]
    assert messages[3] == "Transition: 'weigh' --weighed--> 'label'"
    assert messages[5] == "Step 'label' failed (attempt 1, retrying in 1.0s): printer jammed"
    assert messages[-1].startswith(f"Workflow {Parcel.name} completed in ")


async def test_records_carry_structured_fields_for_json_formatters(
    app: Hephaestus, log_handler: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A step's record carries ids, step, event, duration_ms, tags and metadata as attributes."""
    with caplog.at_level(logging.INFO, logger=LOGGER):
        await Parcel.start("p2", metadata={"tenant": "acme", "name": "spoof"})
        await run_until_idle(app, skip_timers=True)
    instance = await Parcel.get("p2")
    stop = next(r for r in caplog.records if getattr(r, "telemetry_event", "").endswith("stop"))
    fields = stop.__dict__
    assert fields["instance_id"] == "parcel::p2"
    assert fields["run_id"] == instance.run_id
    assert fields["workflow"] == Parcel.name
    assert (fields["step"], fields["event"], fields["attempt"]) == ("weigh", "weighed", 1)
    assert fields["duration_ms"] >= 0
    assert fields["tags"] == ("shipping", "eu")
    assert (fields["team"], fields["tenant"]) == ("fulfilment", "acme")
    assert fields["hephaestus_name"] == "spoof", "a reserved LogRecord name is prefixed"
    assert stop.name == LOGGER, "caller metadata never overwrites the record's own fields"
    failure = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert (failure.error, failure.error_kind) == ("printer jammed", "exception")  # type: ignore[attr-defined]


async def test_levels_are_configurable_per_event(
    app: Hephaestus, caplog: pytest.LogCaptureFixture
) -> None:
    """A level override applies to its event only; lines below the logger's level are dropped."""
    handler_id = telemetry.attach_log_handler(
        logger=logging.getLogger(LOGGER), levels={"hephaestus.step.stop": logging.DEBUG}
    )
    try:
        with caplog.at_level(logging.INFO, logger=LOGGER):
            await Parcel.start("p3")
            await run_until_idle(app, skip_timers=True)
    finally:
        assert telemetry.detach_log_handler(handler_id) is True
    events = [getattr(r, "telemetry_event", None) for r in caplog.records if r.name == LOGGER]
    assert "hephaestus.step.stop" not in events
    assert events == [
        "hephaestus.workflow.start",
        "hephaestus.step.exception",
        "hephaestus.workflow.stop",
    ]
    assert [r.levelno for r in caplog.records if r.name == LOGGER] == [
        logging.INFO,
        logging.WARNING,
        logging.INFO,
    ]


async def test_a_detached_log_handler_logs_nothing(
    app: Hephaestus, caplog: pytest.LogCaptureFixture
) -> None:
    """After ``detach_log_handler`` a run writes no line; detaching twice reports False."""
    handler_id = telemetry.attach_log_handler(logger=LOGGER)
    assert telemetry.detach_log_handler(handler_id) is True
    assert telemetry.detach_log_handler(handler_id) is False
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        await Parcel.start("p4")
        await run_until_idle(app, skip_timers=True)
    assert [r for r in caplog.records if r.name == LOGGER] == []


def test_levels_for_unknown_events_are_rejected() -> None:
    """A level given for an event that does not exist raises instead of being ignored."""
    with pytest.raises(ValueError, match=r"hephaestus\.step\.finish"):
        telemetry.attach_log_handler(levels={"hephaestus.step.finish": logging.INFO})


class AwaitPickup(WaitForEvent):
    pass


class Pickup(Workflow):
    unique = Unique(key="pickup")
    start_step = AwaitPickup
    transitions = {(AwaitPickup, "received"): Done}


async def test_an_app_opening_and_a_run_going_to_sleep_are_logged(
    storage: Storage, clock: FakeClock, log_handler: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``runner.init`` (INFO, no instance prefix) and ``workflow.suspend`` (DEBUG) have lines."""
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        async with Hephaestus(storage=storage, clock=clock) as app:
            await Pickup.start("k1")
            await run_until_idle(app)
    records = {getattr(r, "telemetry_event", ""): r for r in caplog.records if r.name == LOGGER}
    opened = records["hephaestus.runner.init"]
    assert opened.levelno == logging.INFO
    assert opened.getMessage() == (
        f"Hephaestus runner 'local' started on {type(storage).__name__} "
        f"(pid {os.getpid()}, recover=True)"
    )
    asleep = records["hephaestus.workflow.suspend"]
    assert asleep.levelno == logging.DEBUG
    assert asleep.getMessage() == f"[pickup::k1] Workflow {Pickup.name} waiting on 'await_pickup'"
