"""Checking what a step returned against what it declared."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

from hephaestus._core.commands import Failure, Outcome
from hephaestus._core.instance import ErrorInfo
from hephaestus._core.steps import Async, Error, Ok, valid_seconds

if TYPE_CHECKING:
    from hephaestus._core.definition import Node

__all__ = ["failure_from_exception", "interpret"]


def interpret(node: Node, raw: object) -> Outcome:
    """Validate a step's return value against its declaration; bad shapes fail the step."""
    if isinstance(raw, str):
        raw = Ok(raw)
    name = node.step.__qualname__
    if isinstance(raw, Ok):
        if (
            type(raw.event) is str
            and type(raw.updates) is dict
            and type(raw.metadata) is dict
            and raw.event in node.routed_events
            and all(type(k) is str for k in raw.updates)
            and all(type(k) is str for k in raw.metadata)
        ):
            return raw  # the common case, without the generic Mapping checks below
        if not isinstance(raw.event, str) or raw.event not in node.events:
            return _invalid(f"{name} returned undeclared event {raw.event!r}", node)
        if raw.event not in node.routed_events:
            return _unrouted(f"{name} returned event {raw.event!r}", node)
        for what, value in (("updates", raw.updates), ("metadata", raw.metadata)):
            if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                return _invalid(
                    f"{name} returned {what} {value!r}; expected a dict with string keys", node
                )
        return raw
    if isinstance(raw, Async):
        timeout = raw.timeout
        if timeout is not None:
            seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
            if not valid_seconds(seconds):
                return _invalid(f"{name} returned Async with invalid timeout {timeout!r}", node)
            if not isinstance(raw.timeout_event, str) or raw.timeout_event not in node.events:
                return _invalid(
                    f"{name} returned Async with timeout event {raw.timeout_event!r}, "
                    "which it does not declare",
                    node,
                )
            if raw.timeout_event not in node.routed_events:
                return _unrouted(
                    f"{name} returned Async with timeout event {raw.timeout_event!r}", node
                )
            return Async(timeout=float(seconds), timeout_event=raw.timeout_event)
        return raw
    if isinstance(raw, Error):
        return Failure(ErrorInfo(kind="error", message=str(raw.reason)), retryable=raw.retryable)
    return _invalid(
        f"{name} returned {raw!r}; expected Ok(...), Async(...), Error(...) or an event name",
        node,
    )


def _invalid(message: str, node: Node) -> Failure:
    declared = sorted(node.events)
    return Failure(
        ErrorInfo(kind="invalid_result", message=f"{message} (declared events: {declared})"),
        retryable=False,
    )


def _unrouted(message: str, node: Node) -> Failure:
    # Declared but optional, and this workflow routes it nowhere: completing with it would
    # skip every successor and stall the run later, so the attempt fails now instead.
    routed = sorted(node.routed_events)
    return Failure(
        ErrorInfo(
            kind="invalid_result",
            message=f"{message}, which has no transition in this workflow (routed: {routed})",
        ),
        retryable=False,
    )


def failure_from_exception(exc: BaseException, kind: str = "exception") -> Failure:
    """A retryable failure carrying the exception's type, message and traceback."""
    kind_type = type(exc)
    return Failure(
        ErrorInfo(
            kind=kind,
            message=str(exc) or kind_type.__name__,
            type=f"{kind_type.__module__}.{kind_type.__qualname__}",
            traceback="".join(traceback.format_exception(exc)),
        )
    )
