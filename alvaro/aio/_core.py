"""The internal side of a connection: what alvaro's own modules use, and users never see.

A connection is two objects. :class:`~alvaro.aio.Connection` is the public face that callbacks
get; :class:`ConnectionCore`, made first, owns everything else: the transport, the decoder, the
outbox, the receive queue, the keepalive and the record of how the connection closed. The host,
the client, the login and the sync layer work on the core, through the members documented here
(:func:`core_of` finds it from a public connection); the steps of a connection's life are
functions over it: :mod:`._handshake` (HELLO and the exchanges before serving),
:mod:`._reader` (the read loop) and :mod:`._pipeline` (the order of the steps, for both roles).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .._close_codes import CloseCode
from ..exceptions import RemoteError
from ..protocol import Decoder, encode_close, encode_message, encode_ping
from ..protocol.state import closed_error, echo_code
from ._inbox import ReceiveQueue
from ._keepalive import Keepalive
from ._loop import Flag, LoopHandle
from ._outbox import Outbox
from ._requests import Requests
from .connection import Connection, State

if TYPE_CHECKING:
    import logging
    from collections.abc import Awaitable, Callable

    from .._settings import Settings
    from .._throttle import LogThrottle
    from .._types import Metadata
    from ..exceptions import ConnectionClosed, ConnectionClosedError, RemoteProtocolError
    from ..protocol import Close, Event, Hello, Role
    from ._io import Transport

__all__ = ("ConnectionCore", "core_of")


def core_of(connection: Connection) -> ConnectionCore:
    """The core behind a public connection: the one door from alvaro's modules to its inside."""
    return connection._core


class ConnectionCore:
    """Everything of one connection but its public face (:attr:`connection`).

    Thread safety: :meth:`enqueue`, :meth:`send_blocking`, :meth:`evict` and
    :meth:`queue_close` may be called from any thread; everything else runs on the connection's
    event loop.
    """

    __slots__ = (
        "before_echo",
        "close_cause",
        "close_deadline",
        "close_info",
        "closed",
        "connection",
        "decoder",
        "discarding",
        "early_error",
        "early_events",
        "early_sizes",
        "enqueue",
        "frame_deadline",
        "inbox",
        "keepalive",
        "lock",
        "logger",
        "loop",
        "outbox",
        "peer",
        "protocol_errors",
        "read_scope",
        "reads",
        "requests",
        "role",
        "settings",
        "state",
        "tasks",
        "transport",
        "user",
    )

    def __init__(
        self,
        transport: Transport,
        *,
        role: Role,
        settings: Settings,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        features: frozenset[str] = frozenset(),
        login_required: bool = False,
        protocol_errors: LogThrottle | None = None,
    ) -> None:
        self.transport = transport
        self.role: Role = role
        self.settings = settings
        self.logger = logger
        # Shared by every connection of a host, so that peers breaking the protocol on purpose
        # cannot flood its log; None logs every one.
        self.protocol_errors = protocol_errors
        self.decoder = Decoder(
            role,
            max_message_size=settings.max_message_size,
            max_metadata_size=settings.max_metadata_size,
            features=features,
            login_required=login_required,
        )
        self.state = State.CONNECTING
        self.peer: Hello | None = None
        """The peer's HELLO: its limits and features. Set by the opening handshake."""
        self.user: str | None = None
        """The name the peer logged in with (host), or this side logged in as (client)."""
        # What the decoder gave before serving began, for the read loop to deliver first: the
        # events, the wire size of each Message among them, and a protocol error after them.
        self.early_events: list[Event] = []
        self.early_sizes: list[int] = []
        self.early_error: RemoteProtocolError | None = None
        # What waits to be sent, and the writer. Its lock also guards close_info and
        # close_cause, because send_data() and disconnect() may run on any thread.
        self.outbox = Outbox(transport, settings, logger, closed_error=self.closed_error)
        self.lock = self.outbox.lock
        self.enqueue = self.outbox.enqueue
        """Queue an encoded frame (``limit``: the outbox bound, or None); any thread."""
        self.close_info: tuple[int, str, bool] | None = None  # code, reason, by_peer
        self.close_cause: BaseException | None = None  # the network error that ended it
        self.close_deadline = math.inf
        self.discarding = False  # after an application failure, deliver no more messages
        self.before_echo: Callable[[], Awaitable[None]] | None = None
        """Awaited (within close_timeout) before the peer's CLOSE is answered; alvaro.sync
        sets it to let callbacks that run behind the loop reply first."""
        self.inbox = ReceiveQueue(settings, self.closed_error)
        self.keepalive = Keepalive()
        self.reads = 0  # reads that brought bytes: any byte proves the peer alive
        self.read_scope: anyio.CancelScope | None = None
        # When the frame being received must be complete; inf while none is under way.
        self.frame_deadline = math.inf
        self.loop: LoopHandle  # set on the loop by the opening handshake
        self.closed = Flag()
        self.tasks: anyio.abc.TaskGroup | None = None
        """The task group of the served connection (its writer, keepalive, request handlers)."""
        self.requests: Requests | None = None  # made on the first request either way
        self.connection = Connection(self)

    def request_table(self) -> Requests:
        """The connection's requests, made on first use (most connections never use them)."""
        if self.requests is None:
            self.requests = Requests(self)
        return self.requests

    def asking(self, timeout: float | None) -> tuple[Requests, float | None]:
        """What :meth:`Connection.request` awaits ``ask()`` of, and with which timeout:
        ``None`` is the ``request_timeout`` setting, ``math.inf`` none. (Not a coroutine, so
        that a request awaits one coroutine of alvaro's less.)

        Raises:
            RemoteError: the peer does not take requests.
            ValueError: a timeout that is not a positive number of seconds.
        """
        if "request" not in self.decoder.negotiated:
            raise RemoteError(
                RemoteError.NO_HANDLER,
                f"{self.where} does not take requests (an alvaro older than requests)",
            )
        if timeout is None:
            timeout = self.settings.request_timeout
        elif timeout == math.inf:
            timeout = None
        elif not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        return self.request_table(), timeout

    def start_on_loop(self) -> None:
        """Bind to the running event loop; first thing of the opening handshake."""
        self.loop = LoopHandle()
        self.outbox.start(self.loop)

    def __repr__(self) -> str:
        return repr(self.connection)

    @property
    def where(self) -> str:
        """The peer as log lines name it, ``host:port``."""
        return f"{self.transport.peer_addr}:{self.transport.peer_port}"

    # --- Sending ---------------------------------------------------------------------------------

    def encode(self, data: Any, metadata: Metadata | None) -> bytes:
        """Encode a message within the limits the peer announced in its handshake."""
        peer = self.peer
        assert peer is not None, "connections are handed out only after the handshake"
        return encode_message(
            data,
            metadata,
            max_message_size=peer.max_message_size,
            max_metadata_size=peer.max_metadata_size,
        )

    def send_blocking(self, data: Any, metadata: Metadata | None, timeout: float | None) -> None:
        """Queue a message from a plain thread, blocking while the outbox is over write_limit.

        The blocking API's ``send``; never call it on the loop thread, which it would block.
        """
        self.outbox.enqueue_when_room(self.encode(data, metadata), timeout)

    def evict(self, reason: str) -> None:
        """Drop a slow consumer from any thread (for a broadcast that found its outbox full).

        Sending stops at once, so that the broadcasts that follow before the loop thread gets
        to it neither queue more nor evict (and log) again.
        """
        if self.outbox.stop():
            self.loop.run_or_schedule(lambda: self.drop_slow_consumer(reason))

    def drop_slow_consumer(self, reason: str) -> None:
        """Drop the connection at once, reported as SLOW_CONSUMER; on the loop thread only, but
        possibly outside any task (scheduled from another thread by :meth:`evict`), where anyio
        cannot tell the backend: hence the loop handle's clock."""
        self.logger.warning("dropping %s as a slow consumer: %s", self.where, reason)
        self.close_deadline = self.loop.time()
        self.lose(reason, code=CloseCode.SLOW_CONSUMER, by_peer=False)

    # --- Closing -------------------------------------------------------------------------------

    def queue_close(self, code: int, reason: str, *, by_peer: bool) -> None:
        """Queue a CLOSE after everything queued, and record why; any thread, idempotent."""

        def record() -> None:  # under the outbox's lock, with the CLOSE frame queued
            if self.close_info is None:
                self.close_info = (code, reason, by_peer)

        if self.outbox.queue_last(encode_close(code, reason), record):
            self.loop.run_or_schedule(self._start_close_timer)

    def _start_close_timer(self) -> None:
        if self.state is State.OPEN:
            self.state = State.CLOSING
        self.close_deadline = min(
            self.close_deadline, self.loop.time() + self.settings.close_timeout
        )
        if self.read_scope is not None:
            self.read_scope.deadline = self.close_deadline

    def fail(self, code: int, reason: str) -> None:
        """Close because of an error found on this side of the connection.

        No further message is delivered: whatever arrives until the peer answers is dropped.
        """
        self.discarding = True
        self.queue_close(code, reason, by_peer=False)

    def lose(
        self,
        reason: str,
        cause: BaseException | None = None,
        code: int = CloseCode.ABNORMAL,
        *,
        by_peer: bool = True,
    ) -> None:
        """Record that the connection was lost without a closing handshake."""
        with self.lock:
            if self.close_info is None:
                self.close_info = (code, reason, by_peer)
                self.close_cause = cause
            self.outbox.closed = True
        if self.read_scope is not None:
            self.read_scope.cancel()

    def broken(self, error: ConnectionClosedError) -> None:
        """The writer found the connection broken."""
        self.lose(error.reason, error.__cause__)

    def peer_closed(self, event: Close) -> None:
        """The peer's CLOSE arrived: record it and echo its code, unless a CLOSE went first."""
        with self.lock:
            answered = self.outbox.close_queued
            if self.close_info is None:
                self.close_info = (event.code, event.reason, True)
        if not answered:
            # Echo the code, after everything already queued (docs/protocol.md, section 6).
            self.queue_close(echo_code(event.code), "", by_peer=True)

    def closed_error(self) -> ConnectionClosed:
        """The exception for an operation that found the connection closed."""
        code, reason, by_peer = self.close_info or (CloseCode.ABNORMAL, "closed", True)
        error = closed_error(code, reason, by_peer=by_peer)
        error.__cause__ = self.close_cause
        return error

    def log_protocol_error(self, error: RemoteProtocolError) -> None:
        """Log why the peer's bytes were refused, at most as often as the throttle allows."""
        more = ""
        if self.protocol_errors is not None:
            allowed, suppressed = self.protocol_errors.allow()
            if not allowed:
                return
            if suppressed:
                more = f" ({suppressed} more protocol errors not logged)"
        self.logger.warning("closing the connection to %s: %s%s", self.where, error, more)

    # --- What the keepalive needs (alvaro.aio._keepalive.Pinged; reads is an attribute) --------

    def can_ping(self) -> bool:
        return self.state is State.OPEN and not self.outbox.closed

    def send_ping(self, payload: bytes) -> None:
        self.enqueue(encode_ping(payload), limit=None)

    def peer_dead(self, reason: str) -> None:
        """The keepalive found the peer dead (or the connection half-open): nothing more will
        come, so close at once, without waiting for bytes the peer will never take."""
        self.close_deadline = anyio.current_time()
        self.lose(reason, code=CloseCode.TIMEOUT)
