"""A pickling shortcut for the slotted dataclasses held in per-customer state."""

from __future__ import annotations

from typing import Any

__all__ = ["PositionalPickle"]


class PositionalPickle:
    """Pickles as ``(cls, field values)``.

    Every changed customer is snapshotted (pickled) each epoch; the per-field
    ``__getstate__`` that ``dataclass(slots=True)`` generates costs several times more.
    Subclasses must be slotted dataclasses whose ``__init__`` takes the fields in order.
    """

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), tuple(getattr(self, name) for name in self.__slots__)
