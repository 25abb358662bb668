"""Fixtures for integration tests: a storage per backend, a fake clock, and an open app.

``storage`` is parametrized by backend name so that every test written against it (the storage
contract suite, and every app-level test through ``app``) runs on each backend. Today that is
only the in-memory storage; a PostgreSQL backend is added by extending ``STORAGE_BACKENDS`` and
``make_storage``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from hephaestus import Hephaestus
from hephaestus.storage import InMemoryStorage, Storage
from hephaestus.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

STORAGE_BACKENDS = ("memory",)


def make_storage(backend: str) -> Storage:
    """A fresh, empty, not yet opened storage of ``backend``."""
    if backend == "memory":
        return InMemoryStorage()
    raise ValueError(f"unknown storage backend {backend!r}")


@pytest.fixture(params=STORAGE_BACKENDS)
def storage(request: pytest.FixtureRequest) -> Storage:
    """A fresh storage (not opened: the app, or the contract suite, opens it)."""
    backend: str = request.param
    return make_storage(backend)


@pytest.fixture
def clock() -> FakeClock:
    """A clock that only moves when a test advances it."""
    return FakeClock()


@pytest.fixture
async def app(storage: Storage, clock: FakeClock) -> AsyncIterator[Hephaestus]:
    """An open app on ``storage`` with the fake ``clock``; closed after the test."""
    async with Hephaestus(storage=storage, clock=clock) as opened:
        yield opened
