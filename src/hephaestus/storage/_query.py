"""What every storage shares to answer a query: pages, cursors, tags and containment.

A cursor is the position of a run in creation order, ``(created_at, seq)``, where ``seq`` is
the storage's own creation sequence (PostgreSQL's ``seq`` column, the in-memory storage's
counter): together they order runs totally, and a run created later never sorts before one
already read. It travels as opaque URL-safe text, and is only meaningful to the storage that
returned it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hephaestus.errors import InvalidArgumentError

if TYPE_CHECKING:
    from collections.abc import Collection

    from hephaestus._core.instance import Instance
    from hephaestus._core.registry import WorkflowRegistry

__all__ = [
    "Page",
    "decode_cursor",
    "encode_cursor",
    "json_contains",
    "tagged_workflows",
]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of runs, and the cursor of the next (``None`` after the last page)."""

    runs: list[Instance]
    next_cursor: str | None


def encode_cursor(created_at: datetime, seq: int) -> str:
    """The opaque cursor of the run created at ``created_at`` with sequence number ``seq``."""
    text = json.dumps([created_at.isoformat(), seq], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """``(created_at, seq)`` from a cursor; ``InvalidArgumentError`` if it is not one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, seq = json.loads(base64.urlsafe_b64decode(padded.encode()))
        at = datetime.fromisoformat(created)
        if not isinstance(seq, int) or isinstance(seq, bool) or at.tzinfo is None:
            raise TypeError(seq)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidArgumentError(
            f"not a query cursor: {cursor!r}; pass the next_cursor of a Page unchanged"
        ) from exc
    return at, seq


def tagged_workflows(registry: WorkflowRegistry, tags: Collection[str]) -> frozenset[str]:
    """The stored names of the workflows (every version) whose definition has all ``tags``.

    Tags live on definitions, not on stored runs, so a tag filter becomes a workflow-name filter
    through the registry: a version has its own tags and those of its versioned umbrella.
    """
    from hephaestus._core.definition import VersionedDefinition

    wanted = set(tags)
    found: set[str] = set()
    for definition in registry:
        versions = (
            list(definition.versions.values())
            if isinstance(definition, VersionedDefinition)
            else [definition]
        )
        for version in versions:
            umbrella = registry.umbrella_of(version.name)
            have = set(version.tags) | set(definition.tags if definition is not version else ())
            if umbrella is not None:
                have |= set(umbrella.tags)
            if wanted <= have:
                found.add(version.name)
    return frozenset(found)


def json_contains(document: Any, pattern: Any) -> bool:
    """Whether JSON ``document`` contains ``pattern``, as PostgreSQL's JSONB ``@>`` decides."""
    if isinstance(pattern, dict):
        return isinstance(document, dict) and all(
            key in document and json_contains(document[key], value)
            for key, value in pattern.items()
        )
    if isinstance(pattern, list):
        if not isinstance(document, list):
            return False
        return all(any(json_contains(item, want) for item in document) for want in pattern)
    if isinstance(document, dict | list):
        return False
    if isinstance(pattern, bool) or isinstance(document, bool):
        return pattern is document
    return bool(document == pattern)
