"""A served connection's read loop: read, decode, deliver in order, answer control frames.

One task per connection runs :func:`read_loop`. It reads large chunks, decodes every frame in
them and delivers each message in order: to the ``got_data`` callback the lookup returns,
awaited here (a slow callback slows only its own connection, and pushes back on the peer
through TCP), or to the bounded receive queue. PINGs are answered, PONGs go to the keepalive,
a CLOSE ends the loop after its echo is queued.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio

from .._close_codes import CloseCode
from ..exceptions import ConnectionClosedError, RemoteProtocolError
from ..protocol import Cancel, Close, Logout, Message, Ping, Pong, ReplyError, ReplyOk, Request

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._types import Metadata
    from ._core import ConnectionCore

__all__ = ("Handlers", "read_loop")


class Handlers(NamedTuple):
    """Where the read loop hands what arrives. Each is looked up when a message or request
    arrives, so that a callback set meanwhile takes over; ``None`` means none is set."""

    data: Callable[[], Callable[[Any, Metadata], object] | None]
    """Messages: ``None`` sends them to the receive queue."""
    request: Callable[[], Callable[[Any, Metadata], object] | None]
    """Requests: ``None`` answers "no_handler"."""


async def read_loop(core: ConnectionCore, handlers: Handlers) -> None:
    """Deliver what the peer sends until it closes, the connection breaks or this side fails
    it; runs inside ``core.read_scope``, whose deadline bounds the frame being received and
    the closing handshake."""
    decoder = core.decoder
    transport = core.transport
    outbox = core.outbox
    events = core.early_events
    sizes = core.early_sizes  # the wire size of each Message in events, in order
    core.early_events = []
    core.early_sizes = []
    error = core.early_error
    frame_timeout = core.settings.frame_timeout
    scope = core.read_scope
    assert scope is not None
    handler_lookup = handlers.data
    while True:
        count = 0  # Messages of events seen so far, to find each one's size
        if events and core.frame_deadline < math.inf:
            # Delivering may wait for the application: the peer's frame clock must not run
            # meanwhile, nor cancel a callback. Disarmed here, armed again below.
            core.frame_deadline = math.inf
            scope.deadline = core.close_deadline
        for event in events:
            if type(event) is Message:
                count += 1
                if core.discarding:
                    continue
                handler = handler_lookup()
                if handler is None:
                    await core.inbox.put(event, sizes[count - 1])
                    continue
                try:
                    result = handler(event.data, event.metadata)
                    if result is not None and inspect.iscoroutine(result):
                        await result
                except Exception:
                    core.logger.exception(
                        "got_data raised for a message from %s; closing that connection",
                        core.where,
                    )
                    core.fail(CloseCode.INTERNAL_ERROR, "the application failed")
                    return
            elif type(event) is Ping:
                outbox.queue_pong(event.payload)
            elif type(event) is Close:
                if core.before_echo is not None and not outbox.close_queued:
                    with anyio.move_on_after(core.settings.close_timeout):
                        await core.before_echo()
                core.peer_closed(event)
                return
            elif type(event) is Pong:
                core.keepalive.got_pong(event.payload)
            elif type(event) is Request:
                count += 1
                if not core.discarding:
                    core.request_table().received(event, handlers.request())
            elif type(event) is ReplyOk or type(event) is ReplyError:
                count += 1
                core.request_table().replied(event)
            elif type(event) is Cancel:
                if core.requests is not None:
                    core.requests.cancelled(event)
            elif type(event) is Logout:
                # The decoder lets LOGOUT through only on a host, from a logged-in client, and
                # refuses messages from then on: the session ends with the connection.
                core.logger.info("%s logged out from %s", core.user, core.where)
                core.queue_close(CloseCode.NORMAL, "logged out", by_peer=True)
        if error is not None:
            core.log_protocol_error(error)
            core.fail(error.code, str(error))
            return
        if (
            frame_timeout is not None
            and decoder.buffered
            and core.frame_deadline == math.inf
            and not outbox.close_queued
        ):
            # A frame has begun: the rest of it must come within frame_timeout, or a peer could
            # hold a buffer open forever by trickling a byte at a time. The clock restarts
            # whenever a frame completes (the deadline is disarmed above), so a steady stream
            # whose reads end inside frames is not trickling. The deadline is set on the read
            # loop's scope rather than a scope per read: a large message takes hundreds of
            # reads, and a new scope costs more than setting one.
            core.frame_deadline = anyio.current_time() + frame_timeout
            scope.deadline = min(core.frame_deadline, core.close_deadline)
        try:
            chunk = await transport.receive()
        except ConnectionClosedError as exc:
            core.lose(exc.reason, exc.__cause__)
            return
        if not chunk:
            partial = " in the middle of a frame" if decoder.buffered else ""
            core.lose(f"the peer closed the connection without a CLOSE frame{partial}")
            return
        core.reads += 1
        try:
            decoder.receive_data(chunk)
        except RemoteProtocolError as exc:
            error = exc  # deliver the frames before the bad one first
        events = decoder.events()
        sizes = decoder.message_sizes
