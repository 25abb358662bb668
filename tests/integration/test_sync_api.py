"""The blocking facade (``Flow.sync``) and how the facade finds its app."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING

import pytest

from hephaestus import (
    Config,
    Done,
    Hephaestus,
    Instance,
    InstanceAlreadyRunningError,
    InstanceNotActiveError,
    Ok,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    WaitForEvent,
    Workflow,
)
from hephaestus.errors import AmbiguousAppError, AppError, AppNotOpenError, NoAppRunningError
from hephaestus.testing import run_until_idle

if TYPE_CHECKING:
    from collections.abc import Callable

POLL_SECONDS = 5.0


class Greet(Step):
    events = ("greeted",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("greeted", {"greeting": f"hello {context.initial['name']}"})


class Signup(Workflow):
    unique = Unique(key="signup")
    start_step = Greet
    transitions = {(Greet, "greeted"): WaitForEvent, (WaitForEvent, "received"): Done}


def _wait_for(read: Callable[[], Instance], status: Status) -> Instance:
    """Poll ``read`` until the run reaches ``status`` (bounded; the app runs in another thread)."""
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        instance = read()
        if instance.status is status:
            return instance
        if time.monotonic() > deadline:
            raise AssertionError(f"{instance.id} is {instance.status}, expected {status}")
        time.sleep(0.005)


def test_the_sync_facade_drives_runs_from_plain_code() -> None:
    """In sync code ``with Hephaestus()`` plus ``Flow.sync`` starts, resumes, lists and cancels."""
    with Hephaestus() as app:
        assert Signup.sync.start("ann", {"name": "Ann"}) == "signup::ann"
        Signup.sync.start("bob", {"name": "Bob"})
        with pytest.raises(InstanceAlreadyRunningError):
            Signup.sync.start("bob", {"name": "Bob"})
        waiting = _wait_for(lambda: Signup.sync.get("ann"), Status.WAITING)
        assert waiting.context.steps["greet"] == {"greeting": "hello Ann"}

        Signup.sync.resume("ann", "received", {"confirmed": True})
        done = _wait_for(lambda: Signup.sync.get("ann"), Status.COMPLETED)
        assert done.context.steps["wait_for_event"] == {"confirmed": True}

        _wait_for(lambda: Signup.sync.get("bob"), Status.WAITING)
        Signup.sync.cancel("bob", reason="duplicate")
        assert Signup.sync.get("bob").status is Status.CANCELLED
        with pytest.raises(InstanceNotActiveError):
            Signup.sync.cancel("bob")

        assert [r.id for r in Signup.sync.list()] == ["signup::ann", "signup::bob"]
        assert [r.id for r in Signup.sync.list(status="cancelled")] == ["signup::bob"]
        assert [r.id for r in Signup.sync.list(limit=1, offset=1, app=app)] == ["signup::bob"]
        page = app.sync.page(Signup, limit=1)
        assert [r.id for r in page.runs] == ["signup::ann"]
        assert app.sync.count(Signup, by=("status",)) == {("completed",): 1, ("cancelled",): 1}
    assert not app.is_open
    with pytest.raises(NoAppRunningError):
        Signup.sync.get("ann")


def test_the_sync_facade_schedules_a_resume() -> None:
    """``Flow.sync.schedule_resume`` stores a delayed resume that completes the run when due."""
    with Hephaestus():
        Signup.sync.start("ann", {"name": "Ann"})
        _wait_for(lambda: Signup.sync.get("ann"), Status.WAITING)
        item = Signup.sync.schedule_resume(
            "ann", "wait_for_event", 0.05, event="received", payload={"late": True}
        )
        assert Signup.sync.get("ann").scheduled == (item,)
        done = _wait_for(lambda: Signup.sync.get("ann"), Status.COMPLETED)
        assert done.context.steps["wait_for_event"] == {"late": True}
        assert done.scheduled == ()


async def test_the_sync_facade_on_the_apps_own_loop_raises() -> None:
    """Calling the blocking API from the app's event loop is refused instead of deadlocking."""
    async with Hephaestus() as app:
        with pytest.raises(AppError, match="async API"):
            Signup.sync.start("ann", {"name": "Ann"})
        with pytest.raises(AppError):
            Signup.sync.get("ann", app=app)
        assert await Signup.list() == []


async def test_the_facade_without_an_open_app_raises() -> None:
    """With no app open the facade raises ``NoAppRunningError`` (sync and async alike)."""
    with pytest.raises(NoAppRunningError):
        await Signup.start("ann", {"name": "Ann"})
    with pytest.raises(NoAppRunningError):
        Signup.sync.start("ann", {"name": "Ann"})
    closed = Hephaestus()
    with pytest.raises(AppNotOpenError):
        await Signup.get("ann", app=closed)


async def test_two_open_apps_need_app_to_choose() -> None:
    """With two apps open elsewhere and none current here, the facade refuses to guess."""
    first, second = Hephaestus(), Hephaestus()
    await asyncio.gather(first.open(), second.open())  # opened in other tasks: not current here
    try:
        with pytest.raises(AmbiguousAppError):
            await Signup.start("ann", {"name": "Ann"})
        with pytest.raises(AmbiguousAppError):
            await Signup.list()
        await Signup.start("ann", {"name": "Ann"}, app=first)
        await run_until_idle(first)
        assert (await Signup.get("ann", app=first)).status is Status.WAITING
        assert await Signup.list(app=second) == []
        await Signup.start("ann", {"name": "Second"}, app=second)
        await run_until_idle(second)
        assert (await Signup.get("ann", app=second)).context.steps["greet"] == {
            "greeting": "hello Second"
        }
    finally:
        await first.close()
        await second.close()
    with pytest.raises(NoAppRunningError):
        await Signup.list()


async def test_the_innermost_open_app_is_current() -> None:
    """Nested apps: the facade uses the innermost, and the outer one again once it closes."""
    async with Hephaestus() as outer:
        async with Hephaestus() as inner:
            await Signup.start("ann", {"name": "Inner"})
            await run_until_idle(inner)
            assert [run.id for run in await Signup.list(app=inner)] == ["signup::ann"]
            assert await Signup.list(app=outer) == []
        await Signup.start("ann", {"name": "Outer"})
        await run_until_idle(outer)
        assert (await Signup.get("ann")).context.steps["greet"] == {"greeting": "hello Outer"}


async def test_concurrent_tasks_each_use_the_app_they_opened() -> None:
    """Two tasks, each in its own ``async with``, never see each other's app."""

    async def tenant(name: str) -> list[str]:
        async with Hephaestus() as app:
            await Signup.start(name, {"name": name})
            await asyncio.sleep(0)  # let the other task open its app meanwhile
            await run_until_idle(app)
            return [run.id for run in await Signup.list()]

    assert list(await asyncio.gather(tenant("ann"), tenant("bob"))) == [
        ["signup::ann"],
        ["signup::bob"],
    ]


def test_threads_each_use_the_app_they_opened() -> None:
    """Sync apps opened in two threads: each thread's ``Flow.sync`` calls reach its own app."""
    barrier = threading.Barrier(2)
    seen: dict[str, list[str]] = {}

    def tenant(name: str) -> None:
        with Hephaestus():
            barrier.wait()  # both apps are open now
            Signup.sync.start(name, {"name": name})
            seen[name] = [run.id for run in Signup.sync.list()]
            barrier.wait()

    threads = [threading.Thread(target=tenant, args=(name,)) for name in ("ann", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"ann": ["signup::ann"], "bob": ["signup::bob"]}


def test_a_thread_that_opened_no_app_uses_the_one_open_app() -> None:
    """A worker thread (a request handler) reaches the app opened at start-up elsewhere."""
    found: list[object] = []
    with Hephaestus() as app:

        def handler() -> None:
            Signup.sync.start("ann", {"name": "Ann"})
            found.append(Signup.sync.get("ann").id)

        thread = threading.Thread(target=handler)
        thread.start()
        thread.join()
        assert found == ["signup::ann"]
        assert [run.id for run in app.run_sync(lambda: Signup.list(app=app))] == ["signup::ann"]


def test_open_sync_and_close_sync_serve_a_long_lived_sync_process() -> None:
    """open_sync() at start-up and close_sync() at exit bracket the app outside any `with`."""
    app = Hephaestus().open_sync()
    try:
        with pytest.raises(AppError):
            app.open_sync()
        Signup.sync.start("cid", {"name": "Cid"})
        app.run_sync(lambda: run_until_idle(app))
        assert Signup.sync.get("cid").status is Status.WAITING
    finally:
        app.close_sync()
    assert not app.is_open
    app.close_sync()  # closing twice is harmless


async def test_close_sync_refuses_an_app_opened_with_await() -> None:
    """An app opened on the caller's loop must be closed with `await close()`."""
    async with Hephaestus() as app:
        with pytest.raises(AppError):
            app.close_sync()
