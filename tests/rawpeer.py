"""A raw alvaro peer for fault tests: speaks bytes on an anyio TCP stream, encoded by hand.

:class:`RawPeer` wraps one connected stream. What the other side sends is fed to a
:class:`~alvaro.protocol.Decoder` as it arrives, so tests can wait for events (``HELLO``, ``CLOSE``,
``PONG``...) and read until EOF. :func:`raw_server` is a fake host that hands every accepted
connection to a test's handler. Every read here waits without a limit of its own: callers bound
their waits with ``anyio.fail_after``.
"""

from __future__ import annotations

import socket
import struct
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.abc

from alvaro.exceptions import RemoteProtocolError
from alvaro.protocol import Close, Decoder, Event, FrameType, Hello, Role, encode_hello

from .helpers import reset_on_close

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ("RawPeer", "data_frame", "frame_header", "raw_server", "stalled_reader")

E = TypeVar("E", bound=Event)

_HEADER = struct.Struct("!IBB")


def data_frame(meta: bytes, payload: bytes, flags: int = 0) -> bytes:
    """A DATA frame built from raw metadata and payload bytes, valid or not."""
    body = struct.pack("!I", len(meta)) + meta + payload
    return _HEADER.pack(len(body), FrameType.DATA, flags) + body


def frame_header(length: int, frame_type: int, flags: int = 0) -> bytes:
    """The 6-byte header of a frame, whatever its type and length."""
    return _HEADER.pack(length, frame_type, flags)


class RawPeer:
    """One end of a TCP connection that speaks alvaro by hand.

    Args:
        stream: the connected stream.
        role: this end's role; the decoder expects the other one in the peer's HELLO.
    """

    def __init__(self, stream: anyio.abc.SocketStream, role: Role) -> None:
        self.stream = stream
        self.decoder = Decoder(role)
        #: Every event decoded so far, oldest first.
        self.events: list[Event] = []
        #: Every byte received so far.
        self.received = bytearray()
        #: The error the decoder raised, if the peer's bytes broke the protocol.
        self.error: RemoteProtocolError | None = None
        #: Whether the stream reached EOF (or broke: then ``reset`` is set too).
        self.eof = False
        self.reset = False
        self._seen = 0
        self._local_port = int(stream.extra(anyio.abc.SocketAttribute.local_port))

    @classmethod
    async def connect(cls, port: int) -> RawPeer:
        """Connect to 127.0.0.1:port as a raw client."""
        return cls(await anyio.connect_tcp("127.0.0.1", port), "client")

    @property
    def local_port(self) -> int:
        """This end's port: the ``conn.port`` the host sees (known after closing too)."""
        return self._local_port

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def send_eof(self) -> None:
        """Close the write side only (TCP half-close)."""
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def reset_close(self) -> None:
        """Close with a TCP reset (RST) instead of an orderly FIN: SO_LINGER on, timeout 0."""
        reset_on_close(self.stream)
        await self.stream.aclose()

    async def read_chunk(self) -> bool:
        """Read once and decode what arrived; return False at EOF (or reset)."""
        if self.eof:
            return False
        try:
            chunk = await self.stream.receive()
        except anyio.EndOfStream:
            self.eof = True
            return False
        except anyio.BrokenResourceError:
            self.eof = self.reset = True
            return False
        self.received += chunk
        if self.error is None:
            try:
                self.decoder.receive_data(chunk)
            except RemoteProtocolError as exc:
                self.error = exc
            self.events.extend(self.decoder.events())
        return True

    async def read_until_eof(self) -> list[Event]:
        """Read and decode until the other side closes; return every event decoded."""
        while await self.read_chunk():
            pass
        return self.events

    async def expect(self, kind: type[E]) -> E:
        """Return the next not yet returned event of type ``kind``, reading as needed.

        Raises:
            AssertionError: EOF came first.
        """
        while True:
            for index in range(self._seen, len(self.events)):
                event = self.events[index]
                if isinstance(event, kind):
                    self._seen = index + 1
                    return event
            if not await self.read_chunk():
                raise AssertionError(
                    f"EOF before a {kind.__name__}; got {self.events!r}, error {self.error!r}"
                )

    async def handshake(self, hello: bytes | None = None) -> Hello:
        """Send the preamble and HELLO (a client's by default) and wait for the peer's HELLO."""
        await self.send(hello if hello is not None else encode_hello(self.decoder.role))
        return await self.expect(Hello)

    def closes(self) -> list[Close]:
        """Every CLOSE frame decoded so far."""
        return [event for event in self.events if isinstance(event, Close)]


async def stalled_reader(port: int) -> RawPeer:
    """A raw client of 127.0.0.1:port with a 4 KiB receive buffer that, once its handshake is
    done, reads nothing more: the slow consumer of backpressure tests."""
    peer = await RawPeer.connect(port)
    raw = peer.stream.extra(anyio.abc.SocketAttribute.raw_socket)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await peer.handshake()
    return peer


@asynccontextmanager
async def raw_server(
    handler: Callable[[RawPeer], Awaitable[None]],
) -> AsyncIterator[int]:
    """Listen on 127.0.0.1 and run ``handler`` on a :class:`RawPeer` (role "host") for every
    connection; yields the port. The stream is closed when the handler returns, and every
    handler is cancelled when the block ends."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await handler(RawPeer(stream, "host"))

    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, serve)
        try:
            yield port
        finally:
            tasks.cancel_scope.cancel()
