"""What storages do with a stored run they cannot read: a typed error, or a logged skip."""

from __future__ import annotations

import logging

from hephaestus.errors import CorruptInstanceError

__all__ = ["FIX", "corrupt", "log_skipped"]

log = logging.getLogger("hephaestus.storage")

FIX = (
    "import the modules that define its workflow and steps if they are missing here; "
    "otherwise repair or delete the stored run"
)
"""What to do about a run that cannot be decoded, appended to every such error."""


def corrupt(run_id: str, exc: BaseException) -> CorruptInstanceError:
    """The error for run ``run_id``, which failed to decode with ``exc`` (chain it)."""
    return CorruptInstanceError(f"run {run_id} cannot be decoded: {exc}. Fix: {FIX}", run_id=run_id)


def log_skipped(exc: CorruptInstanceError) -> None:
    """One log line for a run a listing or recovery skips, naming it and the fix."""
    log.error("skipped stored run %s, which cannot be read: %s", exc.run_id, exc)
