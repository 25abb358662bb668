"""Fixtures for the runner contract suite: every test runs on each runner and each storage.

``new_runner`` makes a fresh runner of the kind under test (a crash test opens a second app on
the same storage with a second runner); the storages are those of the storage contract suite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from hephaestus import Hephaestus
from hephaestus.runners import LocalRunner, Runner
from hephaestus.runners.oban import ObanRunner
from hephaestus.testing import FakeClock
from tests.integration.conftest import STORAGE_BACKENDS, integration_database, make_storage
from tests.runners._serial_runner import SerialRunner

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from hephaestus.storage import Storage

__all__ = ["integration_database"]

RUNNERS: dict[str, Callable[[], Runner]] = {
    "local": LocalRunner,
    "serial": SerialRunner,
    "serial-polling": lambda: SerialRunner(timers="poll"),
    "oban": lambda: ObanRunner(mode="inline"),
}
"""Every runner the contract suite runs: the package's own, and ``SerialRunner`` (written
outside the package), with its timers on the clock and polled. The Oban runner runs inline
(jobs executed in the test's process, due on the ``FakeClock``): its worker mode is tested
against real ``oban`` nodes in tests/oban."""

ONLY_ON: dict[str, tuple[str, ...]] = {"oban": ("postgres",)}
"""Runners that need a particular storage (the Oban runner's jobs live in PostgreSQL)."""

COMBINATIONS = [
    (runner, backend)
    for runner in sorted(RUNNERS)
    for backend in STORAGE_BACKENDS
    if backend in ONLY_ON.get(runner, STORAGE_BACKENDS)
]


@pytest.fixture(params=COMBINATIONS, ids=[f"{r}-{b}" for r, b in COMBINATIONS])
def combination(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The runner and storage under test."""
    runner, backend = request.param
    return runner, backend


@pytest.fixture
def new_runner(combination: tuple[str, str]) -> Callable[[], Runner]:
    """Makes a new runner of the kind under test."""
    return RUNNERS[combination[0]]


@pytest.fixture
def storage(combination: tuple[str, str], request: pytest.FixtureRequest) -> Storage:
    """A fresh storage (not opened: the app opens it)."""
    return make_storage(combination[1], request)


@pytest.fixture
def clock() -> FakeClock:
    """A clock that only moves when a test advances it."""
    return FakeClock()


@pytest.fixture
async def app(
    storage: Storage, clock: FakeClock, new_runner: Callable[[], Runner]
) -> AsyncIterator[Hephaestus]:
    """An open app on ``storage`` with the fake ``clock`` and the runner under test."""
    async with Hephaestus(storage=storage, clock=clock, runner=new_runner()) as opened:
        yield opened
