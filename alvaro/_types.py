"""Type aliases shared by the public API: what a message's data and metadata may hold."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Awaitable

__all__ = ("JSONValue", "Metadata", "MaybeAwaitable")

#: Anything the JSON encoder accepts: None, bool, int, float, str, lists (or tuples) and dicts of
#: those. A recursive alias would make every user annotation harder to satisfy, so values inside
#: containers are typed as ``Any``.
JSONValue: TypeAlias = (
    bool | int | float | str | list[Any] | tuple[Any, ...] | dict[str, Any] | None
)

#: The metadata sent with every message: a JSON object with string keys.
Metadata: TypeAlias = dict[str, Any]

#: What a user callback returns: callbacks may be plain functions or ``async def``.
MaybeAwaitable: TypeAlias = "Awaitable[None] | None"
