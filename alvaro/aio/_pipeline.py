"""The steps of a connection's life, the same for a host's and a client's.

A host runs, for each accepted connection: TLS (:func:`secure`), the opening handshake
(:func:`open_connection`), the login (a :func:`run_step`), then :func:`serve_until_lost`; a client
the same after connecting. A step that fails closes the connection with the code
:func:`failure_close` maps its failure to, the one mapping for both roles, then raises. Each side
keeps only its policy: a host logs the failure (rate-limited) and drops that connection, a client
raises it to its caller as a typed error.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TypeVar

import anyio

from .._close_codes import CloseCode
from .._errors import unwrap_group
from ..exceptions import AuthenticationError, ConnectionClosed, RemoteProtocolError
from ._handshake import abort, exchange_hellos
from ._io import start_tls
from ._reader import Handlers, read_loop
from .connection import State

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable

    from ._core import ConnectionCore
    from ._io import Transport

__all__ = ("failure_close", "open_connection", "run_step", "secure", "serve_until_lost")

T = TypeVar("T")


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
                f"the TLS handshake with {transport.peer_addr}:{transport.peer_port} took longer "
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


def failure_close(
    exc: BaseException, *, timeout_reason: str, error_reason: str
) -> tuple[int | None, str]:
    """The CLOSE (code and reason; code ``None``: send none) that a step failing with ``exc``
    sends before the connection is closed: the one mapping for both roles."""
    if isinstance(exc, TimeoutError):
        return CloseCode.TIMEOUT, timeout_reason
    if isinstance(exc, RemoteProtocolError):
        return exc.code, str(exc)
    if isinstance(exc, (ConnectionClosed, AuthenticationError)) or not isinstance(exc, Exception):
        # The peer closed it, the step closed it with the right code already (a refused
        # login), or the step was cancelled: nothing more to say, just close.
        return None, ""
    # A bug, or an authenticator that raised: the peer learns only that this side failed.
    return CloseCode.INTERNAL_ERROR, error_reason


async def run_step(
    core: ConnectionCore,
    step: Callable[[], Awaitable[T]],
    deadline: float,
    *,
    timeout_reason: str,
    error_reason: str = "internal error",
) -> T:
    """Run one step of the opening (HELLOs, a login) by ``deadline`` (``anyio.current_time()``
    clock) and return what it returns; if it fails, close the connection (never opened for the
    application) with the code :func:`failure_close` gives, then raise the failure."""
    try:
        with anyio.fail_at(deadline):
            return await step()
    except BaseException as exc:
        code, reason = failure_close(exc, timeout_reason=timeout_reason, error_reason=error_reason)
        await abort(core, code, reason)
        raise


async def open_connection(core: ConnectionCore, deadline: float) -> None:
    """The opening handshake (HELLOs) by ``deadline``; closes the connection if it fails.

    Raises:
        RemoteProtocolError: the peer is not an alvaro peer, or broke the handshake.
        ConnectionClosed: the peer closed the connection (with a CLOSE frame or not).
        TimeoutError: the handshake did not finish by ``deadline``.
    """
    await run_step(
        core, lambda: exchange_hellos(core), deadline, timeout_reason="opening handshake timed out"
    )


async def serve_until_lost(
    core: ConnectionCore,
    on_open: Callable[[], Awaitable[None]],
    handlers: Handlers,
    report_lost: Callable[[], Awaitable[None]],
) -> None:
    """Serve an opened connection until it is closed, then ``report_lost()``: once, whatever
    ended it (cancellation included), shielded and within ``close_timeout``; an exception from
    it is logged with its traceback, never raised. Raises only on cancellation.

    ``on_open`` runs first, with the writer already running, so that it may send. Then every
    message and request goes where ``handlers`` say when it arrives.

    One function rather than two nested ones: each connection holds this frame while it lives.
    """
    settings = core.settings
    outbox = core.outbox
    try:
        with unwrap_group():
            async with anyio.create_task_group() as tasks:
                core.tasks = tasks
                tasks.start_soon(outbox.run, core.drop_slow_consumer, core.broken)
                if settings.ping_interval is not None:
                    tasks.start_soon(
                        core.keepalive.run, core, settings.ping_interval, settings.ping_timeout
                    )
                await on_open()
                with anyio.CancelScope(deadline=core.close_deadline) as scope:
                    core.read_scope = scope
                    await read_loop(core, handlers)
                core.read_scope = None
                _log_why_reading_stopped(core, scope)
                core.inbox.end()
                if outbox.close_queued:
                    # Let the writer flush what is queued and the CLOSE, within the deadline.
                    left = max(0.0, core.close_deadline - anyio.current_time())
                    with anyio.move_on_after(left):
                        await outbox.done.wait()
                tasks.cancel_scope.cancel()
    finally:
        try:
            await _closed(core)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(settings.close_timeout):
                try:
                    await report_lost()
                except Exception:
                    core.logger.exception(
                        "the lost-connection callback raised for %r", core.connection
                    )


def _log_why_reading_stopped(core: ConnectionCore, scope: anyio.CancelScope) -> None:
    """The read loop's deadline passed: a frame took too long (close for it), or the peer did
    not answer the close (say so)."""
    if not scope.cancelled_caught:
        return
    if core.close_info is None and core.frame_deadline <= anyio.current_time():
        reason = f"a frame took more than {core.settings.frame_timeout:g} s to arrive"
        core.logger.warning("closing the connection to %s: %s", core.where, reason)
        core.fail(CloseCode.TIMEOUT, reason)
    elif not core.outbox.done.is_set():
        core.logger.info(
            "%s did not answer the close within %g s; dropping the connection",
            core.where,
            core.settings.close_timeout,
        )


async def _closed(core: ConnectionCore) -> None:
    """Record the end and close the transport, by the close deadline (TLS's close_notify
    included); pending requests fail with the connection's error."""
    with core.lock:
        core.outbox.closed = True
        if core.close_info is None:
            core.close_info = (CloseCode.ABNORMAL, "the connection was cancelled", False)
    core.state = State.CLOSED
    core.tasks = None
    core.inbox.end()
    if core.requests is not None:
        core.requests.connection_ended(core.closed_error())
    timeout = core.settings.close_timeout
    if core.close_deadline < math.inf:
        timeout = min(timeout, max(0.0, core.close_deadline - anyio.current_time()))
    try:
        # Not shielded: a connection cancelled (a host stopping at once) closes at once.
        await core.transport.aclose(timeout)
    finally:
        core.closed.set()
