"""Checking what a step returned against what it declared."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

from hephaestus._core.commands import Failure, Outcome
from hephaestus._core.instance import ErrorInfo
from hephaestus._core.steps import Async, Error, Ok, valid_seconds
from hephaestus._core.values import check_value, printable
from hephaestus.errors import UnencodableValueError

if TYPE_CHECKING:
    from hephaestus._core.definition import Node
    from hephaestus._core.retry import RetryPolicy

__all__ = ["failure_from_exception", "interpret", "unstorable_result"]


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
        ):
            if not raw.updates and not raw.metadata:
                return raw  # the most common case: nothing to check or copy
            return _stored(raw, name)  # without the generic checks below
        if not isinstance(raw.event, str) or raw.event not in node.events:
            return _invalid(f"{name} returned undeclared event {raw.event!r}", node)
        if raw.event not in node.routed_events:
            return _unrouted(f"{name} returned event {raw.event!r}", node)
        values: tuple[tuple[str, object], ...] = (
            ("updates", raw.updates),
            ("metadata", raw.metadata),
        )
        for what, value in values:  # steps are user code: the annotations are not a guarantee
            if not isinstance(value, Mapping):
                return _invalid(
                    f"{name} returned {what} {value!r}; expected a dict with string keys", node
                )
        return _stored(raw, name)
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
        return Failure(
            ErrorInfo(kind="error", message=printable(str(raw.reason))), retryable=raw.retryable
        )
    return _invalid(
        f"{name} returned {raw!r}; expected Ok(...), Async(...), Error(...) or an event name",
        node,
    )


def _stored(raw: Ok, name: str) -> Ok | Failure:
    """``raw`` with private copies of its updates and metadata, or a failure if unstorable.

    A result that cannot be stored fails the attempt like an exception would (kind
    ``invalid_result``, retried per the step's policy): it may depend on data the step read.
    """
    if not raw.updates and not raw.metadata:
        return raw  # nothing to copy: the engine keeps its own (empty) dicts
    try:
        updates = check_value(raw.updates, "updates") if raw.updates else {}
        metadata = check_value(raw.metadata, "metadata") if raw.metadata else {}
    except UnencodableValueError as exc:
        return unstorable_result(f"{name} returned a result that cannot be stored: {exc}")
    return Ok(raw.event, updates, metadata)


def unstorable_result(message: str) -> Failure:
    """The failure of an attempt whose result cannot be stored (refused here or by storage)."""
    return Failure(ErrorInfo(kind="invalid_result", message=printable(message)), retryable=True)


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


def failure_from_exception(
    exc: BaseException, kind: str = "exception", *, retry: RetryPolicy | None = None
) -> Failure:
    """A failure carrying the exception's type, message and traceback; retryable unless
    ``retry`` (the step's policy) names the exception in ``never_retry``."""
    kind_type = type(exc)
    return Failure(
        ErrorInfo(
            kind=kind,
            message=printable(str(exc) or kind_type.__name__),
            type=f"{kind_type.__module__}.{kind_type.__qualname__}",
            traceback=printable("".join(traceback.format_exception(exc))),
        ),
        retryable=retry is None or retry.retries(exc),
    )
