"""Opening and accepting TCP connections, each as the transport of the running backend.

On trio a connection is anyio's stream (``anyio_tcp``); on asyncio, alvaro's own transport on
asyncio's protocol API (``asyncio_tcp``), which is faster there.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from ...exceptions import ConnectError
from . import asyncio_tcp
from .anyio_tcp import AnyioTransport
from .base import split_address

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .base import Transport

__all__ = ("ACCEPT_CAPACITY_ERRNOS", "Listener", "listen", "open_transport")

# accept() errors that mean "out of a resource for now": wait and retry instead of dying.
ACCEPT_CAPACITY_ERRNOS = frozenset(
    code
    for code in (getattr(errno, name, None) for name in ("EMFILE", "ENFILE", "ENOMEM", "ENOBUFS"))
    if code is not None
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
                return await asyncio_tcp.open_connection(host, port)
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
        self.host, self.port = split_address(
            self._listeners[0].extra(anyio.abc.SocketAttribute.local_address)
        )

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every (address, port) listened on."""
        return [
            split_address(item.extra(anyio.abc.SocketAttribute.local_address))
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
        return await asyncio_tcp.accept(raw)

    async def aclose(self) -> None:
        """Stop listening; never raises."""
        with anyio.CancelScope(shield=True):
            for item in self._listeners:
                await item.aclose()


async def listen(host: str, port: int, *, trio: bool, reuse_port: bool = False) -> Listener:
    """Listen on ``host:port`` (port 0 picks a free port, the same for every address), with
    ``SO_REUSEPORT`` set if ``reuse_port``.

    Raises:
        OSError: the address is in use, not local, or not allowed.
    """
    multi = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=reuse_port)
    return Listener(multi.listeners, trio=trio)
