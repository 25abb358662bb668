"""Business keys: ``key::value`` ids and the uniqueness scope they are enforced in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from hephaestus._core.values import MAX_ID_LENGTH
from hephaestus.errors import InvalidInstanceIdError

__all__ = ["Scope", "Unique", "build_id", "keys_collide", "parse_value", "unique_key_for"]

Scope = Literal["workflow", "version", "global", "none"]
SCOPES: tuple[Scope, ...] = ("workflow", "version", "global", "none")

_KEY = re.compile(r"[a-z0-9]+")
MAX_KEY_LENGTH = 64
"""Characters of a workflow's unique key, at most (it starts every id, see ``MAX_ID_LENGTH``)."""
_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""A business value: letters, digits, ``-``, ``_`` and ``.``, starting with a letter or digit
(``ORD-2024-0001``, ``customer_42``, a UUID). Case-sensitive: ``ORD-1`` and ``ord-1`` are two
ids. No ``:`` (it separates the parts of an id), no spaces; checked before any storage sees it,
so every storage accepts the same ids."""
_SUFFIX = re.compile(r"[a-f0-9]{8}")


@dataclass(frozen=True, slots=True)
class Unique:
    """How a workflow's instances are identified and kept unique.

    Ids are ``f"{key}::{value}"``. At most one *active* instance holds an id within ``scope``:
    ``workflow`` (per workflow, all versions), ``version`` (per workflow version), ``global``
    (across every workflow), or ``none`` (each start gets a fresh ``::<8 hex>`` suffix).
    Checked when the workflow class is defined.
    """

    key: str
    scope: Scope = "workflow"

    def problems(self) -> list[str]:
        found: list[str] = []
        key: object = self.key  # checked at run time: class bodies are not type-checked for users
        if not isinstance(key, str):
            found.append(f"unique key must be a string, got {key!r}")
        elif not _KEY.fullmatch(key):
            suggestion = re.sub(r"[^a-z0-9]", "", key.lower()) or "orderid"
            found.append(
                f"unique key must contain only lowercase letters and digits [a-z0-9], "
                f"got {self.key!r}: use {suggestion!r} (the key only prefixes ids; the values "
                "may hold upper case, '-', '_' and '.')"
            )
        elif len(key) > MAX_KEY_LENGTH:
            found.append(
                f"unique key must be at most {MAX_KEY_LENGTH} characters (MAX_KEY_LENGTH), "
                f"got {len(key)}: ids are key::value and at most {MAX_ID_LENGTH} characters"
            )
        if self.scope not in SCOPES:
            found.append(f"unique scope must be one of {list(SCOPES)}, got {self.scope!r}")
        return found


def _check_value(value: object) -> str:
    if not isinstance(value, str) or not _VALUE.fullmatch(value):
        raise InvalidInstanceIdError(
            f"invalid id value {value!r}: use letters, digits, '-', '_' and '.', starting with "
            "a letter or digit (such as 'ORD-2024-0001' or 'customer_42'); hash or encode "
            "other values"
        )
    return value


def build_id(unique: Unique, value: str, suffix: str | None = None) -> str:
    """The instance id for ``value``; scope ``none`` ids carry a caller-made random suffix."""
    _check_value(value)
    if suffix is None:
        instance_id = f"{unique.key}::{value}"
    elif not _SUFFIX.fullmatch(suffix):
        raise InvalidInstanceIdError(f"invalid id suffix {suffix!r}: must be 8 lowercase hex")
    else:
        instance_id = f"{unique.key}::{value}::{suffix}"
    if len(instance_id) > MAX_ID_LENGTH:
        raise InvalidInstanceIdError(
            f"instance id {instance_id[:40]}... is {len(instance_id)} characters, over the limit "
            f"of {MAX_ID_LENGTH} (MAX_ID_LENGTH); use a shorter value (a hash or a UUID of it)"
        )
    return instance_id


def parse_value(unique: Unique, value_or_id: str) -> str:
    """Accept a bare value or a full id of this workflow's key; return the full id.

    Scope ``none`` ids are only addressable in full, since their suffix is random.
    """
    if not isinstance(value_or_id, str):
        raise InvalidInstanceIdError(f"instance id must be a string, got {value_or_id!r}")
    parts = value_or_id.split("::")
    if len(parts) == 1:
        if unique.scope == "none":
            raise InvalidInstanceIdError(
                f"{value_or_id!r}: workflows with unique scope 'none' are addressed by the full id "
                f"returned from start(), such as '{unique.key}::{value_or_id}::1a2b3c4d'"
            )
        return build_id(unique, value_or_id)
    if parts[0] != unique.key or len(parts) not in (2, 3):
        raise InvalidInstanceIdError(
            f"invalid instance id {value_or_id!r}: expected '{unique.key}::<value>'"
            + ("::<suffix>" if unique.scope == "none" else "")
        )
    _check_value(parts[1])
    if len(parts) == 3:
        if unique.scope != "none":
            raise InvalidInstanceIdError(f"invalid instance id {value_or_id!r}: unexpected suffix")
        return build_id(unique, parts[1], parts[2])
    if unique.scope == "none":
        raise InvalidInstanceIdError(f"invalid instance id {value_or_id!r}: missing suffix")
    return build_id(unique, parts[1])


def unique_key_for(unique: Unique, instance_id: str, family: str, version: int) -> str | None:
    """The key storage keeps unique among active instances (``None``: not enforced)."""
    match unique.scope:
        case "workflow":
            return f"{family}|{instance_id}"
        case "version":
            return f"{family}@{version}|{instance_id}"
        case "global":
            return instance_id
        case _:
            return None


def keys_collide(key: str, other: str, instance_id: str) -> bool:
    """Whether two active runs of ``instance_id`` holding ``key`` and ``other`` exclude each other.

    Equal keys collide (same scope, same workflow or version). A ``global`` key is the id itself,
    and it collides with every key of the same id, whatever the other workflow's scope: a
    global run excludes a workflow- or version-scoped run of another workflow, and vice versa.
    """
    return key == other or instance_id in (key, other)
