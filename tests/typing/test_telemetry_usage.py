"""Telemetry API usage that the strict type checker must accept (mypy runs over tests/)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, assert_type

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from hephaestus import telemetry
from hephaestus.telemetry.otel import OpenTelemetryTracing
from hephaestus.telemetry.prometheus import PrometheusMetrics

if TYPE_CHECKING:
    from collections.abc import Mapping


def on_event(event: str, measurements: Mapping[str, float], metadata: Mapping[str, Any]) -> None:
    """A handler: plain function of (event, measurements, metadata)."""


def test_typed_telemetry_usage() -> None:
    """Handlers, spans and the three integrations attach and detach with the documented types."""
    handler: telemetry.Handler = on_event
    telemetry.attach("typed", telemetry.EVENTS, handler)
    with telemetry.span("myapp.typed", {"k": 1}) as extra:
        extra["done"] = True
    assert_type(telemetry.detach("typed"), bool)
    log_id = telemetry.attach_log_handler(
        logger=logging.getLogger("typed"), levels={"hephaestus.step.stop": logging.DEBUG}
    )
    assert_type(log_id, str)
    assert telemetry.detach_log_handler(log_id) is True
    metrics = PrometheusMetrics(registry=CollectorRegistry(), scope=["step"], handler_id="typed")
    metrics.attach()
    assert metrics.detach() is True
    tracing = OpenTelemetryTracing(tracer_provider=TracerProvider(), handler_id="typed-otel")
    tracing.attach()
    assert_type(tracing.inject("wf", "k::1"), dict[str, str])
    assert tracing.detach() is True
