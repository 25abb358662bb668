"""The telemetry event bus: attaching, emitting, spans, handler isolation, trace-context hook."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from hephaestus import telemetry

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

Seen = list[tuple[str, dict[str, float], dict[str, Any]]]


@pytest.fixture
def seen() -> Iterator[Seen]:
    """Events of the ``myapp.charge`` span, recorded by a handler attached for the test."""
    events: Seen = []

    def record(event: str, measurements: Mapping[str, float], metadata: Mapping[str, Any]) -> None:
        events.append((event, dict(measurements), dict(metadata)))

    names = ["myapp.charge.start", "myapp.charge.stop", "myapp.charge.exception"]
    telemetry.attach("unit-span", names, record)
    yield events
    telemetry.detach("unit-span")


def test_unknown_hephaestus_events_are_rejected() -> None:
    """A misspelt ``hephaestus.*`` event name raises instead of silently never firing."""
    with pytest.raises(ValueError, match=r"hephaestus\.step\.stopp"):
        telemetry.attach("typo", ["hephaestus.step.stopp"], lambda e, m, md: None)
    assert telemetry.detach("typo") is False


def test_a_handler_id_is_attached_once() -> None:
    """Attaching a second handler under an id in use raises; detaching reports what it did."""
    telemetry.attach("once", ["myapp.thing"], lambda e, m, md: None)
    try:
        with pytest.raises(ValueError, match="already attached"):
            telemetry.attach("once", ["myapp.thing"], lambda e, m, md: None)
    finally:
        assert telemetry.detach("once") is True
    assert telemetry.detach("once") is False


def test_a_span_emits_start_then_stop_with_a_duration_and_extra_metadata(seen: Seen) -> None:
    """``span`` emits start, then stop carrying the duration and what the block added."""
    with telemetry.span("myapp.charge", {"order": "o-1"}) as extra:
        extra["amount"] = 12
    assert [e for e, _, _ in seen] == ["myapp.charge.start", "myapp.charge.stop"]
    (_, started, start_meta), (_, stopped, stop_meta) = seen
    assert "system_time" in started
    assert start_meta == {"order": "o-1"}
    assert stopped["duration"] >= 0
    assert stop_meta == {"order": "o-1", "amount": 12}


def test_a_span_reports_an_exception_and_reraises_it(seen: Seen) -> None:
    """An error inside a span emits ``.exception`` with kind and reason, then propagates."""
    with pytest.raises(KeyError), telemetry.span("myapp.charge", {"order": "o-2"}):
        raise KeyError("card")
    assert [e for e, _, _ in seen] == ["myapp.charge.start", "myapp.charge.exception"]
    _, measurements, metadata = seen[1]
    assert measurements["duration"] >= 0
    assert (metadata["kind"], metadata["reason"]) == ("KeyError", "'card'")


def test_a_raising_handler_is_logged_detached_and_others_still_called(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler that raises is detached after logging; the next handler still gets the event."""
    calls: list[str] = []

    def broken(event: str, measurements: Mapping[str, float], metadata: Mapping[str, Any]) -> None:
        raise RuntimeError("bug")

    def fine(event: str, measurements: Mapping[str, float], metadata: Mapping[str, Any]) -> None:
        calls.append(event)

    telemetry.attach("broken", ["myapp.ping"], broken)
    telemetry.attach("fine", ["myapp.ping"], fine)
    try:
        with caplog.at_level(logging.ERROR, logger="hephaestus.telemetry"):
            telemetry.emit("myapp.ping", {}, {})
            telemetry.emit("myapp.ping", {}, {})
    finally:
        telemetry.detach("fine")
    assert calls == ["myapp.ping", "myapp.ping"]
    assert telemetry.detach("broken") is False
    assert sum("broken" in r.getMessage() for r in caplog.records) == 1


def test_handlers_attached_reflects_the_handler_table() -> None:
    """``handlers_attached`` is false with no handler and true while one is attached."""
    assert telemetry.handlers_attached() is False
    telemetry.attach("probe", ["myapp.x"], lambda e, m, md: None)
    try:
        assert telemetry.handlers_attached() is True
    finally:
        telemetry.detach("probe")
    assert telemetry.handlers_attached() is False


def test_trace_context_comes_from_the_installed_injector() -> None:
    """``capture_trace_context`` returns the injector's headers, and ``{}`` without one."""
    assert telemetry.capture_trace_context("wf", "k::1") == {}
    previous = telemetry.set_context_injector(lambda workflow, instance_id: {"w": workflow})
    try:
        assert previous is None
        assert telemetry.capture_trace_context("wf", "k::1") == {"w": "wf"}
    finally:
        telemetry.set_context_injector(None)


def test_a_failing_injector_yields_no_trace_context(caplog: pytest.LogCaptureFixture) -> None:
    """An injector that raises is logged and the run starts without trace context."""

    def broken(workflow: str, instance_id: str) -> Mapping[str, str]:
        raise RuntimeError("no tracer")

    telemetry.set_context_injector(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="hephaestus.telemetry"):
            assert telemetry.capture_trace_context("wf", "k::1") == {}
    finally:
        telemetry.set_context_injector(None)
    assert any("k::1" in r.getMessage() for r in caplog.records)


def test_the_core_module_imports_no_optional_dependency() -> None:
    """Importing hephaestus.telemetry loads neither prometheus_client nor opentelemetry."""
    code = (
        "import sys, hephaestus, hephaestus.telemetry\n"
        "optional = ('prometheus_client', 'opentelemetry')\n"
        "loaded = [m for m in sys.modules if m.startswith(optional)]\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
