"""The events a :class:`~alvaro.protocol.Decoder` turns received frames into.

Each is an immutable record of one frame: :class:`Hello`, :class:`Message`, :class:`Ping`,
:class:`Pong`, :class:`Close`, and the login's :class:`AuthStart`, :class:`AuthChallenge`,
:class:`AuthResponse`, :class:`AuthOk`, :class:`AuthFail` and :class:`Logout`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

if TYPE_CHECKING:
    from .._types import Metadata
    from .frames import Role

__all__ = (
    "AuthChallenge",
    "AuthFail",
    "AuthOk",
    "AuthResponse",
    "AuthStart",
    "Close",
    "Event",
    "Hello",
    "Logout",
    "Message",
    "Ping",
    "Pong",
)


@dataclass(frozen=True, slots=True)
class Hello:
    """The peer's HELLO: its protocol version, role, limits and features."""

    version: int
    role: Role
    max_message_size: int
    max_metadata_size: int
    features: frozenset[str] = field(default_factory=frozenset)
    auth_required: bool = False
    """Whether the host requires login; only ever true when feature ``auth`` is negotiated."""


class Message(NamedTuple):
    """One message: JSON ``data`` (or ``bytes``) and its ``metadata`` dict.

    ``data`` is ``bytes`` exactly when the sender sent ``bytes``, ``bytearray`` or ``memoryview``.
    A named tuple, so ``data, metadata = message`` works; it is also the cheapest immutable
    record to build, which matters at hundreds of thousands of messages a second.
    """

    data: Any
    metadata: Metadata


@dataclass(frozen=True, slots=True)
class Ping:
    """A keepalive probe; the receiver answers with a PONG carrying the same payload."""

    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to a PING, echoing its payload."""

    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Close:
    """The peer closes the connection with a code and a reason."""

    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AuthStart:
    """A client begins a login (feature ``auth``): the SCRAM client-first-message."""

    mechanism: str
    message: str


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    """The host's answer to :class:`AuthStart`: the SCRAM server-first-message."""

    message: str


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """The client's proof: the SCRAM client-final-message."""

    message: str


@dataclass(frozen=True, slots=True)
class AuthOk:
    """The host accepted the login: the SCRAM server-final-message, and the user's name."""

    message: str
    user: str


@dataclass(frozen=True, slots=True)
class AuthFail:
    """The host refused the login, saying why (the same words for every wrong credential)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Logout:
    """The client ends its login; the host then closes the connection."""


Event: TypeAlias = (
    Hello
    | Message
    | Ping
    | Pong
    | Close
    | AuthStart
    | AuthChallenge
    | AuthResponse
    | AuthOk
    | AuthFail
    | Logout
)
