"""Which processes are alive: one lock file per owner, held with ``flock`` while it lives.

An owner (a process executing runs) holds an exclusive ``flock`` on ``<database>-owners/<id>``
from its registration on. The kernel releases it when the process ends, however it ends
(``SIGKILL`` included), so another process tells a dead owner from a live one by trying a
shared lock on that file: granted means nobody holds it. ``flock`` locks belong to an open
file, not to a process, so two owners in one process exclude each other as two processes do.
Owner ids are never reused (``AUTOINCREMENT``), so an owner found dead stays dead. A forked
child closes its copies of the lock descriptors (``_drop_in_child``): it must not keep its
parent alive in others' eyes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import weakref
from pathlib import Path

__all__ = ["OwnerLocks"]

_holders: weakref.WeakSet[OwnerLocks] = weakref.WeakSet()


def _drop_in_child() -> None:
    """In a forked child: close the descriptors of the parent's locks, without unlocking.

    The child shares the parent's open files, and an ``flock`` lasts until the last of their
    descriptors closes: a child outliving its parent (a helper process a step started) would
    otherwise keep the parent looking alive, and its runs would not fail over.
    """
    for locks in list(_holders):
        held, locks._held = locks._held, {}
        for descriptor in held.values():
            with contextlib.suppress(OSError):
                os.close(descriptor)


os.register_at_fork(after_in_child=_drop_in_child)


class OwnerLocks:
    """The lock files of the owners of one database."""

    def __init__(self, database: str) -> None:
        self.directory = Path(database + "-owners")
        self._dead: set[int] = set()
        self._held: dict[int, int] = {}  # owner id -> file descriptor holding its lock
        _holders.add(self)

    def hold(self, owner: int) -> None:
        """Lock ``owner``'s file for as long as this process lives (or ``let_go``)."""
        self.directory.mkdir(exist_ok=True)
        descriptor = os.open(self.directory / str(owner), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(descriptor)
            raise
        self._held[owner] = descriptor

    def let_go(self, owner: int) -> None:
        """Unlock and remove ``owner``'s file: it owns nothing any more."""
        descriptor = self._held.pop(owner, None)
        if descriptor is None:
            return
        with contextlib.suppress(OSError):
            (self.directory / str(owner)).unlink()
        os.close(descriptor)
        self._dead.add(owner)

    def alive(self, owner: int) -> bool:
        """Whether the process holding ``owner``'s lock still runs."""
        if owner in self._held:
            return True
        if owner in self._dead:
            return False
        try:
            descriptor = os.open(self.directory / str(owner), os.O_RDONLY)
        except FileNotFoundError:
            self._dead.add(owner)
            return False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(descriptor)  # also drops the shared lock, if it was granted
        self._dead.add(owner)
        return False

    def remove(self, owners: list[int]) -> None:
        """Delete the lock files of dead ``owners`` (their runs were taken over)."""
        for owner in owners:
            with contextlib.suppress(OSError):
                (self.directory / str(owner)).unlink()

    def close(self) -> None:
        for owner in list(self._held):
            self.let_go(owner)
