"""Telemetry: named events that runners emit, and handlers you attach to them.

A handler is a plain callable ``handler(event, measurements, metadata)``. A handler that raises
is logged and detached; it never breaks a workflow. With no handler attached, emitting costs
one dictionary check, and ``Hephaestus(telemetry=False)`` skips even that.

Every event, with its measurements and metadata, is listed in one table in
``docs/telemetry.md``. Ready-made handlers: ``attach_log_handler`` (standard ``logging``, here),
``hephaestus.telemetry.prometheus`` (extra ``prometheus``) and ``hephaestus.telemetry.otel``
(extra ``otel``).

```python
def handler(event, measurements, metadata):
    print(event, metadata["instance_id"], metadata.get("step"), measurements)

telemetry.attach("my-handler", telemetry.EVENTS, handler)
```
"""

from __future__ import annotations

from hephaestus.telemetry._bus import (
    EVENTS,
    ContextInjector,
    Handler,
    attach,
    capture_trace_context,
    detach,
    emit,
    handlers_attached,
    set_context_injector,
    span,
)
from hephaestus.telemetry._log import DEFAULT_LOG_LEVELS, attach_log_handler, detach_log_handler

__all__ = [
    "DEFAULT_LOG_LEVELS",
    "EVENTS",
    "ContextInjector",
    "Handler",
    "attach",
    "attach_log_handler",
    "capture_trace_context",
    "detach",
    "detach_log_handler",
    "emit",
    "handlers_attached",
    "set_context_injector",
    "span",
]
