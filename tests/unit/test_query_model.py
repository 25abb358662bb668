"""The storage-independent parts of the query model: cursors, containment, tags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from hephaestus import Done, Workflow
from hephaestus._core.registry import WorkflowRegistry
from hephaestus.storage import InstanceQuery
from hephaestus.storage._query import decode_cursor, encode_cursor, json_contains, tagged_workflows


def test_a_cursor_round_trips_its_position() -> None:
    """A cursor decodes to the instant (to the microsecond, with its offset) and sequence."""
    at = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=timezone(timedelta(hours=2)))
    cursor = encode_cursor(at, 12345678901)
    assert decode_cursor(cursor) == (at, 12345678901)
    assert cursor.isascii()
    assert "=" not in cursor


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor",
        encode_cursor(datetime(2026, 1, 1, tzinfo=UTC), 1)[:-2],
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwxXQ",  # a naive instant
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwieCJd",  # a text sequence
    ],
)
def test_a_malformed_cursor_is_a_value_error(cursor: str) -> None:
    """Whatever is wrong with it, a cursor that was not issued raises ``ValueError``."""
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor(cursor)


@pytest.mark.parametrize(
    ("document", "pattern", "expected"),
    [
        ({"a": 1, "b": {"c": [1, 2]}}, {"b": {"c": [2]}}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": [{"x": 1, "y": 2}]}, {"a": [{"x": 1}]}, True),
        ({"a": [1, 2]}, {"a": 1}, False),
        ({"a": True}, {"a": 1}, False),
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": None}, {"a": None}, True),
        ({"a": {"b": 1}}, {"a": {}}, True),
        ({"a": "x"}, {"a": {}}, False),
    ],
)
def test_json_containment_follows_jsonb(document: object, pattern: object, expected: bool) -> None:
    """Mappings contain sub-mappings, lists contain their elements, scalars equal by JSON type."""
    assert json_contains(document, pattern) is expected


def test_tags_resolve_to_the_versions_whose_definition_has_them_all() -> None:
    """A version has its own tags and its umbrella's; plain workflows their own."""

    class V1(Workflow):
        version = 1
        tags = ("old",)
        start_step = Done

    class V2(Workflow):
        version = 2
        start_step = Done

    class Umbrella(Workflow):
        tags = ("billing",)
        versions = {1: V1, 2: V2}
        current = 2

    class Plain(Workflow):
        tags = ("billing", "eu")
        start_step = Done

    registry = WorkflowRegistry()
    for workflow in (V1, V2, Umbrella, Plain):
        registry.register(workflow.definition())
    v1, v2, plain = (w.definition().name for w in (V1, V2, Plain))
    assert tagged_workflows(registry, ["billing"]) == {v1, v2, plain}
    assert tagged_workflows(registry, ["billing", "old"]) == {v1}
    assert tagged_workflows(registry, ["eu"]) == {plain}
    assert tagged_workflows(registry, ["none"]) == frozenset()
    query = InstanceQuery(tags=["billing"], workflow=[v2, "elsewhere"]).resolve_tags(registry)
    assert query.tags is None
    assert query.workflow == [v2]
    with pytest.raises(ValueError, match="resolve"):
        InstanceQuery(tags=["billing"]).matches(None)  # type: ignore[arg-type]
