"""A run as rows, and back: the documents of its header, its parts and its history.

A run is three kinds of rows: its header in ``workflow_instances`` (status, revision and a
bounded ``state`` document for queries, plus the ``extra`` document that changes with every
step), one row per step state, step result, join and join member in
``workflow_instance_parts``, and one row per history entry in ``workflow_instance_history``.
Encoding writes only what changed since the stored revision, so the cost of a step does not
grow with the run.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import operator
from typing import TYPE_CHECKING, Any, Literal, cast

from hephaestus.codec import (
    FORMAT,
    JSONValue,
    decode_instance,
    dumps,
    encode_error_info,
    encode_history_entry,
    encode_join_state,
    encode_pending_resume,
    encode_scheduled_resume,
    encode_step_state,
    to_json,
)
from hephaestus.errors import CorruptInstanceError
from hephaestus.storage._corrupt import corrupt, log_skipped

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from hephaestus._core.commands import Changes
    from hephaestus._core.instance import Instance, JoinState
    from hephaestus._core.registry import WorkflowRegistry
    from hephaestus.storage import InboxEntry

log = logging.getLogger("hephaestus.storage")

__all__ = [
    "RefreshRow",
    "Row",
    "containment",
    "decode_inbox_entry",
    "decode_refresh",
    "decode_refreshed",
    "decode_row",
    "decode_rows",
    "extra_document",
    "held_params",
    "insert_params",
    "put_item",
    "write_changes",
]

type Row = tuple[str, int, str, str, str, str, datetime, int]
"""A run as the read queries return it: run id, revision, four JSON texts, and its position."""
type RefreshRow = tuple[
    str | None,
    int | None,
    str | None,
    str | None,
    str | None,
    str | None,
    Any,
    Any,
    bool,
    bool,
    str,
]
"""``refresh_instance``'s row: a ``Row`` (``NULL`` when unchanged), "same", "full", run id."""


def held_params(run_id: str, held: Instance | None) -> dict[str, Any]:
    """One entry of ``refresh_instance``'s batch: the copy of ``run_id`` a reader holds."""
    if held is None:
        return {"run_id": run_id, "revision": -1, "history_length": 0}
    return {"run_id": run_id, "revision": held.revision, "history_length": len(held.history)}


def decode_refreshed(
    rows: Sequence[RefreshRow], held: Mapping[str, Instance | None], registry: WorkflowRegistry
) -> dict[str, Instance]:
    """The runs ``refresh_instance`` read, by run id (a run that does not exist is absent)."""
    found: dict[str, Instance] = {}
    for row in rows:
        copy = held.get(row[10])
        found[row[10]] = (
            decode_row(_whole(row), registry)
            if copy is None
            else decode_refresh(row, copy, registry)
        )
    return found


def _whole(row: RefreshRow) -> Row:
    run_id, revision, state, extra, parts, history, created, seq = row[:8]
    if None in (run_id, revision, state, extra, parts, history):
        raise corrupt(row[10], ValueError("the run's row changed shape while it was read"))
    return cast("Row", (run_id, revision, state, extra, parts, history, created, seq))


type PartKind = Literal["step", "join", "member", "result"]


def containment(pattern: Mapping[str, Any]) -> dict[str, JSONValue]:
    """``pattern`` encoded as stored, for a JSONB ``state @> pattern`` query.

    Values are encoded with the codec, so a ``datetime`` or ``Decimal`` in the pattern matches
    the tagged value stored for it. The state document holds ``id``, ``run_id``, ``workflow``,
    ``workflow_version``, ``family``, ``status``, ``context.initial``, ``metadata``,
    ``unique_key`` and ``trace_context``. Write it as text with ``hephaestus.codec.dumps``
    (large floats are carried as marked strings until then).
    """
    encoded = to_json(pattern)
    if not isinstance(encoded, dict):  # pragma: no cover - a Mapping encodes to a dict
        raise TypeError("a containment pattern must be a mapping")
    return encoded


# -- encoding -------------------------------------------------------------------------------


def _state_unchanged(instance: Instance, previous: Instance) -> bool:
    """Whether the queryable ``state`` document of ``instance`` is the stored one's."""
    return (
        instance.status is previous.status
        and instance.context.initial is previous.context.initial
        and instance.metadata is previous.metadata
        and instance.trace_context is previous.trace_context
        and instance.workflow == previous.workflow
        and instance.workflow_version == previous.workflow_version
        and instance.unique_key == previous.unique_key
        and instance.id == previous.id
        and instance.family == previous.family
    )


def _state_document(instance: Instance) -> str:
    """The queryable, GIN-indexed document: what identifies a run and what it started with."""
    document: dict[str, JSONValue] = {
        "format": FORMAT,
        "id": instance.id,
        "run_id": instance.run_id,
        "workflow": instance.workflow,
        "workflow_version": instance.workflow_version,
        "family": instance.family,
        "status": instance.status.value,
        "context": {"initial": to_json(instance.context.initial, path="$.context.initial")},
        "unique_key": instance.unique_key,
        "metadata": to_json(instance.metadata, path="$.metadata"),
        "trace_context": to_json(instance.trace_context, path="$.trace_context"),
    }
    return dumps(document)


def extra_document(instance: Instance) -> str:
    """What changes with every step and is never queried: timestamps, inbox, error, scheduled
    resumes (absent in rows written before they existed: decoded as none)."""
    document: dict[str, JSONValue] = {
        "created_at": instance.created_at.isoformat(),
        "updated_at": instance.updated_at.isoformat(),
        "inbox": [encode_pending_resume(resume) for resume in instance.inbox],
        "error": encode_error_info(instance.error),
        "runtime_metadata": to_json(instance.runtime_metadata, path="$.runtime_metadata"),
    }
    if instance.scheduled:
        document["scheduled"] = [encode_scheduled_resume(item) for item in instance.scheduled]
    return dumps(document)


def insert_params(instance: Instance, owner: int | None = None) -> dict[str, Any]:
    """The parameters of ``insert_instance.sql``: the whole run, header, parts and history,
    owned by ``owner`` (``None``: nobody yet)."""
    params = _header_params(instance)
    params["owner"] = owner
    params["parts"] = _all_parts(instance)
    params.update(_history_params(instance, 0))
    return params


def _header_params(instance: Instance, previous: Instance | None = None) -> dict[str, Any]:
    unchanged = previous is not None and _state_unchanged(instance, previous)
    return {
        "run_id": instance.run_id,
        "id": instance.id,
        "workflow": instance.workflow,
        "workflow_version": instance.workflow_version,
        "status": instance.status.value,
        "revision": instance.revision,
        "unique_key": instance.unique_key,
        "state": None if unchanged else _state_document(instance),
        "extra": extra_document(instance),
        "created_at": instance.created_at,
        "updated_at": instance.updated_at,
    }


def write_changes(
    instance: Instance, previous: Instance | None, declared: Changes | None = None
) -> tuple[str | None, dict[str, Any]]:
    """What a write of ``instance`` over the stored ``previous`` must store: the ``state``
    document (``None``: unchanged) and the changes, ``parts`` (a JSON array of ``[kind, key,
    position, data]``; position -1 keeps the stored one), ``drop`` (a JSON array of ``[kind,
    key]``), ``full`` (``parts`` are all of them: delete any other), ``history_start`` and
    ``history`` (the entries from there, a JSON array). Without a usable ``previous``
    (another revision, or none) the whole run."""
    if previous is not None and previous.revision == instance.revision - 1:
        state = None if _state_unchanged(instance, previous) else _state_document(instance)
        if declared is None:
            return state, _changes(instance, previous)
        return state, _declared_changes(instance, previous, declared)
    changes = {"parts": _all_parts(instance), "drop": "[]", "full": True}
    changes.update(_history_params(instance, 0))
    return _state_document(instance), changes


def put_item(
    instance: Instance,
    previous: Instance | None,
    declared: Changes | None = None,
    owner: int | None = None,
) -> str:
    """The JSON object ``update_instances.sql`` reads for one run (pre-encoded parts inlined).

    ``declared`` (the decision's ``changes``) says what differs from ``previous``; without it
    the parts are compared with ``previous`` by identity. The write applies only while the
    run's owner is ``owner`` (fencing: a deposed owner's write is refused).
    """
    state, changes = write_changes(instance, previous, declared)
    scalars = json.dumps(
        {
            "run_id": instance.run_id,
            "expected": instance.revision - 1,
            "revision": instance.revision,
            "workflow": instance.workflow,
            "workflow_version": instance.workflow_version,
            "status": instance.status.value,
            "unique_key": instance.unique_key,
            "updated_at": instance.updated_at.isoformat(),
            "full": changes["full"],
            "history_start": changes["history_start"],
            "history_length": len(instance.history),
            "owner": owner,
            "reshaped": changes["full"]
            or changes["drop"] != "[]"
            or changes.get("reordered", False)
            or changes["history_start"] != (0 if previous is None else len(previous.history)),
        }
    )
    return (
        f'{scalars[:-1]}, "state": {"null" if state is None else state}, '
        f'"extra": {extra_document(instance)}, "parts": {changes["parts"]}, '
        f'"drop": {changes["drop"]}, "history": {changes["history"]}}}'
    )


def _encode_part(kind: PartKind, key: str, position: int, value: Any) -> str:
    """One part as the JSON text ``[kind, key, position, data]``."""
    data: JSONValue
    if kind == "step":
        data = encode_step_state(value)
    elif kind == "join":
        data = _join_header(value)
    elif kind == "member":
        data = value
    else:
        data = to_json(value, path=f"$.context.steps.{key}")
    return dumps([kind, key, position, data])


def _join_header(state: JoinState) -> JSONValue:
    """A join's row without its members (each resolved predecessor is a row of its own)."""
    encoded = encode_join_state(state)
    del encoded["resolved"], encoded["missed"]
    return encoded


def _member_part(join: str, member: str, missed: bool) -> str:
    # One row per resolved predecessor, so a 1,000-way fan-in writes one small row per branch
    # instead of rewriting an ever-longer list. \x1f cannot occur in a step key. ``missed``:
    # the predecessor's edge resolved not taken.
    data: dict[str, JSONValue] = {"join": join, "member": member}
    if missed:
        data["missed"] = True
    return _encode_part("member", f"{join}\x1f{member}", 0, data)


def _changed_joins(
    new: Mapping[str, JoinState],
    old: Mapping[str, JoinState],
    parts: list[str],
    dropped: list[list[str]],
) -> None:
    """Like ``_changed`` for joins, writing only the members a join gained."""
    if new is old:
        return
    for key, state in new.items():
        before = old.get(key)
        if before is state:
            continue
        if before is None or before.taken != state.taken or before.config is not state.config:
            parts.append(_encode_part("join", key, 0, state))
        gained = state.resolved if before is None else state.resolved - before.resolved
        parts.extend(_member_part(key, member, member in state.missed) for member in sorted(gained))
        if before is not None:
            dropped.extend(
                ["member", f"{key}\x1f{member}"] for member in before.resolved - state.resolved
            )
    for key, before in old.items():
        if key not in new:  # the join fired: its rows go
            dropped.append(["join", key])
            dropped.extend(["member", f"{key}\x1f{member}"] for member in before.resolved)


def _changed(
    kind: PartKind,
    new: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    parts: list[str],
    dropped: list[list[str]],
) -> bool:
    """Append ``new``'s entries that are not the very objects ``old`` holds; note removals.
    True when ``new`` is not ``old`` with entries replaced or appended (reordered, shrunk):
    then every entry is written at its position.

    The engine derives each mapping from the previous one, so keys keep their order and new
    keys come last. Then the comparison runs in C (``map``/``compress`` over the values),
    which keeps the cost of a step flat even when a run has a thousand steps.
    """
    if new is old:
        return False
    if not old:
        for position, (key, value) in enumerate(new.items()):
            parts.append(_encode_part(kind, key, position, value))
        return False
    keys = list(new)
    if keys[: len(old)] == list(old):
        positions = itertools.chain(
            itertools.compress(range(len(old)), map(operator.is_not, new.values(), old.values())),
            range(len(old), len(keys)),
        )
        for position in positions:
            key = keys[position]
            parts.append(_encode_part(kind, key, position, new[key]))
        return False
    for position, (key, value) in enumerate(new.items()):  # reordered or shrunk: all of it
        parts.append(_encode_part(kind, key, position, value))
    dropped.extend([kind, key] for key in old if key not in new)
    return True


def _all_parts(instance: Instance) -> str:
    parts: list[str] = []
    _changed("step", instance.steps, None, parts, [])
    _changed_joins(instance.joins, {}, parts, [])
    _changed("result", instance.context.steps, None, parts, [])
    return "[" + ",".join(parts) + "]"


def _history_params(instance: Instance, start: int) -> dict[str, Any]:
    entries: list[JSONValue] = [encode_history_entry(entry) for entry in instance.history[start:]]
    return {"history_start": start, "history": dumps(entries)}


def _changes(instance: Instance, previous: Instance) -> dict[str, Any]:
    """Parameters writing only what differs from ``previous`` (the stored revision)."""
    parts: list[str] = []
    dropped: list[list[str]] = []
    reordered = _changed("step", instance.steps, previous.steps, parts, dropped)
    _changed_joins(instance.joins, previous.joins, parts, dropped)
    if instance.context is not previous.context:
        reordered |= _changed(
            "result", instance.context.steps, previous.context.steps, parts, dropped
        )
    params: dict[str, Any] = {
        "parts": "[" + ",".join(parts) + "]",
        "drop": json.dumps(dropped),
        "full": False,
        "reordered": reordered,
    }
    known = len(previous.history)
    if len(instance.history) >= known and (
        known == 0 or instance.history[known - 1] is previous.history[-1]
    ):
        params.update(_history_params(instance, known))
    else:  # history was rewritten, not appended to: write all of it
        params.update(_history_params(instance, 0))
    return params


def _declared_changes(instance: Instance, previous: Instance, declared: Changes) -> dict[str, Any]:
    """Parameters writing the parts ``declared`` names (the engine's own account of a step)."""
    parts: list[str] = []
    dropped: list[list[str]] = []
    _declared("step", declared.steps, instance.steps, previous.steps, parts)
    _declared("result", declared.results, instance.context.steps, previous.context.steps, parts)
    if declared.joins:
        new, old = instance.joins, previous.joins
        keys = dict.fromkeys(declared.joins)
        _changed_joins(
            {key: new[key] for key in keys if key in new},
            {key: old[key] for key in keys if key in old},
            parts,
            dropped,
        )
    params: dict[str, Any] = {
        "parts": "[" + ",".join(parts) + "]",
        "drop": json.dumps(dropped),
        "full": False,
    }
    params.update(_history_params(instance, len(instance.history) - len(declared.history)))
    return params


def _declared(
    kind: PartKind,
    keys: Sequence[str],
    new: Mapping[str, Any],
    old: Mapping[str, Any],
    parts: list[str],
) -> None:
    """Encode the entries ``keys`` of ``new`` (each once): a key ``old`` lacks was appended
    (its position follows ``old``'s); one it has keeps its stored position (-1 tells the
    statement so)."""
    appended = len(old)
    for key in dict.fromkeys(keys) if len(keys) > 1 else keys:
        if key in old:
            parts.append(_encode_part(kind, key, -1, new[key]))
        else:
            parts.append(_encode_part(kind, key, appended, new[key]))
            appended += 1


# -- decoding -------------------------------------------------------------------------------


def decode_rows(
    rows: list[Row], registry: WorkflowRegistry, *, skip_corrupt: bool
) -> list[Instance]:
    """``rows`` decoded; one that cannot be is logged and skipped (or raised, if asked)."""
    found: list[Instance] = []
    for row in rows:
        try:
            found.append(decode_row(row, registry))
        except CorruptInstanceError as exc:
            if not skip_corrupt:
                raise
            log_skipped(exc)
    return found


def _header(state_text: str, extra_text: str, revision: int) -> dict[str, Any]:
    """A run's document from its header row (its parts and history are added to it)."""
    document: dict[str, Any] = json.loads(state_text)
    document.update(json.loads(extra_text))
    document["revision"] = revision
    return document


def decode_row(row: Row, registry: WorkflowRegistry) -> Instance:
    """One run from its row: header documents, parts and history (``CorruptInstanceError``)."""
    run_id, revision, state_text, extra_text, parts_text, history_text = row[:6]
    try:
        document = _header(state_text, extra_text, revision)
        steps: dict[str, JSONValue] = {}
        joins: dict[str, JSONValue] = {}
        resolved: dict[str, list[JSONValue]] = {}
        missed: dict[str, list[JSONValue]] = {}
        results: dict[str, JSONValue] = {}
        for kind, key, data in json.loads(parts_text):
            if kind == "step":
                steps[key] = data
            elif kind == "result":
                results[key] = data
            elif kind == "join":
                joins[key] = {
                    **data,
                    "resolved": resolved.setdefault(key, []),
                    "missed": missed.setdefault(key, []),
                }
            else:  # "member": joins sort before members, so the lists exist
                resolved[data["join"]].append(data["member"])
                if data.get("missed"):  # absent in rows written before join policies
                    missed[data["join"]].append(data["member"])
        document["steps"] = steps
        document["joins"] = joins
        document["context"]["steps"] = results
        document["history"] = json.loads(history_text)
        return decode_instance(document, registry, strict=False)
    except Exception as exc:  # whatever a row holds, the caller gets a typed error
        raise corrupt(run_id, exc) from exc


def decode_refresh(row: RefreshRow, held: Instance, registry: WorkflowRegistry) -> Instance:
    """The run ``refresh_instance`` read for a reader holding it as ``held``: ``held`` itself
    (unchanged), the whole run (``full``), or ``held`` with what was written since merged in:
    the run's documents as they are now, the parts written since replacing or joining
    ``held``'s (a join's new members joining its resolved ones), the new history entries
    appended (``CorruptInstanceError`` if it cannot be decoded)."""
    if row[8]:  # same
        return held
    if row[9]:  # full
        return decode_row(_whole(row), registry)
    run_id, revision, state_text, extra_text, parts_text, history_text = _whole(row)[:6]
    try:
        document = _header(state_text, extra_text, revision)
        steps: dict[str, JSONValue] = {}
        results: dict[str, JSONValue] = {}
        headers: dict[str, JSONValue] = {}
        gained: dict[str, tuple[set[str], set[str]]] = {}
        for kind, key, data in json.loads(parts_text):
            if kind == "step":
                steps[key] = data
            elif kind == "result":
                results[key] = data
            elif kind == "join":
                headers[key] = {**data, "resolved": [], "missed": []}
            else:
                resolved, missed = gained.setdefault(data["join"], (set(), set()))
                resolved.add(data["member"])
                if data.get("missed"):
                    missed.add(data["member"])
        document["steps"] = steps
        document["joins"] = headers
        document["context"]["steps"] = results
        document["history"] = json.loads(history_text)
        delta = decode_instance(document, registry, strict=False)
        joins = dict(held.joins)
        for key in dict.fromkeys([*delta.joins, *gained]):
            before = held.joins.get(key)
            header = delta.joins.get(key, before)
            if header is None:
                raise ValueError(f"members of join {key!r}, which has no row")
            resolved, missed = gained.get(key, (set(), set()))
            joins[key] = dataclasses.replace(
                header,
                resolved=(before.resolved if before else frozenset()) | resolved,
                missed=(before.missed if before else frozenset()) | missed,
            )
        return dataclasses.replace(
            delta,
            steps={**held.steps, **delta.steps} if delta.steps else held.steps,
            joins=joins,
            context=dataclasses.replace(
                delta.context,
                steps={**held.context.steps, **delta.context.steps}
                if delta.context.steps
                else held.context.steps,
            ),
            history=held.history + delta.history,
        )
    except Exception as exc:  # whatever a row holds, the caller gets a typed error
        raise corrupt(run_id, exc) from exc


def decode_inbox_entry(
    run_id: str, entry_id: int, text: str, created_at: datetime, registry: WorkflowRegistry
) -> InboxEntry | None:
    """An inbox row as an ``InboxEntry``; ``None`` when it cannot be read, logged with its
    stored text (the caller deletes it, so it never blocks the entries behind it)."""
    from hephaestus.codec import decode_input
    from hephaestus.errors import UnknownWorkflowError
    from hephaestus.storage import InboxEntry

    try:
        input = decode_input(json.loads(text), registry)
    except (ValueError, TypeError, KeyError, UnknownWorkflowError) as exc:
        log.error(
            "dropped inbox entry %s of run %s, which cannot be read (%s): %s",
            entry_id,
            run_id,
            exc,
            text,
        )
        return None
    return InboxEntry(int(entry_id), run_id, input, created_at)
