"""What the engine tells a runner to do, and what a runner tells the engine a step did."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hephaestus._core.records import record
from hephaestus._core.steps import Async, Ok

if TYPE_CHECKING:
    from datetime import datetime

    from hephaestus._core.instance import ErrorInfo, Instance
    from hephaestus._core.steps import Config

__all__ = [
    "AbortStep",
    "CancelTimer",
    "Command",
    "Decision",
    "Failure",
    "Outcome",
    "RunStep",
    "StartTimer",
]


@record
class RunStep:
    """Execute ``step`` (attempt ``attempt``), not before ``not_before`` when set."""

    step: str
    attempt: int
    config: Config
    not_before: datetime | None = None


@record
class StartTimer:
    """At ``at``, call ``fire_timer`` for ``step`` (passing ``timer``).

    ``timer`` is ``None`` for the step's own timeout (``Async(timeout=)``), else the id of a
    ``ScheduledResume``: a step may have both, so runners key timers by ``(step, timer)``.
    """

    step: str
    at: datetime
    event: str
    timer: str | None = None


@record
class CancelTimer:
    """Disarm the timer ``StartTimer(step, ..., timer=timer)`` armed."""

    step: str
    timer: str | None = None


@record
class AbortStep:
    """Stop an in-flight execution of ``step``; its result would be ignored anyway."""

    step: str


Command = RunStep | StartTimer | CancelTimer | AbortStep


@record
class Failure:
    """A failed attempt, as the engine sees it."""

    error: ErrorInfo
    retryable: bool = True


Outcome = Ok | Async | Failure


@record
class Decision:
    """The engine's answer: the next instance state and what the runner must do.

    ``changed`` is false for stale input (a late result, an old timer): nothing to persist.
    """

    instance: Instance
    commands: tuple[Command, ...] = ()
    changed: bool = True
