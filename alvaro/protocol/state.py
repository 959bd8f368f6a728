"""The rules of a connection's life that are the protocol's, not the transport's: what the peer's
HELLO must say and what both sides then speak, the order of the login's frames, and how a close
is answered and reported (``docs/protocol.md``, sections 2, 6 and 9.8).

Pure functions and tables: the :class:`~alvaro.protocol.Decoder` and the connection code of
:mod:`alvaro.aio` both apply them, so each rule has one home.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Final

from .._close_codes import CloseCode
from ..exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    RemoteProtocolError,
)
from ._json import brief
from .events import Hello
from .frames import MAX_LIMIT, FrameType

if TYPE_CHECKING:
    from .frames import Role

__all__ = (
    "AUTH_RECEIVED_BY",
    "Login",
    "closed_error",
    "echo_code",
    "known_code",
    "next_login",
    "read_hello",
)


# --- HELLO ------------------------------------------------------------------------------------


def read_hello(
    fields: object,
    *,
    role: Role,
    features: frozenset[str],
    login_required: bool,
    version: int,
) -> tuple[Hello, frozenset[str]]:
    """Check the peer's HELLO as ``role`` receives it, and negotiate.

    Args:
        fields: the HELLO body, decoded from JSON.
        role: the receiving side's role; the HELLO must state the other one.
        features: the features the receiving side offers.
        login_required: the receiving side is a host that requires login.
        version: the protocol version the peer's preamble announced.

    Returns:
        The peer's :class:`Hello`, and the features both sides list.

    Raises:
        RemoteProtocolError: the HELLO is malformed, or the two sides cannot talk.
    """
    if not isinstance(fields, dict):
        raise RemoteProtocolError("HELLO must be a JSON object", CloseCode.INVALID_DATA)
    peer_role = fields.get("role")
    expected: Role = "client" if role == "host" else "host"
    if peer_role != expected:
        raise RemoteProtocolError(
            f"the peer's HELLO says role {brief(peer_role)}; a {role} expects {expected!r}"
        )
    sizes = []
    for name in ("max_message_size", "max_metadata_size"):
        value = fields.get(name)
        if type(value) is not int or not 1 <= value <= MAX_LIMIT:
            raise RemoteProtocolError(
                f"HELLO field {name!r} must be an integer from 1 to {MAX_LIMIT}, "
                f"not {brief(value)}",
                CloseCode.INVALID_DATA,
            )
        sizes.append(value)
    offered = fields.get("features", [])
    if not isinstance(offered, list) or not all(isinstance(f, str) for f in offered):
        raise RemoteProtocolError(
            "HELLO field 'features' must be a list of strings", CloseCode.INVALID_DATA
        )
    peer_features = frozenset(offered)
    negotiated = peer_features & features
    auth_required = False
    if "auth" in negotiated:
        if role == "client":
            # Version 1 hosts offer login only to require it (docs/protocol.md, 9.8).
            if fields.get("auth_required") is not True:
                raise RemoteProtocolError(
                    "the host lists feature 'auth' without \"auth_required\": true",
                    CloseCode.INVALID_DATA,
                )
            auth_required = True
    elif login_required:
        raise RemoteProtocolError(
            "this host requires login, and the client does not offer feature 'auth'",
            CloseCode.POLICY_VIOLATION,
        )
    hello = Hello(version, expected, sizes[0], sizes[1], peer_features, auth_required)
    return hello, negotiated


# --- Login ------------------------------------------------------------------------------------


class Login(enum.Enum):
    """Where the login exchange is, as seen from the frames received."""

    IDLE = "idle"  # nothing yet (or, on a host, logged out)
    STARTED = "started"  # host: AUTH_START received; client: AUTH_CHALLENGE received
    ANSWERED = "answered"  # host: AUTH_RESPONSE received, the verdict is the host's to send
    DONE = "done"  # client: AUTH_OK received; host: login accepted
    LOGGED_OUT = "logged out"  # host: LOGOUT received; no further login on this connection


AUTH_RECEIVED_BY: Final[dict[Role, frozenset[int]]] = {
    "host": frozenset((FrameType.AUTH_START, FrameType.AUTH_RESPONSE, FrameType.LOGOUT)),
    "client": frozenset((FrameType.AUTH_CHALLENGE, FrameType.AUTH_OK, FrameType.AUTH_FAIL)),
}
"""The login frame types each side may receive."""

#: For each AUTH frame type: the login states it may arrive in, the state it leads to, and the
#: error when it comes out of order. Which side receives which types is checked before this.
_AUTH_ORDER: Final[dict[int, tuple[frozenset[Login], Login, str]]] = {
    # Received by a host.
    FrameType.AUTH_START: (
        frozenset((Login.IDLE,)),
        Login.STARTED,
        "AUTH_START arrived after a login had begun",
    ),
    FrameType.AUTH_RESPONSE: (
        frozenset((Login.STARTED,)),
        Login.ANSWERED,
        "AUTH_RESPONSE arrived without an AUTH_START before it",
    ),
    FrameType.LOGOUT: (
        frozenset((Login.DONE,)),
        Login.LOGGED_OUT,
        "LOGOUT arrived from a client that is not logged in",
    ),
    # Received by a client.
    FrameType.AUTH_CHALLENGE: (
        frozenset((Login.IDLE,)),
        Login.STARTED,
        "AUTH_CHALLENGE arrived out of order",
    ),
    FrameType.AUTH_OK: (
        frozenset((Login.STARTED,)),
        Login.DONE,
        "AUTH_OK arrived without an AUTH_CHALLENGE before it",
    ),
    FrameType.AUTH_FAIL: (
        frozenset((Login.IDLE, Login.STARTED)),
        Login.ANSWERED,
        "AUTH_FAIL arrived after the login had ended",
    ),
}


def next_login(login: Login, frame_type: int) -> Login:
    """Where the login is after a login frame of ``frame_type`` arrives in state ``login``.

    Raises:
        RemoteProtocolError: the frame is out of order (docs/protocol.md, section 7).
    """
    allowed, after, problem = _AUTH_ORDER[frame_type]
    if login not in allowed:
        raise RemoteProtocolError(problem)
    return after


# --- Close ------------------------------------------------------------------------------------


def echo_code(code: int) -> int:
    """The code to answer a peer's CLOSE with: its own, unless it may never be sent
    (docs/protocol.md, section 6)."""
    return code if CloseCode.can_send(code) else CloseCode.PROTOCOL_ERROR


def known_code(code: int) -> int:
    """``code`` as a :class:`~alvaro.CloseCode` when it is one (so that it shows its name),
    else the number itself."""
    try:
        return CloseCode(code)
    except ValueError:
        return code


def closed_error(code: int, reason: str, *, by_peer: bool) -> ConnectionClosed:
    """The error that reports a connection closed with ``code`` and ``reason``:
    :class:`~alvaro.ConnectionClosedOK` for NORMAL and GOING_AWAY, else
    :class:`~alvaro.ConnectionClosedError`."""
    ok = code in (CloseCode.NORMAL, CloseCode.GOING_AWAY)
    kind = ConnectionClosedOK if ok else ConnectionClosedError
    return kind(known_code(code), reason, by_peer=by_peer)
