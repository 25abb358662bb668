"""The built-in steps: Done, Wait, WaitForEvent and Debug (spec §2.2)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest

from hephaestus import (
    Async,
    Debug,
    Done,
    Ok,
    StepContext,
    StepRun,
    Wait,
    WaitForEvent,
    context_key,
)

if TYPE_CHECKING:
    from hephaestus import Config


def make_run() -> StepRun:
    """The view a ``debug`` step of a running order is executed with."""
    context = StepContext(
        initial={"order": 7},
        steps={"step_a": {"paid": True}},
        instance_id="order::abc123",
        run_id="run1",
        step="debug",
    )
    return StepRun(context, "tests.Flow", 1)


# -- declarations --------------------------------------------------------------------------------


def test_builtin_events_and_context_keys() -> None:
    """Each built-in step declares the events and context key of spec §2.2."""
    assert (Done.events, context_key(Done)) == (("done",), "done")
    assert (Wait.events, context_key(Wait)) == (("timeout",), "wait")
    assert (WaitForEvent.events, context_key(WaitForEvent)) == (("received",), "wait_for_event")
    assert WaitForEvent.optional_events == ("timeout",)
    assert (Debug.events, context_key(Debug)) == (("completed",), "debug")


# -- Done ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [None, {"ignored": True}])
def test_done_returns_ok_done(config: Config) -> None:
    """Done always completes with the done event, whatever its config."""
    run = make_run()
    assert Done().execute(run, config, run.context) == Ok("done")


# -- Wait ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "seconds"),
    [
        ({"duration": 10, "unit": "second"}, 10.0),
        ({"duration": 5, "unit": "minute"}, 300.0),
        ({"duration": 2, "unit": "hour"}, 7_200.0),
        ({"duration": 1, "unit": "day"}, 86_400.0),
    ],
)
def test_wait_delay_seconds_spec_examples(config: dict[str, Any], seconds: float) -> None:
    """Wait.delay_seconds converts the spec's delay_ms examples, in seconds."""
    assert Wait.delay_seconds(config) == seconds


@pytest.mark.parametrize(
    ("config", "seconds"),
    [
        ({"duration": 3}, 3.0),
        ({"duration": 2, "unit": "minutes"}, 120.0),
        ({"duration": 1.5, "unit": "minute"}, 90.0),
        ({"duration": 0, "unit": "day"}, 0.0),
    ],
)
def test_wait_delay_seconds_defaults_plurals_and_fractions(
    config: dict[str, Any], seconds: float
) -> None:
    """The unit defaults to seconds, plural units are accepted, and durations may be fractional."""
    assert Wait.delay_seconds(config) == seconds


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(None, id="no-config"),
        pytest.param({"duration": 1, "unit": "week"}, id="unknown-unit"),
        pytest.param({"duration": 1, "unit": "ms"}, id="milliseconds"),
        pytest.param({"unit": "second"}, id="no-duration"),
        pytest.param({"duration": -1, "unit": "second"}, id="negative"),
        pytest.param({"duration": "5", "unit": "second"}, id="string-duration"),
        pytest.param({"duration": True, "unit": "second"}, id="bool-duration"),
    ],
)
def test_wait_delay_seconds_rejects_bad_configs(config: Config) -> None:
    """A missing config, an unknown unit or a bad duration raises ValueError."""
    with pytest.raises(ValueError, match="Wait"):
        Wait.delay_seconds(config)


def test_wait_returns_async_with_its_delay() -> None:
    """Wait goes async with a timer that delivers timeout after the configured delay."""
    run = make_run()
    result = Wait().execute(run, {"duration": 2, "unit": "minute"}, run.context)
    assert result == Async(timeout=120.0, timeout_event="timeout")


def test_wait_validate_config() -> None:
    """Wait's definition-time check reports a bad config and accepts a good one."""
    assert list(Wait.validate_config({"duration": 1}, frozenset({"timeout"}))) == []
    assert len(list(Wait.validate_config(None, frozenset({"timeout"})))) == 1


# -- WaitForEvent ----------------------------------------------------------------------------------


def test_wait_for_event_without_timeout_waits_forever() -> None:
    """Without a timeout config, WaitForEvent goes async with no timer."""
    run = make_run()
    result = WaitForEvent().execute(run, None, run.context)
    assert result == Async(timeout=None, timeout_event="timeout")


@pytest.mark.parametrize("timeout", [30, 0.5, 0])
def test_wait_for_event_with_timeout(timeout: float) -> None:
    """With a timeout config, WaitForEvent goes async with that timeout and the timeout event."""
    run = make_run()
    result = WaitForEvent().execute(run, {"timeout": timeout}, run.context)
    assert result == Async(timeout=timeout, timeout_event="timeout")


@pytest.mark.parametrize(
    ("config", "routed", "problems"),
    [
        pytest.param(None, {"received"}, 0, id="no-config"),
        pytest.param({"timeout": None}, {"received"}, 0, id="none-timeout"),
        pytest.param({"timeout": 5}, {"received", "timeout"}, 0, id="routed"),
        pytest.param({"timeout": 5}, {"received"}, 1, id="not-routed"),
        pytest.param({"timeout": -5}, {"received", "timeout"}, 1, id="negative"),
        pytest.param({"timeout": "5"}, {"received", "timeout"}, 1, id="string"),
        pytest.param({"timeout": True}, {"received", "timeout"}, 1, id="bool"),
    ],
)
def test_wait_for_event_validate_config(config: Config, routed: set[str], problems: int) -> None:
    """A WaitForEvent timeout must be a non-negative number and its timeout event routed."""
    assert len(list(WaitForEvent.validate_config(config, frozenset(routed)))) == problems


# -- Debug -----------------------------------------------------------------------------------------


def test_debug_logs_the_context_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    """Debug logs the instance id and the context at debug level, then completes."""
    caplog.set_level(logging.DEBUG, logger="hephaestus.steps.debug")
    run = make_run()
    result = Debug().execute(run, None, run.context)
    assert result == Ok("completed")
    [record] = [r for r in caplog.records if r.name == "hephaestus.steps.debug"]
    assert record.levelno == logging.DEBUG
    message = record.getMessage()
    assert "order::abc123" in message
    assert "{'order': 7}" in message
    assert "{'step_a': {'paid': True}}" in message


def test_debug_is_silent_above_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    """At info level Debug logs nothing but still completes."""
    caplog.set_level(logging.INFO, logger="hephaestus.steps.debug")
    run = make_run()
    assert Debug().execute(run, None, run.context) == Ok("completed")
    assert [r for r in caplog.records if r.name == "hephaestus.steps.debug"] == []
