"""The storage unit of work (``Storage.transaction``), against every backend.

A runner loads a run locked, decides, saves and adds its own writes in one transaction: all of
it commits when the block exits, none of it when the block raises, and a second transaction
that locks the same run waits for the first.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from hephaestus import InstanceAlreadyRunningError, InstanceNotFoundError
from hephaestus.errors import ConcurrentUpdateError
from tests.integration.test_storage_contract import bump, make

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from hephaestus.storage import Storage


@pytest.fixture
async def store(storage: Storage) -> AsyncIterator[Storage]:
    """The backend under test, opened and empty."""
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


class Boom(Exception):
    """Raised inside a transaction block to roll it back."""


async def test_writes_commit_together_when_the_block_exits(store: Storage) -> None:
    """A create and a put made in one transaction are both stored after the block."""
    await store.create(make("r1", instance_id="flow::a"))
    async with store.transaction() as tx:
        before = await tx.get("r1")
        await tx.put(bump(before, metadata={"step": 2}), before)
        await tx.create(make("r2", instance_id="flow::b"))
    assert (await store.get("r1")).revision == 2
    assert (await store.get("r1")).metadata == {"step": 2}
    assert (await store.get("r2")).id == "flow::b"


async def test_nothing_is_stored_when_the_block_raises(store: Storage) -> None:
    """An exception in the block rolls every write of the transaction back."""
    await store.create(make("r1", instance_id="flow::a"))

    async def write_then_fail() -> None:
        async with store.transaction() as tx:
            before = await tx.get("r1")
            await tx.put(bump(before), before)
            await tx.create(make("r2", instance_id="flow::b"))
            raise Boom

    with pytest.raises(Boom):
        await write_then_fail()
    assert (await store.get("r1")).revision == 1
    with pytest.raises(InstanceNotFoundError):
        await store.get("r2")


async def test_a_transaction_reads_its_own_writes(store: Storage) -> None:
    """What a transaction wrote is what it reads back before committing."""
    async with store.transaction() as tx:
        await tx.create(make("r1"))
        created = await tx.get("r1")
        await tx.put(bump(created), created)
        assert (await tx.get("r1")).revision == 2


async def test_a_stale_put_is_refused_inside_a_transaction(store: Storage) -> None:
    """A put whose revision does not follow the stored one raises ``ConcurrentUpdateError``."""
    first = make("r1")
    await store.create(first)
    await store.put(bump(first), first)
    with pytest.raises(ConcurrentUpdateError):
        async with store.transaction() as tx:
            await tx.put(bump(first), first)
    assert (await store.get("r1")).revision == 2


async def test_uniqueness_holds_inside_a_transaction(store: Storage) -> None:
    """Creating a second active run with a held unique key fails, and the block rolls back."""
    await store.create(make("r1", unique_key="flow::a"))

    async def create_both() -> None:
        async with store.transaction() as tx:
            await tx.create(make("r3", instance_id="flow::c"))
            await tx.create(make("r2", unique_key="flow::a"))

    with pytest.raises(InstanceAlreadyRunningError):
        await create_both()
    with pytest.raises(InstanceNotFoundError):
        await store.get("r3")


async def test_a_locked_run_waits_for_the_transaction_holding_it(store: Storage) -> None:
    """Two read-modify-writes of one run are serialised by the lock ``get`` takes."""
    await store.create(make("r1"))
    order: list[str] = []
    first_holds = asyncio.Event()

    async def first() -> None:
        async with store.transaction() as tx:
            before = await tx.get("r1")
            first_holds.set()
            await asyncio.sleep(0.2)
            await tx.put(bump(before), before)
            order.append("first")

    async def second() -> None:
        await first_holds.wait()
        async with store.transaction() as tx:
            before = await tx.get("r1")  # waits for the first to commit, then reads revision 2
            await tx.put(bump(before), before)
            order.append("second")

    await asyncio.gather(first(), second())
    assert order == ["first", "second"]
    assert (await store.get("r1")).revision == 3


async def test_after_commit_callbacks_run_only_on_commit(store: Storage) -> None:
    """``after_commit`` callbacks run once the transaction committed, never on rollback."""
    calls: list[str] = []
    async with store.transaction() as tx:
        await tx.create(make("r1"))
        tx.after_commit(lambda: calls.append("committed"))
        assert calls == []
    assert calls == ["committed"]

    async def roll_back() -> None:
        async with store.transaction() as tx:
            tx.after_commit(lambda: calls.append("rolled back"))
            raise Boom

    with pytest.raises(Boom):
        await roll_back()
    assert calls == ["committed"]
