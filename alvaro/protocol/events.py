"""The events a :class:`~alvaro.protocol.Decoder` turns received frames into.

Each is an immutable record of one frame: :class:`Hello`, :class:`Message`, :class:`Ping`,
:class:`Pong`, :class:`Close`, the login's :class:`AuthStart`, :class:`AuthChallenge`,
:class:`AuthResponse`, :class:`AuthOk`, :class:`AuthFail` and :class:`Logout`, and the requests'
:class:`Request`, :class:`ReplyOk`, :class:`ReplyError` and :class:`Cancel`.

The decoder only reports request frames; matching a reply to its request, and dropping one
whose request has ended, is the connection's job (``docs/protocol.md``, section 9.3).
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
    "Cancel",
    "Close",
    "Event",
    "Hello",
    "Logout",
    "Message",
    "Ping",
    "Pong",
    "ReplyError",
    "ReplyOk",
    "Request",
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


class Request(NamedTuple):
    """The peer asks a question (feature ``request``): answer it with exactly one REPLY that
    carries ``request_id``, unless it is cancelled or its deadline passes first.

    A named tuple, like :class:`Message`, for the same reason: it is built once per request.
    """

    request_id: int
    data: Any
    metadata: Metadata
    timeout: float | None
    """Seconds from the arrival of the REQUEST after which the asker no longer waits for the
    answer, or ``None`` for no deadline. Relative, so that the two clocks need not agree."""


class ReplyOk(NamedTuple):
    """The answer to a request this side sent: its ``data`` and ``metadata``."""

    request_id: int
    data: Any
    metadata: Metadata


@dataclass(frozen=True, slots=True)
class ReplyError:
    """A request this side sent failed on the peer.

    ``kind`` is one of ``"error"`` (the handler raised), ``"no_handler"``, ``"busy"`` and
    ``"cancelled"``; a kind this version does not know arrives as ``"error"``.
    """

    request_id: int
    kind: str
    message: str
    remote_type: str | None = None
    """The name of the exception the handler raised, when the peer tells it."""
    traceback: str | None = None
    """The handler's traceback, only when the peer chose to send it."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """The peer gave up on a request it sent (it timed out or was cancelled): stop handling it
    and send no reply."""

    request_id: int


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
    | Request
    | ReplyOk
    | ReplyError
    | Cancel
)
