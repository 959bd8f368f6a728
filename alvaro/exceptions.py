"""Every exception alvaro raises, in one hierarchy.

.. code-block:: text

    AlvaroError
    ├── ConnectError (also OSError)        could not connect, or the opening handshake failed
    │   ├── TLSError                       TLS could not be set up; .kind tells why
    │   └── AuthenticationError            the login failed; .reason tells why
    ├── ConnectionClosed                   the connection is closed; .code, .reason, .by_peer
    │   ├── ConnectionClosedOK             it was closed in order (NORMAL or GOING_AWAY)
    │   └── ConnectionClosedError          it was broken or closed because of an error
    ├── ProtocolError                      the wire protocol was broken (not raised directly)
    │   ├── RemoteProtocolError            by the peer; the connection closes with .code
    │   └── LocalProtocolError             by this side, such as using a client before connect()
    ├── MessageTooLarge (also ValueError)  a message is over a size limit; .size, .limit
    ├── EncodeError (also TypeError)       data or metadata cannot be encoded as JSON
    ├── OutboxFull                         send_data() found the outbox full
    ├── RemoteError                        a request failed on the peer; .kind, .remote_type
    ├── TooManyRequests                    request_nowait() found max_pending_requests waiting
    ├── AccountsFileError (also ValueError)   a saved accounts file is corrupt or too new
    ├── ConcurrencyError (also RuntimeError)  two tasks receive from one connection at once
    └── WrongThreadError (also RuntimeError)  a blocking call was made on the event-loop thread

Timeouts raise the builtin :class:`TimeoutError`. Errors from anyio, :mod:`ssl` and the operating
system are translated into this hierarchy where alvaro touches the network, and the original error
is kept as ``__cause__``. No alvaro call lets an ``ExceptionGroup`` escape for an ordinary
disconnect.

Classes that also derive from a builtin (``OSError``, ``ValueError``, ``TypeError``,
``RuntimeError``) do so that ``except`` clauses written for the builtin keep working.
"""

from __future__ import annotations

from ._close_codes import CloseCode

__all__ = (
    "AccountsFileError",
    "AlvaroError",
    "AuthenticationError",
    "ConcurrencyError",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "EncodeError",
    "LocalProtocolError",
    "MessageTooLarge",
    "OutboxFull",
    "ProtocolError",
    "RemoteError",
    "RemoteProtocolError",
    "TLSError",
    "TooManyRequests",
    "WrongThreadError",
)


class AlvaroError(Exception):
    """Base class of every exception alvaro raises."""


class ConnectError(AlvaroError, OSError):
    """Connecting failed: the address was unreachable, refused, or the handshake failed.

    The underlying error (``ConnectionRefusedError``, ``socket.gaierror``, a protocol error in the
    handshake, ...) is kept as ``__cause__``.
    """


class TLSError(ConnectError):
    """TLS could not be set up: a certificate was refused, or one side does not speak TLS.

    Raised by ``connect()`` (and by the helpers of :mod:`alvaro.tls` for unreadable files). There
    is never a fallback to plaintext. The :mod:`ssl` error, when there is one, is kept as
    ``__cause__``.

    Attributes:
        kind: what went wrong, one of the ``TLSError.*`` constants below, so that a program can
            tell the cases apart without parsing the message.
    """

    UNTRUSTED = "untrusted"
    """The peer's certificate was not issued by a trusted CA (or is self-signed)."""
    HOSTNAME_MISMATCH = "hostname_mismatch"
    """The server's certificate is for another name or address than the one connected to."""
    EXPIRED = "expired"
    """The peer's certificate has expired (or is not valid yet)."""
    PLAINTEXT_PEER = "plaintext_peer"
    """This side asked for TLS and the peer answered in plaintext."""
    TLS_REQUIRED = "tls_required"
    """TLS was required and the peer spoke plaintext: raised to a client that connected in
    plaintext to a TLS-only host; in a host's log, a client that did not start TLS."""
    CERTIFICATE_REQUIRED = "certificate_required"
    """The host requires a client certificate and none (or none it trusts) was presented."""
    PROTOCOL_VERSION = "protocol_version"
    """The two sides share no TLS version (alvaro requires TLS 1.2 or later)."""
    CONFIGURATION = "configuration"
    """A certificate, key or CA file is missing or unreadable, or the options contradict."""
    HANDSHAKE = "handshake"
    """Any other handshake failure; the message and ``__cause__`` have the details."""

    def __init__(self, message: str, kind: str = HANDSHAKE) -> None:
        super().__init__(message)
        self.kind: str = kind

    def __reduce__(self) -> tuple[type[TLSError], tuple[str, str]]:
        return (type(self), (str(self), self.kind))


class AuthenticationError(ConnectError):
    """The login failed, or could not be attempted.

    The host gives the same reason for an unknown user name and a wrong password, so the
    message cannot tell which names exist. Other reasons: the host requires login and none was
    given, the address is banned after too many failed logins, the account must wait after
    failed logins, the host does not use logins, or the host could not prove that it knows the
    password (an impostor).

    Attributes:
        reason: why, in words meant for a person.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __reduce__(self) -> tuple[type[AuthenticationError], tuple[str]]:
        return (type(self), (self.reason,))


class ConnectionClosed(AlvaroError):
    """The operation needs an open connection, and this one is closed.

    Attributes:
        code: the close code (a :class:`~alvaro.CloseCode` when alvaro knows it, else an ``int``).
        reason: the reason text sent with the close, or a description written by alvaro.
        by_peer: ``True`` if the peer closed the connection or the network broke it, ``False``
            if this side closed it.
    """

    def __init__(self, code: int, reason: str = "", *, by_peer: bool = False) -> None:
        self.code: int = code
        self.reason: str = reason
        self.by_peer: bool = by_peer
        super().__init__(code, reason)

    def __str__(self) -> str:
        name = CloseCode.describe(self.code)
        who = "by the peer" if self.by_peer else "locally"
        text = f"connection closed {who} with code {self.code} ({name})"
        return f"{text}: {self.reason}" if self.reason else text


class ConnectionClosedOK(ConnectionClosed):
    """The connection was closed in order, with code NORMAL (1000) or GOING_AWAY (1001)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection was broken, or closed because of an error.

    When the network broke it, the operating-system error is kept as ``__cause__``.
    """


class ProtocolError(AlvaroError):
    """The alvaro wire protocol was broken. Catch this; alvaro raises only its subclasses."""

    def __init__(self, *args: object) -> None:
        # A bare ProtocolError would not say who broke the protocol (the h11 rule).
        if type(self) is ProtocolError:
            raise TypeError("raise RemoteProtocolError or LocalProtocolError, not ProtocolError")
        super().__init__(*args)


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids.

    Attributes:
        code: the close code this side sends to the peer when it closes the connection for it.
    """

    def __init__(self, message: str, code: int = CloseCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code: int = code


class LocalProtocolError(ProtocolError):
    """This side was asked to do something out of order, such as sending on a client that has not
    connected yet. (Sending on a closed connection raises :class:`ConnectionClosed` instead.)"""


class MessageTooLarge(AlvaroError, ValueError):
    """A message is larger than a size limit.

    Raised by the sending calls before anything is queued, when the encoded message is over the
    peer's ``max_message_size`` (or the metadata is over ``max_metadata_size``), so the caller gets
    a local error instead of a disconnect. An oversized message *from* the peer closes the
    connection with code MESSAGE_TOO_BIG instead.

    Attributes:
        size: the size of the encoded message or metadata, in bytes.
        limit: the limit it exceeded, in bytes.
    """

    def __init__(self, message: str, *, size: int = 0, limit: int = 0) -> None:
        # Defaults let pickle rebuild it from its message; the attributes come back with it.
        super().__init__(message)
        self.size = size
        self.limit = limit


class EncodeError(AlvaroError, TypeError):
    """Data or metadata cannot be encoded: not JSON-serialisable, NaN, or not a dict of metadata.

    The error from the JSON encoder, when there is one, is kept as ``__cause__``.
    """


class OutboxFull(AlvaroError):
    """``send_data()`` found the connection's outbox over its limit.

    The message was not queued. Wait with ``await send(...)``, which waits for room, or slow down.
    """


class RemoteError(AlvaroError):
    """A request failed on the peer: it sent an error reply instead of an answer.

    A request that times out raises the builtin :class:`TimeoutError` instead, and one whose
    connection ends before its reply :class:`ConnectionClosed`.

    Attributes:
        kind: why, one of the ``RemoteError.*`` constants below. A kind that this version of
            alvaro does not know (sent by a newer peer) arrives as :attr:`ERROR`.
        message: the peer's description, for a person.
        remote_type: with kind :attr:`ERROR`, the name of the exception the peer's handler
            raised (such as ``"ValueError"``), when the peer tells it; else ``None``.
        remote_traceback: the peer handler's traceback, only when the peer chose to send it;
            else ``None``. Nothing of the peer's internals crosses the wire unless it does.
    """

    ERROR = "error"
    """The peer's request handler raised an exception."""
    NO_HANDLER = "no_handler"
    """Nobody answers requests on the peer: it has no ``got_request`` handler."""
    BUSY = "busy"
    """The peer was already running as many requests of this connection as it allows."""
    CANCELLED = "cancelled"
    """The peer cancelled the handler itself, for example because it is shutting down."""

    def __init__(
        self,
        kind: str,
        message: str = "",
        remote_type: str | None = None,
        remote_traceback: str | None = None,
    ) -> None:
        super().__init__(kind, message, remote_type, remote_traceback)
        self.kind: str = kind
        self.message: str = message
        self.remote_type: str | None = remote_type
        self.remote_traceback: str | None = remote_traceback

    def __str__(self) -> str:
        what = {
            self.NO_HANDLER: "the peer does not answer requests",
            self.BUSY: "the peer is busy with other requests of this connection",
            self.CANCELLED: "the peer cancelled the request",
        }.get(self.kind, "the request failed on the peer")
        detail = f"{self.remote_type}: {self.message}" if self.remote_type else self.message
        return f"{what}: {detail}" if detail else what


class TooManyRequests(AlvaroError):
    """``request_nowait()`` found ``max_pending_requests`` of the connection waiting for their
    answers already. (``request()`` waits for room instead.)"""


class AccountsFileError(AlvaroError, ValueError):
    """A saved accounts file (users, bans, login history) cannot be read back.

    The message names the file and the problem: not valid JSON, truncated, another format, a
    bad record, or written by a newer version of alvaro. Nothing is loaded from such a file.
    """


class ConcurrencyError(AlvaroError, RuntimeError):
    """Two tasks tried to receive from the same connection at the same time."""


class WrongThreadError(AlvaroError, RuntimeError):
    """A blocking call was made on the event-loop thread, where it would deadlock."""
