"""The ``Storage`` contract, run against every backend of the ``storage`` fixture.

Each test speaks only the protocol (``create``, ``put``, ``get``, ``delete``, ``query``), so a
new backend passes this module unchanged once it is added to ``STORAGE_BACKENDS``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from hephaestus import (
    Context,
    Done,
    Instance,
    InstanceAlreadyRunningError,
    InstanceNotFoundError,
    Status,
    Workflow,
)
from hephaestus.errors import ConcurrentUpdateError, HephaestusError, StorageError
from hephaestus.storage import InstanceQuery, Storage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FLOW = "contract.Flow"
OTHER = "contract.Other"


def make(
    run_id: str,
    *,
    instance_id: str = "flow::a",
    workflow: str = FLOW,
    version: int = 1,
    status: Status = Status.RUNNING,
    at: float = 0,
    unique_key: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Instance:
    """A stored-shaped instance at revision 1, created ``at`` seconds after ``T0``."""
    created = T0 + timedelta(seconds=at)
    return Instance(
        id=instance_id,
        run_id=run_id,
        workflow=workflow,
        workflow_version=version,
        family=workflow,
        status=status,
        context=Context(initial={"n": run_id}, steps={}),
        created_at=created,
        updated_at=created,
        revision=1,
        unique_key=unique_key,
        metadata={"source": "contract"} if metadata is None else metadata,
    )


def bump(instance: Instance, **changes: Any) -> Instance:
    """The next revision of ``instance`` with ``changes`` applied."""
    return replace(instance, revision=instance.revision + 1, **changes)


@pytest.fixture
async def store(storage: Storage) -> AsyncIterator[Storage]:
    """The backend under test, opened and empty."""
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


def run_ids(rows: list[Instance]) -> list[str]:
    return [row.run_id for row in rows]


# -- create / get / put -----------------------------------------------------------------------


async def test_a_backend_satisfies_the_protocol(store: Storage) -> None:
    """Every backend is a runtime ``Storage``."""
    assert isinstance(store, Storage)


async def test_create_then_get_returns_the_instance(store: Storage) -> None:
    """A created run reads back equal, field for field."""
    instance = make("r1", unique_key="k")
    await store.create(instance)
    assert await store.get("r1") == instance


async def test_create_of_an_existing_run_id_raises(store: Storage) -> None:
    """A run id is created once; a second create fails and keeps the first."""
    first = make("r1")
    await store.create(first)
    with pytest.raises(StorageError):
        await store.create(make("r1", instance_id="flow::b"))
    assert await store.get("r1") == first


async def test_put_stores_the_next_revision(store: Storage) -> None:
    """``put`` replaces a run with its next revision."""
    first = make("r1")
    await store.create(first)
    second = bump(first, status=Status.WAITING, updated_at=T0 + timedelta(seconds=3))
    await store.put(second)
    assert await store.get("r1") == second
    third = bump(second, status=Status.COMPLETED)
    await store.put(third)
    assert await store.get("r1") == third


@pytest.mark.parametrize("revision", [1, 3, 0])
async def test_put_of_a_stale_or_skipped_revision_raises_concurrent_update(
    store: Storage, revision: int
) -> None:
    """Only revision ``stored + 1`` is accepted; anything else is another writer's conflict."""
    first = make("r1")
    await store.create(first)
    with pytest.raises(ConcurrentUpdateError) as caught:
        await store.put(replace(first, revision=revision, status=Status.FAILED))
    assert caught.value.instance_id == "flow::a"
    assert await store.get("r1") == first


async def test_two_writers_from_the_same_revision_conflict(store: Storage) -> None:
    """Of two updates built from the same revision, the second to arrive is refused."""
    first = make("r1")
    await store.create(first)
    winner = bump(first, status=Status.WAITING)
    loser = bump(first, status=Status.CANCELLED)
    await store.put(winner)
    with pytest.raises(ConcurrentUpdateError):
        await store.put(loser)
    assert await store.get("r1") == winner


async def test_put_of_an_unknown_run_raises_not_found(store: Storage) -> None:
    """``put`` never creates: a run that does not exist is not found."""
    with pytest.raises(InstanceNotFoundError):
        await store.put(bump(make("ghost")))
    with pytest.raises(InstanceNotFoundError):
        await store.get("ghost")


async def test_get_of_an_unknown_run_raises_not_found(store: Storage) -> None:
    """``get`` of a missing run raises ``InstanceNotFoundError``, every time."""
    for _ in range(2):
        with pytest.raises(InstanceNotFoundError):
            await store.get("missing")


# -- uniqueness -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [Status.PENDING, Status.RUNNING, Status.WAITING])
async def test_an_active_holder_refuses_a_second_run_with_its_key(
    store: Storage, status: Status
) -> None:
    """While a run holding a unique key is active, creating another with that key fails."""
    await store.create(make("r1", status=status, unique_key="flow|flow::a"))
    with pytest.raises(InstanceAlreadyRunningError) as caught:
        await store.create(make("r2", unique_key="flow|flow::a"))
    assert caught.value.unique_key == "flow|flow::a"
    assert caught.value.instance_id == "flow::a"
    with pytest.raises(InstanceNotFoundError):
        await store.get("r2")
    assert run_ids(await store.query(InstanceQuery())) == ["r1"]


async def test_distinct_or_missing_keys_never_conflict(store: Storage) -> None:
    """Different unique keys coexist, and runs without a key are never refused."""
    await store.create(make("r1", unique_key="k1"))
    await store.create(make("r2", unique_key="k2"))
    await store.create(make("r3"))
    await store.create(make("r4"))
    assert len(await store.query(InstanceQuery())) == 4


@pytest.mark.parametrize("final", [Status.COMPLETED, Status.FAILED, Status.CANCELLED])
async def test_a_key_is_free_again_once_its_holder_finished(store: Storage, final: Status) -> None:
    """When the holding run reaches a final status, a new run may take the key."""
    holder = make("r1", unique_key="k")
    await store.create(holder)
    waiting = bump(holder, status=Status.WAITING)
    await store.put(waiting)
    with pytest.raises(InstanceAlreadyRunningError):
        await store.create(make("r2", unique_key="k"))
    await store.put(bump(waiting, status=final))
    await store.create(make("r2", unique_key="k"))
    with pytest.raises(InstanceAlreadyRunningError):
        await store.create(make("r3", unique_key="k"))
    assert run_ids(await store.query(InstanceQuery())) == ["r1", "r2"]


async def test_a_finished_run_created_with_a_key_does_not_hold_it(store: Storage) -> None:
    """A run stored already final (an import, say) leaves its key free."""
    await store.create(make("r1", status=Status.COMPLETED, unique_key="k"))
    await store.create(make("r2", unique_key="k"))


async def test_deleting_the_holder_frees_its_key(store: Storage) -> None:
    """A deleted run holds nothing."""
    await store.create(make("r1", unique_key="k"))
    await store.delete("r1")
    await store.create(make("r2", unique_key="k"))


# -- uniqueness across scopes (a global key is the id itself) ---------------------------------

GLOBAL = "flow::a"  # what unique_key_for gives scope "global" for id flow::a
SCOPED = {
    "workflow": f"{FLOW}|flow::a",
    "version": f"{FLOW}@1|flow::a",
    "other workflow": f"{OTHER}|flow::a",
    "other version": f"{OTHER}@2|flow::a",
}


@pytest.mark.parametrize("scoped", list(SCOPED.values()), ids=list(SCOPED))
async def test_a_global_run_excludes_a_run_of_its_id_in_any_scope(
    store: Storage, scoped: str
) -> None:
    """While a global run of an id is active, no run of that id starts in any workflow or scope."""
    await store.create(make("r1", workflow=OTHER, unique_key=GLOBAL))
    with pytest.raises(InstanceAlreadyRunningError) as caught:
        await store.create(make("r2", unique_key=scoped))
    assert caught.value.instance_id == "flow::a"
    with pytest.raises(InstanceNotFoundError):
        await store.get("r2")


@pytest.mark.parametrize("scoped", list(SCOPED.values()), ids=list(SCOPED))
async def test_a_scoped_run_excludes_a_global_run_of_its_id(store: Storage, scoped: str) -> None:
    """While a workflow- or version-scoped run of an id is active, a global run of it fails."""
    await store.create(make("r1", unique_key=scoped))
    with pytest.raises(InstanceAlreadyRunningError):
        await store.create(make("r2", workflow=OTHER, unique_key=GLOBAL))
    assert run_ids(await store.query(InstanceQuery())) == ["r1"]


async def test_scoped_keys_of_one_id_in_different_workflows_coexist(store: Storage) -> None:
    """Workflow- and version-scoped runs of one id in different workflows do not collide."""
    for index, key in enumerate(SCOPED.values()):
        if key.startswith(FLOW + "@"):
            continue  # the workflow and version keys of FLOW are two scopes of one workflow
        await store.create(make(f"r{index}", unique_key=key))
    await store.create(make("r9", instance_id="flow::b", unique_key="flow::b"))  # another id
    assert len(await store.query(InstanceQuery())) == 4


@pytest.mark.parametrize("release", ["finish", "delete"])
async def test_a_global_key_is_free_once_the_excluding_run_is_gone(
    store: Storage, release: str
) -> None:
    """When the scoped run finishes or is deleted, a global run of its id may start."""
    holder = make("r1", unique_key=SCOPED["workflow"])
    await store.create(holder)
    if release == "finish":
        await store.put(bump(holder, status=Status.COMPLETED))
    else:
        await store.delete("r1")
    await store.create(make("r2", workflow=OTHER, unique_key=GLOBAL))
    with pytest.raises(InstanceAlreadyRunningError):
        await store.create(make("r3", unique_key=SCOPED["workflow"]))


# -- a failed create leaves no trace ------------------------------------------------------------


async def assert_no_trace(store: Storage, run_id: str, key: str) -> None:
    """``run_id`` was never stored and ``key`` is free: the same key starts a new run."""
    with pytest.raises(InstanceNotFoundError):
        await store.get(run_id)
    assert run_id not in run_ids(await store.query(InstanceQuery()))
    await store.create(make(f"{run_id}-again", unique_key=key))
    assert run_ids(await store.query(InstanceQuery(status=Status.RUNNING))) == [f"{run_id}-again"]


async def test_a_create_refused_for_its_run_id_holds_no_key(store: Storage) -> None:
    """A create that fails (its run id exists) leaves its unique key free."""
    await store.create(make("r1", instance_id="flow::b", status=Status.COMPLETED))
    with pytest.raises(StorageError):
        await store.create(make("r1", unique_key=SCOPED["workflow"]))
    await store.create(make("r2", unique_key=SCOPED["workflow"]))


class Opaque:
    """A value no JSON codec can hold."""


@pytest.mark.parametrize(
    ("storage", "value"),
    [
        ("memory-json", Opaque()),
        ("postgres", Opaque()),
        ("postgres", "nul \x00 character"),  # encodes, but PostgreSQL's jsonb refuses it
        ("postgres", {"deep": "\udc00"}),  # a lone surrogate: refused by the driver
    ],
    ids=["memory-json-unencodable", "postgres-unencodable", "postgres-nul", "postgres-surrogate"],
    indirect=["storage"],
)
@pytest.mark.parametrize("key", [SCOPED["workflow"], GLOBAL], ids=["workflow", "global"])
async def test_a_create_that_fails_on_its_value_leaves_no_trace(
    store: Storage, value: object, key: str
) -> None:
    """A create whose data the storage refuses stores nothing and holds no key."""
    bad = replace(make("r1", unique_key=key), context=Context(initial={"v": value}, steps={}))
    with pytest.raises(HephaestusError):
        await store.create(bad)
    await assert_no_trace(store, "r1", key)


# -- delete -----------------------------------------------------------------------------------


async def test_delete_removes_a_run_and_is_idempotent(store: Storage) -> None:
    """Deleting removes the run; deleting it again, or a run never stored, is fine."""
    await store.create(make("r1"))
    await store.create(make("r2"))
    await store.delete("r1")
    await store.delete("r1")
    await store.delete("never")
    with pytest.raises(InstanceNotFoundError):
        await store.get("r1")
    assert run_ids(await store.query(InstanceQuery())) == ["r2"]


# -- query ------------------------------------------------------------------------------------


@pytest.fixture
async def populated(store: Storage) -> Storage:
    """Six runs over two workflows, versions and statuses, created one second apart."""
    rows = [
        make("r1", instance_id="flow::a", status=Status.RUNNING, at=0),
        make("r2", instance_id="flow::b", status=Status.WAITING, at=1, version=2),
        make("r3", instance_id="flow::a", status=Status.COMPLETED, at=2),
        make("r4", instance_id="other::a", workflow=OTHER, status=Status.FAILED, at=3),
        make("r5", instance_id="flow::c", status=Status.CANCELLED, at=4, version=2),
        make("r6", instance_id="flow::b", status=Status.PENDING, at=5),
    ]
    for row in rows:
        await store.create(row)
    return store


async def test_an_empty_query_returns_every_run_oldest_first(populated: Storage) -> None:
    """No filter: all runs, in creation order."""
    assert run_ids(await populated.query(InstanceQuery())) == ["r1", "r2", "r3", "r4", "r5", "r6"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (InstanceQuery(id="flow::a"), ["r1", "r3"]),
        (InstanceQuery(id="flow::zzz"), []),
        (InstanceQuery(status=Status.WAITING), ["r2"]),
        (InstanceQuery(status=Status.COMPLETED), ["r3"]),
        (
            InstanceQuery(status_in=frozenset({Status.PENDING, Status.RUNNING, Status.WAITING})),
            ["r1", "r2", "r6"],
        ),
        (InstanceQuery(status_in=[Status.FAILED, Status.CANCELLED]), ["r4", "r5"]),
        (InstanceQuery(status_in=()), []),
        (InstanceQuery(workflow=FLOW), ["r1", "r2", "r3", "r5", "r6"]),
        (InstanceQuery(workflow=OTHER), ["r4"]),
        (InstanceQuery(workflow=[FLOW, OTHER]), ["r1", "r2", "r3", "r4", "r5", "r6"]),
        (InstanceQuery(workflow=frozenset({OTHER, "nowhere.Flow"})), ["r4"]),
        (InstanceQuery(workflow="contract"), []),
        (InstanceQuery(workflow_version=2), ["r2", "r5"]),
        (InstanceQuery(workflow_version=1), ["r1", "r3", "r4", "r6"]),
        (InstanceQuery(id="flow::b", status=Status.PENDING), ["r6"]),
        (InstanceQuery(workflow=FLOW, workflow_version=2, status=Status.CANCELLED), ["r5"]),
        (InstanceQuery(id="flow::a", workflow=OTHER), []),
        (InstanceQuery(status=Status.RUNNING, status_in=[Status.WAITING]), []),
    ],
)
async def test_every_filter_matches_and_filters_combine_with_and(
    populated: Storage, query: InstanceQuery, expected: list[str]
) -> None:
    """Each filter keeps only matching runs; several filters must all match."""
    assert run_ids(await populated.query(query)) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (InstanceQuery(limit=2), ["r1", "r2"]),
        (InstanceQuery(limit=2, offset=2), ["r3", "r4"]),
        (InstanceQuery(offset=4), ["r5", "r6"]),
        (InstanceQuery(offset=6), []),
        (InstanceQuery(limit=0), []),
        (InstanceQuery(limit=100), ["r1", "r2", "r3", "r4", "r5", "r6"]),
        (InstanceQuery(newest_first=True), ["r6", "r5", "r4", "r3", "r2", "r1"]),
        (InstanceQuery(newest_first=True, limit=1), ["r6"]),
        (InstanceQuery(newest_first=True, limit=2, offset=1), ["r5", "r4"]),
        (InstanceQuery(workflow=FLOW, limit=2, offset=1), ["r2", "r3"]),
        (InstanceQuery(id="flow::a", newest_first=True, limit=1), ["r3"]),
    ],
)
async def test_order_then_offset_then_limit(
    populated: Storage, query: InstanceQuery, expected: list[str]
) -> None:
    """Runs are ordered (``newest_first`` reverses), then ``offset`` skips and ``limit`` caps."""
    assert run_ids(await populated.query(query)) == expected


async def test_order_follows_creation_time_not_arrival(store: Storage) -> None:
    """Runs are ordered by ``created_at`` even when they were stored in another order."""
    await store.create(make("late", at=20))
    await store.create(make("early", at=0))
    await store.create(make("middle", at=10))
    assert run_ids(await store.query(InstanceQuery())) == ["early", "middle", "late"]
    assert run_ids(await store.query(InstanceQuery(newest_first=True))) == [
        "late",
        "middle",
        "early",
    ]


async def test_runs_created_at_the_same_instant_keep_their_creation_order(store: Storage) -> None:
    """Ties on ``created_at`` (a fake clock) are broken by the order the runs were created."""
    for run_id in ("t1", "t2", "t3"):
        await store.create(make(run_id, at=0))
    assert run_ids(await store.query(InstanceQuery())) == ["t1", "t2", "t3"]
    assert run_ids(await store.query(InstanceQuery(newest_first=True, limit=1))) == ["t3"]


async def test_updates_do_not_reorder_runs(populated: Storage) -> None:
    """Order is by creation: updating an old run leaves it where it was."""
    first = await populated.get("r1")
    await populated.put(bump(first, status=Status.COMPLETED, updated_at=T0 + timedelta(hours=1)))
    assert run_ids(await populated.query(InstanceQuery())) == ["r1", "r2", "r3", "r4", "r5", "r6"]
    assert run_ids(await populated.query(InstanceQuery(status=Status.COMPLETED))) == ["r1", "r3"]


async def test_query_results_reflect_the_latest_revision(populated: Storage) -> None:
    """A run is returned as last written, and status filters see the new status."""
    waiting = await populated.get("r2")
    done = bump(waiting, status=Status.COMPLETED)
    await populated.put(done)
    assert await populated.query(InstanceQuery(id="flow::b", status=Status.COMPLETED)) == [done]
    assert await populated.query(InstanceQuery(status=Status.WAITING)) == []


# -- the query model: filters, keyset pages, counts --------------------------------------------


class BillingEu(Workflow):
    """A workflow tagged ``billing`` and ``eu``, for the tag filter."""

    tags = ("billing", "eu")
    start_step = Done


class BillingUs(Workflow):
    """A workflow tagged ``billing`` only."""

    tags = ("billing", "us")
    start_step = Done


def workflow_name(workflow: type[Workflow]) -> str:
    return workflow.definition().name


async def test_id_prefix_matches_ids_starting_with_it_literally(store: Storage) -> None:
    """``id_prefix`` keeps ids starting with it; ``%``, ``_`` and ``\\`` are not wildcards."""
    ids = ["order::ab1", "order::ab2", "order::ac", "order%x", "order_y", "orderzy", "a\\b", "ab"]
    for n, instance_id in enumerate(ids):
        await store.create(make(f"p{n}", instance_id=instance_id, at=n))

    async def prefixed(prefix: str) -> list[str]:
        return [run.id for run in await store.query(InstanceQuery(id_prefix=prefix))]

    assert await prefixed("order::ab") == ["order::ab1", "order::ab2"]
    assert await prefixed("order%") == ["order%x"]
    assert await prefixed("order_") == ["order_y"]
    assert await prefixed("a\\") == ["a\\b"]
    assert await prefixed("") == ids
    assert await prefixed("zzz") == []


async def test_metadata_filter_keeps_runs_whose_metadata_contains_it(store: Storage) -> None:
    """``metadata`` is containment: nested mappings recursively, lists by their elements."""
    await store.create(
        make("m1", at=0, metadata={"team": {"name": "a", "size": 3}, "labels": ["x", "y"]})
    )
    await store.create(make("m2", at=1, metadata={"team": {"name": "b"}, "labels": ["y"]}))
    await store.create(make("m3", at=2, metadata={}))

    async def containing(metadata: dict[str, Any]) -> list[str]:
        return run_ids(await store.query(InstanceQuery(metadata=metadata)))

    assert await containing({"team": {"name": "a"}}) == ["m1"]
    assert await containing({"labels": ["y"]}) == ["m1", "m2"]
    assert await containing({"labels": ["x", "y"], "team": {"size": 3}}) == ["m1"]
    assert await containing({}) == ["m1", "m2", "m3"]
    assert await containing({"team": {"name": "c"}}) == []
    assert await containing({"team": "a"}) == []


async def test_time_ranges_are_half_open(store: Storage) -> None:
    """``*_after`` is inclusive and ``*_before`` exclusive, for creation and update times."""
    for n in range(3):
        run = make(f"t{n}", at=n * 10)
        await store.create(run)
        await store.put(bump(run, updated_at=T0 + timedelta(seconds=100 - n * 10)))
    ten = T0 + timedelta(seconds=10)
    assert run_ids(await store.query(InstanceQuery(created_after=ten))) == ["t1", "t2"]
    assert run_ids(await store.query(InstanceQuery(created_before=ten))) == ["t0"]
    window = InstanceQuery(created_after=ten, created_before=ten + timedelta(seconds=10))
    assert run_ids(await store.query(window)) == ["t1"]
    ninety = T0 + timedelta(seconds=90)
    assert run_ids(await store.query(InstanceQuery(updated_after=ninety))) == ["t0", "t1"]
    assert run_ids(await store.query(InstanceQuery(updated_before=ninety))) == ["t2"]


async def test_tags_filter_keeps_runs_of_workflows_with_every_tag(store: Storage) -> None:
    """``tags`` resolves through the registry to the workflows whose definition has them all."""
    eu, us = workflow_name(BillingEu), workflow_name(BillingUs)
    await store.create(make("g1", workflow=eu, at=0))
    await store.create(make("g2", workflow=us, at=1))
    await store.create(make("g3", at=2))  # an untagged workflow
    assert run_ids(await store.query(InstanceQuery(tags=["billing"]))) == ["g1", "g2"]
    assert run_ids(await store.query(InstanceQuery(tags={"billing", "eu"}))) == ["g1"]
    assert run_ids(await store.query(InstanceQuery(tags=["billing"], workflow=us))) == ["g2"]
    assert run_ids(await store.query(InstanceQuery(tags=["billing"], workflow=FLOW))) == []
    assert run_ids(await store.query(InstanceQuery(tags=["nowhere"]))) == []
    assert run_ids(await store.query(InstanceQuery(tags=[]))) == ["g1", "g2"]


async def test_filters_combine_with_and(store: Storage) -> None:
    """Every given filter must hold: prefix, status, workflow, metadata and time together."""
    eu = workflow_name(BillingEu)
    await store.create(make("c1", instance_id="inv::1", workflow=eu, metadata={"k": 1}, at=0))
    await store.create(make("c2", instance_id="inv::2", workflow=eu, metadata={"k": 1}, at=5))
    await store.create(make("c3", instance_id="inv::3", workflow=eu, metadata={"k": 2}, at=6))
    await store.create(
        make("c4", instance_id="inv::4", metadata={"k": 1}, at=7, status=Status.FAILED)
    )
    await store.create(make("c5", instance_id="other::5", workflow=eu, metadata={"k": 1}, at=8))
    query = InstanceQuery(
        id_prefix="inv::",
        tags=["eu"],
        status_in={Status.RUNNING, Status.FAILED},
        metadata={"k": 1},
        created_after=T0 + timedelta(seconds=1),
        created_before=T0 + timedelta(seconds=10),
        updated_before=T0 + timedelta(seconds=10),
    )
    assert run_ids(await store.query(query)) == ["c2"]
    assert await store.count(query) == {("running", eu): 1}


async def test_a_bad_cursor_is_a_value_error(store: Storage) -> None:
    """A cursor that no storage returned is rejected, not silently ignored."""
    with pytest.raises(ValueError, match="cursor"):
        await store.page(InstanceQuery(after="not a cursor", limit=2))


@pytest.mark.parametrize("newest_first", [False, True])
async def test_keyset_pages_return_every_run_once_despite_concurrent_inserts(
    store: Storage, newest_first: bool
) -> None:
    """Walking pages returns each run that existed at the start exactly once, in order.

    Runs are created between pages, some at instants equal to those of runs already read (a
    tie broken by the creation sequence), some later, one earlier; none is returned twice, and
    none that existed at the start is skipped.
    """
    for n in range(11):
        await store.create(make(f"k{n:02}", at=n // 2, instance_id=f"key::{n}"))
    initial = run_ids(await store.query(InstanceQuery(newest_first=newest_first)))
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.page(InstanceQuery(after=cursor, limit=3, newest_first=newest_first))
        seen.extend(run_ids(page.runs))
        pages += 1
        extra = f"x{pages:02}"
        await store.create(make(extra + "tie", at=2))
        await store.create(make(extra + "late", at=100 + pages))
        await store.create(make(extra + "early", at=-pages))
        cursor = page.next_cursor
        if cursor is None:
            break
        assert len(page.runs) == 3
    assert len(seen) == len(set(seen))
    assert [run for run in seen if run in initial] == initial
    final = run_ids(await store.query(InstanceQuery(newest_first=newest_first)))
    assert [run for run in final if run in seen] == seen  # pages follow the one order


async def test_a_page_keeps_the_filters_and_the_last_page_has_no_cursor(store: Storage) -> None:
    """Pages of a filtered query hold only matching runs; an exact last page ends the walk."""
    for n in range(6):
        status = Status.RUNNING if n % 2 else Status.WAITING
        await store.create(make(f"f{n}", at=n, status=status))
    first = await store.page(InstanceQuery(status=Status.RUNNING, limit=2))
    assert run_ids(first.runs) == ["f1", "f3"]
    assert first.next_cursor is not None
    second = await store.page(
        InstanceQuery(status=Status.RUNNING, limit=2, after=first.next_cursor)
    )
    assert run_ids(second.runs) == ["f5"]
    assert second.next_cursor is None
    everything = await store.page(InstanceQuery(status=Status.WAITING))
    assert run_ids(everything.runs) == ["f0", "f2", "f4"]
    assert everything.next_cursor is None
    exact = await store.page(InstanceQuery(limit=6))
    assert len(exact.runs) == 6
    assert exact.next_cursor is None
    # query() honours a cursor too
    assert run_ids(await store.query(InstanceQuery(after=first.next_cursor))) == ["f4", "f5"]


async def test_counts_group_by_status_and_workflow(store: Storage) -> None:
    """``count`` applies the filters and groups by the chosen columns, in ``by`` order."""
    await store.create(make("n1", at=0))
    await store.create(make("n2", at=1, status=Status.FAILED))
    await store.create(make("n3", at=2, workflow=OTHER))
    await store.create(make("n4", at=3, workflow=OTHER, instance_id="other::4"))
    assert await store.count(InstanceQuery()) == {
        ("running", FLOW): 1,
        ("failed", FLOW): 1,
        ("running", OTHER): 2,
    }
    assert await store.count(InstanceQuery(), by=("workflow", "status")) == {
        (FLOW, "running"): 1,
        (FLOW, "failed"): 1,
        (OTHER, "running"): 2,
    }
    assert await store.count(InstanceQuery(), by=("status",)) == {("running",): 3, ("failed",): 1}
    assert await store.count(InstanceQuery(id_prefix="flow::"), by=("workflow",)) == {
        (FLOW,): 2,
        (OTHER,): 1,
    }
    assert await store.count(InstanceQuery(), by=()) == {(): 4}
    assert await store.count(InstanceQuery(id_prefix="none"), by=()) == {}
    assert await store.count(InstanceQuery(limit=1, offset=3), by=()) == {(): 4}


async def test_counts_group_only_by_status_and_workflow(store: Storage) -> None:
    """Any other grouping is refused with ``ValueError``."""
    with pytest.raises(ValueError, match="status and/or workflow"):
        await store.count(InstanceQuery(), by=("id",))  # type: ignore[arg-type]
