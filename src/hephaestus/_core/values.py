"""What a run may hold, checked and copied in one walk where values cross into the engine.

Every value that enters a run (the caller's context and metadata at ``start``, a resume
payload, a step's ``Ok`` updates and metadata) goes through ``check_value`` once: it refuses
what no storage can hold, with the same ``UnencodableValueError`` whatever the storage, and
returns a private copy, so nothing the caller or the step keeps a reference to can change the
stored run later. The rules are the codec's (``hephaestus.codec``), which applies them again
when it encodes:

- plain data only: ``None``, ``bool``, ``int``, ``float``, ``str``, ``list``, ``dict`` with
  ``str`` keys, ``tuple``, ``set``, ``frozenset``, ``datetime``, ``date``, ``time``,
  ``timedelta``, ``Decimal``, ``UUID`` and step classes; subclasses of ``bool``, ``int``,
  ``float`` and ``str`` (enums) are refused, since they would come back as the plain type;
- no NUL character and no lone surrogate in any string or key (PostgreSQL refuses both);
- containers nested at most ``MAX_DEPTH`` deep, integers of at most ``MAX_INT_DIGITS``
  digits, and at most ``MAX_SIZE`` (approximate encoded characters) per value.

What steps read is protected the other way round: ``ReadOnlyMapping`` hands out a copy of each
nested container it is asked for, so a step that appends to a list it read changes nothing
stored, and a step pays only for what it reads (never a copy of the whole context).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from hephaestus._core.instance import (
    NO_DATA,
    Context,
    HistoryEntry,
    Instance,
    PendingResume,
    ScheduledResume,
    StepContext,
    StepRun,
)
from hephaestus._core.steps import Step
from hephaestus.errors import MissingResourceError, UnencodableValueError, ValueLimitError

__all__ = [
    "MAX_DEPTH",
    "MAX_ID_LENGTH",
    "MAX_INT_DIGITS",
    "MAX_SIZE",
    "NO_RESOURCES",
    "ReadOnlyMapping",
    "Resources",
    "check_mapping",
    "check_string",
    "check_value",
    "copy_instance",
    "copy_value",
    "printable",
    "readonly_context",
    "step_view",
    "unencodable",
]

MAX_DEPTH = 100
"""Containers (dict, list, tuple, set) nested inside one value, at most."""

MAX_SIZE = 16 * 1024 * 1024
"""Approximate encoded size of one value, in characters (strings count their length)."""

MAX_INT_DIGITS = 4300
"""Decimal digits of one integer, at most (Python's own limit for int-to-text conversion)."""

MAX_ID_LENGTH = 255
"""Characters of an instance id (``key::value``), at most: ids are indexed in the database."""

_MAX_INT_BITS = 14284  # 2**14284 < 10**4300: an int this wide has at most MAX_INT_DIGITS digits
_INT_BOUND = 10**MAX_INT_DIGITS
_SURROGATE = re.compile("[\ud800-\udfff]")
_PLAIN_SIZE = 8  # what a number, bool or null counts towards MAX_SIZE
_IMMUTABLE = (datetime, date, time, timedelta, Decimal)


class Refused(Exception):
    """Raised inside a walk (this check, the codec's encoder): why a value is refused, with
    the path carried back up as the stack unwinds (``segments``, innermost first)."""

    def __init__(
        self, message: str, limit: str | None = None, maximum: int = 0, *, subject: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit
        self.maximum = maximum
        self.subject = subject
        self.segments: list[str] = []

    def error(self, message: str, path: str) -> UnencodableValueError:
        """The public error: ``ValueLimitError`` for a limit, else ``UnencodableValueError``."""
        if self.limit is not None:
            return ValueLimitError(message, limit=self.limit, maximum=self.maximum, path=path)
        return UnencodableValueError(message, path=path)


def check_value(value: object, what: str = "value") -> Any:
    """A private copy of ``value``, or ``UnencodableValueError`` naming where it is refused.

    ``what`` names the value in messages and paths (``context``, ``payload``...). Refusals of
    a limit are ``ValueLimitError`` and name the limit and its value.
    """
    walk = _Walk()
    try:
        copy = walk.copy(value, 0)
    except Refused as refused:
        path = what + "".join(reversed(refused.segments))
        raise refused.error(f"{what} cannot be stored: {refused.message} at {path}", path) from None
    if walk.size > MAX_SIZE:
        raise ValueLimitError(
            f"{what} cannot be stored: about {walk.size} characters once encoded, over the "
            f"size limit of {MAX_SIZE} (MAX_SIZE); store large data elsewhere and keep a "
            "reference in the run",
            limit="size",
            maximum=MAX_SIZE,
            path=what,
        )
    return copy


def check_mapping(value: object, what: str) -> dict[str, Any]:
    """``check_value`` for a mapping with ``str`` keys (``None`` is an empty dict)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UnencodableValueError(
            f"{what} must be a dict with string keys, got {value!r}", path=what
        )
    copy: dict[str, Any] = check_value(value, what)
    return copy


def check_string(text: str) -> str | None:
    """Why ``text`` cannot be stored (a NUL or a lone surrogate), or ``None``."""
    if "\x00" in text:
        return "a NUL character (\\x00) is not allowed in strings"
    if not text.isascii() and _SURROGATE.search(text) is not None:
        return "a lone surrogate (\\ud800-\\udfff) is not valid text"
    return None


def unencodable(value: object) -> str:
    """Why ``value``'s type has no JSON form (for values of a type the rules do not allow)."""
    kind = type(value)
    for base in (bool, int, float, str):  # subclasses (IntEnum, StrEnum...) would come back plain
        if isinstance(value, base):
            return (
                f"{value!r} is a {kind.__qualname__}, a subclass of {base.__qualname__}; "
                "store the plain value instead"
            )
    return (
        f"{value!r} ({kind.__qualname__}) has no JSON form; store plain data (str, int, float, "
        "bool, None, list, dict with str keys, tuple, set, datetime, date, time, timedelta, "
        "Decimal, UUID or a step class)"
    )


def printable(text: str) -> str:
    """``text`` with NUL characters and lone surrogates escaped, so that it can be stored."""
    if check_string(text) is None:
        return text
    return _SURROGATE.sub(_escape, text.replace("\x00", "\\x00"))


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


class _Walk:
    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 0

    def copy(self, value: object, depth: int) -> Any:
        kind = type(value)
        if kind is str:
            text: str = value  # type: ignore[assignment]
            self.size += len(text) + 2
            if "\x00" in text or not text.isascii():
                problem = check_string(text)
                if problem is not None:
                    raise Refused(problem)
            return text
        if value is None or kind is bool or kind is float:
            self.size += _PLAIN_SIZE
            return value
        if kind is int:
            number: int = value  # type: ignore[assignment]
            bits = number.bit_length()
            if bits > _MAX_INT_BITS and abs(number) >= _INT_BOUND:
                raise Refused(
                    f"an integer of more than {MAX_INT_DIGITS} digits exceeds the limit "
                    "MAX_INT_DIGITS",
                    "int_digits",
                    MAX_INT_DIGITS,
                )
            self.size += _PLAIN_SIZE + bits // 3
            return value
        if kind is dict or kind is list or kind is tuple or isinstance(value, Mapping):
            if depth >= MAX_DEPTH:
                raise Refused(
                    f"containers nested more than {MAX_DEPTH} deep exceed the depth limit "
                    "MAX_DEPTH",
                    "depth",
                    MAX_DEPTH,
                )
            if kind is list or kind is tuple:
                return self._sequence(value, kind, depth + 1)  # type: ignore[arg-type]
            return self._mapping(value, depth + 1)  # type: ignore[arg-type]
        if kind is set or kind is frozenset:
            if depth >= MAX_DEPTH:
                raise Refused(
                    f"containers nested more than {MAX_DEPTH} deep exceed the depth limit "
                    "MAX_DEPTH",
                    "depth",
                    MAX_DEPTH,
                )
            members: set[object] | frozenset[object] = value  # type: ignore[assignment]
            try:
                copied = [self.copy(member, depth + 1) for member in members]
            except Refused as refused:
                refused.segments.append("{...}")
                raise
            return set(copied) if kind is set else frozenset(copied)
        if isinstance(value, _IMMUTABLE) or _is_uuid(kind):
            self.size += 40
            return value
        if isinstance(value, type) and issubclass(value, Step):
            self.size += 40 + len(value.__qualname__) + len(value.__module__)
            return value
        raise Refused(unencodable(value))

    def _sequence(self, items: list[object] | tuple[object, ...], kind: type, depth: int) -> Any:
        self.size += 2
        out = []
        index = 0
        try:
            for index, item in enumerate(items):  # noqa: B007 - read on error below
                out.append(self.copy(item, depth))
        except Refused as refused:
            refused.segments.append(f"[{index}]")
            raise
        return out if kind is list else tuple(out)

    def _mapping(self, mapping: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        self.size += 2
        out: dict[str, Any] = {}
        for key, item in mapping.items():
            if type(key) is not str:
                raise Refused(f"key {key!r} is not a str (keys must be str)")
            self.size += len(key) + 4
            if "\x00" in key or not key.isascii():
                problem = check_string(key)
                if problem is not None:
                    raise Refused(f"key {key!r}: {problem}")
            try:
                out[key] = self.copy(item, depth)
            except Refused as refused:
                refused.segments.append(f"[{key!r}]")
                raise
        return out


def _is_uuid(kind: type) -> bool:
    # The pure core does not import uuid (it makes random ids); a UUID is recognised by class.
    return any(base.__name__ == "UUID" and base.__module__ == "uuid" for base in kind.__mro__)


def copy_value(value: Any) -> Any:
    """A deep copy of the containers in an already checked value (leaves are immutable)."""
    kind = type(value)
    if kind is dict:
        if not value:
            return {}
        return {
            key: item if type(item) in _LEAVES else copy_value(item) for key, item in value.items()
        }
    if kind is list:
        return [item if type(item) in _LEAVES else copy_value(item) for item in value]
    if kind is tuple:
        return tuple([copy_value(item) for item in value])
    if kind is set:
        return {copy_value(item) for item in value}
    if kind is ReadOnlyMapping:
        return copy_value(value._data)
    if value is NO_DATA:
        return {}  # the shared empty mapping: the caller gets a dict of its own
    return value


_LEAVES = frozenset({str, int, float, bool, type(None)})


class Resources(Mapping[str, Any]):
    """The app's resources as a step sees them: a read-only view of ``Hephaestus.resources``
    (the objects themselves, not copies: pools and clients are shared). A missing name raises
    ``MissingResourceError`` saying how to give it."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getitem__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise MissingResourceError(
                f"no resource {name!r} in this app (it has {sorted(self._data)}): pass "
                f"Hephaestus(resources={{{name!r}: ...}})",
                name=name,
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __repr__(self) -> str:
        return f"Resources({sorted(self._data)})"


NO_RESOURCES = Resources({})
"""What a step sees when its runner was given no resources."""


class ReadOnlyMapping(Mapping[str, Any]):
    """A read-only view of a stored mapping; each nested container it hands out is a copy.

    Steps (and routes) receive the run's context through it: reading costs what is read, and
    changing what was read changes nothing stored.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        kind = type(value)
        if kind is dict or kind is list or kind is set or kind is tuple:
            return copy_value(value)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return repr(self._data)


def readonly_context(initial: Mapping[str, Any], steps: Mapping[str, Any]) -> Context:
    """A context over the stored ``initial`` and ``steps`` that hands out copies on read."""
    return Context(ReadOnlyMapping(initial), ReadOnlyMapping(steps))


def step_view(
    instance: Instance, step: str, attempt: int, resources: Resources = NO_RESOURCES
) -> tuple[StepRun, StepContext]:
    """What a step receives: a ``StepRun`` of ``instance`` and its ``StepContext``, read-only.

    Costs a few small objects per step attempt, whatever the size of the run: user data
    (context, metadata) is behind ``ReadOnlyMapping``, which copies only what is read.
    """
    stored = instance.context
    context = StepContext(  # positional: this runs once per step
        ReadOnlyMapping(stored.initial),
        ReadOnlyMapping(stored.steps),
        instance.id,
        instance.run_id,
        step,
        attempt,
    )
    metadata = instance.metadata
    run = StepRun(
        context,
        instance.workflow,
        instance.workflow_version,
        ReadOnlyMapping(metadata) if metadata else _EMPTY,
        resources,
    )
    return run, context


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def copy_instance(instance: Instance) -> Instance:
    """``instance`` with private copies of every value it holds (records are shared).

    What a storage that keeps objects hands out, so that a caller changing what it got back
    changes nothing stored, as with a database.
    """
    context = instance.context
    inbox = instance.inbox
    if inbox:
        inbox = tuple(
            [
                PendingResume(item.step, item.event, copy_value(item.payload), item.at, item.source)
                for item in inbox
            ]
        )
    return Instance(  # positional: storages call this for every run they return
        instance.id,
        instance.run_id,
        instance.workflow,
        instance.workflow_version,
        instance.family,
        instance.status,
        Context(
            copy_value(context.initial),
            {key: copy_value(value) if value else {} for key, value in context.steps.items()},
        ),
        instance.created_at,
        instance.updated_at,
        instance.revision,
        dict(instance.steps),
        dict(instance.joins),
        inbox,
        copy_value(instance.runtime_metadata),
        tuple([entry if entry.data is None else _copy_entry(entry) for entry in instance.history]),
        instance.unique_key,
        copy_value(instance.metadata),
        instance.error,
        dict(instance.trace_context),
        tuple(
            [
                ScheduledResume(item.id, item.step, item.event, copy_value(item.payload), item.at)
                for item in instance.scheduled
            ]
        )
        if instance.scheduled
        else (),
    )


def _copy_entry(entry: HistoryEntry) -> HistoryEntry:
    if entry.data is None:
        return entry
    return HistoryEntry(
        entry.at,
        entry.kind,
        entry.step,
        entry.event,
        entry.attempt,
        copy_value(entry.data),
        entry.source,
        entry.error,
    )
