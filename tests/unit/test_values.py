"""The boundary check (``check_value``), read-only views, and the codec's limits and floats."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import IntEnum
from typing import Any
from uuid import UUID

import pytest

from hephaestus._core.values import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    MAX_SIZE,
    ReadOnlyMapping,
    check_mapping,
    check_value,
    printable,
)
from hephaestus.codec import CodecError, dumps, from_json, to_json
from hephaestus.errors import UnencodableValueError, ValueLimitError


def nested(depth: int) -> dict[str, Any]:
    """A dict ``depth`` containers deep: ``{"a": {"a": ... {}}}``."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@dataclass
class Point:
    x: int


class Color(IntEnum):
    RED = 1


def test_check_value_returns_a_deep_copy_sharing_only_immutable_leaves() -> None:
    """The copy equals the value; no dict, list or set in it is the caller's object."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    value: dict[str, Any] = {
        "items": [{"n": 1}, [2, 3]],
        "tags": {"a", "b"},
        "pair": (1, [2]),
        "when": when,
        "amount": Decimal("1.5"),
        "id": UUID(int=7),
    }
    copy: dict[str, Any] = check_value(value, "context")
    assert copy == value
    assert copy is not value
    assert copy["items"] is not value["items"]
    assert copy["items"][0] is not value["items"][0]
    assert copy["tags"] is not value["tags"]
    assert copy["pair"][1] is not value["pair"][1]
    assert copy["when"] is when


@pytest.mark.parametrize(
    ("value", "path", "fragment"),
    [
        ({"items": [{"name": "a\x00"}]}, "context['items'][0]['name']", "NUL"),
        ({"k": "\udc80"}, "context['k']", "lone surrogate"),
        ({"k": {1: "x"}}, "context['k']", "not a str"),
        ({"k": b"bytes"}, "context['k']", "has no JSON form"),
        ({"k": [Point(1)]}, "context['k'][0]", "has no JSON form"),
        ({"k": Color.RED}, "context['k']", "subclass of int"),
        ({"k": {"x\x00": 1}}, "context['k']", "NUL"),
        ({"k": {object()}}, "context['k']{...}", "has no JSON form"),
    ],
)
def test_check_value_refuses_what_no_storage_can_hold_and_names_the_path(
    value: dict[str, Any], path: str, fragment: str
) -> None:
    """Each refusal is an UnencodableValueError naming where in the value it sits."""
    with pytest.raises(UnencodableValueError, match=fragment) as caught:
        check_value(value, "context")
    assert caught.value.path == path
    assert path in str(caught.value)


def test_nesting_deeper_than_the_limit_is_refused_by_name() -> None:
    """MAX_DEPTH containers pass; one more raises ValueLimitError naming the limit."""
    assert check_value(nested(MAX_DEPTH)) == nested(MAX_DEPTH)
    with pytest.raises(ValueLimitError, match="MAX_DEPTH") as caught:
        check_value(nested(MAX_DEPTH + 1), "context")
    assert (caught.value.limit, caught.value.maximum) == ("depth", MAX_DEPTH)


def test_a_self_containing_value_is_refused_not_a_recursion_error() -> None:
    """A cycle is caught by the depth limit."""
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueLimitError):
        check_value(loop)


def test_a_value_over_the_size_limit_is_refused_by_name() -> None:
    """The approximate encoded size is bounded by MAX_SIZE."""
    with pytest.raises(ValueLimitError, match="MAX_SIZE") as caught:
        check_value({"blob": "x" * (MAX_SIZE + 1)}, "payload")
    assert caught.value.limit == "size"


def test_integers_longer_than_python_can_print_are_refused() -> None:
    """MAX_INT_DIGITS digits pass; one more is a ValueLimitError, not a ValueError in json."""
    largest = 10**MAX_INT_DIGITS - 1
    assert check_value([largest]) == [largest]
    with pytest.raises(ValueLimitError, match="MAX_INT_DIGITS"):
        check_value([largest + 1])


def test_check_mapping_requires_a_mapping() -> None:
    """None is an empty dict; a list is refused with UnencodableValueError (a TypeError)."""
    assert check_mapping(None, "context") == {}
    with pytest.raises(TypeError, match="dict with string keys"):
        check_mapping([1], "context")


def test_a_read_only_mapping_hands_out_copies_of_containers() -> None:
    """Changing what was read through the view changes nothing underneath; scalars are shared."""
    data: dict[str, Any] = {"items": [1, 2], "inner": {"a": [1]}, "n": 1}
    view = ReadOnlyMapping(data)
    view["items"].append(3)
    view["inner"]["a"].append(2)
    for _key, value in view.items():
        if isinstance(value, list):
            value.clear()
    assert data == {"items": [1, 2], "inner": {"a": [1]}, "n": 1}
    assert view == data
    assert len(view) == 3
    assert "n" in view
    assert view.get("missing") is None
    with pytest.raises(TypeError):
        view["n"] = 2  # type: ignore[index]


def test_printable_escapes_what_cannot_be_stored() -> None:
    """Error messages with NUL or lone surrogates are made storable, others kept as they are."""
    assert printable("plain é") == "plain é"
    assert printable("a\x00b\ud800") == "a\\x00b\\ud800"


# -- the codec applies the same rules ----------------------------------------------------------


def test_the_codec_refuses_deep_nesting_instead_of_a_recursion_error() -> None:
    """A value nested 500 deep is a ValueLimitError when encoded, a CodecError when decoded."""
    with pytest.raises(ValueLimitError, match="MAX_DEPTH"):
        to_json(nested(500))
    deep: Any = 0
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(CodecError, match="too deep"):
        from_json(deep)


def test_the_codec_refuses_nul_characters_with_a_path() -> None:
    """A NUL in a string is refused by the codec as well, naming where it is."""
    with pytest.raises(UnencodableValueError, match=r"\$\.a\[1\]"):
        to_json({"a": [1, "x\x00"]})


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1e16, "10000000000000000.0"),
        (-1.5e300, "-15" + "0" * 299 + ".0"),
        (1e23, "1" + "0" * 23 + ".0"),
        (1.7976931348623157e308, "17976931348623157" + "0" * 292 + ".0"),
        (9007199254740993.0, "9007199254740992.0"),
        (5e-324, "5e-324"),
        (0.1, "0.1"),
    ],
)
def test_large_floats_are_written_positionally_so_that_jsonb_keeps_them_floats(
    number: float, text: str
) -> None:
    """``dumps`` writes floats of 1e16 and more without an exponent, with a ``.0``."""
    assert dumps(to_json([number])) == f"[{text}]"
    back = from_json(json.loads(dumps(to_json([number]))))
    assert back == [number]
    assert type(back[0]) is float


def test_negative_zero_and_non_finite_floats_are_tagged() -> None:
    """-0.0 keeps its sign through the codec (jsonb has no negative zero)."""
    for number in (-0.0, math.inf, -math.inf):
        back = from_json(json.loads(dumps(to_json(number))))
        assert back == number
        assert math.copysign(1.0, back) == math.copysign(1.0, number)
    assert to_json(0.0) == 0.0
    assert math.isnan(from_json(json.loads(dumps(to_json(math.nan)))))


def test_a_large_float_survives_to_json_and_from_json_without_text() -> None:
    """to_json output decodes back to the float even when not written through ``dumps``."""
    assert from_json(to_json({"x": 1e20})) == {"x": 1e20}
