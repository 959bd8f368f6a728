"""The transport on anyio's TCP stream, used on trio (asyncio has its own: ``asyncio_tcp``).

Errors from anyio and the operating system are translated here into alvaro's own, with the
original error kept as ``__cause__``.
"""

from __future__ import annotations

import logging
import math
import socket
from typing import cast

import anyio
import anyio.abc

from ..._close_codes import CloseCode
from ...exceptions import ConnectionClosedError
from .base import split_address

__all__ = ("AnyioTransport",)

logger = logging.getLogger("alvaro.transport")

# One read takes up to this many bytes. asyncio hands anyio 256 KiB chunks, which anyio would
# re-slice (and copy) to a smaller request; trio allocates the full request on every read, so
# there a smaller request is faster.
_ASYNCIO_READ_SIZE = 256 * 1024
_TRIO_READ_SIZE = 64 * 1024


class AnyioTransport:
    """A connected TCP stream seen as bytes in, bytes out, through anyio (used on trio).

    Attributes:
        peer_addr, peer_port: the address of the other end.
        local_host, local_port: the address of this end.
    """

    __slots__ = (
        "_direct",
        "_read_size",
        "_stream",
        "local_host",
        "local_port",
        "peer_addr",
        "peer_port",
    )

    tls = None  # a plaintext connection

    def __init__(self, stream: anyio.abc.SocketStream, *, trio: bool) -> None:
        self._stream = stream
        self._read_size = _TRIO_READ_SIZE if trio else _ASYNCIO_READ_SIZE
        attrs = anyio.abc.SocketAttribute
        # The socket itself, for send_now(). Only for a plain TCP stream: a TLS stream forwards
        # raw_socket from the TCP stream beneath it, and writing there would bypass encryption.
        raw = stream.extra(attrs.raw_socket, None)
        plain = isinstance(stream, anyio.abc.SocketStream)
        self._direct: socket.socket | None = (
            raw if plain and isinstance(raw, socket.socket) else None
        )
        self.peer_addr, self.peer_port = split_address(stream.extra(attrs.remote_address, None))
        self.local_host, self.local_port = split_address(stream.extra(attrs.local_address, None))

    async def receive(self) -> bytes:
        """Return the next bytes from the peer, or ``b""`` once the peer has closed its side.

        Raises:
            ConnectionClosedError: the connection broke (reset, or closed locally meanwhile).
        """
        try:
            return await self._stream.receive(self._read_size)
        except anyio.EndOfStream:
            return b""
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise _broken("receiving", exc) from exc

    def send_now(self, data: bytes) -> int:
        """Write as much of ``data`` as the socket takes without waiting; return how much.

        Only call this while no :meth:`send` is under way, so that bytes cannot be reordered. It
        saves the task switch and the bookkeeping of :meth:`send` for a lone message. Returns 0
        when nothing could be written now, or when the error is left for :meth:`send` to report.
        Safe from any thread: it is a plain non-blocking ``send()`` on the socket.
        """
        sock = self._direct
        if sock is None:
            return 0
        try:
            return sock.send(data)
        except OSError:  # BlockingIOError, or a broken connection that send() will report
            return 0

    async def send(self, data: bytes | memoryview) -> None:
        """Send all of ``data``; returns once the operating system has taken it.

        Raises:
            ConnectionClosedError: the connection broke or was closed.
        """
        try:
            # anyio's socket streams take any bytes-like object (they write through a
            # memoryview); the annotation says bytes only.
            await self._stream.send(cast("bytes", data))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise _broken("sending", exc) from exc

    async def aclose(self, timeout: float = math.inf) -> None:
        """Close the connection, waiting at most ``timeout`` seconds; never raises.

        Runs shielded from cancellation, so a connection is closed even while its task is being
        cancelled.
        """
        with anyio.CancelScope(shield=True), anyio.move_on_after(timeout) as scope:
            try:
                await self._stream.aclose()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                logger.debug("error while closing %s:%s: %r", self.peer_addr, self.peer_port, exc)
        if scope.cancelled_caught:
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(self._stream)


def _broken(doing: str, exc: BaseException) -> ConnectionClosedError:
    # anyio wraps the operating system's error (ConnectionResetError, ...); name that one.
    root: BaseException | None = exc
    while root is not None and not isinstance(root, OSError):
        root = root.__cause__ or root.__context__
    cause = root if root is not None else exc
    detail = str(cause) or type(cause).__name__
    return ConnectionClosedError(
        CloseCode.ABNORMAL, f"connection lost while {doing}: {detail}", by_peer=True
    )
