"""The exchanges before a connection serves: the HELLOs, and the frames a login reads.

Both run on the transport directly (the writer and the read loop start only once the connection
is served), so each step is bounded by its caller's deadline. A connection that fails here never
opened: :func:`abort` says why if it can and closes the transport, briefly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import anyio

from .._close_codes import CloseCode
from ..exceptions import ConnectionClosed, ConnectionClosedError, RemoteProtocolError
from ..protocol import (
    Close,
    Hello,
    Message,
    Ping,
    Pong,
    ReplyError,
    ReplyOk,
    Request,
    encode_close,
    encode_hello,
    encode_pong,
)
from ..protocol.state import closed_error, echo_code
from .connection import State

if TYPE_CHECKING:
    from ..protocol import Event
    from ._core import ConnectionCore

__all__ = ("abort", "exchange_hellos", "next_handshake_event")

# The events that have a wire size in the decoder's message_sizes.
_SIZED = frozenset({Message, Request, ReplyOk, ReplyError})

# How long a connection that failed its opening handshake waits for the peer's TLS close_notify.
_TLS_ABORT_GRACE = 0.25


async def exchange_hellos(core: ConnectionCore) -> None:
    """Send this side's HELLO and read the peer's; bound it with the caller's deadline.

    The connection is then OPEN, its peer's limits known (``core.peer``); what came right
    after the peer's HELLO waits in ``core.early_events`` for the login or the read loop. On
    failure the connection is *not* closed: the caller aborts it with the code its failure maps
    to (:func:`alvaro.aio._pipeline.abort_on_failure`).

    Raises:
        RemoteProtocolError: the peer is not an alvaro peer, or broke the handshake.
        ConnectionClosed: the peer closed the connection (with a CLOSE frame or not).
    """
    core.start_on_loop()
    settings = core.settings
    decoder = core.decoder
    transport = core.transport
    await transport.send(
        encode_hello(
            core.role,
            max_message_size=settings.max_message_size,
            max_metadata_size=settings.max_metadata_size,
            features=decoder.features,
            auth_required=decoder.login_required,
        )
    )
    while not (decoder.handshake_complete or decoder.closed):
        chunk = await transport.receive()
        if not chunk:
            raise ConnectionClosedError(
                CloseCode.ABNORMAL,
                "the peer closed the connection during the opening handshake",
                by_peer=True,
            )
        try:
            decoder.receive_data(chunk)
        except RemoteProtocolError as exc:
            # cast: receive_data() may have changed what the loop condition read.
            if not cast("bool", decoder.handshake_complete):
                raise
            # The handshake is done: the connection opens, delivers what came before the
            # bad frame, then closes for it (docs/protocol.md, 6.3).
            core.early_error = exc
    events = decoder.events()
    core.early_sizes = decoder.message_sizes
    first = events[0]
    if isinstance(first, Close):
        # Refused before the handshake: answer the CLOSE, then report it.
        await abort(core, echo_code(first.code), "")
        raise closed_error(first.code, first.reason, by_peer=True)
    assert isinstance(first, Hello)
    core.peer = first
    core.early_events = events[1:]
    core.state = State.OPEN


async def next_handshake_event(core: ConnectionCore) -> Event:
    """The next event after the HELLOs, for an exchange that runs before serving (the login):
    PINGs are answered here, PONGs dropped; what the exchange does not take stays queued for
    the read loop. Bound it with a deadline.

    Raises:
        RemoteProtocolError: the peer broke the protocol.
        ConnectionClosedError: the connection broke.
    """
    decoder = core.decoder
    while True:
        while core.early_events:
            event = core.early_events.pop(0)
            if type(event) is Ping:
                await core.transport.send(encode_pong(event.payload))
            elif type(event) is not Pong:
                if type(event) in _SIZED:
                    core.early_sizes.pop(0)
                return event
        if core.early_error is not None:
            error, core.early_error = core.early_error, None
            raise error
        chunk = await core.transport.receive()
        if not chunk:
            raise ConnectionClosedError(
                CloseCode.ABNORMAL,
                "the peer closed the connection without a CLOSE frame",
                by_peer=True,
            )
        try:
            decoder.receive_data(chunk)
        except RemoteProtocolError as exc:
            core.early_error = exc  # after the events that came before it
        core.early_events.extend(decoder.events())
        core.early_sizes.extend(decoder.message_sizes)


async def abort(core: ConnectionCore, code: int | None, reason: str) -> None:
    """Give up on a connection that never opened: send a CLOSE with ``code`` (``None``: none)
    if possible, then close the transport. Does nothing the second time."""
    if core.state is State.CLOSED:
        return
    core.state = State.CLOSED
    if code is not None:
        with anyio.move_on_after(1), anyio.CancelScope(shield=True):
            try:
                await core.transport.send(encode_close(code, reason))
            except ConnectionClosed:
                pass
    timeout = core.settings.close_timeout
    if core.transport.tls is not None:
        # The connection never opened: send close_notify, but do not wait long for the
        # peer's, or a failed handshake would take open_timeout plus close_timeout.
        timeout = min(timeout, _TLS_ABORT_GRACE)
    await core.transport.aclose(timeout)
