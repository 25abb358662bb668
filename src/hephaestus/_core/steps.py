"""The step contract, the values a step returns, and the built-in steps."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeGuard

from hephaestus._core.naming import underscore
from hephaestus._core.records import record

if TYPE_CHECKING:
    from datetime import timedelta

    from hephaestus._core.instance import StepContext, StepRun
    from hephaestus._core.retry import RetryPolicy

__all__ = [
    "Async",
    "Config",
    "Debug",
    "Done",
    "Error",
    "Ok",
    "Step",
    "StepResult",
    "Wait",
    "WaitForEvent",
    "context_key",
    "runs_inline",
]

Config = Mapping[str, Any] | None

_debug_log = logging.getLogger("hephaestus.steps.debug")


@record
class Ok:
    """The step finished and emits ``event``; ``updates`` become ``context.steps[<step key>]``."""

    event: str
    updates: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


@record
class Async:
    """The step waits for a resume; after ``timeout`` seconds it gets ``timeout_event`` instead."""

    timeout: float | timedelta | None = None
    timeout_event: str = "timeout"


@record
class Error:
    """The step failed. It is retried by its retry policy unless ``retryable`` is false."""

    reason: str
    retryable: bool = True


StepResult = Ok | Async | Error | str
"""What ``execute`` may return; a bare string is shorthand for ``Ok(event)``."""


class Step:
    """Base class of every step.

    Subclasses declare the ``events`` they can emit and implement
    ``execute(self, run, config, context)`` as a plain or an ``async`` method (its signature is
    checked when a workflow using the step is defined). Plain methods run in a worker thread so
    they never block the event loop. Raising an exception counts as a failed attempt.

    ``run`` is a ``StepRun``, a read-only view (id, workflow, version, step, attempt, the
    caller's metadata, the idempotency key), not the engine's ``Instance``: a step that read
    the run's status, step states or history would depend on engine internals and on the
    moment it ran. What a step needs from earlier steps is in ``context``.
    """

    events: ClassVar[tuple[str, ...]] = ()
    optional_events: ClassVar[tuple[str, ...]] = ()
    """Events the engine may deliver (timeouts) that need no transition unless they can occur."""
    step_key: ClassVar[str | None] = None
    """Overrides the context key, which is otherwise the snake-cased class name."""
    retry: ClassVar[RetryPolicy | None] = None
    timeout: ClassVar[float | None] = None
    """Seconds one attempt may take before it fails with kind ``timeout``."""
    join: ClassVar[Literal["all", "any"] | None] = None
    """How this step joins when it has incoming edges from several steps: ``"all"`` runs it only
    when every incoming edge was taken (otherwise it is skipped), ``"any"`` when at least one was.
    ``None`` lets the graph decide where it can (see the design notes on joins); ignored where the
    step has a single source step."""

    def execute(
        self, run: StepRun, config: Config, context: StepContext
    ) -> StepResult | Awaitable[StepResult]:
        """Do the step's work and say how it ended."""
        raise NotImplementedError

    @classmethod
    def validate_config(cls, config: Config, routed_events: frozenset[str]) -> Iterable[str]:
        """Problems with a config this step is given in a workflow (checked at definition time).

        ``routed_events`` are the events of this step that have a transition in that workflow.
        """
        del config, routed_events
        return ()


def context_key(step: type[Step]) -> str:
    """The key under which a step's results live in ``context.steps``."""
    return step.step_key if step.step_key is not None else underscore(step.__name__)


class Done(Step):
    """The end of every path. Reaching it completes the run; the engine applies it inline."""

    events = ("done",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("done")


_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3_600, "day": 86_400}

MAX_TIMEOUT_SECONDS = 100 * 365 * 86_400.0
"""Longer (or infinite) timers could not be dated: ``now + timeout`` would overflow."""


def valid_seconds(value: object) -> TypeGuard[int | float]:
    """A finite number of seconds in ``[0, MAX_TIMEOUT_SECONDS]`` (false for NaN and bools)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0 <= value <= MAX_TIMEOUT_SECONDS
    )


def _delay_seconds(config: Config) -> float:
    if config is None:
        raise ValueError("Wait needs a config such as {'duration': 5, 'unit': 'second'}")
    duration = config.get("duration")
    unit = str(config.get("unit", "second")).removesuffix("s")
    if not valid_seconds(duration):
        raise ValueError(f"Wait duration must be a non-negative finite number, got {duration!r}")
    if unit not in _UNIT_SECONDS:
        raise ValueError(f"Wait unit must be one of {sorted(_UNIT_SECONDS)}, got {unit!r}")
    seconds = float(duration * _UNIT_SECONDS[unit])
    if seconds > MAX_TIMEOUT_SECONDS:
        raise ValueError(
            f"Wait of {seconds:.0f} s exceeds the limit of {MAX_TIMEOUT_SECONDS:.0f} s"
        )
    return seconds


class Wait(Step):
    """Waits for a fixed time, then emits ``timeout``.

    Config: ``{"duration": 2, "unit": "second"}`` (units: second, minute, hour, day).

    The runner schedules the timer; with durable storage it survives restarts.
    """

    events = ("timeout",)

    @staticmethod
    def delay_seconds(config: Config) -> float:
        """The configured delay in seconds (raises ``ValueError`` for a bad config)."""
        return _delay_seconds(config)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Async(timeout=_delay_seconds(config), timeout_event="timeout")

    @classmethod
    def validate_config(cls, config: Config, routed_events: frozenset[str]) -> Iterable[str]:
        try:
            _delay_seconds(config)
        except ValueError as exc:
            return [str(exc)]
        return ()


class WaitForEvent(Step):
    """Waits for an external resume with ``received``. Config (optional): ``{"timeout": seconds}``.

    With a timeout, the step is resumed with ``timeout`` when it expires, so the workflow must
    route ``(WaitForEvent, "timeout")``. Subclass it to wait for other events.
    """

    events = ("received",)
    optional_events = ("timeout",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        timeout = None if config is None else config.get("timeout")
        return Async(timeout=timeout, timeout_event="timeout")

    @classmethod
    def validate_config(cls, config: Config, routed_events: frozenset[str]) -> Iterable[str]:
        if config is None or config.get("timeout") is None:
            return ()
        timeout = config["timeout"]
        if not valid_seconds(timeout):
            return [f"timeout must be a non-negative finite number of seconds, got {timeout!r}"]
        if "timeout" not in routed_events:
            return [f"{cls.__name__} has a timeout but no transition for its 'timeout' event"]
        return ()


class Debug(Step):
    """Logs the context at debug level and emits ``completed``."""

    events = ("completed",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        _debug_log.debug(
            "Debug step instance=%s step=%s attempt=%d initial=%r steps=%r",
            run.id,
            run.step,
            run.attempt,
            dict(context.initial),
            dict(context.steps),
        )
        return Ok("completed")


_INLINE_EXECUTES = frozenset({Wait.execute, WaitForEvent.execute})


def runs_inline(step: type[Step]) -> bool:
    """Whether ``step`` keeps a built-in plain ``execute`` that only computes its result.

    Runners call such an ``execute`` on the event loop rather than in a worker thread: it does
    no I/O and cannot block, and a thread hop costs more than the call (and, for many runs
    started at once, a queued future per run). A subclass that overrides ``execute`` is a plain
    step like any other.
    """
    return step.execute in _INLINE_EXECUTES
