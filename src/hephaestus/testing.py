"""Helpers for testing workflows without sleeping: a fake clock and run-until-idle.

```python
clock = FakeClock()
async with Hephaestus(clock=clock) as app:
    await OrderFlow.start("abc123", {...})
    await run_until_idle(app)          # every step that can run has run
    await advance(app, seconds=2)      # fire the timers due in the next 2 s, in order
```
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from hephaestus.storage import InMemoryStorage

if TYPE_CHECKING:
    from collections.abc import Callable

    from hephaestus._app import Hephaestus

__all__ = ["FakeClock", "InMemoryStorage", "advance", "run_until_idle"]


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


def _fake_clock(app: Hephaestus) -> FakeClock:
    if not isinstance(app.clock, FakeClock):
        raise TypeError("this helper needs an app built with Hephaestus(clock=FakeClock())")
    return app.clock


async def run_until_idle(
    app: Hephaestus, *, skip_timers: bool = False, limit: int = 10_000
) -> None:
    """Wait until nothing can run; with ``skip_timers``, also fire every timer (retries too).

    ``skip_timers`` needs a ``FakeClock``; it jumps from deadline to deadline until none is
    left, at most ``limit`` times.
    """
    await app.run_until_idle()
    if not skip_timers:
        return
    clock = _fake_clock(app)
    for _ in range(limit):
        deadline = clock.next_deadline()
        if deadline is None:
            return
        clock.advance_to(deadline)
        await app.run_until_idle()
    raise RuntimeError(f"still firing timers after {limit} deadlines; is a timer re-arming itself?")


async def advance(app: Hephaestus, seconds: float) -> None:
    """Move the app's ``FakeClock`` forward, running everything that becomes due on the way."""
    clock = _fake_clock(app)
    target = clock.now() + timedelta(seconds=seconds)
    await app.run_until_idle()
    while (deadline := clock.next_deadline()) is not None and deadline <= target:
        clock.advance_to(deadline)
        await app.run_until_idle()
    clock.advance_to(target)
    await app.run_until_idle()
