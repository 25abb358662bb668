"""Values behave as in a database on every storage: checked at the boundary, never aliased."""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hephaestus import (
    Config,
    Context,
    Done,
    Instance,
    Ok,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    WaitForEvent,
    Workflow,
    WorkflowDefinition,
)
from hephaestus._core.values import MAX_DEPTH, MAX_ID_LENGTH
from hephaestus.errors import InvalidInstanceIdError, UnencodableValueError, ValueLimitError
from hephaestus.testing import run_until_idle

if TYPE_CHECKING:
    from hephaestus import Hephaestus
    from hephaestus.storage import Storage

RETAINED: dict[str, Any] = {}
"""What ``Produce`` returned, kept to be changed after the result was recorded."""


class Produce(Step):
    events = ("made",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        # Everything a step can reach: none of these changes may reach the stored run.
        context.initial["items"].append(99)
        context.initial["nested"]["a"].append(99)
        run.context.initial["items"].append(98)
        run.metadata["tags"].append("step")
        RETAINED.clear()
        RETAINED["list"] = ["a"]
        return Ok("made", RETAINED)


class Consume(Step):
    events = ("done",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        RETAINED["list"].append("late")  # the dict Produce returned, after it was recorded
        context.steps["produce"]["list"].append("x")
        run.context.steps["produce"]["list"].append("y")
        assert config is not None
        config["options"].append("changed")
        return Ok("done", {"seen": context.steps["produce"]["list"]})


class Aliasing(Workflow):
    unique = Unique(key="alias")
    start_step = Produce
    transitions = {
        (Produce, "made"): (Consume, {"options": ["a"]}),
        (Consume, "done"): Done,
    }


class Hold(Workflow):
    unique = Unique(key="hold")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


async def test_nothing_a_caller_or_a_step_holds_changes_the_stored_run(app: Hephaestus) -> None:
    """Mutating the start input, a step's context, a returned result or a got run: no effect."""
    context: dict[str, Any] = {"items": [1, 2], "nested": {"a": [1]}}
    metadata: dict[str, Any] = {"tags": ["x"]}
    await Aliasing.start("one", context, metadata=metadata)
    context["items"].append(3)
    context["nested"]["a"].append(3)
    metadata["tags"].append("y")
    await run_until_idle(app)

    got = await Aliasing.get("one")
    assert got.status is Status.COMPLETED
    assert got.context.initial == {"items": [1, 2], "nested": {"a": [1]}}
    assert got.metadata == {"tags": ["x"]}
    assert got.context.steps["produce"] == {"list": ["a"]}
    assert got.context.steps["consume"] == {"seen": ["a"]}

    got.context.initial["items"].append(4)
    got.context.steps["produce"]["list"].append("z")
    got.metadata["tags"].append("z")
    for entry in got.history:
        if entry.data is not None:
            entry.data.clear()  # type: ignore[attr-defined]
    (listed,) = await app.list(Aliasing)
    again = await app.get_instance("alias::one")
    for run in (listed, again):
        assert run.context.initial == {"items": [1, 2], "nested": {"a": [1]}}
        assert run.context.steps["produce"] == {"list": ["a"]}
        assert run.metadata == {"tags": ["x"]}
        assert any(entry.data == {"list": ["a"]} for entry in run.history)
        assert run.steps["consume"].config == {"options": ["a"]}
    definition = Aliasing.definition()
    assert isinstance(definition, WorkflowDefinition)
    assert definition.nodes["produce"].transitions["made"].targets[0].config == {"options": ["a"]}


async def test_a_resume_payload_is_copied(app: Hephaestus) -> None:
    """Changing a payload after resume changes nothing stored."""
    await Hold.start("one")
    await run_until_idle(app)
    payload: dict[str, Any] = {"lines": [1]}
    await Hold.resume("one", "received", payload)
    payload["lines"].append(2)
    await run_until_idle(app)
    assert (await Hold.get("one")).context.steps["wait_for_event"] == {"lines": [1]}


async def test_a_scheduled_resume_payload_is_copied_and_checked(app: Hephaestus) -> None:
    """A scheduled payload is the run's own: changing it, or what ``get`` showed of it, changes
    nothing stored; one no storage can hold is refused before anything changes."""
    await Hold.start("one")
    await run_until_idle(app)
    payload: dict[str, Any] = {"lines": [1]}
    await Hold.schedule_resume("one", "wait_for_event", 60, event="received", payload=payload)
    payload["lines"].append(2)
    (shown,) = (await Hold.get("one")).scheduled
    shown.payload["lines"].append(3)
    (stored,) = (await Hold.get("one")).scheduled
    assert stored.payload == {"lines": [1]}
    revision = (await Hold.get("one")).revision
    with pytest.raises(UnencodableValueError):
        await Hold.schedule_resume(
            "one", "wait_for_event", 60, event="received", payload={"bad": b"bytes"}
        )
    assert (await Hold.get("one")).revision == revision


@dataclass
class Point:
    x: int


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


REFUSED: list[tuple[str, object]] = [
    ("dataclass", Point(1)),
    ("bytes", b"raw"),
    ("int keys", {1: "one"}),
    ("NUL", "a\x00b"),
    ("lone surrogate", "\ud800"),
    ("too deep", nested(MAX_DEPTH + 1)),
    ("500 deep", nested(500)),
]


@pytest.mark.parametrize(
    "value", [value for _, value in REFUSED], ids=[name for name, _ in REFUSED]
)
async def test_every_storage_refuses_what_a_database_refuses_at_start_and_resume(
    app: Hephaestus, value: object
) -> None:
    """The same UnencodableValueError on every storage, before anything is stored or changed."""
    with pytest.raises(UnencodableValueError) as caught:
        await Hold.start("one", {"data": {"inner": value}})
    assert caught.value.path is not None
    assert caught.value.path.startswith("context['data']['inner']")
    assert await app.list() == []

    await Hold.start("two")
    await run_until_idle(app)
    before = await Hold.get("two")
    with pytest.raises(UnencodableValueError):
        await Hold.resume("two", "received", {"data": value})
    with pytest.raises(UnencodableValueError):
        await Hold.start("three", metadata={"data": value})
    after = await Hold.get("two")
    assert after.status is Status.WAITING
    assert after.revision == before.revision


async def test_a_context_nested_500_deep_names_the_depth_limit(app: Hephaestus) -> None:
    """Not a RecursionError: a ValueLimitError naming MAX_DEPTH and its value."""
    with pytest.raises(ValueLimitError, match=f"MAX_DEPTH.*at context{"\\['a'\\]" * 3}"):
        await Hold.start("deep", nested(500))


async def test_an_over_long_id_names_the_limit(app: Hephaestus) -> None:
    """A 3000-character id is refused before any storage sees it, naming MAX_ID_LENGTH."""
    with pytest.raises(InvalidInstanceIdError, match="MAX_ID_LENGTH") as caught:
        await Hold.start("a" * 3000)
    assert "connection" not in str(caught.value)
    assert await app.list() == []
    longest = "a" * (MAX_ID_LENGTH - len("hold::"))
    await Hold.start(longest)
    assert (await Hold.get(longest)).id == f"hold::{longest}"


# -- a property: what get returns equals what was written --------------------------------------

allowed = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(allowed)
    | st.text(st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF, categories=["So"]))
)
values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(allowed, max_size=6), children, max_size=4)
    ),
    max_leaves=16,
)


def same(got: object, written: object) -> bool:
    """Equal, of the same type, with nan equal to nan and the sign of zero kept."""
    if type(got) is not type(written):
        return False
    if isinstance(written, float):
        assert isinstance(got, float)
        if math.isnan(written):
            return math.isnan(got)
        return got == written and math.copysign(1.0, got) == math.copysign(1.0, written)
    if isinstance(written, list):
        assert isinstance(got, list)
        return len(got) == len(written) and all(map(same, got, written))
    if isinstance(written, dict):
        assert isinstance(got, dict)
        return got.keys() == written.keys() and all(same(got[k], written[k]) for k in written)
    return got == written


def instance_holding(value: object) -> Instance:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Instance(
        id="prop::one",
        run_id=uuid.uuid4().hex,
        workflow="tests.PropertyFlow",
        workflow_version=1,
        family="tests.PropertyFlow",
        status=Status.RUNNING,
        context=Context(initial={"v": value}, steps={"step": {"v": value}}),
        created_at=now,
        updated_at=now,
        metadata={"v": value},
    )


def test_every_value_reads_back_equal_from_every_storage(storage: Storage) -> None:
    """Floats (huge, tiny, -0.0, non-finite), big ints, non-BMP text and nesting round-trip."""
    with asyncio.Runner() as runner:
        runner.run(storage.open())
        try:

            @settings(
                max_examples=120,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture],
            )
            @given(values)
            @example(1.7976931348623157e308)
            @example(-1.7976931348623157e308)
            @example(1e23)
            @example(1e16)
            @example(1.5e300)
            @example(5e-324)
            @example(-0.0)
            @example(math.inf)
            @example(-math.inf)
            @example(math.nan)
            @example(10**4000)
            @example("\U0001f600 non-BMP \U00010348")
            @example([[[-0.0, 1e22, {"x": [2**70, 0.1]}]]])
            def round_trip(value: object) -> None:
                written = instance_holding(value)
                runner.run(storage.create(written))
                got = runner.run(storage.get(written.run_id))
                runner.run(storage.delete(written.run_id))
                for read in (got.context.initial["v"], got.context.steps["step"]["v"]):
                    assert same(read, value), (read, value)
                assert same(got.metadata["v"], value)

            round_trip()
        finally:
            runner.run(storage.close())
