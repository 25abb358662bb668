"""``record``: the decorator for the engine's value types.

Type checkers see a frozen dataclass, so assigning a field is a type error. At run time the
class is a plain slotted dataclass, because frozen dataclasses pay an ``object.__setattr__``
call per field on every construction (about 3x slower), and the engine builds several records
per step. Records are never mutated after construction; treat them as immutable. They hash
by value, as the frozen dataclasses type checkers see would (``unsafe_hash`` costs nothing at
construction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import dataclass_transform

__all__ = ["record"]


@dataclass_transform(frozen_default=True)
def record[T](cls: type[T]) -> type[T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)
