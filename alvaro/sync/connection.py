"""A connection seen from blocking code: a thin facade over :class:`alvaro.aio.Connection`."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .._aliases import ConnectionAliases
from .._close_codes import CloseCode
from ..aio._core import core_of
from ..exceptions import ConnectionClosedOK
from ._handoff import HANDOFF_FACTOR, Inbox
from ._loop import check_not_loop_thread
from ._requests import SyncRequests

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .._types import Metadata
    from ..aio import Connection as AsyncConnection, State
    from ..protocol import Message
    from ..tls import TLSInfo
    from ._base import Runner

__all__ = ("Connection",)


class Connection(ConnectionAliases):
    """One connection, for blocking code: a Host's view of a client, or a Client's link to its host.

    Every method may be called from any thread, including from inside alvaro.sync callbacks.
    The blocking ones (:meth:`send`, :meth:`receive` with a timeout, :meth:`close`) raise
    :class:`~alvaro.WrongThreadError` on alvaro's event-loop thread instead of freezing it.
    """

    def __init__(self, connection: AsyncConnection, runner: Runner) -> None:
        self._aio = connection
        self._core = core_of(connection)
        self._inbox = Inbox(HANDOFF_FACTOR * self._core.settings.max_queue)
        self._closed = threading.Event()
        # Wakes the owner's dispatcher if it holds the loop back; see disconnect().
        self._kick = runner.dispatcher.kick
        self._requests = SyncRequests(self._core, runner)

    # --- Information ---------------------------------------------------------------------------

    @property
    def addr(self) -> str:
        """The peer's IP address."""
        return self._aio.addr

    @property
    def port(self) -> int:
        """The peer's TCP port."""
        return self._aio.port

    @property
    def local_port(self) -> int:
        """This end's TCP port."""
        return self._aio.local_port

    @property
    def state(self) -> State:
        """Where the connection is in its life."""
        return self._aio.state

    @property
    def is_open(self) -> bool:
        """Whether messages can be sent."""
        return self._aio.is_open

    @property
    def close_code(self) -> int | None:
        """Why the connection closed, or ``None`` while no close has started."""
        return self._aio.close_code

    @property
    def close_reason(self) -> str:
        """The reason sent with the close, or alvaro's description of what ended it."""
        return self._aio.close_reason

    @property
    def closed_by_peer(self) -> bool | None:
        """``True`` if the peer or the network ended the connection, ``False`` if this side did."""
        return self._aio.closed_by_peer

    @property
    def latency(self) -> float | None:
        """The round trip of the last keepalive ping, in seconds, or ``None`` before one."""
        return self._aio.latency

    @property
    def unsent(self) -> int:
        """How many queued messages were never sent because the connection closed first."""
        return self._aio.unsent

    @property
    def tls(self) -> TLSInfo | None:
        """What TLS negotiated and the peer's certificate; ``None`` on a plaintext connection."""
        return self._aio.tls

    @property
    def user(self) -> str | None:
        """The name the peer logged in with (on a host that requires login), or ``None``.

        On a host, set before ``logged_in`` and ``new_client`` run; on a client, once logged in.
        """
        return self._aio.user

    @property
    def peer_max_message_size(self) -> int:
        """The largest message the peer accepts, from its handshake."""
        return self._aio.peer_max_message_size

    def __repr__(self) -> str:
        return f"<alvaro.sync.Connection {self.addr}:{self.port} {self.state.value}>"

    # --- Sending -------------------------------------------------------------------------------

    def send_data(self, data: Any, metadata: Metadata | None = None) -> None:
        """Queue a message and return at once; never blocks.

        The calling thread encodes the message and appends it to the connection's outbox; the
        event loop is woken only when the outbox was empty, so sending costs no cross-thread
        round trip. Messages sent from one thread arrive in the order sent.

        Raises:
            EncodeError, MessageTooLarge, OutboxFull, ConnectionClosed: as in alvaro.aio.
        """
        self._aio.send_data(data, metadata)

    def send(
        self, data: Any, metadata: Metadata | None = None, timeout: float | None = None
    ) -> None:
        """Queue a message, first blocking while more than ``write_limit`` bytes wait to be sent.

        Raises:
            TimeoutError: no room within ``timeout`` seconds.
            EncodeError, MessageTooLarge, ConnectionClosed: as :meth:`send_data`.
            WrongThreadError: called on the event-loop thread.
        """
        check_not_loop_thread("send()")
        self._core.send_blocking(data, metadata, timeout)

    # --- Requests ------------------------------------------------------------------------------

    def request(
        self, data: Any, metadata: Metadata | None = None, *, timeout: float | None = None
    ) -> Message:
        """Ask the peer and block until its answer comes: its ``got_request``'s return value.

        As :meth:`alvaro.aio.Connection.request`: ``timeout`` ``None`` is the
        ``request_timeout`` setting (30 s), ``math.inf`` waits as long as it takes.

        Raises:
            TimeoutError, RemoteError, ConnectionClosed, EncodeError, MessageTooLarge: as in
                alvaro.aio.
            WrongThreadError: called on the event-loop thread.
        """
        check_not_loop_thread("request()")
        return self._requests.ask(data, metadata, timeout)

    def request_nowait(
        self,
        data: Any,
        metadata: Metadata | None = None,
        *,
        on_reply: Callable[[Message], object],
        on_error: Callable[[Exception], object] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Ask the peer and return at once; the answer goes to ``on_reply(message)``, a failure
        (``TimeoutError``, ``RemoteError``, ``ConnectionClosed``, ...) to ``on_error(error)``.

        For GUIs: both run where the other callbacks do, on the dispatcher thread or through
        ``dispatch`` (a Tk or Qt window's thread), so the GUI's main loop never waits. Without
        ``on_error`` a failure is logged.

        Raises:
            WrongThreadError: called on the event-loop thread (use alvaro.aio there).
            TooManyRequests: ``max_pending_requests`` of this connection wait already. (Every
                other failure, a question that cannot be encoded included, goes to
                ``on_error``.)
        """
        check_not_loop_thread("request_nowait()")
        self._requests.ask_nowait(data, metadata, timeout, on_reply, on_error)

    @property
    def late_replies(self) -> int:
        """Answers that arrived after their request had ended: dropped and counted."""
        return self._aio.late_replies

    # --- Receiving -----------------------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> Message:
        """Return the next message (when no ``got_data`` callback takes them).

        Args:
            timeout: seconds to wait; ``None`` waits as long as it takes, ``0`` only polls.

        Raises:
            TimeoutError: no message within ``timeout``.
            ConnectionClosedOK, ConnectionClosedError: the connection closed and every message
                was taken.
            WrongThreadError: a waiting call on the event-loop thread.
        """
        if timeout != 0:
            check_not_loop_thread("receive()")
        return self._inbox.get(timeout)

    def __iter__(self) -> Iterator[Message]:
        """Iterate over messages until the connection closes normally."""
        while True:
            try:
                yield self.receive()
            except ConnectionClosedOK:
                return

    # --- Closing -------------------------------------------------------------------------------

    def disconnect(self, reason: str | None = None, code: int = CloseCode.NORMAL) -> None:
        """Close the connection and return at once; idempotent.

        Everything queued is sent first, then the close ``code`` and ``reason``.
        """
        self._aio.disconnect(reason, code)
        # The loop may be waiting for callbacks to catch up before reading on; a closing
        # connection stops waiting, so the peer's answer is read even if this very thread (a
        # callback) is the one that would have caught up.
        self._kick()
        self._inbox.kick()

    def close(
        self, reason: str | None = None, code: int = CloseCode.NORMAL, timeout: float | None = None
    ) -> bool:
        """Close the connection and wait until it is closed; return whether it is.

        The connection itself gives up after ``close_timeout``; ``timeout`` bounds this wait.
        """
        check_not_loop_thread("close()")
        self.disconnect(reason, code)
        return self.wait_closed(timeout)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the connection is closed; return whether it is."""
        return self._closed.wait(timeout)

    # --- Called by the sync Host and Client on the loop --------------------------------------

    def _finished(self) -> None:
        self._inbox.close(self._core.closed_error())
        self._closed.set()
