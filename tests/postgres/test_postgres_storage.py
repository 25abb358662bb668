"""PostgreSQL specifics: uniqueness by the database, diff writes, JSONB queries, tenants, errors."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import psycopg_pool
import pytest

from hephaestus import (
    Context,
    Done,
    HistoryEntry,
    HistoryKind,
    Instance,
    InstanceAlreadyRunningError,
    Ok,
    Status,
    Step,
    StepRun,
    StepState,
    StepStatus,
    Workflow,
    WorkflowRegistry,
)
from hephaestus._core.instance import JoinState
from hephaestus.errors import (
    ConcurrentUpdateError,
    CorruptInstanceError,
    InputError,
    InstanceNotFoundError,
    StorageError,
    UnavailableError,
    UnknownWorkflowError,
    ValueRejectedError,
)
from hephaestus.storage import InstanceQuery
from hephaestus.storage.postgres import PostgresStorage, containment, install

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make(run_id: str, **changes: Any) -> Instance:
    """A running instance at revision 1 of an order workflow."""
    fields: dict[str, Any] = {
        "id": "order::a",
        "run_id": run_id,
        "workflow": "shop.Order",
        "workflow_version": 1,
        "family": "shop.Order",
        "status": Status.RUNNING,
        "context": Context(initial={"order_id": 123}, steps={}),
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(changes)
    return Instance(**fields)


def advanced(instance: Instance, step: str, at: int) -> Instance:
    """The next revision, with ``step`` completed: one step state, result and history entry."""
    moment = T0 + timedelta(seconds=at)
    return replace(
        instance,
        revision=instance.revision + 1,
        updated_at=moment,
        steps={**instance.steps, step: StepState(StepStatus.COMPLETED, event="ok")},
        context=Context(
            initial=instance.context.initial, steps={**instance.context.steps, step: {"n": at}}
        ),
        history=(*instance.history, HistoryEntry(moment, HistoryKind.STEP_COMPLETED, step=step)),
    )


async def row_count(url: str, table: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        statement = psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(table))
        cursor = await conn.execute(statement)
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def part_versions(url: str) -> dict[str, str]:
    """Each part's row version (``xmin``): it changes only when the row is written."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            "SELECT kind || ':' || key, xmin::text FROM workflow_instance_parts"
        )
        return {str(key): str(xmin) for key, xmin in await cursor.fetchall()}


# -- construction ----------------------------------------------------------------------------


def test_exactly_one_of_dsn_or_pool_is_required() -> None:
    """A storage needs a DSN or a pool, not both and not neither."""
    with pytest.raises(ValueError, match="exactly one"):
        PostgresStorage()
    pool = psycopg_pool.AsyncConnectionPool("dbname=x", open=False)
    with pytest.raises(ValueError, match="exactly one"):
        PostgresStorage("dbname=x", pool=pool)


async def test_a_storage_on_the_callers_own_pool_leaves_the_pool_open(database_url: str) -> None:
    """Given a pool, the storage uses it and does not close it."""
    async with psycopg_pool.AsyncConnectionPool(database_url, min_size=1, open=False) as pool:
        storage = PostgresStorage(pool=pool)
        await storage.open()
        await storage.create(make("r1"))
        assert (await storage.get("r1")).id == "order::a"
        await storage.close()
        assert not pool.closed
        async with pool.connection() as conn:
            cursor = await conn.execute("SELECT count(*) FROM workflow_instances")
            assert await cursor.fetchone() == (1,)


async def test_using_a_closed_storage_is_a_storage_error(database_url: str) -> None:
    """Before ``open`` (or after ``close``) every operation raises ``StorageError``."""
    storage = PostgresStorage(database_url)
    with pytest.raises(StorageError, match="not open"):
        await storage.get("r1")


async def test_an_unreachable_server_is_a_storage_error() -> None:
    """Opening against a server that does not answer fails with ``StorageError``."""
    storage = PostgresStorage(
        "host=127.0.0.1 port=1 user=postgres connect_timeout=1", open_timeout=0.5
    )
    with pytest.raises(StorageError):
        await storage.open()


# -- uniqueness ------------------------------------------------------------------------------


async def test_concurrent_starts_of_one_business_key_never_both_succeed(
    pg_storage: PostgresStorage,
) -> None:
    """Twenty creates racing for one unique key on separate connections: exactly one wins."""
    racers = [make(f"race{index}", unique_key="shop.Order|order::a") for index in range(20)]
    results = await asyncio.gather(
        *(pg_storage.create(racer) for racer in racers), return_exceptions=True
    )
    winners = [result for result in results if result is None]
    losers = [result for result in results if isinstance(result, InstanceAlreadyRunningError)]
    assert len(winners) == 1
    assert len(losers) == 19
    assert all(loser.unique_key == "shop.Order|order::a" for loser in losers)
    assert len(await pg_storage.query(InstanceQuery(id="order::a"))) == 1


async def test_racing_global_and_workflow_scoped_starts_of_one_id_have_one_winner(
    pg_storage: PostgresStorage,
) -> None:
    """Global and workflow-scoped creates of one id racing on many connections: one wins."""
    for round_ in range(8):
        instance_id = f"order::r{round_}"
        racers = [
            make(
                f"race{round_}-{index}",
                id=instance_id,
                workflow="shop.Gift" if index % 2 else "shop.Order",
                family="shop.Gift" if index % 2 else "shop.Order",
                unique_key=instance_id if index % 2 else f"shop.Order|{instance_id}",
            )
            for index in range(12)
        ]
        results = await asyncio.gather(
            *(pg_storage.create(racer) for racer in racers), return_exceptions=True
        )
        assert sum(result is None for result in results) == 1
        assert sum(isinstance(result, InstanceAlreadyRunningError) for result in results) == 11
        assert len(await pg_storage.query(InstanceQuery(id=instance_id))) == 1


async def test_the_database_itself_refuses_a_global_run_beside_a_scoped_one(
    pg_storage: PostgresStorage, database_url: str
) -> None:
    """The trigger, not the adapter, keeps scope global exclusive: raw SQL is refused too."""
    await pg_storage.create(make("r1", unique_key="shop.Order|order::a"))
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation, match="excludes unique key order::a"):
            await conn.execute(
                "INSERT INTO workflow_instances (run_id, id, workflow, workflow_version, status,"
                " revision, unique_key, created_at, updated_at) VALUES ('r2', 'order::a', 'w', 1,"
                " 'running', 1, 'order::a', now(), now())"
            )


async def test_the_database_itself_refuses_a_second_active_holder(
    pg_storage: PostgresStorage, database_url: str
) -> None:
    """The partial unique index, not the adapter, enforces uniqueness: raw SQL is refused too."""
    await pg_storage.create(make("r1", unique_key="k"))
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation, match="active_unique_key"):
            await conn.execute(
                "INSERT INTO workflow_instances (run_id, id, workflow, workflow_version, status,"
                " revision, unique_key, created_at, updated_at) VALUES ('r2', 'order::a', 'w', 1,"
                " 'waiting', 1, 'k', now(), now())"
            )


async def test_a_business_id_may_have_several_runs_and_the_newest_comes_first(
    pg_storage: PostgresStorage,
) -> None:
    """Old runs of a business id are kept; newest-first lists the latest run first."""
    first = make("r1", unique_key="k")
    await pg_storage.create(first)
    await pg_storage.put(replace(first, revision=2, status=Status.COMPLETED), first)
    await pg_storage.create(make("r2", unique_key="k"))
    newest = await pg_storage.query(InstanceQuery(id="order::a", newest_first=True, limit=1))
    assert [run.run_id for run in newest] == ["r2"]


async def test_put_updates_workflow_and_version(pg_storage: PostgresStorage) -> None:
    """Unlike the seed's upsert, a new workflow version is written (and queryable)."""
    first = make("r1")
    await pg_storage.create(first)
    second = replace(first, revision=2, workflow="shop.OrderV2", workflow_version=2)
    await pg_storage.put(second, first)
    assert await pg_storage.get("r1") == second
    assert await pg_storage.query(InstanceQuery(workflow_version=2)) == [second]
    assert await pg_storage.query(InstanceQuery(workflow="shop.Order")) == []


async def test_a_cancelled_run_is_stored(pg_storage: PostgresStorage) -> None:
    """Every status, ``cancelled`` included, is stored (the seed's adapter dropped it)."""
    first = make("r1")
    await pg_storage.create(first)
    cancelled = replace(first, revision=2, status=Status.CANCELLED)
    await pg_storage.put(cancelled, first)
    assert (await pg_storage.get("r1")).status is Status.CANCELLED


# -- writes ----------------------------------------------------------------------------------


async def test_put_with_previous_writes_only_what_changed(
    pg_storage: PostgresStorage, database_url: str
) -> None:
    """A step's update rewrites that step's rows and appends history; other rows stay as is."""
    instance = make("r1")
    await pg_storage.create(instance)
    for index in range(30):
        following = advanced(instance, f"s{index}", index)
        await pg_storage.put(following, instance)
        instance = following
    before = await part_versions(database_url)
    following = advanced(instance, "s30", 30)
    await pg_storage.put(following, instance)
    after = await part_versions(database_url)
    changed = {key for key in after if before.get(key) != after[key]}
    assert changed == {"step:s30", "result:s30"}
    assert await row_count(database_url, "workflow_instance_history") == 31
    assert await pg_storage.get("r1") == following


async def test_put_without_previous_rewrites_everything_consistently(
    pg_storage: PostgresStorage, database_url: str
) -> None:
    """Without ``previous`` the whole run is written, removing rows that no longer exist."""
    first = make("r1")
    await pg_storage.create(first)
    second = advanced(advanced(first, "a", 1), "b", 2)
    second = replace(second, revision=2)
    await pg_storage.put(second)
    assert await pg_storage.get("r1") == second
    third = replace(
        second,
        revision=3,
        steps={"b": second.steps["b"]},
        context=Context(initial={"order_id": 123}, steps={"b": {"n": 2}}),
        history=second.history[:1],
    )
    await pg_storage.put(third)
    assert await pg_storage.get("r1") == third
    assert await row_count(database_url, "workflow_instance_parts") == 2
    assert await row_count(database_url, "workflow_instance_history") == 1


async def test_step_order_survives_the_round_trip(pg_storage: PostgresStorage) -> None:
    """Steps come back in the order they were reached, so ``steps_in`` is unchanged."""
    instance = make("r1")
    await pg_storage.create(instance)
    for index, key in enumerate(["zeta", "alpha", "mid", "beta"]):
        following = advanced(instance, key, index)
        await pg_storage.put(following, instance)
        instance = following
    stored = await pg_storage.get("r1")
    assert list(stored.steps) == ["zeta", "alpha", "mid", "beta"]
    assert stored.completed_steps == instance.completed_steps


async def test_rich_values_round_trip(pg_storage: PostgresStorage) -> None:
    """Datetimes, decimals, UUIDs, sets, tuples and nested data read back equal and typed."""
    value = {
        "at": T0,
        "day": date(2026, 2, 3),
        "price": Decimal("19.990"),
        "id": uuid.UUID(int=7),
        "tags": {"a", "b"},
        "frozen": frozenset({1, 2}),
        "pair": (1, "x"),
        "nested": [{"$type": "not a tag"}, None, 1.5, True],
    }
    instance = make("r1", context=Context(initial=value, steps={"s": {"v": value}}))
    await pg_storage.create(instance)
    stored = await pg_storage.get("r1")
    assert stored == instance
    assert stored.context.initial["price"] == Decimal("19.990")
    assert str(stored.context.initial["price"]) == "19.990"
    assert isinstance(stored.context.initial["pair"], tuple)


async def test_a_value_json_cannot_hold_is_refused_and_nothing_is_written(
    pg_storage: PostgresStorage,
) -> None:
    """An unencodable context value raises ``TypeError`` before anything is stored."""
    with pytest.raises(TypeError, match="cannot encode"):
        await pg_storage.create(make("r1", context=Context(initial={"x": object()}, steps={})))
    assert await pg_storage.query(InstanceQuery()) == []


async def test_a_value_the_driver_refuses_is_the_callers_input(pg_storage: PostgresStorage) -> None:
    """A NUL character psycopg refuses to send is a chained ``ValueRejectedError``: an input
    error, not an outage, and nothing is stored."""
    with pytest.raises(ValueRejectedError) as caught:
        await pg_storage.create(make("r1", id="order::\x00"))
    assert isinstance(caught.value.__cause__, psycopg.DataError)
    assert isinstance(caught.value, InputError)
    assert not isinstance(caught.value, UnavailableError)
    assert await pg_storage.query(InstanceQuery()) == []


# -- decoding --------------------------------------------------------------------------------


async def test_a_corrupt_row_raises_corrupt_instance_error(
    pg_storage: PostgresStorage, database_url: str
) -> None:
    """A row whose state was edited into nonsense is reported with its run id."""
    await pg_storage.create(make("r1"))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("UPDATE workflow_instances SET state = '{\"status\": 42}'")
    with pytest.raises(CorruptInstanceError) as caught:
        await pg_storage.get("r1")
    assert caught.value.run_id == "r1"
    assert not isinstance(caught.value, UnavailableError)  # a defect of the data: no retry helps


class RefStep(Step):
    events = ("ok",)

    async def execute(self, run: StepRun, config: Any, context: Any) -> Ok:
        return Ok("ok")


class RefFlow(Workflow):
    start_step = RefStep
    transitions = {(RefStep, "ok"): Done}


async def test_step_references_resolve_only_through_the_registry(database_url: str) -> None:
    """A stored step class reads back through the registry; an unknown one is a typed error."""
    instance = make("r1", context=Context(initial={"next": RefStep}, steps={}))
    known = PostgresStorage(database_url)
    await known.open()
    try:
        await known.create(instance)
        assert (await known.get("r1")).context.initial["next"] is RefStep
    finally:
        await known.close()
    empty = PostgresStorage(database_url, registry=WorkflowRegistry())
    await empty.open()
    try:
        with pytest.raises(CorruptInstanceError, match=r"RefStep.*import the modules") as caught:
            await empty.get("r1")
        assert caught.value.run_id == "r1"
        assert isinstance(caught.value.__cause__, UnknownWorkflowError)
        assert await empty.query(InstanceQuery()) == []  # logged and skipped
    finally:
        await empty.close()


# -- JSONB queries ---------------------------------------------------------------------------


async def test_find_by_containment_matches_the_seeds_example(pg_storage: PostgresStorage) -> None:
    """``state @> {"context": {"initial": {"order_id": 123}}}`` finds exactly those runs."""
    await pg_storage.create(make("r1"))
    await pg_storage.create(make("r2", context=Context(initial={"order_id": 456}, steps={})))
    await pg_storage.create(make("r3", metadata={"tenant": "acme"}))
    found = await pg_storage.find({"context": {"initial": {"order_id": 123}}})
    assert [run.run_id for run in found] == ["r1", "r3"]
    assert [run.run_id for run in await pg_storage.find({"metadata": {"tenant": "acme"}})] == ["r3"]
    assert [run.run_id for run in await pg_storage.find({"status": "running"}, limit=1)] == ["r1"]
    newest = await pg_storage.find({"status": "running"}, newest_first=True, limit=1)
    assert [run.run_id for run in newest] == ["r3"]


async def test_containment_encodes_typed_values_as_stored(pg_storage: PostgresStorage) -> None:
    """A ``Decimal`` in the pattern matches the tagged value the codec stored for it."""
    await pg_storage.create(
        make("r1", context=Context(initial={"total": Decimal("9.5")}, steps={}))
    )
    assert containment({"total": Decimal("9.5")}) == {"total": {"$type": "decimal", "value": "9.5"}}
    found = await pg_storage.find({"context": {"initial": {"total": Decimal("9.5")}}})
    assert [run.run_id for run in found] == ["r1"]


async def test_containment_queries_use_the_gin_index(
    pg_storage: PostgresStorage, database_url: str
) -> None:
    """With realistic data, PostgreSQL answers the containment query from the GIN index."""
    await pg_storage.create(make("r1"))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO workflow_instances (run_id, id, workflow, workflow_version, status,"
            " revision, state, created_at, updated_at)"
            " SELECT 'bulk' || n, 'order::' || n, 'shop.Order', 1, 'completed', 1,"
            " jsonb_build_object('context', jsonb_build_object('initial',"
            " jsonb_build_object('order_id', n))), now(), now()"
            " FROM generate_series(1, 5000) AS n"
        )
        await conn.execute("ANALYZE workflow_instances")
    plan = await pg_storage.explain_find({"context": {"initial": {"order_id": 123}}})
    assert "workflow_instances_state" in plan, plan
    assert "Seq Scan" not in plan, plan
    found = await pg_storage.find({"context": {"initial": {"order_id": 123}}, "id": "order::a"})
    assert [run.run_id for run in found] == ["r1"]


# -- tenants ---------------------------------------------------------------------------------


async def test_tenants_in_separate_schemas_never_see_each_other(database_url: str) -> None:
    """Two storages side by side, each in its own schema: reads, queries and keys are isolated."""
    await install(database_url, "tenant_a")
    await install(database_url, "tenant_b")
    tenant_a = PostgresStorage(database_url, schema="tenant_a")
    tenant_b = PostgresStorage(database_url, schema="tenant_b")
    await tenant_a.open()
    await tenant_b.open()
    try:
        await tenant_a.create(make("r1", unique_key="k", metadata={"tenant": "a"}))
        await tenant_b.create(make("r1", unique_key="k", metadata={"tenant": "b"}))  # no conflict
        await tenant_a.create(make("only-a"))
        assert (await tenant_a.get("r1")).metadata == {"tenant": "a"}
        assert (await tenant_b.get("r1")).metadata == {"tenant": "b"}
        assert [run.run_id for run in await tenant_b.query(InstanceQuery())] == ["r1"]
        assert await tenant_b.find({"metadata": {"tenant": "a"}}) == []
        await tenant_b.delete("only-a")
        assert len(await tenant_a.query(InstanceQuery())) == 2
        with pytest.raises(InstanceAlreadyRunningError):
            await tenant_a.create(make("r2", unique_key="k"))
    finally:
        await tenant_a.close()
        await tenant_b.close()


# -- group commit ----------------------------------------------------------------------------


async def header_transactions(url: str) -> set[str]:
    """The distinct transactions (``xmin``) that last wrote the header rows."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute("SELECT xmin::text FROM workflow_instances")
        return {str(row[0]) for row in await cursor.fetchall()}


async def test_concurrent_puts_share_one_statement_and_commit(database_url: str) -> None:
    """Puts of many runs arriving together are written by one transaction, each correctly."""
    storage = PostgresStorage(database_url, min_size=1, max_size=1)
    await storage.open()
    try:
        firsts = [make(f"r{index}") for index in range(20)]
        for first in firsts:
            await storage.create(first)
        seconds = [advanced(first, "a", 1) for first in firsts]
        await asyncio.gather(*(storage.put(s, f) for s, f in zip(seconds, firsts, strict=True)))
        assert len(await header_transactions(database_url)) <= 2
        for second in seconds:
            assert await storage.get(second.run_id) == second
    finally:
        await storage.close()


async def test_in_a_shared_batch_each_put_fails_or_succeeds_on_its_own(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stale, a missing and an unstorable run in one batch each raise; the others are written."""
    monkeypatch.setattr("hephaestus.codec.check_string", lambda text: None)  # let PG refuse NUL
    storage = PostgresStorage(database_url, min_size=1, max_size=1)
    await storage.open()
    try:
        good, stale, bad = make("good"), make("stale"), make("bad")
        for first in (good, stale, bad):
            await storage.create(first)
        nul = replace(advanced(bad, "a", 1), context=Context(initial={"x": "\x00"}, steps={}))
        results = await asyncio.gather(
            storage.put(advanced(good, "a", 1), good),
            storage.put(replace(advanced(stale, "a", 1), revision=5), stale),
            storage.put(advanced(make("ghost"), "a", 1)),
            storage.put(nul, bad),
            return_exceptions=True,
        )
        assert results[0] is None
        assert isinstance(results[1], ConcurrentUpdateError)
        assert isinstance(results[2], InstanceNotFoundError)
        assert isinstance(results[3], ValueRejectedError)
        assert not isinstance(results[3], StorageError)
        assert (await storage.get("good")).revision == 2
        assert (await storage.get("stale")).revision == 1
        assert (await storage.get("bad")).revision == 1
    finally:
        await storage.close()


async def test_a_join_gains_one_row_per_resolved_branch_and_loses_them_when_it_fires(
    pg_storage: PostgresStorage, database_url: str
) -> None:
    """Join state round-trips; each new branch adds a row; a fired join leaves no rows."""
    first = make("r1", joins={"join": JoinState(frozenset({"a"}), taken=False)})
    await pg_storage.create(first)
    second = replace(
        first,
        revision=2,
        joins={"join": JoinState(frozenset({"a", "b"}), taken=True, config={"c": 1})},
    )
    before = await part_versions(database_url)
    await pg_storage.put(second, first)
    after = await part_versions(database_url)
    assert await pg_storage.get("r1") == second
    assert set(after) == {"join:join", "member:join\x1fa", "member:join\x1fb"}
    assert after["member:join\x1fa"] == before["member:join\x1fa"]  # not rewritten
    third = replace(second, revision=3, joins={})
    await pg_storage.put(third, second)
    assert await pg_storage.get("r1") == third
    assert await part_versions(database_url) == {}


async def test_a_join_s_missed_branches_round_trip_and_old_rows_read_as_none_missed(
    pg_storage: PostgresStorage, database_url: str
) -> None:
    """Missed branches are flagged on their member rows; rows written without a flag read back."""
    first = make(
        "r1", joins={"join": JoinState(frozenset({"a"}), taken=False, missed=frozenset({"a"}))}
    )
    await pg_storage.create(first)
    second = replace(
        first,
        revision=2,
        joins={"join": JoinState(frozenset({"a", "b"}), True, None, frozenset({"a"}))},
    )
    await pg_storage.put(second, first)
    assert await pg_storage.get("r1") == second
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        # A row as written before join policies existed: no "missed" key.
        await conn.execute(
            "UPDATE workflow_instance_parts SET data = data - 'missed' WHERE kind = 'member'"
        )
        await conn.commit()
    old = await pg_storage.get("r1")
    assert old.joins["join"] == JoinState(frozenset({"a", "b"}), taken=True)
