"""Business keys: id values, ``key::value`` ids and uniqueness scopes (spec §5.5, §9 #25)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from hephaestus import Unique
from hephaestus._core.unique import build_id, keys_collide, parse_value, unique_key_for
from hephaestus._core.values import MAX_ID_LENGTH
from hephaestus.errors import InvalidInstanceIdError

if TYPE_CHECKING:
    from collections.abc import Callable

ORDER = Unique(key="order")
FRESH = Unique(key="order", scope="none")
UUID = "123e4567-e89b-42d3-a456-426614174000"

BAD_VALUES = [
    pytest.param("", id="empty"),
    pytest.param("-abc", id="leading-dash"),
    pytest.param(".abc", id="leading-dot"),
    pytest.param("_abc", id="leading-underscore"),
    pytest.param("abc::123", id="separator"),
    pytest.param("abc:123", id="colon"),
    pytest.param("abc/123", id="slash"),
    pytest.param("abc%", id="percent"),
    pytest.param("abc 123", id="space"),
    pytest.param("abc\n", id="trailing-newline"),
    pytest.param("\nabc", id="leading-newline"),
    pytest.param(UUID + "\n", id="uuid-trailing-newline"),
    pytest.param("ünïcode", id="non-ascii"),
]


# -- values and ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["abc123", "a", "0", "123", UUID, UUID.upper(), "ORD-2024-0001", "customer_42", "v1.2.3",
     "a-", "A_b.C-d"],
)  # fmt: skip
def test_build_id_accepts_the_ids_people_have(value: str) -> None:
    """Letters, digits, hyphens, underscores and dots, from a letter or digit, make key::value."""
    assert build_id(ORDER, value) == f"order::{value}"
    assert parse_value(ORDER, f"order::{value}") == f"order::{value}"


def test_values_are_case_sensitive() -> None:
    """Upper case is kept: ``ORD-1`` and ``ord-1`` are two different ids."""
    assert build_id(ORDER, "ORD-1") != build_id(ORDER, "ord-1")
    assert parse_value(ORDER, "ORD-1") == "order::ORD-1"


@pytest.mark.parametrize("value", BAD_VALUES)
def test_build_id_rejects_malformed_values(value: str) -> None:
    """Anything else, a trailing newline included, is an InvalidInstanceIdError."""
    with pytest.raises(InvalidInstanceIdError, match="invalid id value"):
        build_id(ORDER, value)


@pytest.mark.parametrize("value", [123, None, b"abc"])
def test_build_id_rejects_non_strings(value: Any) -> None:
    """A value that is not a string is rejected, not coerced."""
    with pytest.raises(InvalidInstanceIdError):
        build_id(ORDER, value)


def test_invalid_id_is_also_a_value_error() -> None:
    """InvalidInstanceIdError is a ValueError, so generic handlers catch it."""
    with pytest.raises(ValueError, match=r"letters, digits, '-', '_' and '\.'"):
        build_id(ORDER, "abc 123")


def test_build_id_with_suffix() -> None:
    """Scope-none ids carry an 8-hex suffix after the value."""
    assert build_id(FRESH, "abc123", "1a2b3c4d") == "order::abc123::1a2b3c4d"


@pytest.mark.parametrize(
    "suffix", ["", "1a2b3c4", "1a2b3c4d5", "1A2B3C4D", "1a2b3c4g", "1a2b3c4\n"]
)
def test_build_id_rejects_malformed_suffixes(suffix: str) -> None:
    """A suffix must be exactly eight lowercase hex digits."""
    with pytest.raises(InvalidInstanceIdError, match="suffix"):
        build_id(FRESH, "abc123", suffix)


# -- parse_value ---------------------------------------------------------------------------------


def test_parse_value_accepts_a_bare_value() -> None:
    """A bare value is turned into the workflow's full id."""
    assert parse_value(ORDER, "abc123") == "order::abc123"


def test_parse_value_accepts_a_full_id() -> None:
    """A full id of the workflow's key is returned unchanged."""
    assert parse_value(ORDER, f"order::{UUID}") == f"order::{UUID}"


@pytest.mark.parametrize("value", BAD_VALUES)
def test_parse_value_rejects_malformed_values(value: str) -> None:
    """A malformed value is rejected whether given bare or inside a full id."""
    with pytest.raises(InvalidInstanceIdError):
        parse_value(ORDER, value)
    with pytest.raises(InvalidInstanceIdError):
        parse_value(ORDER, f"order::{value}")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("invoice::abc123", id="other-key"),
        pytest.param("order::abc123::1a2b3c4d", id="unexpected-suffix"),
        pytest.param("order::abc::1a2b3c4d::x", id="too-many-parts"),
        pytest.param("::abc123", id="empty-key"),
    ],
)
def test_parse_value_rejects_foreign_or_malformed_ids(value: str) -> None:
    """Ids of another key, or with the wrong number of parts, are rejected."""
    with pytest.raises(InvalidInstanceIdError, match="invalid instance id"):
        parse_value(ORDER, value)


def test_parse_value_rejects_non_strings() -> None:
    """A non-string id is rejected."""
    bad: Any = 42
    with pytest.raises(InvalidInstanceIdError, match="must be a string"):
        parse_value(ORDER, bad)


def test_scope_none_ids_are_addressed_in_full() -> None:
    """A scope-none workflow accepts its full key::value::suffix id."""
    assert parse_value(FRESH, "order::abc123::1a2b3c4d") == "order::abc123::1a2b3c4d"


def test_scope_none_rejects_a_bare_value() -> None:
    """A bare value cannot address a scope-none run: its suffix is random."""
    with pytest.raises(InvalidInstanceIdError, match="full id"):
        parse_value(FRESH, "abc123")


@pytest.mark.parametrize(
    "value", ["order::abc123", "order::abc123::XYZ", "order::abc123::1a2b3c4d\n"]
)
def test_scope_none_rejects_missing_or_malformed_suffix(value: str) -> None:
    """A scope-none id needs a well-formed 8-hex suffix."""
    with pytest.raises(InvalidInstanceIdError):
        parse_value(FRESH, value)


def test_ids_longer_than_the_limit_are_refused_by_build_and_parse() -> None:
    """An id over MAX_ID_LENGTH is refused (InvalidInstanceIdError naming the limit)."""
    longest = "v" * (MAX_ID_LENGTH - len("order::"))
    assert build_id(ORDER, longest) == f"order::{longest}"
    assert parse_value(ORDER, f"order::{longest}") == f"order::{longest}"
    makers: list[Callable[[], str]] = [
        lambda: build_id(ORDER, longest + "v"),
        lambda: parse_value(ORDER, longest + "v"),
        lambda: parse_value(ORDER, f"order::{longest}v"),
    ]
    for make in makers:
        with pytest.raises(InvalidInstanceIdError, match="MAX_ID_LENGTH"):
            make()


# -- Unique and scopes --------------------------------------------------------------------------


def test_unique_defaults_to_workflow_scope() -> None:
    """Unique(key=...) is scoped to the workflow unless told otherwise."""
    assert Unique(key="order").scope == "workflow"
    assert Unique(key="order").problems() == []


@pytest.mark.parametrize(
    "key", ["", "Order", "order-id", "order_id", "order id", "order\n", 123, "k" * 65]
)
def test_unique_key_problems(key: Any) -> None:
    """A unique key must be a non-empty [a-z0-9]+ string."""
    problems = Unique(key=key).problems()
    assert len(problems) == 1
    assert "unique key" in problems[0]


@pytest.mark.parametrize("scope", ["bogus", "Workflow", "", None])
def test_unique_scope_problems(scope: Any) -> None:
    """A unique scope must be workflow, version, global or none."""
    problems = Unique(key="order", scope=scope).problems()
    assert len(problems) == 1
    assert "unique scope" in problems[0]


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("workflow", "orders.Flow|order::abc"),
        ("version", "orders.Flow@3|order::abc"),
        ("global", "order::abc"),
        ("none", None),
    ],
)
def test_unique_key_for_each_scope(scope: Any, expected: str | None) -> None:
    """The enforced key holds family and id, family, version and id, only the id, or nothing."""
    unique = Unique(key="order", scope=scope)
    assert unique_key_for(unique, "order::abc", "orders.Flow", 3) == expected


def test_workflow_scope_spans_versions() -> None:
    """Two versions of a workflow share one key in workflow scope but not in version scope."""
    workflow = Unique(key="order", scope="workflow")
    version = Unique(key="order", scope="version")
    assert unique_key_for(workflow, "order::a", "f", 1) == unique_key_for(
        workflow, "order::a", "f", 2
    )
    assert unique_key_for(version, "order::a", "f", 1) != unique_key_for(
        version, "order::a", "f", 2
    )


@pytest.mark.parametrize(
    ("a", "b", "collide"),
    [
        ("f|order::a", "f|order::a", True),  # one workflow, scope workflow
        ("f|order::a", "g|order::a", False),  # two workflows, each scope workflow
        ("f@1|order::a", "f@2|order::a", False),  # two versions, scope version
        ("order::a", "order::a", True),  # two global runs
        ("order::a", "g|order::a", True),  # global vs another workflow's workflow scope
        ("g@3|order::a", "order::a", True),  # version scope vs global
    ],
)
def test_keys_collide_when_equal_or_either_is_global(a: str, b: str, collide: bool) -> None:
    """Active keys of one id exclude each other when equal or when either is the global key."""
    assert keys_collide(a, b, "order::a") is collide
    assert keys_collide(b, a, "order::a") is collide
