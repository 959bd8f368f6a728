"""Type aliases shared by the public API: what a message's data and metadata may hold, paths."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import os

__all__ = ("JSONValue", "Metadata", "StrPath")

#: Anything the JSON encoder accepts: None, bool, int, float, str, lists (or tuples) and dicts of
#: those. A recursive alias would make every user annotation harder to satisfy, so values inside
#: containers are typed as ``Any``.
JSONValue: TypeAlias = (
    bool | int | float | str | list[Any] | tuple[Any, ...] | dict[str, Any] | None
)

#: The metadata sent with every message: a JSON object with string keys.
Metadata: TypeAlias = dict[str, Any]

#: A file path: a string or a path object (``pathlib.Path``).
StrPath: TypeAlias = "str | os.PathLike[str]"
