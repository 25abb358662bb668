"""A ready-made telemetry handler that writes one ``logging`` line per event.

Each line starts with ``[instance_id]`` and carries the event's fields as ``extra=`` attributes
on the ``LogRecord`` (``instance_id``, ``workflow``, ``step``, ``event``, ``duration_ms``...), so
JSON formatters and structlog's ``ProcessorFormatter`` pick them up as structured fields.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hephaestus.errors import InvalidArgumentError
from hephaestus.telemetry import _bus

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["DEFAULT_LOG_LEVELS", "attach_log_handler", "detach_log_handler"]

LOG_HANDLER_ID = "hephaestus-log-handler"

DEFAULT_LOG_LEVELS: Mapping[str, int] = {
    "hephaestus.workflow.start": logging.INFO,
    "hephaestus.workflow.stop": logging.INFO,
    "hephaestus.workflow.exception": logging.ERROR,
    "hephaestus.workflow.cancel": logging.WARNING,
    "hephaestus.workflow.transition": logging.DEBUG,
    "hephaestus.workflow.suspend": logging.DEBUG,
    "hephaestus.step.start": logging.DEBUG,
    "hephaestus.step.stop": logging.INFO,
    "hephaestus.step.exception": logging.WARNING,
    "hephaestus.step.async": logging.INFO,
    "hephaestus.step.resume": logging.INFO,
    "hephaestus.runner.init": logging.INFO,
}
"""The level each event is logged at unless ``attach_log_handler(levels=...)`` overrides it."""

# LogRecord attributes an ``extra`` key must not overwrite (logging raises KeyError if one does).
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_PLAIN = (str, int, float, bool)


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value * 1000:.1f}ms"


def _message(event: str, m: Mapping[str, float], meta: Mapping[str, Any]) -> str:
    step = meta.get("step")
    match event.removeprefix("hephaestus."):
        case "workflow.start":
            return f"Workflow {meta.get('workflow')} started at {meta.get('initial_step')!r}"
        case "workflow.stop":
            return f"Workflow {meta.get('workflow')} completed in {_ms(m.get('duration'))}"
        case "workflow.exception":
            error = meta.get("error")
            reason = getattr(error, "message", error)
            where = meta.get("failed_step")
            return f"Workflow {meta.get('workflow')} failed at {where!r}: {reason}"
        case "workflow.cancel":
            return f"Workflow {meta.get('workflow')} cancelled"
        case "workflow.transition":
            targets = ", ".join(repr(t) for t in meta.get("targets", ())) or "nothing"
            return f"Transition: {meta.get('from_step')!r} --{meta.get('event')}--> {targets}"
        case "workflow.suspend":
            waiting = ", ".join(repr(s) for s in meta.get("waiting_steps", ()))
            return f"Workflow {meta.get('workflow')} waiting on {waiting}"
        case "step.start":
            return f"Step {step!r} started (attempt {meta.get('attempt')})"
        case "step.stop":
            return f"Step {step!r} completed in {_ms(m.get('duration'))} -> {meta.get('event')}"
        case "step.exception":
            error = meta.get("error")
            reason = getattr(error, "message", error)
            then = f"retrying in {meta.get('retry_in')}s" if meta.get("will_retry") else "giving up"
            return f"Step {step!r} failed (attempt {meta.get('attempt')}, {then}): {reason}"
        case "step.async":
            timeout = meta.get("timeout")
            until = "" if timeout is None else f" (timeout {timeout:g}s)"
            return f"Step {step!r} waiting for an event{until}"
        case "step.resume":
            how = f"{meta.get('source')}, waited {_ms(m.get('wait_duration'))}"
            return f"Step {step!r} resumed with {meta.get('event')!r} ({how})"
        case "runner.init":
            return (
                f"Hephaestus runner {meta.get('runner')!r} started on {meta.get('storage')} "
                f"(pid {meta.get('pid')}, recover={meta.get('recover')})"
            )
    return event


def _extra(event: str, m: Mapping[str, float], meta: Mapping[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {"telemetry_event": event}
    for key, value in meta.items():
        if value is None:
            continue
        if key == "error":
            extra["error"] = getattr(value, "message", str(value))
            extra["error_kind"] = getattr(value, "kind", None)
            continue
        if isinstance(value, _PLAIN) or (
            isinstance(value, tuple | list) and all(isinstance(v, _PLAIN) for v in value)
        ):
            extra[f"hephaestus_{key}" if key in _RESERVED else key] = value
    for key, value in m.items():
        if key in ("duration", "wait_duration"):
            extra[f"{key}_ms"] = None if value is None else value * 1000
        elif key != "system_time":
            extra[key] = value
    return extra


class _LogHandler:
    __slots__ = ("levels", "logger")

    def __init__(self, logger: logging.Logger, levels: Mapping[str, int]) -> None:
        self.logger = logger
        self.levels = levels

    def __call__(self, event: str, m: Mapping[str, float], meta: Mapping[str, Any]) -> None:
        level = self.levels.get(event, logging.INFO)
        if not self.logger.isEnabledFor(level):
            return
        message = _message(event, m, meta)
        instance_id = meta.get("instance_id")
        if isinstance(instance_id, str):
            message = f"[{instance_id}] {message}"
        self.logger.log(level, message, extra=_extra(event, m, meta))


def attach_log_handler(
    *,
    logger: logging.Logger | str = "hephaestus.events",
    levels: Mapping[str, int] | None = None,
    events: Iterable[str] = (*_bus.EVENTS, *_bus.PROCESS_EVENTS),
    handler_id: str = LOG_HANDLER_ID,
) -> str:
    """Log one line per event to ``logger``; returns the handler id (for ``detach_log_handler``).

    By default every run event and ``hephaestus.runner.init``.

    ``levels`` overrides ``DEFAULT_LOG_LEVELS`` per event. Lines below the logger's effective
    level cost one ``isEnabledFor`` check.
    """
    target = logging.getLogger(logger) if isinstance(logger, str) else logger
    unknown = set(levels or {}) - {*_bus.EVENTS, *_bus.PROCESS_EVENTS}
    if unknown:
        raise InvalidArgumentError(
            f"levels given for unknown events {sorted(unknown)}; known: {list(_bus.EVENTS)}"
        )
    _bus.attach(handler_id, events, _LogHandler(target, {**DEFAULT_LOG_LEVELS, **(levels or {})}))
    return handler_id


def detach_log_handler(handler_id: str = LOG_HANDLER_ID) -> bool:
    """Stop logging events; returns whether the log handler was attached."""
    return _bus.detach(handler_id)
