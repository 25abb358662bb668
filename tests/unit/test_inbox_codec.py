"""Inbox entries: a caller's input as JSON and back, and the channel a schema announces on."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from hephaestus.codec import CodecError, decode_input, encode_input
from hephaestus.runners import Begin, Cancel, Resume, ScheduleResume
from hephaestus.storage.postgres._queries import channel_for


def test_resume_and_cancel_round_trip_with_typed_payloads() -> None:
    """A resume (with a payload of tagged values and a step) and a cancel decode as sent."""
    resume = Resume("paid", {"at": datetime(2026, 1, 2, tzinfo=UTC), "amount": Decimal("1.5")})
    assert decode_input(encode_input(resume)) == resume
    assert decode_input(encode_input(Resume("go", None, "wait"))) == Resume("go", None, "wait")
    assert decode_input(encode_input(Cancel("because"))) == Cancel("because")
    assert decode_input(encode_input(Cancel())) == Cancel()


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "exec", "code": "import os"},
        {"kind": "resume"},
        {"kind": "resume", "event": "go", "payload": [1, 2]},
        {"kind": "cancel", "reason": 3},
        ["resume"],
    ],
)
def test_anything_else_is_a_codec_error(data: object) -> None:
    """Data of another shape raises ``CodecError``: nothing is imported or run from it."""
    with pytest.raises(CodecError):
        decode_input(data)  # type: ignore[arg-type]


def test_a_scheduled_resume_goes_through_an_inbox_too() -> None:
    """A scheduled resume forwarded to its run's owner comes back as it was sent."""
    sent = ScheduleResume("s", "e", {"n": 1}, datetime(2026, 1, 1, tzinfo=UTC))
    assert decode_input(encode_input(sent)) == sent


def test_other_inputs_are_refused() -> None:
    """Runner-side inputs never go through an inbox."""
    with pytest.raises(TypeError, match="goes to an inbox"):
        encode_input(Begin())  # type: ignore[arg-type]


def test_each_schema_has_its_own_channel_within_the_identifier_limit() -> None:
    """Channels are per schema, and a long schema name still fits in 63 bytes."""
    assert channel_for("public") == "hephaestus.public"
    assert channel_for("tenant_a") != channel_for("tenant_b")
    long_a, long_b = channel_for("a" * 63), channel_for("a" * 62 + "b")
    assert long_a != long_b
    assert max(len(long_a.encode()), len(long_b.encode())) <= 63
