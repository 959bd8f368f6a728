"""``Reply``: what a request handler returns to give its answer metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._types import Metadata

__all__ = ("Reply",)


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to a request, with metadata.

    A ``got_request`` handler's return value is the reply's data; return ``Reply(data,
    metadata)`` instead to send metadata with it::

        def got_request(conn, data, metadata):
            return Reply({"sum": sum(data)}, {"unit": "m"})

    Args:
        data: a JSON-serialisable value, or ``bytes``/``bytearray``/``memoryview`` sent raw.
        metadata: a dict of JSON-serialisable values, or ``None`` for none.

    Raises:
        TypeError: ``metadata`` is neither a dict nor ``None``. (Data that cannot be encoded
            is found when the reply is sent, as for any message.)
    """

    data: Any
    metadata: Metadata | None = None

    def __post_init__(self) -> None:
        if self.metadata is not None and not isinstance(self.metadata, dict):
            raise TypeError(f"metadata must be a dict or None, not {type(self.metadata).__name__}")
