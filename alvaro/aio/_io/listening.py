"""Where a host listens: an address and a port, a port shared by several processes
(``reuse_port``), or a socket bound by someone else (``sock``).

The host checks its options with :func:`listen_on` when it is made, so that a wrong one fails at
once, and opens the listener with :func:`open_listener` on each start.
"""

from __future__ import annotations

import dataclasses
import socket
import sys

import anyio.abc

from .base import check_port, split_address
from .tcp import Listener, listen

__all__ = ("ListenOn", "listen_on", "open_listener")

# The backlog of a socket that is bound but not listening yet: anyio's own, which the
# operating system lowers to its limit (net.core.somaxconn on Linux).
_BACKLOG = 65536


@dataclasses.dataclass(frozen=True)
class ListenOn:
    """A host's checked listening options."""

    addr: str
    port: int
    reuse_port: bool = False
    sock: socket.socket | None = None


#: A host's ``addr`` and ``port`` when not given: the only ones allowed with ``sock``.
DEFAULT_ADDRESS = ("127.0.0.1", 0)


def listen_on(addr: str, port: object, *, reuse_port: object, sock: object) -> ListenOn:
    """Check a host's ``addr``, ``port``, ``reuse_port`` and ``sock`` arguments.

    With ``sock``, ``addr`` and ``port`` must be left at their defaults: the host reports the
    socket's own address and port instead.

    Raises:
        TypeError: ``sock`` is not a :class:`socket.socket`.
        ValueError: ``sock`` with ``addr``, ``port`` or ``reuse_port``; a ``sock`` that is not a
            bound TCP socket; a ``reuse_port`` that is not a bool, or ``reuse_port=True`` where
            the operating system has no ``SO_REUSEPORT`` (Windows); a bad ``port``.
    """
    if not isinstance(reuse_port, bool):
        raise ValueError(f"reuse_port must be True or False, not {reuse_port!r}")
    if sock is not None:
        return _socket_options(sock, addr, port, reuse_port)
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError(
            f"reuse_port=True needs SO_REUSEPORT, which this system ({sys.platform}) does not "
            "have: run one host process, or hand the processes one socket with sock="
        )
    return ListenOn(addr, check_port(port, listening=True), reuse_port)


def _socket_options(sock: object, addr: object, port: object, reuse_port: bool) -> ListenOn:
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, not {sock!r}")
    # The defaults cannot be told from the same values given: they are taken for left out.
    if (addr, port) != DEFAULT_ADDRESS:
        raise ValueError(
            "give either sock= or addr and port, not both: the socket is already bound to its "
            f"address (got addr={addr!r}, port={port!r})"
        )
    if reuse_port:
        raise ValueError(
            "reuse_port=True applies to the sockets a host binds itself: set SO_REUSEPORT on "
            "the socket given as sock= before binding it"
        )
    _check_socket(sock)
    addr, port = split_address(sock.getsockname())
    return ListenOn(addr, port, sock=sock)


def _check_socket(sock: socket.socket) -> None:
    if sock.fileno() < 0:
        raise ValueError(
            "the socket given as sock= is closed (a host closes its socket when it stops): "
            "give a new one"
        )
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        raise ValueError(f"sock must be a TCP socket (IPv4 or IPv6), not {sock!r}")
    if split_address(sock.getsockname())[1] == 0:
        raise ValueError(f"sock must be bound to an address and port, but {sock!r} is not")


async def open_listener(where: ListenOn, *, trio: bool) -> Listener:
    """Start listening as ``where`` says.

    A socket given as ``sock=`` becomes the listener's: it is closed when the host stops.

    Raises:
        OSError: the address is in use (without ``reuse_port`` in every process that binds
            it), not local, or not allowed.
        ValueError: the socket given as ``sock=`` has been closed meanwhile.
    """
    if where.sock is None:
        return await listen(where.addr, where.port, trio=trio, reuse_port=where.reuse_port)
    sock = where.sock
    _check_socket(sock)
    if not _is_listening(sock):
        sock.listen(_BACKLOG)
    # Both backends' accept() wait for readiness instead of blocking the event loop.
    sock.setblocking(False)
    return Listener([await anyio.abc.SocketListener.from_socket(sock)], trio=trio)


def _is_listening(sock: socket.socket) -> bool:
    # A socket the supervisor already listens on keeps its backlog. Where the operating system
    # cannot tell (no SO_ACCEPTCONN), listen() again: it only sets the backlog anew.
    option = getattr(socket, "SO_ACCEPTCONN", None)
    if option is None:
        return False
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, option))
    except OSError:
        return False
