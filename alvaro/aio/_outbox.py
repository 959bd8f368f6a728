"""What waits to be sent on one connection, and the task that writes it.

Any thread may queue a frame (``send_data`` is safe from any thread): the outbox is a list of
encoded frames under one lock, and the writer task drains the whole list in one write whenever
it is not empty, so many small messages cost one system call. A frame that finds the writer idle
goes straight to the socket where the transport allows it from the calling thread (on the loop
thread always), saving the writer's task switch.

Bounds: ``outbox_limit`` for :meth:`Outbox.enqueue` with a limit (``send_data``), room below
``write_limit`` for the senders that wait (:meth:`Outbox.wait_for_room` in async code,
:meth:`Outbox.enqueue_when_room` from a plain thread), and a budget of their own for PONGs, which
must not wait behind messages. The list is one lane today; control frames, messages and the
chunks of large transfers are to become lanes of their own, taken in that order.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING

import anyio

from ..exceptions import ConnectionClosedError, OutboxFull
from ..protocol import encode_pong
from ._loop import Flag

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable

    from .._settings import Settings
    from ..exceptions import ConnectionClosed
    from ._io import Transport
    from ._loop import LoopHandle

__all__ = ("Outbox",)

# How long the writer lets a streaming thread fill the outbox; see Outbox.run.
_STREAM_PAUSE = 0.0005
# Messages closer together than this after a direct write are batched by the writer; see enqueue.
_DIRECT_WRITE_GAP = 0.00005
# PONGs waiting in the outbox, in bytes, beyond which a new PING's answer replaces the newest
# waiting PONG instead of joining it: a peer that sends PINGs and reads nothing cannot grow the
# outbox (docs/protocol.md, 5.2; docs/limits.md). About 7,000 empty PONGs or 15 of the largest.
_PONG_BUDGET = 64 * 1024
# write_timeout applies to each piece of this size: a peer that takes nothing for that long is
# stuck, while a large batch on a slow but steady link may take longer as a whole.
_WRITE_PIECE = 1024 * 1024


class Outbox:
    """The frames waiting to be sent to one peer, and the writer that sends them.

    The connection owns one and shares its :attr:`lock`, under which it also records how the
    connection closed. Every method may be called from any thread unless its docstring says
    otherwise.

    Args:
        transport: where the frames go.
        settings: ``write_limit`` and ``write_timeout``.
        logger: where the frames that could not be sent are reported.
        closed_error: the exception to raise for a send after sending has stopped.
    """

    __slots__ = (
        "_blocked_senders",
        "_closed_error",
        "_drained",
        "_frames",
        "_last_direct_write",
        "_last_pong",
        "_logger",
        "_loop",
        "_pong_bytes",
        "_room",
        "_settings",
        "_thread_sent",
        "_transport",
        "_wake",
        "_writer_idle",
        "close_queued",
        "closed",
        "done",
        "lock",
        "pending",
        "unsent",
    )

    def __init__(
        self,
        transport: Transport,
        settings: Settings,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        *,
        closed_error: Callable[[], ConnectionClosed],
    ) -> None:
        self._transport = transport
        self._settings = settings
        self._logger = logger
        self._closed_error = closed_error
        self.lock = threading.Lock()
        """Guards everything here, and the connection's record of how it closed."""
        self._frames: list[bytes] = []
        self.pending = 0
        """Bytes queued or being written."""
        self.closed = False
        """No more frames are taken: a close is queued, or the connection is lost."""
        self.close_queued = False
        """The CLOSE frame is queued; the writer stops after sending it."""
        self.unsent = 0
        """Frames never fully handed to the network because the connection closed first."""
        self.done = Flag()
        """Set when the writer has finished."""
        # PONGs in the list (not yet taken by the writer): their bytes, and the newest's index.
        self._pong_bytes = 0
        self._last_pong: int | None = None
        self._writer_idle = False
        self._thread_sent = False  # a plain thread queued frames while the writer was busy
        self._last_direct_write = -math.inf
        # Plain threads (the blocking API) wait here for room; made on first need.
        self._room: threading.Condition | None = None
        self._blocked_senders = 0
        self._drained: anyio.Event | None = None  # async senders wait here for room
        # Made on the loop by start().
        self._loop: LoopHandle
        self._wake: anyio.Event

    def _peer(self) -> str:
        """The peer as messages name it."""
        return f"{self._transport.peer_addr}:{self._transport.peer_port}"

    def start(self, loop: LoopHandle) -> None:
        """Get ready to run on ``loop``; on the loop thread, before :meth:`run`."""
        self._loop = loop
        self._wake = anyio.Event()

    # --- Queueing ---------------------------------------------------------------------------

    def enqueue(self, frame: bytes, *, limit: int | None) -> None:
        """Queue ``frame``, or write it at once if nothing is waiting; any thread.

        Raises:
            OutboxFull: more than ``limit`` bytes wait already (``None``: no limit).
            ConnectionClosed: sending has stopped.
        """
        with self.lock:
            if self.closed:
                raise self._closed_error()
            if limit is not None and self.pending > limit:
                raise OutboxFull(
                    f"{self.pending} bytes are waiting to be sent to {self._peer()} "
                    f"(outbox_limit is {limit}); use 'await send()' to wait for room"
                )
            burst = False
            if self._writer_idle and not self.pending:
                # Nothing is queued or being written: write straight to the socket, saving the
                # writer's task switch, unless the last such write was a moment ago. Messages
                # that come that close together form a burst, which the writer sends in one
                # write instead of one system call each. (The transport may refuse a direct
                # write from this thread: then the loop thread makes it, _write_for_thread.)
                now = time.monotonic()
                if now - self._last_direct_write >= _DIRECT_WRITE_GAP:
                    self._last_direct_write = now
                    written = self._transport.send_now(frame)
                    if written == len(frame):
                        return
                    frame = frame[written:]
                else:
                    burst = True
            self._frames.append(frame)
            self.pending += len(frame)
            if self._loop.in_loop_thread():
                if not self._writer_idle:
                    return
                self._writer_idle = False
                wake_here = True
            else:
                if not self._writer_idle:
                    # A thread sends while the writer is busy: it streams, and the writer may
                    # let it fill a batch (see run). A message that finds the writer idle does
                    # not count: a lone one (a request awaiting its reply) must never wait for
                    # such a pause.
                    self._thread_sent = True
                    return
                self._writer_idle = False
                wake_here = False
        if wake_here:
            self._wake.set()
        elif burst:
            self._loop.call_soon(self._wake_writer)
        else:
            self._loop.call_soon(self._write_for_thread)

    async def wait_for_room(self) -> None:
        """Wait while more than ``write_limit`` bytes wait to be sent; on the loop thread."""
        limit = self._settings.write_limit
        while self.pending > limit and not self.closed:
            if self._drained is None:
                self._drained = anyio.Event()
            await self._drained.wait()

    def enqueue_when_room(self, frame: bytes, timeout: float | None) -> None:
        """Queue ``frame`` from a plain thread, first blocking while more than ``write_limit``
        bytes wait; never on the loop thread, which it would block.

        Raises:
            TimeoutError: no room within ``timeout`` seconds.
            ConnectionClosed: sending has stopped.
        """
        limit = self._settings.write_limit
        # Unlocked first look: below the limit (the usual case) there is nothing to wait for,
        # and a stale read only lets one more message in.
        if self.pending > limit:
            with self.lock:
                if self._room is None:
                    self._room = threading.Condition(self.lock)
                room = self._room
            with room:
                if self.pending > limit and not self.closed:
                    self._blocked_senders += 1
                    try:
                        if not room.wait_for(lambda: self.pending <= limit or self.closed, timeout):
                            raise TimeoutError(
                                f"no room in the outbox to {self._peer()} within {timeout:g} s"
                            )
                    finally:
                        self._blocked_senders -= 1
        self.enqueue(frame, limit=None)

    def queue_pong(self, payload: bytes) -> None:
        """Queue the PONG for a peer's PING; on the loop thread.

        PONGs bypass ``outbox_limit`` (keepalive must work while messages wait), so they have a
        bound of their own: past ``_PONG_BUDGET`` bytes of waiting PONGs, the newest waiting
        one is replaced by this answer, which then answers every PING since (as WebSocket
        allows, RFC 6455 section 5.5.3). A peer that floods PINGs and reads nothing holds at
        most that much here, plus the batch the writer is stuck on.
        """
        frame = encode_pong(payload)
        with self.lock:
            if self.closed:
                return  # closing meanwhile (perhaps from another thread): no answer due
            newest = self._last_pong
            if newest is not None and self._pong_bytes + len(frame) > _PONG_BUDGET:
                change = len(frame) - len(self._frames[newest])
                self._frames[newest] = frame
                self._pong_bytes += change
                self.pending += change
                return
            self._last_pong = len(self._frames)
            self._frames.append(frame)
            self._pong_bytes += len(frame)
            self.pending += len(frame)
            wake = self._writer_idle
            self._writer_idle = False
        if wake:
            self._wake.set()

    def queue_last(self, frame: bytes, record: Callable[[], None]) -> bool:
        """Queue ``frame`` (a CLOSE) as the last one and stop taking more; any thread.

        ``record`` runs under :attr:`lock` when the frame is queued. Returns ``False`` (and
        queues nothing) if sending had already stopped.
        """
        with self.lock:
            if self.close_queued or self.closed:
                return False
            self.close_queued = True
            self.closed = True
            record()
            self._frames.append(frame)
            self.pending += len(frame)
            wake = self._writer_idle
            self._writer_idle = False
        if wake:
            self._loop.run_or_schedule(self._wake_writer)
        return True

    def stop(self) -> bool:
        """Take no more frames; return whether it took them until now. Hold no lock to call."""
        with self.lock:
            was_open = not self.closed
            self.closed = True
        return was_open

    # --- Writing (on the loop thread) -------------------------------------------------------

    def _wake_writer(self) -> None:
        self._wake.set()

    def _write_for_thread(self) -> None:
        """Write what plain threads queued while the writer was idle; on the loop thread,
        scheduled by the send that found the writer idle.

        Straight to the socket when it takes it all, as :meth:`enqueue` does on the loop thread
        (a thread may not: asyncio's transports are not thread-safe), which saves the writer's
        task switch; whatever is left, and any CLOSE, goes to the writer, which is still waiting
        to be woken.
        """
        with self.lock:
            frames = self._frames
            if frames and not self.close_queued and not self.closed:
                data = frames[0] if len(frames) == 1 else b"".join(frames)
                written = self._transport.send_now(data)
                # As for a direct write: a thread's next message within _DIRECT_WRITE_GAP is
                # part of a burst, which goes to the writer to be batched.
                self._last_direct_write = time.monotonic()
                if written:
                    self._frames = [] if written == len(data) else [data[written:]]
                    self._pong_bytes = 0
                    self._last_pong = None
                    self._written(written)
                if written == len(data):
                    self._writer_idle = True
                    return
        self._wake.set()

    def _written(self, count: int) -> None:
        """``count`` queued bytes went out: let waiting senders in; hold :attr:`lock` to call."""
        self.pending -= count
        if self._blocked_senders and self._room is not None:
            self._room.notify_all()
        if self._drained is not None:
            self._drained.set()
            self._drained = None

    async def run(
        self,
        on_stuck: Callable[[str], None],
        on_broken: Callable[[ConnectionClosedError], None],
    ) -> None:
        """The writer task: send what is queued until the CLOSE frame has gone, the connection
        breaks (``on_broken``), or the peer takes nothing for ``write_timeout`` (``on_stuck``,
        with the reason). Then count and report what was never sent."""
        transport = self._transport
        write_timeout = self._settings.write_timeout
        batch_floor = self._settings.write_limit // 4
        streaming = False  # the last loop wrote, rather than woke from idle
        in_flight = 0  # messages in the write under way
        try:
            while True:
                if streaming and self._thread_sent and self.pending < batch_floor:
                    # A plain thread is streaming messages and only a few came in during the last
                    # write. Writing them at once would take the GIL back from that thread after
                    # every few messages; a short pause lets it queue a large batch instead.
                    # Never taken after idle, so a lone message goes out at once.
                    self._thread_sent = False
                    await anyio.sleep(_STREAM_PAUSE)
                with self.lock:
                    frames = self._frames
                    if frames:
                        self._frames = []
                        self._pong_bytes = 0
                        self._last_pong = None
                        closing = self.close_queued
                    else:
                        self._writer_idle = True
                        wake = self._wake = anyio.Event()
                if not frames:
                    streaming = False
                    await wake.wait()
                    continue
                streaming = True
                data = frames[0] if len(frames) == 1 else b"".join(frames)
                in_flight = len(frames) - closing
                if write_timeout is None:
                    await transport.send(data)
                elif not await self._send_in_time(data, write_timeout):
                    on_stuck(
                        f"the peer took nothing of what was sent to it for {write_timeout:g} s"
                    )
                    return
                in_flight = 0
                with self.lock:
                    self._written(len(data))
                if closing:
                    return  # the CLOSE frame was the last of this batch
        except ConnectionClosedError as exc:
            on_broken(exc)
        finally:
            with self.lock:
                self.closed = True
                unsent = self.unsent = len(self._frames) + in_flight
                if self._room is not None:
                    self._room.notify_all()
            if unsent:
                self._logger.warning(
                    "%d queued message(s) to %s were not sent: the connection closed",
                    unsent,
                    self._peer(),
                )
            if self._drained is not None:
                self._drained.set()
            self.done.set()

    async def _send_in_time(self, data: bytes, timeout: float) -> bool:
        """Send ``data``, each piece of it within ``timeout``; ``False`` if the peer stopped
        taking bytes for that long."""
        transport = self._transport
        if len(data) <= _WRITE_PIECE:
            with anyio.move_on_after(timeout):
                await transport.send(data)
                return True
            return False
        # In pieces, each with its own deadline: the timeout is on taking no bytes at all, and a
        # large batch on a slow but steady link may take longer than that as a whole.
        with memoryview(data) as view:
            for start in range(0, len(data), _WRITE_PIECE):
                with anyio.move_on_after(timeout):
                    await transport.send(view[start : start + _WRITE_PIECE])
                    continue
                return False
        return True
