"""Close codes: why a connection ended. Shared by the protocol, the exceptions and the API."""

from __future__ import annotations

import enum

__all__ = ("CloseCode",)


class CloseCode(enum.IntEnum):
    """Why a connection ended, as carried by the CLOSE frame (``docs/protocol.md``).

    The numbers follow WebSocket's close codes where the meaning is the same. Codes marked *local*
    never travel on the wire: alvaro reports them when no CLOSE frame could be exchanged.
    Applications may close with their own codes from 4100 to 4999.
    """

    NORMAL = 1000
    """The connection finished its job."""
    GOING_AWAY = 1001
    """The host is shutting down, or the program is exiting."""
    PROTOCOL_ERROR = 1002
    """The peer broke the wire protocol."""
    UNSUPPORTED = 1003
    """The peer asked for a protocol version or feature this side does not speak."""
    ABNORMAL = 1006
    """*Local.* The connection was lost without a CLOSE frame (reset, EOF, timeout)."""
    INVALID_DATA = 1007
    """A frame's JSON or UTF-8 was invalid, or its metadata was not a JSON object."""
    POLICY_VIOLATION = 1008
    """The peer did something the host's policy forbids."""
    MESSAGE_TOO_BIG = 1009
    """A frame was over the receiver's size limit."""
    INTERNAL_ERROR = 1011
    """An unexpected error on the closing side, such as a callback that raised."""
    TRY_AGAIN_LATER = 1013
    """The host is overloaded (too many connections)."""
    TIMEOUT = 4000
    """The peer did not answer in time (handshake, close or keepalive)."""
    SLOW_CONSUMER = 4001
    """The peer did not read what was sent to it in time."""
    TLS_REQUIRED = 4002
    """The host accepts only TLS connections and the client connected in plaintext."""

    @classmethod
    def can_send(cls, code: int) -> bool:
        """Whether ``code`` may travel in a CLOSE frame: a code of this enum that is not local-only,
        or an application code from 4100 to 4999."""
        return code in _SENDABLE or 4100 <= code <= 4999

    @classmethod
    def describe(cls, code: int | None) -> str:
        """Return the name of a known code, ``"APPLICATION"`` for 4100-4999, else ``"UNKNOWN"``.

        ``None``, the ``close_code`` of a connection that has not started to close, gives
        ``"NONE"``, so that ``CloseCode.describe(conn.close_code)`` works at any time.
        """
        if code is None:
            return "NONE"
        try:
            return cls(code).name
        except ValueError:
            return "APPLICATION" if 4100 <= code <= 4999 else "UNKNOWN"


_SENDABLE = frozenset(code for code in CloseCode if code != CloseCode.ABNORMAL)
