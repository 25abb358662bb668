"""Each error says whose move it is: the caller's input, a conflict, an outage, or a defect."""

from __future__ import annotations

import inspect

from hephaestus import errors
from hephaestus.errors import ConflictError, HephaestusError, InputError, UnavailableError

CATEGORIES = (InputError, ConflictError, UnavailableError)

INPUT = {
    "InvalidArgumentError", "InvalidInstanceIdError", "UnknownVersionError",
    "UnknownWorkflowError", "UnencodableValueError", "ValueLimitError", "ValueRejectedError",
    "InstanceNotFoundError", "AmbiguousInstanceError", "InvalidEventError",
    "AmbiguousResumeError", "UnsupportedActionError",
}  # fmt: skip
CONFLICT = {
    "InstanceAlreadyRunningError", "InstanceNotActiveError", "StepNotWaitingError",
    "ConcurrentUpdateError",
}  # fmt: skip
OUTAGE = {"StorageError"}
DEFECT = {
    "WorkflowDefinitionError", "CorruptInstanceError", "IncompatibleInstanceError",
    "TransactionNotSupportedError", "MissingResourceError", "AppError", "NoAppRunningError",
    "AmbiguousAppError", "AppNotOpenError", "ConnectorDefinitionError", "StorageConfigError",
}  # fmt: skip
FAMILIES = {
    "HephaestusError", "InstanceError", "ResumeError", "ConnectorError",
    *(c.__name__ for c in CATEGORIES),
}  # fmt: skip


def error_classes() -> dict[str, type[HephaestusError]]:
    """Every public exception class of ``hephaestus.errors``."""
    return {
        name: value
        for name in errors.__all__
        if inspect.isclass(value := getattr(errors, name)) and issubclass(value, HephaestusError)
    }


def test_every_error_is_listed_in_one_category_here() -> None:
    """A new error class must be given a category (or declared a defect) deliberately."""
    listed = INPUT | CONFLICT | OUTAGE | DEFECT | FAMILIES
    assert set(error_classes()) == listed
    assert len(listed) == len(INPUT) + len(CONFLICT) + len(OUTAGE) + len(DEFECT) + len(FAMILIES)


def test_each_error_is_in_exactly_its_category() -> None:
    """Each leaf error is a subclass of its one category and of no other."""
    classes = error_classes()
    for names, category in ((INPUT, InputError), (CONFLICT, ConflictError), (OUTAGE, None)):
        for name in names:
            expected = category or UnavailableError
            found = [c for c in CATEGORIES if issubclass(classes[name], c)]
            assert found == [expected], (name, found)
    for name in DEFECT:
        assert not any(issubclass(classes[name], c) for c in CATEGORIES), name


def test_a_concurrent_update_is_a_conflict_not_an_outage() -> None:
    """``ConcurrentUpdateError`` is worth a retry, but it is no ``StorageError`` outage."""
    exc = errors.ConcurrentUpdateError("changed", instance_id="order::a")
    assert isinstance(exc, ConflictError)
    assert not isinstance(exc, errors.StorageError)
    assert exc.instance_id == "order::a"


def test_values_the_database_refuses_are_input() -> None:
    """A value over a limit or refused by the database is the caller's input, not an outage."""
    for exc in (
        errors.ValueRejectedError("NUL", sqlstate="22021"),
        errors.ValueLimitError("deep", limit="depth", maximum=64),
    ):
        assert isinstance(exc, InputError)
        assert isinstance(exc, TypeError)  # as before the categories
        assert not isinstance(exc, UnavailableError)


def test_existing_bases_keep_working() -> None:
    """Errors stay what they were besides their category: lookups, value errors, instance errors."""
    not_found = errors.InstanceNotFoundError("no such run", instance_id="order::a")
    assert isinstance(not_found, LookupError)
    assert isinstance(not_found, errors.InstanceError)
    assert not_found.instance_id == "order::a"
    assert isinstance(errors.InvalidInstanceIdError("bad"), ValueError)
    assert isinstance(errors.StepNotWaitingError("done", instance_id="a::b"), errors.ResumeError)
    argument = errors.InvalidArgumentError("delay must be >= 0")
    assert isinstance(argument, TypeError)
    assert isinstance(argument, ValueError)
