"""What the connection code needs of a stream, and the address helpers every transport shares.

A leaf module: the transports (``anyio_tcp``, ``asyncio_tcp``, ``tls``) import it, never each
other's types, so that TLS can wrap any of them without a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ...tls import TLSInfo

__all__ = ("Transport", "check_port", "split_address")


class Transport(Protocol):
    """A connected stream seen as bytes in, bytes out, with alvaro's own exceptions.

    anyio's TCP stream (trio), asyncio's own (asyncio) and TLS over either have this shape.
    """

    @property
    def peer_addr(self) -> str:
        """The other end's IP address."""

    @property
    def peer_port(self) -> int:
        """The other end's TCP port."""

    @property
    def local_host(self) -> str:
        """This end's IP address."""

    @property
    def local_port(self) -> int:
        """This end's TCP port."""

    @property
    def tls(self) -> TLSInfo | None:
        """What TLS negotiated, or ``None`` on a plaintext stream."""

    async def receive(self) -> bytes:
        """The next bytes from the peer, or ``b""`` once it has closed its side.

        Raises:
            ConnectionClosedError: the connection broke.
        """

    def send_now(self, data: bytes) -> int:
        """Write what the socket takes of ``data`` without waiting; return how much (0 where a
        direct write is not possible, or not allowed from the calling thread)."""

    async def send(self, data: bytes | memoryview) -> None:
        """Send all of ``data``.

        Raises:
            ConnectionClosedError: the connection broke or was closed.
        """

    async def aclose(self, timeout: float = ...) -> None:
        """Close, waiting at most ``timeout`` seconds; never raises."""


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


def split_address(address: object) -> tuple[str, int]:
    """``(host, port)`` of a socket address (IPv6 ones have more fields); port 0 if none."""
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return str(address), 0
