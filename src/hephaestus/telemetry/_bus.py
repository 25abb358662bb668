"""The event bus: the handler table, ``emit``, ``span`` and the trace-context hook."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from hephaestus.errors import InvalidArgumentError

__all__ = [
    "EVENTS",
    "ContextInjector",
    "Handler",
    "attach",
    "capture_trace_context",
    "detach",
    "emit",
    "handlers_attached",
    "set_context_injector",
    "span",
]

Handler = Callable[[str, Mapping[str, float], Mapping[str, Any]], None]
"""``handler(event, measurements, metadata)``; its return value is ignored."""

ContextInjector = Callable[[str, str], Mapping[str, str]]
"""``injector(workflow, instance_id)`` -> propagation headers to store with a new run."""

EVENTS = (
    "hephaestus.workflow.start",
    "hephaestus.workflow.stop",
    "hephaestus.workflow.exception",
    "hephaestus.workflow.cancel",
    "hephaestus.workflow.transition",
    "hephaestus.workflow.suspend",
    "hephaestus.step.start",
    "hephaestus.step.stop",
    "hephaestus.step.exception",
    "hephaestus.step.async",
    "hephaestus.step.resume",
)
"""Every event about a run, in lifecycle order (each carries the run's common fields)."""

PROCESS_EVENTS = ("hephaestus.runner.init",)
"""Events about the process, not a run (no ``instance_id``): attached to by name, not in EVENTS."""

_PREFIX = "hephaestus."
_KNOWN = frozenset(EVENTS + PROCESS_EVENTS)

_log = logging.getLogger("hephaestus.telemetry")
_handlers: dict[str, tuple[frozenset[str], Handler]] = {}
_by_event: dict[str, tuple[tuple[str, Handler], ...]] = {}
_injector: ContextInjector | None = None


def _reindex() -> None:
    index: dict[str, list[tuple[str, Handler]]] = {}
    for handler_id, (events, handler) in _handlers.items():
        for event in events:
            index.setdefault(event, []).append((handler_id, handler))
    _by_event.clear()
    _by_event.update({event: tuple(pairs) for event, pairs in index.items()})


def attach(handler_id: str, events: Iterable[str], handler: Handler) -> None:
    """Call ``handler`` for each of ``events``; ``handler_id`` must not be attached already.

    Names under ``hephaestus.`` must be in ``EVENTS`` or be ``hephaestus.runner.init`` (a typo
    raises ``InvalidArgumentError``, a ``ValueError``); other names are your own, emitted with
    ``emit`` or ``span``.
    """
    wanted = frozenset(events)
    unknown = {e for e in wanted if e.startswith(_PREFIX) and e not in _KNOWN}
    if unknown:
        known = [*EVENTS, *PROCESS_EVENTS]
        raise InvalidArgumentError(f"unknown telemetry events {sorted(unknown)}; known: {known}")
    if handler_id in _handlers:
        raise InvalidArgumentError(
            f"a telemetry handler {handler_id!r} is already attached; detach({handler_id!r}) "
            "first, or attach under another id"
        )
    _handlers[handler_id] = (wanted, handler)
    _reindex()


def detach(handler_id: str) -> bool:
    """Remove a handler; returns whether it was attached."""
    if _handlers.pop(handler_id, None) is None:
        return False
    _reindex()
    return True


def handlers_attached() -> bool:
    """Whether any handler is attached (runners skip building events when none is)."""
    return bool(_handlers)


def emit(event: str, measurements: Mapping[str, float], metadata: Mapping[str, Any]) -> None:
    """Deliver an event to the handlers attached to it; a handler that raises is detached."""
    targets = _by_event.get(event)
    if not targets:
        return
    for handler_id, handler in targets:
        try:
            handler(event, measurements, metadata)
        except Exception:
            _log.exception("telemetry handler %r failed on %s; detaching it", handler_id, event)
            detach(handler_id)


@contextmanager
def span(prefix: str, metadata: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Emit ``<prefix>.start``, then ``<prefix>.stop`` or ``<prefix>.exception``, with a duration.

    The yielded dict is merged into the stop (or exception) metadata. An exception in the block
    is reported (``kind``, ``reason``) and re-raised.

    ```python
    with telemetry.span("myapp.charge", {"order": order_id}) as extra:
        extra["amount"] = charge(order_id)
    ```
    """
    began = time.perf_counter()
    emit(f"{prefix}.start", {"system_time": time.time()}, metadata)
    extra: dict[str, Any] = {}
    try:
        yield extra
    except BaseException as exc:
        emit(
            f"{prefix}.exception",
            {"duration": time.perf_counter() - began},
            {**metadata, **extra, "kind": type(exc).__name__, "reason": str(exc)},
        )
        raise
    emit(f"{prefix}.stop", {"duration": time.perf_counter() - began}, {**metadata, **extra})


def set_context_injector(injector: ContextInjector | None) -> ContextInjector | None:
    """Install the hook that captures trace context for new runs; returns the previous one.

    ``Hephaestus.start`` calls it and stores the headers it returns in ``Instance.trace_context``
    (the OpenTelemetry integration installs one). ``None`` removes it.
    """
    global _injector  # one process-wide hook, like the handler table
    previous, _injector = _injector, injector
    return previous


def capture_trace_context(workflow: str, instance_id: str) -> dict[str, str]:
    """Headers for a new run from the installed injector; ``{}`` without one or if it fails."""
    injector = _injector
    if injector is None:
        return {}
    try:
        return {str(k): str(v) for k, v in injector(workflow, instance_id).items()}
    except Exception:
        _log.exception("trace context injector failed for %s; starting without", instance_id)
        return {}
