"""One alvaro connection on anyio: handshake, reader, and the closing handshake.

A connection runs two tasks. The *writer* (:class:`~alvaro.aio._outbox.Outbox`) drains the whole
outbox in one write whenever it is not empty, so many small messages cost one system call. The
*reader* reads large chunks, parses every
frame in them and hands each message to the application in order: to a callback, awaited in the
reader task (a slow callback slows only its own connection, and pushes back on the peer through
TCP), or, when no callback is set, to a bounded queue that :meth:`Connection.receive` takes from.
"""

from __future__ import annotations

import enum
import inspect
import math
from collections import deque
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.lowlevel

from .._aliases import ConnectionAliases
from .._close_codes import CloseCode
from ..exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    RemoteProtocolError,
)
from ..protocol import (
    Close,
    Decoder,
    Event,
    Hello,
    Logout,
    Message,
    Ping,
    Pong,
    Role,
    encode_close,
    encode_hello,
    encode_message,
    encode_ping,
    encode_pong,
)
from ..protocol.state import closed_error, echo_code, known_code
from ._keepalive import Keepalive
from ._loop import Flag, LoopHandle
from ._outbox import Outbox

if TYPE_CHECKING:
    import logging
    from collections.abc import AsyncIterator, Awaitable, Callable

    from .._settings import Settings
    from .._throttle import LogThrottle
    from .._types import Metadata
    from ..tls import TLSInfo
    from ._io import Transport

__all__ = ("Connection", "State")

# How long a connection that failed its opening handshake waits for the peer's TLS close_notify.
_TLS_ABORT_GRACE = 0.25


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

    __slots__ = (
        "_before_echo",
        "_close_cause",
        "_close_deadline",
        "_close_info",
        "_closed",
        "_decoder",
        "_discarding",
        "_early_error",
        "_early_events",
        "_early_sizes",
        "_enqueue",
        "_frame_deadline",
        "_inbox",
        "_inbox_bytes",
        "_inbox_sizes",
        "_inbox_waiter",
        "_keepalive",
        "_lock",
        "_logger",
        "_loop",
        "_outbox",
        "_peer",
        "_protocol_errors",
        "_read_scope",
        "_reader_done",
        "_reads",
        "_receiving",
        "_role",
        "_room_waiter",
        "_settings",
        "_state",
        "_transport",
        "_user",
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
        self._transport = transport
        # Shared by every connection of a host, so that peers breaking the protocol on purpose
        # cannot flood its log; None logs every one.
        self._protocol_errors = protocol_errors
        self._role: Role = role
        self._settings = settings
        self._logger = logger
        self._decoder = Decoder(
            role,
            max_message_size=settings.max_message_size,
            max_metadata_size=settings.max_metadata_size,
            features=features,
            login_required=login_required,
        )
        self._user: str | None = None
        self._state = State.CONNECTING
        self._peer: Hello | None = None
        self._early_events: list[Event] = []
        self._early_sizes: list[int] = []  # the wire size of each Message in _early_events
        self._early_error: RemoteProtocolError | None = None
        # What waits to be sent, and the writer. Its lock also guards _close_info and
        # _close_cause, because send_data() and disconnect() may run on any thread.
        self._outbox = Outbox(
            transport,
            settings,
            logger,
            closed_error=self._closed_error,
        )
        self._lock = self._outbox.lock
        # Bound once: send_data() calls it for every message.
        self._enqueue = self._outbox.enqueue
        self._close_info: tuple[int, str, bool] | None = None
        self._close_cause: BaseException | None = None  # the network error that ended it
        self._discarding = False  # after an application failure, deliver no more messages
        # Awaited (within close_timeout) before answering the peer's CLOSE; alvaro.sync uses it
        # to let callbacks that run behind the loop reply first.
        self._before_echo: Callable[[], Awaitable[None]] | None = None
        # Receive side, used by the loop thread only.
        self._inbox: deque[Message] = deque()
        # What each queued message took on the wire, and their sum.
        self._inbox_sizes: deque[int] = deque()
        self._inbox_bytes = 0
        self._reads = 0  # counts reads for the keepalive: any byte proves the peer alive
        self._inbox_waiter: anyio.Event | None = None
        self._room_waiter: anyio.Event | None = None
        self._receiving = False
        self._reader_done = False
        self._close_deadline = math.inf
        self._keepalive = Keepalive()
        self._read_scope: anyio.CancelScope | None = None
        # When the frame being received must be complete; inf while none is under way.
        self._frame_deadline = math.inf
        # Created on the loop by _open().
        self._loop: LoopHandle
        self._closed = Flag()

    # --- Information ---------------------------------------------------------------------------

    @property
    def addr(self) -> str:
        """The peer's IP address."""
        return self._transport.peer_host

    @property
    def port(self) -> int:
        """The peer's TCP port."""
        return self._transport.peer_port

    @property
    def local_port(self) -> int:
        """This end's TCP port."""
        return self._transport.local_port

    @property
    def state(self) -> State:
        """Where the connection is in its life."""
        return self._state

    @property
    def is_open(self) -> bool:
        """Whether messages can be sent (the handshake is done and no close has started)."""
        return self._state is State.OPEN and not self._outbox.closed

    @property
    def close_code(self) -> int | None:
        """Why the connection closed (a :class:`~alvaro.CloseCode` or application code), or
        ``None`` while no close has started."""
        return None if self._close_info is None else known_code(self._close_info[0])

    @property
    def close_reason(self) -> str:
        """The reason sent with the close, or alvaro's description of what ended it."""
        return "" if self._close_info is None else self._close_info[1]

    @property
    def closed_by_peer(self) -> bool | None:
        """``True`` if the peer (or the network) ended the connection, ``False`` if this side
        did, ``None`` while no close has started."""
        return None if self._close_info is None else self._close_info[2]

    @property
    def peer_max_message_size(self) -> int:
        """The largest message the peer accepts, from its handshake."""
        assert self._peer is not None
        return self._peer.max_message_size

    @property
    def user(self) -> str | None:
        """The name the peer logged in with (on a host that requires login), or ``None``.

        On a host, set before ``logged_in`` and ``new_client`` run; on a client, once the
        login has succeeded."""
        return self._user

    @property
    def unsent(self) -> int:
        """How many queued messages were never fully handed to the network because the
        connection closed first (a broken connection, a slow consumer, a close that timed
        out); 0 while the connection is open and after a clean close. Keepalive frames may
        be among them. They are also logged as a WARNING."""
        return self._outbox.unsent

    @property
    def latency(self) -> float | None:
        """The round trip of the last keepalive ping, in seconds; ``None`` before the first
        answer (or with ``ping_interval=None``)."""
        return self._keepalive.latency

    @property
    def tls(self) -> TLSInfo | None:
        """What TLS negotiated (version, cipher, the peer's certificate), or ``None`` on a
        plaintext connection. Set before ``new_client``/``made_connection`` run, so a host can
        decide from the client's certificate whether to accept it."""
        return self._transport.tls

    def __repr__(self) -> str:
        return f"<Connection {self.addr}:{self.port} {self._state.value}>"

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
        frame = self._encode(data, metadata)
        self._enqueue(frame, limit=self._settings.outbox_limit)

    async def send(self, data: Any, metadata: Metadata | None = None) -> None:
        """Queue a message for sending, first waiting while the outbox is over ``write_limit``.

        This is the backpressure-aware way to send many messages: a slow peer makes it wait
        instead of growing memory.

        Raises:
            EncodeError, MessageTooLarge, ConnectionClosed: as :meth:`send_data`.
        """
        frame = self._encode(data, metadata)
        outbox = self._outbox
        if outbox.pending > self._settings.write_limit:  # no coroutine call when there is room
            await outbox.wait_for_room()
        self._enqueue(frame, limit=None)

    def _send_blocking(self, data: Any, metadata: Metadata | None, timeout: float | None) -> None:
        """Queue a message from a plain thread, blocking while the outbox is over write_limit.

        The blocking API's ``send``; never call it on the loop thread, which it would block.
        """
        self._outbox.enqueue_when_room(self._encode(data, metadata), timeout)

    def _encode(self, data: Any, metadata: Metadata | None) -> bytes:
        """Encode a message within the limits the peer announced in its handshake."""
        peer = self._peer
        assert peer is not None, "connections are handed out only after the handshake"
        return encode_message(
            data,
            metadata,
            max_message_size=peer.max_message_size,
            max_metadata_size=peer.max_metadata_size,
        )

    def _drop_slow_consumer(self, reason: str) -> None:
        """Drop the connection at once, reported as SLOW_CONSUMER; on the loop thread only, but
        possibly outside any task (scheduled from another thread by :meth:`_evict`), where
        anyio cannot tell the backend: hence the loop handle's clock."""
        self._logger.warning("dropping %s:%s as a slow consumer: %s", self.addr, self.port, reason)
        self._close_deadline = self._loop.time()
        self._lose(reason, code=CloseCode.SLOW_CONSUMER, by_peer=False)

    def _evict(self, reason: str) -> None:
        """Drop a slow consumer from any thread (for a broadcast that found its outbox full).

        Sending stops at once, so that the broadcasts that follow before the loop thread gets
        to it neither queue more nor evict (and log) again.
        """
        if self._outbox.stop():
            self._loop.run_or_schedule(lambda: self._drop_slow_consumer(reason))

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
        if self._receiving:
            raise ConcurrencyError("another task is already receiving from this connection")
        if not self._inbox:
            self._receiving = True
            try:
                # A cancel scope costs more than the rest of this call: only for a timeout.
                if timeout is None:
                    await self._wait_for_message()
                else:
                    with anyio.fail_after(timeout):
                        await self._wait_for_message()
            finally:
                self._receiving = False
        message = self._inbox.popleft()
        self._inbox_bytes -= self._inbox_sizes.popleft()
        if self._room_waiter is not None and not self._queue_full():
            self._room_waiter.set()
            self._room_waiter = None
        return message

    def _queue_full(self) -> bool:
        settings = self._settings
        return (
            len(self._inbox) >= settings.max_queue or self._inbox_bytes >= settings.max_queue_bytes
        )

    async def _wait_for_message(self) -> None:
        while not self._inbox:
            if self._reader_done:
                raise self._closed_error()
            waiter = self._inbox_waiter = anyio.Event()
            await waiter.wait()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        """The next message; the iteration ends when the connection closes normally.

        Raises:
            ConnectionClosedError: the connection broke.
        """
        try:
            return await self.receive()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    def _wake_receiver(self) -> None:
        if self._inbox_waiter is not None:
            self._inbox_waiter.set()
            self._inbox_waiter = None

    async def _queue_message(self, message: Message, size: int) -> None:
        self._inbox.append(message)
        self._inbox_sizes.append(size)
        self._inbox_bytes += size
        self._wake_receiver()
        # Stop reading while the application is behind: TCP then pushes back on the sender.
        while self._queue_full():
            room = self._room_waiter = anyio.Event()
            await room.wait()

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
        self._queue_close(code, reason or "", by_peer=False)

    async def aclose(self, reason: str | None = None, code: int = CloseCode.NORMAL) -> None:
        """Close the connection like :meth:`disconnect` and wait until it is closed.

        Returns within about ``close_timeout`` seconds, whatever the peer does.
        """
        self.disconnect(reason, code)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        await self._closed.wait()

    def _queue_close(self, code: int, reason: str, *, by_peer: bool) -> None:
        def record() -> None:  # under the outbox's lock, with the CLOSE frame queued
            if self._close_info is None:
                self._close_info = (code, reason, by_peer)

        if self._outbox.queue_last(encode_close(code, reason), record):
            self._loop.run_or_schedule(self._start_close_timer)

    def _start_close_timer(self) -> None:
        if self._state is State.OPEN:
            self._state = State.CLOSING
        self._close_deadline = min(
            self._close_deadline, self._loop.time() + self._settings.close_timeout
        )
        if self._read_scope is not None:
            self._read_scope.deadline = self._close_deadline

    def _fail(self, code: int, reason: str) -> None:
        """Close because of an error found on this side of the connection.

        No further message is delivered: whatever arrives until the peer answers is dropped.
        """
        self._discarding = True
        self._queue_close(code, reason, by_peer=False)

    def _lose(
        self,
        reason: str,
        cause: BaseException | None = None,
        code: int = CloseCode.ABNORMAL,
        *,
        by_peer: bool = True,
    ) -> None:
        """Record that the connection was lost without a closing handshake."""
        with self._lock:
            if self._close_info is None:
                self._close_info = (code, reason, by_peer)
                self._close_cause = cause
            self._outbox.closed = True
        if self._read_scope is not None:
            self._read_scope.cancel()

    def _broken(self, error: ConnectionClosedError) -> None:
        """The writer found the connection broken."""
        self._lose(error.reason, error.__cause__)

    # What the keepalive needs (alvaro.aio._keepalive.Pinged); _reads is an attribute.

    def _can_ping(self) -> bool:
        return self._state is State.OPEN and not self._outbox.closed

    def _send_ping(self, payload: bytes) -> None:
        self._enqueue(encode_ping(payload), limit=None)

    def _peer_dead(self, reason: str) -> None:
        """The keepalive found the peer dead (or the connection half-open): nothing more will
        come, so close at once, without waiting for bytes the peer will never take."""
        self._close_deadline = anyio.current_time()
        self._lose(reason, code=CloseCode.TIMEOUT)

    def _closed_error(self) -> ConnectionClosed:
        code, reason, by_peer = self._close_info or (CloseCode.ABNORMAL, "closed", True)
        error = closed_error(code, reason, by_peer=by_peer)
        error.__cause__ = self._close_cause
        return error

    # --- Life cycle (called by Host and Client) ------------------------------------------------

    async def _open(self, deadline: float | None = None) -> None:
        """Run the opening handshake, by ``deadline`` (``anyio.current_time()`` clock) if given,
        else within ``open_timeout``.

        Raises:
            RemoteProtocolError: the peer is not an alvaro peer, or broke the handshake.
            ConnectionClosed: the peer closed the connection (with a CLOSE frame or not).
            TimeoutError: the handshake did not finish within ``open_timeout``.
        """
        self._loop = LoopHandle()
        self._outbox.start(self._loop)
        settings = self._settings
        decoder = self._decoder
        try:
            if deadline is None:
                deadline = anyio.current_time() + settings.open_timeout
            with anyio.fail_at(deadline):
                hello = encode_hello(
                    self._role,
                    max_message_size=settings.max_message_size,
                    max_metadata_size=settings.max_metadata_size,
                    features=decoder.features,
                    auth_required=decoder.login_required,
                )
                await self._transport.send(hello)
                while not (decoder.handshake_complete or decoder.closed):
                    chunk = await self._transport.receive()
                    if not chunk:
                        raise ConnectionClosedError(
                            CloseCode.ABNORMAL,
                            "the peer closed the connection during the opening handshake",
                            by_peer=True,
                        )
                    try:
                        decoder.receive_data(chunk)
                    except RemoteProtocolError as exc:
                        # cast: receive_data() may have changed what the loop condition read.
                        if not cast("bool", decoder.handshake_complete):
                            raise
                        # The handshake is done: the connection opens, delivers what came
                        # before the bad frame, then closes for it (docs/protocol.md, 6.3).
                        self._early_error = exc
        except (RemoteProtocolError, TimeoutError) as exc:
            code = exc.code if isinstance(exc, RemoteProtocolError) else CloseCode.TIMEOUT
            await self._abort(code, str(exc) or "opening handshake timed out")
            raise
        except BaseException:
            # Closed peers, cancellation, anything: never leave the socket open.
            await self._abort(None, "")
            raise
        events = decoder.events()
        self._early_sizes = decoder.message_sizes
        first = events[0]
        if isinstance(first, Close):
            # Refused before the handshake: answer the CLOSE, then report it.
            await self._abort(echo_code(first.code), "")
            raise closed_error(first.code, first.reason, by_peer=True)
        assert isinstance(first, Hello)
        self._peer = first
        self._early_events = events[1:]
        self._state = State.OPEN

    async def _next_handshake_event(self) -> Event:
        """The next event after the HELLOs, for an exchange that runs before :meth:`_serve`
        (the login): PINGs are answered here, PONGs dropped; what the exchange does not take
        stays queued for the read loop. Bound it with a deadline.

        Raises:
            RemoteProtocolError: the peer broke the protocol.
            ConnectionClosedError: the connection broke.
        """
        decoder = self._decoder
        while True:
            while self._early_events:
                event = self._early_events.pop(0)
                if type(event) is Ping:
                    await self._transport.send(encode_pong(event.payload))
                elif type(event) is not Pong:
                    if type(event) is Message:
                        self._early_sizes.pop(0)
                    return event
            if self._early_error is not None:
                error, self._early_error = self._early_error, None
                raise error
            chunk = await self._transport.receive()
            if not chunk:
                raise ConnectionClosedError(
                    CloseCode.ABNORMAL,
                    "the peer closed the connection without a CLOSE frame",
                    by_peer=True,
                )
            try:
                decoder.receive_data(chunk)
            except RemoteProtocolError as exc:
                self._early_error = exc  # after the events that came before it
            self._early_events.extend(decoder.events())
            self._early_sizes.extend(decoder.message_sizes)

    async def _abort(self, code: int | None, reason: str) -> None:
        """Give up on a connection that never opened: say why if possible, then close."""
        if code is not None:
            with anyio.move_on_after(1), anyio.CancelScope(shield=True):
                try:
                    await self._transport.send(encode_close(code, reason))
                except ConnectionClosed:
                    pass
        self._state = State.CLOSED
        timeout = self._settings.close_timeout
        if self._transport.tls is not None:
            # The connection never opened: send close_notify, but do not wait long for the
            # peer's, or a failed handshake would take open_timeout plus close_timeout.
            timeout = min(timeout, _TLS_ABORT_GRACE)
        await self._transport.aclose(timeout)

    async def _serve(
        self,
        on_open: Callable[[], Awaitable[None]],
        handler_lookup: Callable[[], Callable[[Any, Metadata], object] | None],
    ) -> None:
        """Run an opened connection until it is closed; raises only on cancellation.

        ``on_open`` runs first, with the writer already running, so that it may send. Then every
        message goes to the function ``handler_lookup()`` returns when the message arrives, or to
        the receive queue if it returns ``None``.
        """
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._outbox.run, self._drop_slow_consumer, self._broken)
                settings = self._settings
                if settings.ping_interval is not None:
                    tasks.start_soon(
                        self._keepalive.run, self, settings.ping_interval, settings.ping_timeout
                    )
                await on_open()
                with anyio.CancelScope(deadline=self._close_deadline) as scope:
                    self._read_scope = scope
                    await self._read_loop(handler_lookup)
                self._read_scope = None
                if (
                    scope.cancelled_caught
                    and self._close_info is None
                    and self._frame_deadline <= anyio.current_time()
                ):
                    reason = f"a frame took more than {settings.frame_timeout:g} s to arrive"
                    self._logger.warning(
                        "closing the connection to %s:%s: %s", self.addr, self.port, reason
                    )
                    self._fail(CloseCode.TIMEOUT, reason)
                elif scope.cancelled_caught and not self._outbox.done.is_set():
                    self._logger.info(
                        "%s:%s did not answer the close within %g s; dropping the connection",
                        self.addr,
                        self.port,
                        self._settings.close_timeout,
                    )
                self._reader_done = True
                self._wake_receiver()
                if self._outbox.close_queued:
                    # Let the writer flush what is queued and the CLOSE frame, within the deadline.
                    with anyio.move_on_after(max(0.0, self._close_deadline - anyio.current_time())):
                        await self._outbox.done.wait()
                tasks.cancel_scope.cancel()
        finally:
            with self._lock:
                self._outbox.closed = True
                if self._close_info is None:
                    self._close_info = (CloseCode.ABNORMAL, "the connection was cancelled", False)
            self._state = State.CLOSED
            self._reader_done = True
            self._wake_receiver()
            # The close as a whole, TLS's close_notify included, ends by the close deadline.
            timeout = self._settings.close_timeout
            if self._close_deadline < math.inf:
                timeout = min(timeout, max(0.0, self._close_deadline - anyio.current_time()))
            await self._transport.aclose(timeout)
            self._closed.set()

    async def _read_loop(
        self, handler_lookup: Callable[[], Callable[[Any, Metadata], object] | None]
    ) -> None:
        decoder = self._decoder
        transport = self._transport
        events = self._early_events
        sizes = self._early_sizes  # the wire size of each Message in events, in order
        self._early_events = []
        self._early_sizes = []
        error = self._early_error
        frame_timeout = self._settings.frame_timeout
        scope = self._read_scope
        assert scope is not None
        while True:
            count = 0  # Messages of events seen so far, to find each one's size
            if events and self._frame_deadline < math.inf:
                # Delivering may wait for the application: the peer's frame clock must not run
                # meanwhile, nor cancel a callback. Disarmed here, armed again below.
                self._frame_deadline = math.inf
                scope.deadline = self._close_deadline
            for event in events:
                if type(event) is Message:
                    count += 1
                    if self._discarding:
                        continue
                    handler = handler_lookup()
                    if handler is None:
                        await self._queue_message(event, sizes[count - 1])
                        continue
                    try:
                        result = handler(event.data, event.metadata)
                        if result is not None and inspect.iscoroutine(result):
                            await result
                    except Exception:
                        self._logger.exception(
                            "got_data raised for a message from %s:%s; closing that connection",
                            self.addr,
                            self.port,
                        )
                        self._fail(CloseCode.INTERNAL_ERROR, "the application failed")
                        return
                elif type(event) is Ping:
                    self._outbox.queue_pong(event.payload)
                elif type(event) is Close:
                    if self._before_echo is not None and not self._outbox.close_queued:
                        with anyio.move_on_after(self._settings.close_timeout):
                            await self._before_echo()
                    self._peer_closed(event)
                    return
                elif type(event) is Pong:
                    self._keepalive.got_pong(event.payload)
                elif type(event) is Logout:
                    # The decoder lets LOGOUT through only on a host, from a logged-in client,
                    # and refuses messages from then on: the session ends with the connection.
                    self._logger.info("%s logged out from %s:%s", self._user, self.addr, self.port)
                    self._queue_close(CloseCode.NORMAL, "logged out", by_peer=True)
            if error is not None:
                self._log_protocol_error(error)
                self._fail(error.code, str(error))
                return
            if (
                frame_timeout is not None
                and decoder.buffered
                and self._frame_deadline == math.inf
                and not self._outbox.close_queued
            ):
                # A frame has begun: the rest of it must come within frame_timeout, or a peer
                # could hold a buffer open forever by trickling a byte at a time. The clock
                # restarts whenever a frame completes (the deadline is disarmed above), so a
                # steady stream whose reads end inside frames is not trickling. The deadline
                # is set on the read loop's scope rather than a scope per read: a large
                # message takes hundreds of reads, and a new scope costs more than setting one.
                self._frame_deadline = anyio.current_time() + frame_timeout
                scope.deadline = min(self._frame_deadline, self._close_deadline)
            try:
                chunk = await transport.receive()
            except ConnectionClosedError as exc:
                self._lose(exc.reason, exc.__cause__)
                return
            if not chunk:
                partial = " in the middle of a frame" if decoder.buffered else ""
                self._lose(f"the peer closed the connection without a CLOSE frame{partial}")
                return
            self._reads += 1
            try:
                decoder.receive_data(chunk)
            except RemoteProtocolError as exc:
                error = exc  # deliver the frames before the bad one first
            events = decoder.events()
            sizes = decoder.message_sizes

    def _log_protocol_error(self, error: RemoteProtocolError) -> None:
        """Log why the peer's bytes were refused, at most as often as the throttle allows."""
        more = ""
        if self._protocol_errors is not None:
            allowed, suppressed = self._protocol_errors.allow()
            if not allowed:
                return
            if suppressed:
                more = f" ({suppressed} more protocol errors not logged)"
        self._logger.warning(
            "closing the connection to %s:%s: %s%s", self.addr, self.port, error, more
        )

    def _peer_closed(self, event: Close) -> None:
        with self._lock:
            answered = self._outbox.close_queued
            if self._close_info is None:
                self._close_info = (event.code, event.reason, True)
        if not answered:
            # Echo the code, after everything already queued (docs/protocol.md, section 6).
            self._queue_close(echo_code(event.code), "", by_peer=True)
