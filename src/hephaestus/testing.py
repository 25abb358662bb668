"""Helpers for testing workflows without sleeping, on any runner: a fake clock, run-until-idle.

```python
clock = FakeClock()
async with Hephaestus(clock=clock) as app:
    await OrderFlow.start("abc123", {...})
    await run_until_idle(app)          # every step that can run has run
    await advance(app, seconds=2)      # fire the timers due in the next 2 s, in order
```

Waiting for quiescence works on any runner. A runner that can tell when it is idle implements
``IdleAware`` (the local runner does) and is asked; any other runner is watched through its
storage: it is idle once no stored active run has anything due (see ``run_until_idle``).
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from hephaestus._core.instance import ACTIVE_STATUSES, Instance, Status, StepStatus
from hephaestus.errors import InvalidArgumentError
from hephaestus.storage import InMemoryStorage

if TYPE_CHECKING:
    from collections.abc import Callable

    from hephaestus._app import Hephaestus

__all__ = ["FakeClock", "IdleAware", "InMemoryStorage", "advance", "run_until_idle"]

_POLL_SECONDS = 0.005
"""How often the storage-polling fallback reads the active runs (real time, not the clock)."""


class _FakeHandle:
    __slots__ = ("callback", "cancelled", "context")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False
        # Like asyncio's handles: the callback runs in the context it was armed in, so a timer
        # of one app fires with that app current (see resolve_app).
        self.context = contextvars.copy_context()

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that only moves when told to; due callbacks fire in time order."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start if start is not None else datetime(2026, 1, 1, tzinfo=UTC)
        self._heap: list[tuple[datetime, int, _FakeHandle]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    def call_at(self, when: datetime, callback: Callable[[], None]) -> _FakeHandle:
        handle = _FakeHandle(callback)
        heapq.heappush(self._heap, (when, next(self._seq), handle))
        return handle

    def next_deadline(self) -> datetime | None:
        """When the earliest pending callback is due (``None`` if there is none)."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    @property
    def pending(self) -> int:
        """How many callbacks are armed."""
        return sum(1 for _, _, handle in self._heap if not handle.cancelled)

    def advance_to(self, when: datetime) -> int:
        """Move to ``when`` (never backwards), firing due callbacks; returns how many fired."""
        fired = 0
        while (deadline := self.next_deadline()) is not None and deadline <= when:
            _, _, handle = heapq.heappop(self._heap)
            self._now = max(self._now, deadline)
            handle.context.run(handle.callback)
            fired += 1
        self._now = max(self._now, when)
        return fired

    def advance(self, seconds: float) -> int:
        """Move ``seconds`` forward, firing due callbacks; returns how many fired."""
        return self.advance_to(self._now + timedelta(seconds=seconds))


@runtime_checkable
class IdleAware(Protocol):
    """A runner that can tell the test helpers when it is idle (optional; ``LocalRunner`` is).

    ``wait_idle()`` returns once nothing is executing or about to (pending timers aside). A
    runner that implements it promises too that it arms every timer and delayed step on the
    app's clock (``clock.call_at``), so a ``FakeClock`` knows every deadline. It is a testing
    hook, not part of the ``Runner`` protocol.
    """

    async def wait_idle(self) -> None: ...


def _fake_clock(app: Hephaestus) -> FakeClock:
    if not isinstance(app.clock, FakeClock):
        raise InvalidArgumentError(
            "this helper needs an app built with Hephaestus(clock=FakeClock())"
        )
    return app.clock


def _due(run: Instance, now: datetime) -> bool:
    """Whether a runner has something to do for ``run`` at ``now``: begin it, execute a step,
    fire a timer or deliver a scheduled resume."""
    if run.status is Status.PENDING:
        return True
    if any(s.status is StepStatus.ACTIVE and s.run_after is None for s in run.steps.values()):
        return True
    return any(at <= now for at in _deadlines(run))


def _deadlines(run: Instance) -> list[datetime]:
    """Every moment at which something of ``run`` falls due."""
    found = [item.at for item in run.scheduled]
    for state in run.steps.values():
        if state.status is StepStatus.ACTIVE and state.run_after is not None:
            found.append(state.run_after)
        elif state.status is StepStatus.WAITING and state.timer_at is not None:
            found.append(state.timer_at)
    return found


async def _active_runs(app: Hephaestus) -> list[Instance]:
    """The active runs of the app's workflows (a storage shared by apps holds others too)."""
    runs = await app.list(status_in=ACTIVE_STATUSES)
    return [run for run in runs if run.workflow in app.registry]


def _fire_overdue(app: Hephaestus) -> bool:
    """Fire the ``FakeClock`` callbacks already due (armed for a time that has passed, such as
    a timer recovery re-arms); returns whether there were any. Time does not move."""
    clock = app.clock
    if not isinstance(clock, FakeClock):
        return False
    deadline = clock.next_deadline()
    if deadline is None or deadline > clock.now():
        return False
    return clock.advance_to(clock.now()) > 0


async def _wait_idle(app: Hephaestus) -> None:
    """Wait for quiescence: ask an ``IdleAware`` runner, else watch the storage. Callbacks of
    a ``FakeClock`` that are already due fire on the way.

    Watching: idle once no active run has anything due at the clock's time and the active runs
    (ids and revisions) are the same on two reads a few milliseconds apart.
    """
    if isinstance(app.runner, IdleAware):
        await app._runner_idle()
        while _fire_overdue(app):
            await app._runner_idle()
        return
    previous: frozenset[tuple[str, int]] | None = None
    while True:
        if _fire_overdue(app):
            previous = None
        runs = await _active_runs(app)
        now = app.clock.now()
        seen = frozenset((run.run_id, run.revision) for run in runs)
        if seen == previous and not any(_due(run, now) for run in runs):
            return
        previous = seen
        await asyncio.sleep(_POLL_SECONDS)


async def _next_deadline(app: Hephaestus, clock: FakeClock) -> datetime | None:
    """The earliest armed clock callback or, for a runner that is not ``IdleAware``, the
    earliest future deadline stored in an active run, whichever comes first."""
    deadline = clock.next_deadline()
    if isinstance(app.runner, IdleAware):
        return deadline
    now = clock.now()
    stored = [at for run in await _active_runs(app) for at in _deadlines(run) if at > now]
    candidates = stored if deadline is None else [*stored, deadline]
    return min(candidates, default=None)


async def run_until_idle(
    app: Hephaestus, *, skip_timers: bool = False, limit: int = 10_000
) -> None:
    """Wait until nothing can run; with ``skip_timers``, also fire every timer (retries too).

    Works on any runner: an ``IdleAware`` runner is asked; for any other, the app's storage is
    read until no active run of the app's workflows has a step to begin or execute, a timer or
    a scheduled resume due at the clock's time, and those runs stayed unchanged for a few
    milliseconds (runs of workflows the app does not have are another app's: ignored). With a
    ``FakeClock``, callbacks armed for a time already past (a timer that fell due while no app
    was open) fire; time does not move.

    ``skip_timers`` needs a ``FakeClock``; it jumps from deadline to deadline (the clock's
    armed callbacks, and for a runner that is not ``IdleAware`` the deadlines stored in active
    runs) until none is left, at most ``limit`` times.
    """
    await _wait_idle(app)
    if not skip_timers:
        return
    clock = _fake_clock(app)
    for _ in range(limit):
        deadline = await _next_deadline(app, clock)
        if deadline is None:
            return
        clock.advance_to(deadline)
        await _wait_idle(app)
    raise RuntimeError(f"still firing timers after {limit} deadlines; is a timer re-arming itself?")


async def advance(app: Hephaestus, seconds: float) -> None:
    """Move the app's ``FakeClock`` forward, running everything that becomes due on the way:
    deadline by deadline, waiting for quiescence (as ``run_until_idle`` does) at each."""
    clock = _fake_clock(app)
    target = clock.now() + timedelta(seconds=seconds)
    await _wait_idle(app)
    while (deadline := await _next_deadline(app, clock)) is not None and deadline <= target:
        clock.advance_to(deadline)
        await _wait_idle(app)
    clock.advance_to(target)
    await _wait_idle(app)
