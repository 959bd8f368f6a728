"""Limits and timeouts of a connection, with their defaults in one place."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypedDict

from .protocol import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_METADATA_SIZE, MAX_LIMIT

__all__ = ("Settings", "SettingsOptions")


@dataclass(frozen=True, slots=True)
class Settings:
    """The limits and timeouts every connection of a Host or Client uses.

    Attributes:
        max_message_size: the largest message (metadata plus payload, in bytes) accepted from the
            peer; announced in the handshake so the peer refuses to send larger ones.
        max_metadata_size: the largest encoded metadata accepted from the peer, in bytes.
        max_queue: how many received messages wait for ``receive()`` before reading stops, which
            pushes back on the sender through TCP.
        max_queue_bytes: how many bytes of received messages wait for ``receive()`` before
            reading stops, whatever their number; bounds the queue's memory to this plus one read.
        write_limit: ``await send()`` waits while more than this many bytes are waiting to be sent.
        outbox_limit: ``send_data()`` raises :class:`~alvaro.OutboxFull` while more than this many
            bytes are waiting to be sent.
        open_timeout: seconds allowed for connecting and the opening handshake.
        login_timeout: seconds allowed from connecting until the login has succeeded, on the
            same clock as ``open_timeout`` (a host that requires login closes connections that
            take longer with code TIMEOUT; a client gives up with ``TimeoutError``).
        close_timeout: seconds allowed for the closing handshake before the connection is dropped.
        ping_interval: seconds between keepalive pings while the connection is open; ``None``
            sends none.
        ping_timeout: seconds a ping may wait for its answer before the peer is taken for dead
            and the connection is dropped (close code TIMEOUT); ``None`` waits without limit.
            Bytes arriving meanwhile (a large message on a slow link) prove the peer alive and
            extend the wait.
        frame_timeout: seconds a frame may take to arrive once its first byte has; a peer that
            trickles a frame slower than that is dropped (close code TIMEOUT). ``None`` waits
            without limit.
        write_timeout: seconds the peer may leave sent bytes untaken (its receive window full,
            so nothing goes out) before it is dropped as a slow consumer (close code
            SLOW_CONSUMER); ``await send()`` waiting for room then raises
            :class:`~alvaro.ConnectionClosedError`. ``None`` waits without limit.
        request_timeout: seconds ``request()`` waits for its reply when it is given no
            ``timeout``; the deadline travels with the request, and the answering side cancels
            its handler when it passes. ``None``: no deadline.
        max_pending_requests: how many requests one connection may have waiting for their
            replies; ``request()`` waits for room beyond that (the non-blocking forms raise
            :class:`~alvaro.TooManyRequests`).
        max_concurrent_requests: how many of the peer's requests run at once per connection;
            beyond that the peer gets a "busy" answer at once (:class:`~alvaro.RemoteError`).
        reply_tracebacks: send the traceback of a request handler that raised to the asker
            (it always gets the exception's type name and message). Off by default: a
            traceback tells the peer about this side's code.
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_metadata_size: int = DEFAULT_MAX_METADATA_SIZE
    max_queue: int = 16
    max_queue_bytes: int = 4 * 1024 * 1024
    write_limit: int = 64 * 1024
    outbox_limit: int = 8 * 1024 * 1024
    open_timeout: float = 10.0
    login_timeout: float = 10.0
    close_timeout: float = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    frame_timeout: float | None = 30.0
    write_timeout: float | None = 10.0
    request_timeout: float | None = 30.0
    max_pending_requests: int = 1024
    max_concurrent_requests: int = 128
    reply_tracebacks: bool = False

    def __post_init__(self) -> None:
        for name in (
            "max_message_size",
            "max_metadata_size",
            "max_queue",
            "max_queue_bytes",
            "write_limit",
            "max_pending_requests",
            "max_concurrent_requests",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if type(self.outbox_limit) is not int or self.outbox_limit < self.write_limit:
            raise ValueError(
                f"outbox_limit must be an integer of at least write_limit ({self.write_limit}), "
                f"not {self.outbox_limit!r}"
            )
        for name in ("max_message_size", "max_metadata_size"):
            if getattr(self, name) > MAX_LIMIT:
                raise ValueError(f"{name} cannot be larger than {MAX_LIMIT} (the protocol's limit)")
        for name in ("open_timeout", "login_timeout", "close_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if type(self.reply_tracebacks) is not bool:
            raise ValueError(
                f"reply_tracebacks must be True or False, not {self.reply_tracebacks!r}"
            )
        for name in (
            "ping_interval",
            "ping_timeout",
            "frame_timeout",
            "write_timeout",
            "request_timeout",
        ):
            value = getattr(self, name)
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(
                    f"{name} must be a positive number of seconds or None, not {value!r}"
                )


class SettingsOptions(TypedDict, total=False):
    """The keyword arguments Host and Client accept for their :class:`Settings`.

    Typed once here, so that every class that takes them (``alvaro.aio`` and ``alvaro.sync``
    alike) accepts exactly the fields of :class:`Settings`, with their types.
    """

    max_message_size: int
    max_metadata_size: int
    max_queue: int
    max_queue_bytes: int
    write_limit: int
    outbox_limit: int
    open_timeout: float
    login_timeout: float
    close_timeout: float
    ping_interval: float | None
    ping_timeout: float | None
    frame_timeout: float | None
    write_timeout: float | None
    request_timeout: float | None
    max_pending_requests: int
    max_concurrent_requests: int
    reply_tracebacks: bool
