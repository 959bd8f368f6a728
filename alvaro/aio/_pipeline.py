"""The steps of a connection's life that a host's and a client's share.

A host runs, for each accepted connection: TLS (:func:`secure`), the opening handshake, the login,
then :func:`serve_until_lost`; a client the same after connecting. Each side keeps only its
policy: a host logs a failure (rate-limited) and drops that connection, a client raises it to
its caller as a typed error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from .._errors import unwrap_group
from ._io import start_tls

if TYPE_CHECKING:
    import logging
    import ssl
    from collections.abc import Awaitable, Callable

    from .._types import Metadata
    from ._io import Transport
    from .connection import Connection

__all__ = ("secure", "serve_until_lost")


async def secure(
    transport: Transport,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    hostname: str | None,
    deadline: float,
    timeout: float,
    on_failure: Callable[[Exception], None] | None = None,
) -> Transport:
    """Run the TLS handshake over ``transport`` by ``deadline`` (``anyio.current_time()``
    clock), ``timeout`` seconds after the connection began; the transport is closed if it fails,
    after ``on_failure(error)`` (so that a host's log line comes before the peer sees the close).

    Raises:
        TimeoutError: the handshake did not finish in time (the message names the peer).
        TLSError: the handshake failed; ``kind`` says why.
        ConnectionClosed: (host) the client went away before sending a byte.
    """
    try:
        try:
            with anyio.fail_at(deadline):
                return await start_tls(
                    transport, context, server_side=server_side, hostname=hostname
                )
        except TimeoutError:
            raise TimeoutError(
                f"the TLS handshake with {transport.peer_host}:{transport.peer_port} took longer "
                f"than {timeout:g} s"
            ) from None
    except Exception as exc:
        if on_failure is not None:
            on_failure(exc)
        await transport.aclose(0)
        raise
    except BaseException:
        # Cancelled: never leave the socket open.
        await transport.aclose(0)
        raise


async def serve_until_lost(
    conn: Connection,
    on_open: Callable[[], Awaitable[None]],
    handler_lookup: Callable[[], Callable[[Any, Metadata], object] | None],
    report_lost: Callable[[], Awaitable[None]],
    *,
    close_timeout: float,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> None:
    """Serve an opened connection until it closes, then ``report_lost()``: once, whatever ended
    it (cancellation included), shielded and within ``close_timeout``; an exception from it is
    logged with its traceback, never raised."""
    try:
        with unwrap_group():
            await conn._serve(on_open, handler_lookup)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(close_timeout):
            try:
                await report_lost()
            except Exception:
                logger.exception("the lost-connection callback raised for %r", conn)
