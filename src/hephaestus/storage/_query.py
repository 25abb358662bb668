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
    from collections.abc import Collection, Iterable, Sequence

    from hephaestus._core.instance import Instance, Status
    from hephaestus._core.registry import WorkflowRegistry
    from hephaestus.storage import CountKey, InstanceQuery

__all__ = [
    "Filters",
    "Page",
    "count_columns",
    "decode_cursor",
    "encode_cursor",
    "filters_of",
    "group_counts",
    "json_contains",
    "process_registry",
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


# -- what a database storage shares to build its statements ---------------------------------


@dataclass(frozen=True, slots=True)
class Filters:
    """An ``InstanceQuery`` as a database statement's parameters take it: tags resolved to
    workflow names, statuses as their sorted values, metadata as the stored containment
    pattern (JSON text), the cursor decoded; ``None`` everywhere means "no filter"."""

    id: str | None
    id_prefix: str | None
    statuses: list[str] | None
    workflows: list[str] | None
    workflow_version: int | None
    contains: str | None
    created_after: datetime | None
    created_before: datetime | None
    updated_after: datetime | None
    updated_before: datetime | None
    after: tuple[datetime, int] | None
    limit: int | None
    offset: int


def filters_of(
    query: InstanceQuery, registry: WorkflowRegistry, limit: int | None
) -> Filters | None:
    """``query``'s filters with at most ``limit`` rows (``None``: no run can match)."""
    from hephaestus.codec import dumps
    from hephaestus.storage._rows import containment

    query = query.resolve_tags(registry)
    statuses = _statuses(query.status, query.status_in)
    if (statuses is not None and not statuses) or limit == 0:
        return None
    workflows: list[str] | None
    if query.workflow is None:
        workflows = None
    elif isinstance(query.workflow, str):
        workflows = [query.workflow]
    else:
        workflows = list(query.workflow)
    if workflows is not None and not workflows:
        return None
    return Filters(
        id=query.id,
        id_prefix=query.id_prefix,
        statuses=statuses,
        workflows=workflows,
        workflow_version=query.workflow_version,
        contains=None
        if query.metadata is None
        else dumps(containment({"metadata": query.metadata})),
        created_after=query.created_after,
        created_before=query.created_before,
        updated_after=query.updated_after,
        updated_before=query.updated_before,
        after=None if query.after is None else decode_cursor(query.after),
        limit=limit,
        offset=query.offset,
    )


def _statuses(status: Status | None, status_in: Collection[Status] | None) -> list[str] | None:
    from hephaestus._core.instance import Status

    if status is None and status_in is None:
        return None
    allowed = set(Status) if status_in is None else {Status(s) for s in status_in}
    if status is not None:
        allowed &= {status}
    return sorted(s.value for s in allowed)


def count_columns(by: Sequence[CountKey]) -> tuple[str, ...]:
    """The columns a ``count`` groups by, in table order (``InvalidArgumentError`` for any
    other than status and workflow)."""
    if any(column not in ("status", "workflow") for column in by):
        raise InvalidArgumentError(f"count groups by status and/or workflow, not {by!r}")
    return tuple(column for column in ("status", "workflow") if column in by)


def group_counts(
    rows: Iterable[Sequence[Any]], columns: tuple[str, ...], by: Sequence[CountKey]
) -> dict[tuple[str, ...], int]:
    """``count``'s result from rows of the grouped ``columns`` then the count, keyed in ``by``
    order; a group of 0 (grouping by nothing, nothing matched) is left out."""
    counts: dict[tuple[str, ...], int] = {}
    for row in rows:
        if row[-1]:
            found = dict(zip(columns, row[:-1], strict=True))
            counts[tuple(str(found[column]) for column in by)] = int(row[-1])
    return counts


def process_registry() -> WorkflowRegistry:
    """The registry a storage given none decodes with until an app binds its own."""
    from hephaestus._core.registry import default_registry

    return default_registry
