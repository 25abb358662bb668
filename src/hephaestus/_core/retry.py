"""Retry policies: how many attempts a step gets and how long to wait between them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DEFAULT_NEVER_RETRY", "DEFAULT_RETRY", "Backoff", "RetryPolicy"]

Backoff = Literal["exponential", "linear", "constant"]

DEFAULT_NEVER_RETRY: tuple[type[BaseException], ...] = (
    TypeError,
    AttributeError,
    NameError,
    ImportError,
    NotImplementedError,
)
"""Exceptions a retry cannot fix, by default: errors in the step's code (a wrong call or
signature, a missing attribute or name, a failed import), which run the same way again."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts and backoff for a failing step.

    Most specific wins: ``Step.retry``, then ``Workflow.retry``, then ``DEFAULT_RETRY``.
    Delays are in seconds; the delay before attempt ``n + 1`` is ``initial_delay`` times
    ``2 ** (n - 1)`` (exponential), ``n`` (linear) or ``1`` (constant), capped at ``max_delay``.
    An exception that is an instance of one of ``never_retry`` fails the step at once, whatever
    attempts remain (``DEFAULT_NEVER_RETRY``: errors in the step's code; ``()`` retries all).
    """

    max_attempts: int = 5
    backoff: Backoff = "exponential"
    initial_delay: float = 1.0
    max_delay: float = 60.0
    never_retry: tuple[type[BaseException], ...] = DEFAULT_NEVER_RETRY

    def problems(self) -> list[str]:
        """What is wrong with this policy (empty when valid)."""
        found: list[str] = []
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            found.append(f"max_attempts must be a positive integer, got {self.max_attempts!r}")
        if self.backoff not in ("exponential", "linear", "constant"):
            found.append(
                f"backoff must be 'exponential', 'linear' or 'constant', got {self.backoff!r}"
            )
        for name in ("initial_delay", "max_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                found.append(f"{name} must be a non-negative number of seconds, got {value!r}")
        never: object = self.never_retry
        if not isinstance(never, tuple) or not all(
            isinstance(kind, type) and issubclass(kind, BaseException) for kind in never
        ):
            found.append(
                f"never_retry must be a tuple of exception classes, such as (TypeError, "
                f"KeyError), got {never!r}"
            )
        return found

    def retries(self, exc: BaseException) -> bool:
        """Whether an attempt that raised ``exc`` may be retried (attempts permitting)."""
        return not isinstance(exc, self.never_retry)

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one."""
        if self.backoff == "constant":
            delay = self.initial_delay
        elif self.backoff == "linear":
            delay = self.initial_delay * attempt
        else:
            delay = self.initial_delay * 2 ** min(attempt - 1, 62)
        return float(min(delay, self.max_delay))


DEFAULT_RETRY = RetryPolicy()
