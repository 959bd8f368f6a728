"""The stream seam: the only module of ``alvaro.aio`` that touches sockets.

Everything above it sees a :class:`Transport` with ``receive``/``send``/``aclose`` and alvaro's own
exceptions. Errors from anyio and the operating system are translated here, with the original
error kept as ``__cause__``. A faster, backend-specific transport can replace this one without
changing the connection logic.
"""

from __future__ import annotations

import errno
import logging
import math
import socket
from typing import TYPE_CHECKING, TypeAlias, cast

import anyio
import anyio.abc

from .. import _asyncio_stream
from .._close_codes import CloseCode
from ..exceptions import ConnectError, ConnectionClosedError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._asyncio_stream import AsyncioTransport
    from ._tls import TLSTransport

__all__ = (
    "AnyioTransport",
    "Listener",
    "Transport",
    "check_port",
    "listen",
    "open_transport",
)

logger = logging.getLogger("alvaro.transport")

# One read takes up to this many bytes. asyncio hands anyio 256 KiB chunks, which anyio would
# re-slice (and copy) to a smaller request; trio allocates the full request on every read, so
# there a smaller request is faster.
_ASYNCIO_READ_SIZE = 256 * 1024
_TRIO_READ_SIZE = 64 * 1024

# accept() errors that mean "out of a resource for now": wait and retry instead of dying.
ACCEPT_CAPACITY_ERRNOS = frozenset(
    code
    for code in (getattr(errno, name, None) for name in ("EMFILE", "ENFILE", "ENOMEM", "ENOBUFS"))
    if code is not None
)


def check_port(port: object, *, listening: bool) -> int:
    """Return ``port`` if it is a TCP port number: an ``int`` (not a ``bool``) from 1 to 65535,
    or 0 too when ``listening`` (0 picks a free port).

    Checked before any socket call: the operating system and the backends would otherwise
    disagree (an ``OverflowError`` on asyncio, an ``ExceptionGroup`` on trio) or quietly turn
    ``None`` into 0 and ``3.5`` into 3.

    Raises:
        ValueError: ``port`` is not such a number. A wrong type is a ValueError too, as for
            every other option of alvaro: a port read from a file or a command line is one
            value to check, whatever went wrong with it.
    """
    lowest = 0 if listening else 1
    if isinstance(port, bool) or not isinstance(port, int) or not lowest <= port <= 65535:
        allowed = "0 (any free port) to 65535" if listening else "1 to 65535"
        raise ValueError(f"port must be an integer from {allowed}, not {port!r}")
    return port


def _split_address(address: object) -> tuple[str, int]:
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return str(address), 0


class AnyioTransport:
    """A connected TCP stream seen as bytes in, bytes out, through anyio (used on trio).

    Attributes:
        peer_host, peer_port: the address of the other end.
        local_host, local_port: the address of this end.
    """

    __slots__ = (
        "_direct",
        "_read_size",
        "_stream",
        "local_host",
        "local_port",
        "peer_host",
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
        self.peer_host, self.peer_port = _split_address(stream.extra(attrs.remote_address, None))
        self.local_host, self.local_port = _split_address(stream.extra(attrs.local_address, None))

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
                logger.debug("error while closing %s:%s: %r", self.peer_host, self.peer_port, exc)
        if scope.cancelled_caught:
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(self._stream)


#: What the connection code talks to: anyio's stream on trio, asyncio's own on asyncio, and TLS
#: over either.
Transport: TypeAlias = "AnyioTransport | AsyncioTransport | TLSTransport"


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


async def open_transport(host: str, port: int, *, timeout: float, trio: bool) -> Transport:
    """Open a TCP connection to ``host:port``.

    Raises:
        ConnectError: the name did not resolve, or the connection was refused or unreachable.
        TimeoutError: no connection within ``timeout`` seconds.
    """
    try:
        with anyio.fail_after(timeout):
            if not trio:
                return await _asyncio_stream.open_connection(host, port)
            stream = await anyio.connect_tcp(host, port)
    except TimeoutError:
        raise TimeoutError(f"connecting to {host}:{port} timed out after {timeout:g} s") from None
    except OSError as exc:
        raise ConnectError(f"could not connect to {host}:{port}: {exc}") from exc
    return AnyioTransport(stream, trio=trio)


class Listener:
    """Listening sockets for one host address (one per address family the name resolves to)."""

    def __init__(
        self, listeners: Sequence[anyio.abc.Listener[anyio.abc.SocketStream]], *, trio: bool
    ) -> None:
        # anyio types these loosely; TCP listeners are SocketListeners, which can accept().
        self._listeners = [item for item in listeners if isinstance(item, anyio.abc.SocketListener)]
        self._trio = trio
        self.host, self.port = _split_address(
            self._listeners[0].extra(anyio.abc.SocketAttribute.local_address)
        )

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every (address, port) listened on."""
        return [
            _split_address(item.extra(anyio.abc.SocketAttribute.local_address))
            for item in self._listeners
        ]

    @property
    def sockets(self) -> list[anyio.abc.SocketListener]:
        """The underlying listeners, one accept loop each."""
        return list(self._listeners)

    async def accept(self, listener: anyio.abc.SocketListener) -> Transport:
        """Accept the next connection on one of :attr:`sockets`.

        Raises:
            OSError: accept() failed (for example, out of file descriptors).
            anyio.ClosedResourceError: the listener was closed.
        """
        if self._trio:
            try:
                return AnyioTransport(await listener.accept(), trio=True)
            except anyio.BrokenResourceError as exc:
                # anyio's trio listener wraps accept()'s OSError (EMFILE among them): give it
                # back as itself, so that running out of descriptors is retried, not taken for
                # a listener that is gone.
                cause = exc.__cause__
                if isinstance(cause, OSError) and cause.errno in ACCEPT_CAPACITY_ERRNOS:
                    raise cause from None
                raise
        # On asyncio, accept the socket ourselves and give it alvaro's own transport.
        raw = listener.extra(anyio.abc.SocketAttribute.raw_socket)
        return await _asyncio_stream.accept(raw)

    async def aclose(self) -> None:
        """Stop listening; never raises."""
        with anyio.CancelScope(shield=True):
            for item in self._listeners:
                await item.aclose()


async def listen(host: str, port: int, *, trio: bool) -> Listener:
    """Listen on ``host:port`` (port 0 picks a free port, the same for every address).

    Raises:
        OSError: the address is in use, not local, or not allowed.
    """
    multi = await anyio.create_tcp_listener(local_host=host, local_port=port)
    return Listener(multi.listeners, trio=trio)
