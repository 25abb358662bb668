"""Telemetry events: attach handlers to named events emitted by runners.

Handlers are plain callables ``handler(event, measurements, metadata)``. A handler that raises
is logged and detached; it never breaks a workflow. With no handler attached, emitting costs
one dictionary check.

| event | measurements | metadata (besides instance_id, run_id, workflow, workflow_version) |
|---|---|---|
| ``hephaestus.workflow.start`` | ``system_time`` | ``initial_step`` |
| ``hephaestus.workflow.stop`` | ``duration`` (s since created) | ``status="completed"`` |
| ``hephaestus.workflow.exception`` | ``duration`` | ``status="failed"``, ``error`` |
| ``hephaestus.workflow.cancel`` | ``duration`` | ``status="cancelled"`` |
| ``hephaestus.step.start`` | ``system_time`` | ``step``, ``attempt`` |
| ``hephaestus.step.stop`` | ``duration`` | ``step``, ``attempt``, ``event`` |
| ``hephaestus.step.async`` | ``duration`` | ``step``, ``attempt``, ``timeout`` (s or None) |
| ``hephaestus.step.exception`` | ``duration`` | ``step``, ``attempt``, ``error``, ``will_retry``, |
| | | ``retry_in`` (s until the next attempt, or None) |
| ``hephaestus.step.resume`` | ``system_time`` | ``step``, ``event``, ``source`` (external/timer) |

Caller metadata given at ``start(..., metadata=...)`` is merged into every event's metadata;
core fields always win.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["EVENTS", "Handler", "attach", "detach", "emit", "handlers_attached"]

Handler = Callable[[str, Mapping[str, float], Mapping[str, Any]], None]

EVENTS = (
    "hephaestus.workflow.start",
    "hephaestus.workflow.stop",
    "hephaestus.workflow.exception",
    "hephaestus.workflow.cancel",
    "hephaestus.step.start",
    "hephaestus.step.stop",
    "hephaestus.step.async",
    "hephaestus.step.exception",
    "hephaestus.step.resume",
)

_log = logging.getLogger("hephaestus.telemetry")
_handlers: dict[str, tuple[frozenset[str], Handler]] = {}


def attach(handler_id: str, events: Iterable[str], handler: Handler) -> None:
    """Call ``handler`` for each of ``events``; ``handler_id`` must not be attached already."""
    wanted = frozenset(events)
    unknown = wanted - set(EVENTS)
    if unknown:
        raise ValueError(f"unknown telemetry events {sorted(unknown)}; known: {list(EVENTS)}")
    if handler_id in _handlers:
        raise ValueError(f"a telemetry handler {handler_id!r} is already attached")
    _handlers[handler_id] = (wanted, handler)


def detach(handler_id: str) -> bool:
    """Remove a handler; returns whether it was attached."""
    return _handlers.pop(handler_id, None) is not None


def handlers_attached() -> bool:
    """Whether any handler is attached (runners skip building events when none is)."""
    return bool(_handlers)


def emit(event: str, measurements: Mapping[str, float], metadata: Mapping[str, Any]) -> None:
    """Deliver an event to the handlers attached to it."""
    for handler_id, (events, handler) in list(_handlers.items()):
        if event not in events:
            continue
        try:
            handler(event, measurements, metadata)
        except Exception:
            _log.exception("telemetry handler %r failed on %s; detaching it", handler_id, event)
            _handlers.pop(handler_id, None)
