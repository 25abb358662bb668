"""``Hephaestus.page`` and ``Hephaestus.count``: the filters of ``list``, keyset pages, counts.

Every test runs on each storage backend (the ``app`` fixture), with a fake clock so runs are
created one second apart.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from hephaestus import Done, Status, Unique, WaitForEvent, Workflow
from hephaestus.testing import run_until_idle

if TYPE_CHECKING:
    from hephaestus import Hephaestus
    from hephaestus.testing import FakeClock


class Bill(Workflow):
    unique = Unique(key="bill")
    tags = ("finance",)
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


class Parcel(Workflow):
    unique = Unique(key="parcel")
    tags = ("logistics",)
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


async def _seed(app: Hephaestus, clock: FakeClock) -> None:
    """bill::a1..a5 (a2, a4 received; tenant t1 for odd ones), then parcel::p1, p2 (p1 received)."""
    for n in range(1, 6):
        await app.start(Bill, f"a{n}", metadata={"tenant": f"t{n % 2}", "n": n})
        clock.advance(1)
    for value in ("p1", "p2"):
        await app.start(Parcel, value, metadata={"tenant": "t1"})
        clock.advance(1)
    await run_until_idle(app)
    await app.resume(Bill, "a2", "received")
    await app.resume(Bill, "a4", "received")
    await app.resume(Parcel, "p1", "received")
    await run_until_idle(app)


FILTERS: list[dict[str, Any]] = [
    {},
    {"status": "waiting"},
    {"status_in": [Status.COMPLETED]},
    {"tags": ["finance"]},
    {"id_prefix": "parcel::"},
    {"metadata": {"tenant": "t1"}},
    {"metadata": {"tenant": "t1"}, "tags": ["logistics"], "status": Status.WAITING},
    {"version": 1},
]


async def test_walking_pages_returns_what_list_returns(app: Hephaestus, clock: FakeClock) -> None:
    """For each filter, the pages of ``page`` together are ``list``, in both directions."""
    await _seed(app, clock)
    for filters in FILTERS:
        for newest_first in (False, True):
            expected = [run.id for run in await app.list(**filters, newest_first=newest_first)]
            seen: list[str] = []
            cursor = None
            while True:
                page = await app.page(**filters, newest_first=newest_first, limit=2, after=cursor)
                seen += [run.id for run in page.runs]
                cursor = page.next_cursor
                if cursor is None:
                    break
                assert len(page.runs) == 2
            assert seen == expected, (filters, newest_first)


async def test_a_page_of_one_workflow_and_its_cursor(app: Hephaestus, clock: FakeClock) -> None:
    """``page(Bill, limit=2)`` holds the two oldest bills and the cursor of the rest."""
    await _seed(app, clock)
    first = await app.page(Bill, limit=2)
    assert [run.id for run in first.runs] == ["bill::a1", "bill::a2"]
    assert first.next_cursor is not None
    await app.start(Bill, "a6")  # added during the walk: the keyset walk still sees it once
    rest = await app.page(Bill, limit=10, after=first.next_cursor)
    assert [run.id for run in rest.runs] == ["bill::a3", "bill::a4", "bill::a5", "bill::a6"]
    assert rest.next_cursor is None
    default = await app.page()
    assert len(default.runs) == 8
    assert default.next_cursor is None  # fewer than the default limit of 50


async def test_page_filters_by_time_ranges(app: Hephaestus, clock: FakeClock) -> None:
    """``created_*`` and ``updated_*`` ranges are half-open: after <= t < before."""
    start = clock.now()
    await _seed(app, clock)
    second = start + timedelta(seconds=1)
    created = await app.page(created_after=second, created_before=second + timedelta(seconds=2))
    assert [run.id for run in created.runs] == ["bill::a2", "bill::a3"]
    updated = await app.page(updated_after=clock.now())
    assert [run.id for run in updated.runs] == ["bill::a2", "bill::a4", "parcel::p1"]
    assert (await app.page(updated_before=start)).runs == []


async def test_count_groups_by_status_and_workflow(app: Hephaestus, clock: FakeClock) -> None:
    """``count`` groups the filtered runs by status and/or workflow, in ``by`` order."""
    await _seed(app, clock)
    assert await app.count() == {
        ("waiting", Bill.name): 3,
        ("completed", Bill.name): 2,
        ("waiting", Parcel.name): 1,
        ("completed", Parcel.name): 1,
    }
    assert await app.count(by=("status",)) == {("waiting",): 4, ("completed",): 3}
    assert await app.count(by=("workflow", "status"), tags=["logistics"]) == {
        (Parcel.name, "waiting"): 1,
        (Parcel.name, "completed"): 1,
    }
    assert await app.count(Bill, by=(), metadata={"tenant": "t1"}) == {(): 3}
    assert await app.count(Bill, by=(), status="cancelled") == {}
    assert await app.count(by=("status",), updated_after=clock.now()) == {("completed",): 3}


async def test_count_agrees_with_list_for_every_filter(app: Hephaestus, clock: FakeClock) -> None:
    """The total of ``count`` is the number of runs ``list`` returns, whatever the filters."""
    await _seed(app, clock)
    for filters in FILTERS:
        counts = await app.count(**filters)
        assert sum(counts.values()) == len(await app.list(**filters)), filters


async def test_count_refuses_other_groupings(app: Hephaestus) -> None:
    """Grouping by anything but status and workflow is a ``ValueError``."""
    with pytest.raises(ValueError, match="status and/or workflow"):
        await app.count(by=("tenant",))  # type: ignore[arg-type]


async def test_an_unknown_filter_is_refused(app: Hephaestus) -> None:
    """A misspelt filter raises ``TypeError`` naming it instead of being ignored."""
    with pytest.raises(TypeError, match="statuss"):
        await app.list(Bill, statuss="waiting")  # type: ignore[call-arg]


async def test_the_facade_list_takes_the_same_filters(app: Hephaestus, clock: FakeClock) -> None:
    """``Workflow.list`` passes ``RunFilters`` and pagination through to the app."""
    await _seed(app, clock)
    waiting = await Bill.list(app=app, status="waiting", metadata={"tenant": "t1"})
    assert [run.id for run in waiting] == ["bill::a1", "bill::a3", "bill::a5"]
    newest = await Bill.list(app=app, status_in=["completed"], newest_first=True, limit=1)
    assert [run.id for run in newest] == ["bill::a4"]
