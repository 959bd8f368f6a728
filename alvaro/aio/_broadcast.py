"""One message to many connections: encoded once, checked against every receiver's limits,
and never held back by a slow receiver."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..exceptions import ConnectionClosed, MessageTooLarge, OutboxFull
from ..protocol import encode_message
from ..protocol.frames import data_frame_sizes

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .._types import Metadata
    from ._core import ConnectionCore

__all__ = ("broadcast",)


def broadcast(
    targets: Iterable[ConnectionCore], data: Any, metadata: Metadata | None, *, outbox_limit: int
) -> int:
    """Queue one DATA frame for every connection of ``targets``; any thread. Returns how many
    it was queued for.

    A connection whose outbox is over ``outbox_limit`` is evicted as a slow consumer; one that
    is closing is skipped (its lost callback reports it).

    Raises:
        EncodeError: the message cannot be encoded.
        MessageTooLarge: it is over the limits of one of the connections (checked for all
            before any is queued: then it is sent to none).
    """
    targets = list(targets)
    frame = encode_message(data, metadata)
    size, meta_size = data_frame_sizes(frame)
    for core in targets:
        peer = core.peer
        assert peer is not None  # connections are listed once their handshake is done
        if size > peer.max_message_size or meta_size > peer.max_metadata_size:
            raise MessageTooLarge(
                f"message of {size} bytes (metadata {meta_size}) is over the limits of "
                f"{core.where} ({peer.max_message_size}, metadata "
                f"{peer.max_metadata_size}); sent to no one",
                size=size,
                limit=peer.max_message_size,
            )
    queued = 0
    for core in targets:
        try:
            core.enqueue(frame, limit=outbox_limit)
        except OutboxFull:
            core.evict(
                f"its outbox was over outbox_limit ({outbox_limit} bytes) when a broadcast came"
            )
        except ConnectionClosed:
            pass  # closing meanwhile: lost_client reports it
        else:
            queued += 1
    return queued
