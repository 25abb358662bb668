"""RetryPolicy: backoff delays between attempts and validation of its fields."""

from __future__ import annotations

from typing import Any

import pytest

from hephaestus import DEFAULT_RETRY, RetryPolicy


def test_default_policy() -> None:
    """The default policy gives five attempts with exponential backoff from 1 s capped at 60 s."""
    assert RetryPolicy() == DEFAULT_RETRY
    assert DEFAULT_RETRY.max_attempts == 5
    assert DEFAULT_RETRY.backoff == "exponential"
    assert DEFAULT_RETRY.initial_delay == 1.0
    assert DEFAULT_RETRY.max_delay == 60.0
    assert DEFAULT_RETRY.problems() == []


def test_exponential_delays_double_until_the_cap() -> None:
    """Exponential backoff doubles the delay after each failed attempt, up to max_delay."""
    policy = RetryPolicy(backoff="exponential", initial_delay=1, max_delay=60)
    delays = [policy.delay_after(attempt) for attempt in range(1, 9)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_exponential_delay_for_a_huge_attempt_stays_capped() -> None:
    """A very late attempt neither overflows nor exceeds max_delay."""
    policy = RetryPolicy(initial_delay=0.5, max_delay=300)
    assert policy.delay_after(10_000) == 300.0


def test_linear_delays_grow_by_initial_delay() -> None:
    """Linear backoff waits initial_delay times the attempt number, up to max_delay."""
    policy = RetryPolicy(backoff="linear", initial_delay=2, max_delay=7)
    assert [policy.delay_after(attempt) for attempt in range(1, 6)] == [2.0, 4.0, 6.0, 7.0, 7.0]


def test_constant_delay_is_the_same_every_time() -> None:
    """Constant backoff always waits initial_delay."""
    policy = RetryPolicy(backoff="constant", initial_delay=3)
    assert [policy.delay_after(attempt) for attempt in range(1, 5)] == [3.0, 3.0, 3.0, 3.0]


def test_constant_delay_is_capped_by_max_delay() -> None:
    """max_delay caps even a constant delay that is larger than it."""
    assert RetryPolicy(backoff="constant", initial_delay=10, max_delay=4).delay_after(1) == 4.0


def test_delay_is_a_float() -> None:
    """delay_after returns a float even for integer settings."""
    assert isinstance(RetryPolicy(initial_delay=1, max_delay=10).delay_after(2), float)


def test_zero_delays_are_valid() -> None:
    """A policy that retries immediately is valid."""
    policy = RetryPolicy(initial_delay=0, max_delay=0)
    assert policy.problems() == []
    assert policy.delay_after(3) == 0.0


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        pytest.param({"max_attempts": 0}, "max_attempts", id="zero-attempts"),
        pytest.param({"max_attempts": -2}, "max_attempts", id="negative-attempts"),
        pytest.param({"max_attempts": 1.5}, "max_attempts", id="float-attempts"),
        pytest.param({"max_attempts": "3"}, "max_attempts", id="str-attempts"),
        pytest.param({"max_attempts": True}, "max_attempts", id="bool-attempts"),
        pytest.param({"backoff": "fibonacci"}, "backoff", id="unknown-backoff"),
        pytest.param({"initial_delay": -1}, "initial_delay", id="negative-initial"),
        pytest.param({"initial_delay": "1"}, "initial_delay", id="str-initial"),
        pytest.param({"initial_delay": True}, "initial_delay", id="bool-initial"),
        pytest.param({"max_delay": -0.5}, "max_delay", id="negative-max"),
    ],
)
def test_problems_name_each_bad_field(fields: dict[str, Any], fragment: str) -> None:
    """problems() reports a bad field by name."""
    problems = RetryPolicy(**fields).problems()
    assert len(problems) == 1
    assert problems[0].startswith(fragment)


def test_problems_lists_every_bad_field() -> None:
    """problems() reports all bad fields at once, not just the first."""
    bad: Any = "sometimes"
    policy = RetryPolicy(max_attempts=0, backoff=bad, initial_delay=-1, max_delay=-1)
    assert len(policy.problems()) == 4


@pytest.mark.parametrize("never", [[TypeError], (TypeError, "KeyError"), (int,), TypeError])
def test_never_retry_must_be_a_tuple_of_exception_classes(never: Any) -> None:
    """A ``never_retry`` that is not a tuple of exception classes is a definition problem."""
    problems = RetryPolicy(never_retry=never).problems()
    assert len(problems) == 1
    assert problems[0].startswith("never_retry must be a tuple of exception classes")
