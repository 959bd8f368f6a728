"""The asyncio-native transport: what ``alvaro.aio`` uses on asyncio instead of anyio's streams.

On trio, alvaro talks to the network through anyio. On asyncio, anyio's stream adds a task switch
to every send and two ``epoll_ctl`` calls to every receive, and each read allocates a fresh
256 KiB buffer. This module has the same interface as the anyio transport of
``anyio_tcp`` but sits directly on asyncio's ``BufferedProtocol``:

* reads go into one scratch buffer shared by every connection of the loop (the protocol copies
  each read out at once, on the loop thread), so an idle connection holds no buffer at all;
* a send is ``transport.write()``, which writes straight to the socket when nothing is buffered;
* reading pauses while more than ``_READ_HIGH`` received bytes wait for the reader, so a slow
  application still pushes back on the sender through TCP.

Only this module imports asyncio; the rest of ``alvaro.aio`` stays backend-neutral.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
from collections import deque
from typing import TYPE_CHECKING, cast

import anyio

from ..._close_codes import CloseCode
from ...exceptions import ConnectionClosedError
from .base import split_address

if TYPE_CHECKING:
    from collections.abc import Awaitable

__all__ = ("AsyncioTransport", "accept", "open_connection")

_SCRATCH_SIZE = 256 * 1024  # one recv_into() takes at most this much
_READ_HIGH = 256 * 1024  # pause reading while more than this waits for receive()
_WRITE_SLICE = 256 * 1024  # larger sends are handed to asyncio in slices of this size
_scratch_buffers: dict[asyncio.AbstractEventLoop, bytearray] = {}


def _scratch(loop: asyncio.AbstractEventLoop) -> bytearray:
    # Safe to share: buffer_updated() copies the data out before the loop runs anything else.
    buffer = _scratch_buffers.get(loop)
    if buffer is None:
        if len(_scratch_buffers) > 16:  # forget loops that have ended (tests start many)
            for old in [old for old in _scratch_buffers if old.is_closed()]:
                del _scratch_buffers[old]
        buffer = _scratch_buffers[loop] = bytearray(_SCRATCH_SIZE)
    return buffer


def _lost(doing: str, exc: BaseException | None) -> ConnectionClosedError:
    detail = (str(exc) or type(exc).__name__) if exc is not None else "the connection closed"
    error = ConnectionClosedError(
        CloseCode.ABNORMAL, f"connection lost while {doing}: {detail}", by_peer=True
    )
    error.__cause__ = exc
    return error


class _Protocol(asyncio.BufferedProtocol):
    """Collects what arrives and wakes the one task that reads or writes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._scratch = _scratch(loop)
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.reading_paused = False
        self.eof = False
        self.lost = False
        self.lost_error: BaseException | None = None
        self.writing_paused = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._write_waiter: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] = loop.create_future()

    # asyncio calls these on the loop thread.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        with memoryview(self._scratch) as view:
            self.chunks.append(view[:nbytes].tobytes())
        self.buffered += nbytes
        if self.buffered > _READ_HIGH and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return True  # keep the transport open: alvaro closes it itself, after a last write

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.lost_error = exc
        self._wake_reader()
        self._wake_writer()
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_writer()

    # Used by AsyncioTransport.

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_readable(self) -> None:
        waiter = self._read_waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._read_waiter = None

    async def wait_writable(self) -> None:
        waiter = self._write_waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._write_waiter = None

    def closed(self) -> Awaitable[None]:
        return self._closed


class AsyncioTransport:
    """A connected TCP stream on asyncio, with the interface of the anyio transport."""

    __slots__ = (
        "_loop_thread",
        "_protocol",
        "_transport",
        "local_host",
        "local_port",
        "peer_addr",
        "peer_port",
    )

    tls = None  # a plaintext connection

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        # Made on the loop: asyncio's transports may only be used from this thread.
        self._loop_thread = threading.get_ident()
        self.peer_addr, self.peer_port = split_address(transport.get_extra_info("peername"))
        self.local_host, self.local_port = split_address(transport.get_extra_info("sockname"))

    async def receive(self) -> bytes:
        """Return the next bytes from the peer, or ``b""`` once the peer has closed its side.

        Raises:
            ConnectionClosedError: the connection broke.
        """
        protocol = self._protocol
        while not protocol.chunks:
            if protocol.lost:
                if protocol.lost_error is not None:
                    raise _lost("receiving", protocol.lost_error)
                return b""
            if protocol.eof:
                return b""
            await protocol.wait_readable()
        # One chunk at a time: joining them would copy every byte once more.
        data = protocol.chunks.popleft()
        protocol.buffered -= len(data)
        if protocol.reading_paused and protocol.buffered <= _READ_HIGH // 2:
            protocol.reading_paused = False
            self._transport.resume_reading()
        return data

    def send_now(self, data: bytes) -> int:
        """Hand ``data`` to asyncio at once if nothing is buffered; return how much was taken.

        ``transport.write()`` writes straight to the socket and buffers only what the socket
        does not take, so the message is as good as sent, in order. Only on the loop's thread:
        asyncio's transports are not thread-safe (a write that meets an error, or fills the
        socket, schedules work on the loop), so from any other thread this takes nothing and
        the writer task sends ``data``.
        """
        protocol = self._protocol
        if threading.get_ident() != self._loop_thread or len(data) > _WRITE_SLICE:
            # Large data goes through send(), in slices: handed over whole, asyncio would copy
            # what the socket does not take and shift that copy after every partial send.
            return 0
        if protocol.lost or protocol.writing_paused or self._transport.get_write_buffer_size():
            return 0
        self._transport.write(data)
        return len(data)

    async def send(self, data: bytes | memoryview) -> None:
        """Send ``data``; returns once asyncio's write buffer is below its high-water mark.

        Raises:
            ConnectionClosedError: the connection broke or was closed.
        """
        protocol = self._protocol
        if protocol.lost or self._transport.is_closing():
            raise _lost("sending", protocol.lost_error)
        if len(data) <= _WRITE_SLICE:
            self._transport.write(data)
        else:
            # In slices, waiting for the socket between them: given megabytes at once, asyncio
            # would copy what the socket does not take into its buffer and then shift that
            # buffer after every partial send (CPython 3.11), which made large messages slow.
            with memoryview(data) as view:
                for start in range(0, len(data), _WRITE_SLICE):
                    while protocol.writing_paused and not protocol.lost:
                        await protocol.wait_writable()
                    if cast("bool", protocol.lost):  # cast: the wait may have changed it
                        break
                    self._transport.write(view[start : start + _WRITE_SLICE])
        while protocol.writing_paused and not protocol.lost:
            await protocol.wait_writable()
        # cast: the wait above may have changed what the first check read.
        if cast("bool", protocol.lost) and protocol.lost_error is not None:
            raise _lost("sending", protocol.lost_error)

    async def aclose(self, timeout: float = math.inf) -> None:
        """Close: flush what asyncio buffered, within ``timeout`` seconds, then drop. Never raises.

        Runs to completion even while the calling task is being cancelled.
        """
        transport = self._transport
        if not transport.is_closing():
            transport.close()  # sends what is buffered, then closes
        if self._protocol.lost:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(timeout) as scope:
            await self._protocol.closed()
        if scope.cancelled_caught:
            transport.abort()  # the peer does not take what is buffered: drop it


async def open_connection(host: str, port: int) -> AsyncioTransport:
    """Connect to ``host:port``, trying each address it resolves to in turn.

    Raises:
        OSError: the connection failed; the caller turns this into ConnectError.
    """
    loop = asyncio.get_running_loop()
    # Addresses are tried one after the other: asyncio's happy-eyeballs race can leave a socket
    # open when it is cancelled (seen on CPython 3.11), and alvaro must never leak one.
    transport, protocol = await loop.create_connection(lambda: _Protocol(loop), host, port)
    return AsyncioTransport(transport, protocol)


async def accept(listening: socket.socket) -> AsyncioTransport:
    """Accept one connection on a listening socket.

    Raises:
        OSError: accept() failed (for example, out of file descriptors).
    """
    loop = asyncio.get_running_loop()
    sock, _ = await loop.sock_accept(listening)
    try:
        # asyncio turns Nagle's algorithm off only for the sockets it connects or accepts itself:
        # left on, a burst of small replies waits for the peer's delayed ACK (40 ms on Linux).
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport, protocol = await loop.connect_accepted_socket(lambda: _Protocol(loop), sock)
    except BaseException:
        sock.close()
        raise
    return AsyncioTransport(transport, protocol)
