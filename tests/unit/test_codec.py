"""The canonical JSON codec: tagged values, string keys, safe decoding, equal round trips."""

from __future__ import annotations

import json
import math
import sys
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hephaestus import (
    Context,
    Done,
    ErrorInfo,
    HistoryEntry,
    HistoryKind,
    Instance,
    Ok,
    ScheduledResume,
    Status,
    Step,
    StepRun,
    StepState,
    StepStatus,
    Workflow,
    WorkflowRegistry,
)
from hephaestus._core.instance import JoinState, PendingResume
from hephaestus.codec import (
    CodecError,
    decode_instance,
    dumps,
    encode_instance,
    from_json,
    to_json,
)
from hephaestus.errors import UnknownWorkflowError
from hephaestus.storage import InMemoryStorage

T0 = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)


class CodecStep(Step):
    events = ("ok",)

    async def execute(self, run: StepRun, config: Any, context: Any) -> Ok:
        return Ok("ok")


class CodecFlow(Workflow):
    start_step = CodecStep
    transitions = {(CodecStep, "ok"): Done}


def registry_with_flow() -> WorkflowRegistry:
    registry = WorkflowRegistry()
    definition = CodecFlow.definition()
    registry.register(definition)
    return registry


def roundtrip(value: object, registry: WorkflowRegistry | None = None) -> Any:
    """``value`` through the codec and real JSON text."""
    return from_json(json.loads(dumps(to_json(value))), registry)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**70),
        1.5,
        "text",
        [1, [2, "x"]],
        {"a": {"b": [None]}},
        T0,
        datetime(2026, 1, 1, 9, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 1, 1, 9, 0, 0, 123456),
        date(2026, 2, 28),
        time(8, 15, 30),
        timedelta(days=-1, seconds=5, microseconds=7),
        Decimal("0.10"),
        Decimal("-1E+3"),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        {1, 2, 3},
        frozenset({"a"}),
        set(),
        (1, (2, 3), []),
        (),
        {"$type": "decimal", "value": "1"},
        {"nested": {"$type": ["user", "data"]}},
        float("inf"),
        float("-inf"),
    ],
)
def test_values_round_trip_equal_and_with_their_type(value: object) -> None:
    """Each supported value comes back equal and of the same type, through JSON text."""
    back = roundtrip(value)
    assert back == value
    assert type(back) is type(value)


def test_nan_round_trips_as_nan() -> None:
    """A NaN (not equal to itself) is stored tagged and read back as a NaN."""
    back = roundtrip(float("nan"))
    assert isinstance(back, float)
    assert math.isnan(back)


def test_tagged_values_are_explicit_objects() -> None:
    """What JSON cannot hold is written as ``{"$type": ..., "value": ...}``."""
    assert to_json(Decimal("1.50")) == {"$type": "decimal", "value": "1.50"}
    assert to_json(T0) == {"$type": "datetime", "value": "2026-01-01T12:30:00+00:00"}
    assert to_json({"b", "a"}) == {"$type": "set", "value": ["a", "b"]}
    assert to_json({"$type": "x"}) == {"$type": "dict", "value": {"$type": "x"}}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1: "a"}, "keys must be str"),
        ({"a": {(1, 2): "b"}}, r"at \$\.a"),
        (object(), "has no JSON form"),
        ({"x": [1, b"bytes"]}, r"at \$\.x\[1\]"),
        (Status.RUNNING, "subclass of str"),
    ],
)
def test_values_json_cannot_hold_are_refused(value: object, message: str) -> None:
    """An unsupported value or a non-string key raises ``TypeError`` naming where it is."""
    with pytest.raises(TypeError, match=message):
        to_json(value)


def test_step_references_resolve_through_the_registry_only() -> None:
    """A step class reads back as itself via the registry; without it, as a clear error."""
    encoded = to_json({"next": CodecStep})
    assert encoded == {"next": {"$type": "step", "value": f"{__name__}.CodecStep"}}
    assert from_json(encoded, registry_with_flow()) == {"next": CodecStep}
    with pytest.raises(UnknownWorkflowError, match="CodecStep"):
        from_json(encoded, WorkflowRegistry())


def test_decoding_never_imports_a_module_named_by_data() -> None:
    """A step reference naming a module that is not loaded is refused, and nothing is imported."""
    name = "hephaestus_codec_probe_module"
    assert name not in sys.modules
    with pytest.raises(UnknownWorkflowError):
        from_json({"$type": "step", "value": f"{name}.Evil"}, registry_with_flow())
    assert name not in sys.modules


@pytest.mark.parametrize(
    "data",
    [
        {"$type": "nonsense", "value": "1"},
        {"$type": "decimal", "value": "not a number"},
        {"$type": "datetime", "value": 5},
        {"$type": "set", "value": "abc"},
    ],
)
def test_malformed_tagged_data_is_a_codec_error(data: Any) -> None:
    """Unknown tags and malformed tagged values raise ``CodecError``, never a raw crash."""
    with pytest.raises(CodecError):
        from_json(data)


def full_instance() -> Instance:
    """An instance using every record type and field."""
    error = ErrorInfo("exception", "boom", type="ValueError", traceback="tb", step="b", attempt=2)
    return Instance(
        id="codec::a",
        run_id="run-1",
        workflow=CodecFlow.definition().name,
        workflow_version=1,
        family="codec",
        status=Status.FAILED,
        context=Context(
            initial={"when": T0, "amount": Decimal("3.30")},
            steps={"a": {"ids": (1, 2), "tags": {"x"}}},
        ),
        created_at=T0,
        updated_at=T0 + timedelta(seconds=1),
        revision=7,
        steps={
            "a": StepState(StepStatus.COMPLETED, event="ok", config={"k": [1]}),
            "b": StepState(
                StepStatus.FAILED,
                attempt=2,
                run_after=T0,
                timer_at=T0,
                timer_event="t",
                error=error,
            ),
        },
        joins={"j": JoinState(frozenset({"a", "b"}), True, {"c": 1}, frozenset({"b"}))},
        inbox=(
            PendingResume("b", "ok", {"n": 1}, T0),
            PendingResume("b", "ok", {}, T0, source="scheduled"),
        ),
        runtime_metadata={"worker": "w1"},
        history=(
            HistoryEntry(T0, HistoryKind.STARTED, data={"n": Decimal(1)}, source="api"),
            HistoryEntry(T0, HistoryKind.STEP_FAILED, step="b", attempt=2, error=error),
        ),
        unique_key="codec|codec::a",
        metadata={"tenant": "t"},
        error=error,
        trace_context={"traceparent": "00-abc-def-01"},
        scheduled=(ScheduledResume("5", "b", "ok", {"when": T0}, T0 + timedelta(minutes=5)),),
    )


def test_an_instance_round_trips_equal() -> None:
    """Every field of an instance, nested records included, reads back equal."""
    instance = full_instance()
    text = json.dumps(encode_instance(instance))
    assert decode_instance(json.loads(text), registry_with_flow()) == instance


def test_a_document_without_scheduled_resumes_decodes_to_none() -> None:
    """Runs stored before scheduled resumes existed (no ``scheduled`` key) decode to ``()``."""
    data = encode_instance(full_instance())
    del data["scheduled"]
    assert decode_instance(data, registry_with_flow()).scheduled == ()


def test_a_join_written_before_join_policies_decodes_with_nothing_missed() -> None:
    """A stored join without ``missed`` (older documents) reads back with no missed branch."""
    data = encode_instance(full_instance())
    joins = data["joins"]
    assert isinstance(joins, dict)
    join = joins["j"]
    assert isinstance(join, dict)
    assert join.pop("missed") == ["b"]
    decoded = decode_instance(data, registry_with_flow())
    assert decoded.joins["j"] == JoinState(frozenset({"a", "b"}), True, {"c": 1})


def test_decoding_an_unknown_workflow_is_a_clear_error_unless_lenient() -> None:
    """An unknown workflow name raises ``UnknownWorkflowError``; storages decode leniently."""
    data = encode_instance(full_instance())
    with pytest.raises(UnknownWorkflowError, match="no workflow named"):
        decode_instance(data, WorkflowRegistry())
    assert decode_instance(data, WorkflowRegistry(), strict=False).id == "codec::a"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("run_id"),
        lambda d: d.update(status="sleeping"),
        lambda d: d.update(revision="7"),
        lambda d: d.update(history=[{"at": "yesterday", "kind": "started"}]),
        lambda d: d.update(steps={"a": {"status": "completed"}}),
        lambda d: d.update(scheduled={"id": "1"}),
        lambda d: d.update(scheduled=[{"id": "1", "step": "b"}]),
    ],
)
def test_a_corrupt_document_is_a_codec_error(mutate: Any) -> None:
    """Missing fields, unknown statuses, wrong types and bad timestamps raise ``CodecError``."""
    data = encode_instance(full_instance())
    mutate(data)
    with pytest.raises(CodecError):
        decode_instance(data, registry_with_flow())


async def test_the_serializing_memory_storage_stores_json_and_reads_back_equal() -> None:
    """``InMemoryStorage(serialize=True)`` returns decoded copies equal to what was written."""
    storage = InMemoryStorage(serialize=True, registry=registry_with_flow())
    instance = full_instance()
    await storage.create(instance)
    stored = await storage.get(instance.run_id)
    assert stored == instance
    assert stored is not instance
    with pytest.raises(TypeError, match="has no JSON form"):
        await storage.create(
            Instance(**{**vars_of(instance), "run_id": "r2", "metadata": {"x": object()}})
        )


def vars_of(instance: Instance) -> dict[str, Any]:
    return {name: getattr(instance, name) for name in instance.__dataclass_fields__}


# Text the rules allow: no NUL, no lone surrogate (category Cs).
allowed = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
texts = st.text(allowed)

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | texts
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.datetimes(timezones=st.just(UTC))
    | st.uuids()
)
values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(allowed, max_size=5), children, max_size=4)
        | st.frozensets(st.integers(), max_size=4)
    ),
    max_leaves=12,
)


@given(values)
def test_any_supported_value_round_trips(value: object) -> None:
    """Arbitrary nestings of supported values survive the codec and JSON text unchanged."""
    assert roundtrip(value) == value
