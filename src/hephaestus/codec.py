"""The canonical JSON codec for instances and the values they carry.

One codec serves every storage that writes JSON (PostgreSQL, and ``InMemoryStorage(
serialize=True)``), so an instance read back is equal to the one written, whatever the backend.

Values (``to_json`` / ``from_json``):

- ``None``, ``bool``, ``int``, finite ``float``, ``str``, ``list`` and ``dict`` with ``str``
  keys are written as themselves. Keys are strings everywhere: a non-string key is refused.
- What JSON cannot hold is written as a tagged object ``{"$type": tag, "value": ...}``:
  ``datetime``, ``date``, ``time``, ``timedelta``, ``Decimal``, ``UUID``, ``set``,
  ``frozenset``, ``tuple``,
  non-finite ``float``, step classes (``step``: their qualified name) and dicts that themselves
  have a ``"$type"`` key (``dict``, so user data can never pass for a tag).
- Anything else raises ``UnencodableValueError`` (a ``TypeError``) naming the value and where
  it sits: nothing is silently turned into a string.

Decoding never imports a module or creates anything named by stored data: a step reference is
resolved only among the steps of workflows defined in the given ``WorkflowRegistry``, and an
unknown name raises ``UnknownWorkflowError``. Malformed data raises ``CodecError`` (a
``ValueError``); storages re-raise it as ``CorruptInstanceError`` with the run id.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from hephaestus._core.commands import Cancel, Resume, ScheduleResume
from hephaestus._core.definition import VersionedDefinition
from hephaestus._core.instance import (
    Context,
    ErrorInfo,
    HistoryEntry,
    HistoryKind,
    Instance,
    JoinState,
    PendingResume,
    ScheduledResume,
    Status,
    StepState,
    StepStatus,
)
from hephaestus._core.registry import script_name_hint
from hephaestus._core.steps import Step
from hephaestus._core.values import (
    MAX_DEPTH,
    MAX_ID_LENGTH,
    MAX_INT_DIGITS,
    MAX_SIZE,
    Refused,
    check_string,
    check_value,
    unencodable,
)
from hephaestus.errors import UnknownWorkflowError

if TYPE_CHECKING:
    from hephaestus._core.registry import WorkflowRegistry

__all__ = [
    "FORMAT",
    "MAX_DEPTH",
    "MAX_ID_LENGTH",
    "MAX_INT_DIGITS",
    "MAX_SIZE",
    "TAG",
    "CodecError",
    "JSONValue",
    "check_value",
    "decode_context_result",
    "decode_error_info",
    "decode_history_entry",
    "decode_input",
    "decode_instance",
    "decode_join_state",
    "decode_pending_resume",
    "decode_scheduled_resume",
    "decode_step_state",
    "dumps",
    "encode_error_info",
    "encode_history_entry",
    "encode_input",
    "encode_instance",
    "encode_join_state",
    "encode_pending_resume",
    "encode_scheduled_resume",
    "encode_step_state",
    "from_json",
    "to_json",
]

type JSONValue = bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None

TAG = "$type"
"""The key that marks a tagged value; a user dict with this key is itself wrapped."""

FORMAT = 1
"""Version of the instance layout written by ``encode_instance``."""


class CodecError(ValueError):
    """Stored data does not have the shape this codec writes (a corrupt or foreign document)."""


# -- values ----------------------------------------------------------------------------------


def to_json(value: object, *, path: str = "$") -> JSONValue:
    """``value`` as plain JSON, tagging what JSON cannot hold; else ``UnencodableValueError``.

    The rules are those of the engine's boundary check (``check_value``): a NUL or a lone
    surrogate in a string, nesting deeper than ``MAX_DEPTH`` or a type with no JSON form is
    refused, naming where it sits under ``path``. Floats too large for ``jsonb`` to keep as
    floats come back from ``dumps`` in positional form (see ``dumps``).
    """
    try:
        return _encode(value, 0)
    except Refused as refused:
        where = path + "".join(reversed(refused.segments))
        message = f"cannot encode {refused.subject} at {where}: {refused.message}"
        raise refused.error(message, where) from None


def dumps(data: JSONValue) -> str:
    """The JSON text of ``to_json`` output: ``json.dumps`` with floats kept floats.

    ``json.dumps`` writes ``1e16`` as ``1e+16``, which PostgreSQL's ``jsonb`` reads back as the
    integer ``10000000000000000``; floats of that size are written positionally with a ``.0``
    (``10000000000000000.0``) so that every storage returns a float equal to the one written.
    Use it (not ``json.dumps``) for whatever ``to_json`` returned.
    """
    text = json.dumps(data)
    if _MARK_IN_TEXT in text:
        text = _POSITIONAL.sub(r"\1", text)
    return text


# A float that repr() writes with an exponent of 16 or more travels through to_json as a string
# "\x00<positional text>": no valid string holds a NUL (the rules refuse it), and dumps turns
# the quoted marker back into a bare number.
_MARK = "\x00"
_MARK_IN_TEXT = '"\\u0000'
_POSITIONAL = re.compile(r'"\\u0000(-?[0-9]+\.0)"')
_BIG_FLOAT = 1e16  # repr() switches to an exponent at this magnitude
_NEGATIVE_ZERO: dict[str, JSONValue] = {TAG: "float", "value": "-0.0"}


def _float_to_json(number: float) -> JSONValue:
    if not math.isfinite(number):
        return {TAG: "float", "value": repr(number)}
    if number == 0.0:
        # jsonb has no negative zero: -0.0 would come back as 0.0.
        return _NEGATIVE_ZERO if math.copysign(1.0, number) < 0 else number
    if -_BIG_FLOAT < number < _BIG_FLOAT:
        return number
    return _MARK + _positional(number)


def _positional(number: float) -> str:
    """``repr(number)`` (``1.5e+300``) written without an exponent, with a ``.0`` fraction."""
    text = repr(number)
    mantissa, _, exponent = text.partition("e")
    sign = ""
    if mantissa.startswith("-"):
        sign, mantissa = "-", mantissa[1:]
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    zeros = int(exponent) - len(fraction)  # >= 0: the exponent is at least 16
    return f"{sign}{digits}{'0' * zeros}.0"


def _marked_float(text: str) -> float:
    try:
        return float(text[1:])
    except ValueError:
        raise CodecError(f"malformed number {text!r}") from None


def _encode(value: object, depth: int) -> JSONValue:
    # Exact type checks first: they are the common case and bool is an int subclass.
    kind = type(value)
    if kind is str:
        text: str = value  # type: ignore[assignment]
        if "\x00" in text or not text.isascii():
            problem = check_string(text)
            if problem is not None:
                raise Refused(problem, subject=repr(text))
        return text
    if value is None or kind is bool or kind is int:
        return value  # type: ignore[return-value]
    if kind is float:
        return _float_to_json(value)  # type: ignore[arg-type]
    if isinstance(value, Mapping | list | tuple | set | frozenset) and depth >= MAX_DEPTH:
        raise Refused(
            f"nested more than {MAX_DEPTH} deep (the depth limit MAX_DEPTH)",
            "depth",
            MAX_DEPTH,
            subject="a container",
        )
    if isinstance(value, Mapping):
        return _mapping_to_json(value, depth + 1)
    if kind is list:
        items: list[object] = value  # type: ignore[assignment]
        return _items_to_json(items, depth + 1)
    if isinstance(value, datetime):
        return {TAG: "datetime", "value": value.isoformat()}
    if isinstance(value, date):
        return {TAG: "date", "value": value.isoformat()}
    if isinstance(value, time):
        return {TAG: "time", "value": value.isoformat()}
    if isinstance(value, timedelta):
        return {TAG: "timedelta", "value": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, Decimal):
        return {TAG: "decimal", "value": str(value)}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "value": str(value)}
    if isinstance(value, tuple):
        return {TAG: "tuple", "value": _items_to_json(value, depth + 1)}
    if isinstance(value, set | frozenset):
        try:
            members = [_encode(item, depth + 1) for item in value]
        except Refused as refused:
            refused.segments.append("{...}")
            raise
        members.sort(key=_sort_key)  # a stable document for equal sets
        return {TAG: "frozenset" if isinstance(value, frozenset) else "set", "value": members}
    if isinstance(value, type) and issubclass(value, Step):
        return {TAG: "step", "value": f"{value.__module__}.{value.__qualname__}"}
    raise Refused(unencodable(value), subject=repr(value))


def _items_to_json(items: list[object] | tuple[object, ...], depth: int) -> list[JSONValue]:
    out: list[JSONValue] = []
    try:
        for item in items:
            out.append(_encode(item, depth))
    except Refused as refused:
        refused.segments.append(f"[{len(out)}]")
        raise
    return out


def _mapping_to_json(value: Mapping[Any, Any], depth: int) -> JSONValue:
    out: dict[str, JSONValue] = {}
    for key, item in value.items():
        if type(key) is not str:
            raise Refused("keys must be str", subject=f"key {key!r}")
        if "\x00" in key or not key.isascii():
            problem = check_string(key)
            if problem is not None:
                raise Refused(problem, subject=f"key {key!r}")
        try:
            out[key] = _encode(item, depth)
        except Refused as refused:
            refused.segments.append(f".{key}")
            raise
    if TAG in out:
        return {TAG: "dict", "value": out}
    return out


def _sort_key(item: JSONValue) -> str:
    return repr(item)


def from_json(data: JSONValue, registry: WorkflowRegistry | None = None) -> Any:
    """The value ``to_json`` encoded as ``data``; step references resolve through ``registry``.

    Malformed data, or data nested too deep to decode, raises ``CodecError``.
    """
    try:
        return _from_json(data, registry)
    except RecursionError as exc:
        raise CodecError(f"data nested too deep to decode: {exc}") from None


def _from_json(data: JSONValue, registry: WorkflowRegistry | None) -> Any:
    kind = type(data)
    if kind is str:
        text: str = data  # type: ignore[assignment]
        if text.startswith(_MARK):  # a large float that did not go through dumps
            return _marked_float(text)
        return text
    if data is None or kind is int or kind is bool or kind is float:
        return data
    if kind is list:
        items: list[JSONValue] = data  # type: ignore[assignment]
        return [_from_json(item, registry) for item in items]
    if kind is not dict:
        raise CodecError(f"not JSON data: {data!r}")
    mapping: dict[str, JSONValue] = data  # type: ignore[assignment]
    tag = mapping.get(TAG)
    if tag is None:
        return {key: _from_json(item, registry) for key, item in mapping.items()}
    payload = mapping.get("value")
    try:
        return _untag(tag, payload, registry)
    except (TypeError, ValueError, ArithmeticError) as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"malformed {tag!r} value {payload!r}: {exc}") from exc


def _untag(tag: JSONValue, payload: JSONValue, registry: WorkflowRegistry | None) -> Any:
    if tag == "dict" and isinstance(payload, dict):
        return {key: _from_json(item, registry) for key, item in payload.items()}
    if isinstance(payload, str):
        if tag == "datetime":
            return datetime.fromisoformat(payload)
        if tag == "date":
            return date.fromisoformat(payload)
        if tag == "time":
            return time.fromisoformat(payload)
        if tag == "decimal":
            return Decimal(payload)
        if tag == "uuid":
            return uuid.UUID(payload)
        if tag == "float":
            return float(payload)
        if tag == "step":
            return _resolve_step(payload, registry)
    if isinstance(payload, list):
        if tag == "timedelta":
            days, seconds, microseconds = payload
            return timedelta(days=days, seconds=seconds, microseconds=microseconds)  # type: ignore[arg-type]
        if tag == "tuple":
            return tuple(_from_json(item, registry) for item in payload)
        if tag == "set":
            return {_from_json(item, registry) for item in payload}
        if tag == "frozenset":
            return frozenset(_from_json(item, registry) for item in payload)
    raise CodecError(f"unknown tag {tag!r} (or a malformed value for it): {payload!r}")


def _resolve_step(name: str, registry: WorkflowRegistry | None) -> type[Step]:
    """The step class named ``name`` among the registry's workflows; never an import."""
    if registry is not None:
        for definition in registry:
            candidates = (
                definition.versions.values()
                if isinstance(definition, VersionedDefinition)
                else (definition,)
            )
            for candidate in candidates:
                for node in candidate.nodes.values():
                    step = node.step
                    if f"{step.__module__}.{step.__qualname__}" == name:
                        return step
    raise UnknownWorkflowError(
        f"no defined workflow uses a step named {name!r}; import the module that defines it "
        "before reading instances that refer to it"
    )


# -- records ---------------------------------------------------------------------------------


def _opt_time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _read_time(value: JSONValue) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise CodecError(f"expected an ISO-8601 timestamp, got {value!r}")
    return datetime.fromisoformat(value)


def _need_time(value: JSONValue) -> datetime:
    moment = _read_time(value)
    if moment is None:
        raise CodecError("a required timestamp is missing")
    return moment


def encode_error_info(error: ErrorInfo | None) -> JSONValue:
    """An ``ErrorInfo`` (or ``None``) as JSON data."""
    if error is None:
        return None
    return {
        "kind": error.kind,
        "message": error.message,
        "type": error.type,
        "traceback": error.traceback,
        "step": error.step,
        "attempt": error.attempt,
    }


def decode_error_info(data: JSONValue) -> ErrorInfo | None:
    """The ``ErrorInfo`` ``encode_error_info`` wrote."""
    if data is None:
        return None
    fields = _obj(data)
    return ErrorInfo(
        kind=_str(fields["kind"]),
        message=_str(fields["message"]),
        type=_opt_str(fields.get("type")),
        traceback=_opt_str(fields.get("traceback")),
        step=_opt_str(fields.get("step")),
        attempt=_opt_int(fields.get("attempt")),
    )


def _opt_mapping(value: Mapping[str, Any] | None, path: str) -> JSONValue:
    return None if value is None else to_json(value, path=path)


def encode_step_state(state: StepState) -> dict[str, JSONValue]:
    """One step's state as JSON data."""
    return {
        "status": state.status.value,
        "attempt": state.attempt,
        "config": _opt_mapping(state.config, "$.config"),
        "event": state.event,
        "run_after": _opt_time(state.run_after),
        "timer_at": _opt_time(state.timer_at),
        "timer_event": state.timer_event,
        "error": encode_error_info(state.error),
    }


def decode_step_state(data: JSONValue, registry: WorkflowRegistry | None = None) -> StepState:
    """The ``StepState`` ``encode_step_state`` wrote."""
    fields = _obj(data)
    config = fields.get("config")
    return StepState(
        status=StepStatus(_str(fields["status"])),
        attempt=_int(fields["attempt"]),
        config=None if config is None else from_json(config, registry),
        event=_opt_str(fields.get("event")),
        run_after=_read_time(fields.get("run_after")),
        timer_at=_read_time(fields.get("timer_at")),
        timer_event=_opt_str(fields.get("timer_event")),
        error=decode_error_info(fields.get("error")),
    )


def encode_join_state(state: JoinState) -> dict[str, JSONValue]:
    """A join's state as JSON data."""
    return {
        "resolved": _str_list(sorted(state.resolved)),
        "taken": state.taken,
        "config": _opt_mapping(state.config, "$.config"),
        "missed": _str_list(sorted(state.missed)),
    }


def decode_join_state(data: JSONValue, registry: WorkflowRegistry | None = None) -> JoinState:
    """The ``JoinState`` ``encode_join_state`` wrote."""
    fields = _obj(data)
    resolved = fields["resolved"]
    if not isinstance(resolved, list):
        raise CodecError(f"join 'resolved' must be a list, got {resolved!r}")
    missed = fields.get("missed") or []  # absent in documents written before join policies
    if not isinstance(missed, list):
        raise CodecError(f"join 'missed' must be a list, got {missed!r}")
    config = fields.get("config")
    return JoinState(
        resolved=frozenset(_str(item) for item in resolved),
        taken=bool(fields["taken"]),
        config=None if config is None else from_json(config, registry),
        missed=frozenset(_str(item) for item in missed),
    )


def encode_history_entry(entry: HistoryEntry) -> dict[str, JSONValue]:
    """One history entry as JSON data."""
    return {
        "at": entry.at.isoformat(),
        "kind": entry.kind.value,
        "step": entry.step,
        "event": entry.event,
        "attempt": entry.attempt,
        "data": _opt_mapping(entry.data, "$.data"),
        "source": entry.source,
        "error": encode_error_info(entry.error),
    }


def decode_history_entry(data: JSONValue, registry: WorkflowRegistry | None = None) -> HistoryEntry:
    """The ``HistoryEntry`` ``encode_history_entry`` wrote."""
    fields = _obj(data)
    payload = fields.get("data")
    return HistoryEntry(
        at=_need_time(fields["at"]),
        kind=HistoryKind(_str(fields["kind"])),
        step=_opt_str(fields.get("step")),
        event=_opt_str(fields.get("event")),
        attempt=_opt_int(fields.get("attempt")),
        data=None if payload is None else from_json(payload, registry),
        source=_opt_str(fields.get("source")),
        error=decode_error_info(fields.get("error")),
    )


def decode_context_result(data: JSONValue, registry: WorkflowRegistry | None = None) -> Any:
    """One step's context result (a mapping) as ``to_json`` wrote it."""
    value = from_json(data, registry)
    if not isinstance(value, dict):
        raise CodecError(f"a step's context result must be an object, got {data!r}")
    return value


def encode_pending_resume(resume: PendingResume) -> dict[str, JSONValue]:
    """A buffered resume as JSON data."""
    return {
        "step": resume.step,
        "event": resume.event,
        "payload": to_json(resume.payload, path="$.payload"),
        "at": resume.at.isoformat(),
        **({} if resume.source == "external" else {"source": resume.source}),
    }


def decode_pending_resume(
    data: JSONValue, registry: WorkflowRegistry | None = None
) -> PendingResume:
    """The ``PendingResume`` ``encode_pending_resume`` wrote."""
    fields = _obj(data)
    return PendingResume(
        step=_str(fields["step"]),
        event=_str(fields["event"]),
        payload=from_json(fields["payload"], registry),
        at=_need_time(fields["at"]),
        source=_str(fields.get("source", "external")),
    )


def encode_input(input: Resume | Cancel | ScheduleResume) -> dict[str, JSONValue]:
    """A caller's input to a run (an inbox entry: a resume, a cancel, a scheduled resume) as
    JSON data."""
    if isinstance(input, Resume):
        return {
            "kind": "resume",
            "event": input.event,
            "payload": _opt_mapping(input.payload, "$.payload"),
            "step": input.step,
        }
    if isinstance(input, Cancel):
        return {"kind": "cancel", "reason": input.reason}
    if isinstance(input, ScheduleResume):
        return {
            "kind": "schedule",
            "step": input.step,
            "event": input.event,
            "payload": _opt_mapping(input.payload, "$.payload"),
            "at": input.at.isoformat(),
            "id": input.id,
        }
    raise TypeError(f"only a Resume, a Cancel or a ScheduleResume goes to an inbox, got {input!r}")


def decode_input(
    data: JSONValue, registry: WorkflowRegistry | None = None
) -> Resume | Cancel | ScheduleResume:
    """The input ``encode_input`` wrote; ``CodecError`` for anything else."""
    fields = _obj(data)
    try:
        kind = fields["kind"]
        if kind == "resume":
            payload = from_json(fields["payload"], registry)
            if payload is not None and not isinstance(payload, dict):
                raise CodecError(f"a resume payload must be an object, got {payload!r}")
            return Resume(_str(fields["event"]), payload, _opt_str(fields.get("step")))
        if kind == "cancel":
            return Cancel(_opt_str(fields.get("reason")))
        if kind == "schedule":
            payload = from_json(fields["payload"], registry)
            if payload is not None and not isinstance(payload, dict):
                raise CodecError(f"a resume payload must be an object, got {payload!r}")
            at = datetime.fromisoformat(_str(fields["at"]))
            return ScheduleResume(
                _str(fields["step"]), _str(fields["event"]), payload, at, _opt_str(fields.get("id"))
            )
    except KeyError as exc:
        raise CodecError(f"an encoded input lacks {exc}") from exc
    raise CodecError(f"not an encoded input: {data!r}")


def encode_scheduled_resume(item: ScheduledResume) -> dict[str, JSONValue]:
    """A scheduled resume as JSON data."""
    return {
        "id": item.id,
        "step": item.step,
        "event": item.event,
        "payload": to_json(item.payload, path="$.scheduled.payload"),
        "at": item.at.isoformat(),
    }


def decode_scheduled_resume(
    data: JSONValue, registry: WorkflowRegistry | None = None
) -> ScheduledResume:
    """The ``ScheduledResume`` ``encode_scheduled_resume`` wrote."""
    fields = _obj(data)
    return ScheduledResume(
        id=_str(fields["id"]),
        step=_str(fields["step"]),
        event=_str(fields["event"]),
        payload=from_json(fields["payload"], registry),
        at=_need_time(fields["at"]),
    )


def _decode_scheduled(
    data: JSONValue, registry: WorkflowRegistry | None = None
) -> tuple[ScheduledResume, ...]:
    """The ``scheduled`` list of an encoded instance; absent (older rows) means none."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise CodecError("'scheduled' must be a list")
    return tuple(decode_scheduled_resume(item, registry) for item in data)


def encode_instance(instance: Instance) -> dict[str, JSONValue]:
    """The whole instance as one JSON object (string keys, tagged values)."""
    return {
        "format": FORMAT,
        "id": instance.id,
        "run_id": instance.run_id,
        "workflow": instance.workflow,
        "workflow_version": instance.workflow_version,
        "family": instance.family,
        "status": instance.status.value,
        "context": {
            "initial": to_json(instance.context.initial, path="$.context.initial"),
            "steps": {
                key: to_json(value, path=f"$.context.steps.{key}")
                for key, value in instance.context.steps.items()
            },
        },
        "created_at": instance.created_at.isoformat(),
        "updated_at": instance.updated_at.isoformat(),
        "revision": instance.revision,
        "steps": {key: encode_step_state(state) for key, state in instance.steps.items()},
        "joins": {key: encode_join_state(state) for key, state in instance.joins.items()},
        "inbox": [encode_pending_resume(resume) for resume in instance.inbox],
        "runtime_metadata": to_json(instance.runtime_metadata, path="$.runtime_metadata"),
        "history": [encode_history_entry(entry) for entry in instance.history],
        "unique_key": instance.unique_key,
        "metadata": to_json(instance.metadata, path="$.metadata"),
        "error": encode_error_info(instance.error),
        "trace_context": to_json(instance.trace_context, path="$.trace_context"),
        "scheduled": [encode_scheduled_resume(item) for item in instance.scheduled],
    }


def decode_instance(
    data: JSONValue, registry: WorkflowRegistry | None = None, *, strict: bool = True
) -> Instance:
    """The instance ``encode_instance`` wrote.

    Step references inside values resolve through ``registry``. When ``strict`` (the default)
    the workflow name must also be one the registry defines, else ``UnknownWorkflowError``.
    Storages decode with ``strict=False``: a run of a workflow this process does not define is
    still listed (recovery reports it), and the runner resolves the name before running
    anything. Malformed data raises ``CodecError``.
    """
    try:
        fields = _obj(data)
        workflow = _str(fields["workflow"])
        if strict and (registry is None or registry.get(workflow) is None):
            raise UnknownWorkflowError(
                f"no workflow named {workflow!r} is defined in this process; "
                + (
                    script_name_hint(workflow)
                    or "import the module that defines it before reading its instances"
                )
            )
        context = _obj(fields["context"])
        steps = _obj(fields.get("steps") or {})
        joins = _obj(fields.get("joins") or {})
        inbox = fields.get("inbox") or []
        history = fields.get("history") or []
        if not isinstance(inbox, list) or not isinstance(history, list):
            raise CodecError("'inbox' and 'history' must be lists")
        return Instance(
            id=_str(fields["id"]),
            run_id=_str(fields["run_id"]),
            workflow=workflow,
            workflow_version=_int(fields["workflow_version"]),
            family=_str(fields["family"]),
            status=Status(_str(fields["status"])),
            context=Context(
                initial=decode_context_result(context["initial"], registry),
                steps={
                    key: decode_context_result(value, registry)
                    for key, value in _obj(context["steps"]).items()
                },
            ),
            created_at=_need_time(fields["created_at"]),
            updated_at=_need_time(fields["updated_at"]),
            revision=_int(fields["revision"]),
            steps={key: decode_step_state(value, registry) for key, value in steps.items()},
            joins={key: decode_join_state(value, registry) for key, value in joins.items()},
            inbox=tuple(decode_pending_resume(item, registry) for item in inbox),
            runtime_metadata=from_json(fields.get("runtime_metadata") or {}, registry),
            history=tuple(decode_history_entry(item, registry) for item in history),
            unique_key=_opt_str(fields.get("unique_key")),
            metadata=from_json(fields.get("metadata") or {}, registry),
            error=decode_error_info(fields.get("error")),
            trace_context=from_json(fields.get("trace_context") or {}, registry),
            scheduled=_decode_scheduled(fields.get("scheduled"), registry),
        )
    except CodecError:
        raise
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise CodecError(f"not an encoded instance: {exc!r}") from exc


def _str_list(items: list[str]) -> list[JSONValue]:
    return list(items)


# -- shape checks ----------------------------------------------------------------------------


def _obj(value: JSONValue) -> dict[str, JSONValue]:
    if not isinstance(value, dict):
        raise CodecError(f"expected an object, got {value!r}")
    return value


def _str(value: JSONValue) -> str:
    if not isinstance(value, str):
        raise CodecError(f"expected a string, got {value!r}")
    return value


def _opt_str(value: JSONValue) -> str | None:
    return None if value is None else _str(value)


def _int(value: JSONValue) -> int:
    if type(value) is not int:
        raise CodecError(f"expected an integer, got {value!r}")
    return value


def _opt_int(value: JSONValue) -> int | None:
    return None if value is None else _int(value)
