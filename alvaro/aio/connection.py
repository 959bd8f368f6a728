"""A connection's public face: what a host's callbacks and a client's users get.

A connection runs two tasks. The *writer* (:class:`~alvaro.aio._outbox.Outbox`) drains the whole
outbox in one write whenever it is not empty, so many small messages cost one system call. The
*reader* (:mod:`alvaro.aio._reader`) reads large chunks, parses every frame in them and hands
each message to the application in order: to a callback, awaited in the reader task (a slow
callback slows only its own connection, and pushes back on the peer through TCP), or, when no
callback is set, to a bounded queue that :meth:`Connection.receive` takes from. Both, and
everything else a connection holds, belong to its internal side, :mod:`alvaro.aio._core`.
"""

from __future__ import annotations

import enum
import inspect
from typing import TYPE_CHECKING, Any

from .._aliases import ConnectionAliases
from .._close_codes import CloseCode
from ..exceptions import ConnectionClosedOK
from ..protocol.state import known_code

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from .._types import Metadata
    from ..protocol import Message
    from ..tls import TLSInfo
    from ._core import ConnectionCore

__all__ = ("Connection", "State")


class State(enum.Enum):
    """Where a connection is in its life."""

    CONNECTING = "connecting"
    """The opening handshake is under way."""
    OPEN = "open"
    """Messages flow both ways."""
    CLOSING = "closing"
    """A CLOSE frame was sent or received; the closing handshake is under way."""
    CLOSED = "closed"
    """The connection is closed; :attr:`Connection.close_code` says why."""


async def call_callback(function: Callable[..., object] | None, *args: object) -> None:
    """Call a user callback that may be a plain function or an ``async def``; ``None``, a
    callback that is not set, does nothing.

    Only a coroutine is awaited: a plain function that happens to return an awaitable (such as
    the handle of a task it started) is not waited for, which would deadlock.
    """
    if function is None:
        return
    result = function(*args)
    if result is not None and inspect.iscoroutine(result):
        await result


class Connection(ConnectionAliases):
    """One connection to a peer: the Host's view of a client, or a Client's link to its host.

    Hosts pass connections to their callbacks; clients keep theirs in
    :attr:`Client.connection <alvaro.aio.Client.connection>`. Users never create one.

    Thread safety: :meth:`send_data` and :meth:`disconnect` may be called from any thread. Every
    other method must be called from the event loop the connection runs on.
    """

    # send_data() is the hot path: the two steps it takes are bound once, here.
    __slots__ = ("_core", "_encode", "_enqueue", "_outbox_limit", "_write_limit")

    def __init__(self, core: ConnectionCore) -> None:
        self._core = core
        self._encode = core.encode
        self._enqueue = core.enqueue
        self._outbox_limit = core.settings.outbox_limit
        self._write_limit = core.settings.write_limit

    # --- Information ---------------------------------------------------------------------------

    @property
    def addr(self) -> str:
        """The peer's IP address."""
        return self._core.transport.peer_addr

    @property
    def port(self) -> int:
        """The peer's TCP port."""
        return self._core.transport.peer_port

    @property
    def local_port(self) -> int:
        """This end's TCP port."""
        return self._core.transport.local_port

    @property
    def state(self) -> State:
        """Where the connection is in its life."""
        return self._core.state

    @property
    def is_open(self) -> bool:
        """Whether messages can be sent (the handshake is done and no close has started)."""
        core = self._core
        return core.state is State.OPEN and not core.outbox.closed

    @property
    def close_code(self) -> int | None:
        """Why the connection closed (a :class:`~alvaro.CloseCode` or application code), or
        ``None`` while no close has started."""
        info = self._core.close_info
        return None if info is None else known_code(info[0])

    @property
    def close_reason(self) -> str:
        """The reason sent with the close, or alvaro's description of what ended it."""
        info = self._core.close_info
        return "" if info is None else info[1]

    @property
    def closed_by_peer(self) -> bool | None:
        """``True`` if the peer (or the network) ended the connection, ``False`` if this side
        did, ``None`` while no close has started."""
        info = self._core.close_info
        return None if info is None else info[2]

    @property
    def peer_max_message_size(self) -> int:
        """The largest message the peer accepts, from its handshake."""
        peer = self._core.peer
        assert peer is not None
        return peer.max_message_size

    @property
    def user(self) -> str | None:
        """The name the peer logged in with (on a host that requires login), or ``None``.

        On a host, set before ``logged_in`` and ``new_client`` run; on a client, once the
        login has succeeded."""
        return self._core.user

    @property
    def unsent(self) -> int:
        """How many queued messages were never fully handed to the network because the
        connection closed first (a broken connection, a slow consumer, a close that timed
        out); 0 while the connection is open and after a clean close. Keepalive frames may
        be among them. They are also logged as a WARNING."""
        return self._core.outbox.unsent

    @property
    def latency(self) -> float | None:
        """The round trip of the last keepalive ping, in seconds; ``None`` before the first
        answer (or with ``ping_interval=None``)."""
        return self._core.keepalive.latency

    @property
    def tls(self) -> TLSInfo | None:
        """What TLS negotiated (version, cipher, the peer's certificate), or ``None`` on a
        plaintext connection. Set before ``new_client``/``made_connection`` run, so a host can
        decide from the client's certificate whether to accept it."""
        return self._core.transport.tls

    def __repr__(self) -> str:
        return f"<Connection {self.addr}:{self.port} {self._core.state.value}>"

    # --- Sending -------------------------------------------------------------------------------

    def send_data(self, data: Any, metadata: Metadata | None = None) -> None:
        """Queue a message for sending and return at once; safe from any thread.

        Args:
            data: JSON-serialisable data, or ``bytes`` to send raw.
            metadata: a dict of JSON-serialisable values sent with the data.

        Raises:
            EncodeError: ``data`` or ``metadata`` cannot be encoded.
            MessageTooLarge: the message is over the peer's ``max_message_size``.
            OutboxFull: more than ``outbox_limit`` bytes are waiting to be sent.
            ConnectionClosed: the connection is closing or closed.
        """
        self._enqueue(self._encode(data, metadata), limit=self._outbox_limit)

    async def send(self, data: Any, metadata: Metadata | None = None) -> None:
        """Queue a message for sending, first waiting while the outbox is over ``write_limit``.

        This is the backpressure-aware way to send many messages: a slow peer makes it wait
        instead of growing memory.

        Raises:
            EncodeError, MessageTooLarge, ConnectionClosed: as :meth:`send_data`.
        """
        frame = self._encode(data, metadata)
        outbox = self._core.outbox
        if outbox.pending > self._write_limit:  # no coroutine call when there is room
            await outbox.wait_for_room()
        self._enqueue(frame, limit=None)

    # --- Requests ------------------------------------------------------------------------------

    async def request(
        self, data: Any, metadata: Metadata | None = None, *, timeout: float | None = None
    ) -> Message:
        """Ask the peer and wait for its answer: its ``got_request`` handler's return value.

        Either side may ask. Requests run concurrently, and the answers reach the right
        callers whatever their order. The deadline travels with the request: the peer cancels
        its handler when it passes, and when this call is cancelled.

        Args:
            data: the question: JSON-serialisable data, or ``bytes`` to send raw.
            metadata: a dict of JSON-serialisable values sent with it.
            timeout: seconds to wait for the answer (and for room, when
                ``max_pending_requests`` are waiting already); ``None`` (the default) uses the
                ``request_timeout`` setting (30 s), ``math.inf`` waits as long as it takes.

        Returns:
            The answer as a :class:`~alvaro.Message` (``data`` and ``metadata``).

        Raises:
            TimeoutError: no answer in time; the peer is told to stop (CANCEL).
            RemoteError: the peer answered with an error; ``kind`` says which
                (``"error"``: its handler raised, ``"no_handler"``, ``"busy"``,
                ``"cancelled"``).
            ConnectionClosed: the connection ended before the answer came.
            EncodeError, MessageTooLarge: as :meth:`send_data`.
        """
        requests, seconds = self._core.asking(timeout)
        return await requests.ask(data, metadata, seconds)

    @property
    def late_replies(self) -> int:
        """Answers that arrived after their request had ended (timed out or cancelled): dropped,
        never given to another request, and counted here."""
        requests = self._core.requests
        return 0 if requests is None else requests.late_replies

    # --- Receiving -----------------------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> Message:
        """Return the next message the peer sent (when no ``got_data`` callback takes them).

        Args:
            timeout: seconds to wait; ``None`` waits as long as it takes, ``0`` only polls.

        Raises:
            TimeoutError: no message arrived within ``timeout``.
            ConnectionClosedOK: the connection closed normally and every message was taken.
            ConnectionClosedError: the connection broke and every message was taken.
            ConcurrencyError: another task is already waiting in ``receive()``.
        """
        return await self._core.inbox.get(timeout)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        """The next message; the iteration ends when the connection closes normally.

        Raises:
            ConnectionClosedError: the connection broke.
        """
        try:
            return await self._core.inbox.get(None)
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    # --- Closing -------------------------------------------------------------------------------

    def disconnect(self, reason: str | None = None, code: int = CloseCode.NORMAL) -> None:
        """Close the connection and return at once; safe from any thread, idempotent.

        Everything queued before this call is sent first, then a CLOSE frame carrying ``code`` and
        ``reason``, which reach the peer's ``lost_client``/``lost_connection`` callback. Messages
        the peer sends until it answers are still delivered. If the peer does not answer within
        ``close_timeout``, the connection is dropped.

        Args:
            reason: a short text for the peer (at most 1024 UTF-8 bytes are sent).
            code: :attr:`CloseCode.NORMAL <alvaro.CloseCode.NORMAL>`, another close code, or an
                application code from 4100 to 4999.
        """
        if not CloseCode.can_send(code):
            raise ValueError(
                f"{code} is not a close code that can be sent: use a CloseCode other than "
                "ABNORMAL, or an application code from 4100 to 4999"
            )
        self._core.queue_close(code, reason or "", by_peer=False)

    async def aclose(self, reason: str | None = None, code: int = CloseCode.NORMAL) -> None:
        """Close the connection like :meth:`disconnect` and wait until it is closed.

        Returns within about ``close_timeout`` seconds, whatever the peer does.
        """
        self.disconnect(reason, code)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        await self._core.closed.wait()
