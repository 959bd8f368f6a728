"""Keepalive: a PING now and then, and a peer that stops answering taken for dead.

A half-open connection (the peer's machine lost power, a cable was pulled) sends nothing and
takes nothing, and TCP alone can hold it open for hours. Every ``ping_interval`` the connection
sends a PING whose payload is a sequence number; if neither its PONG nor any other byte arrives
within ``ping_timeout``, the peer is dead. Any byte proves it alive: a PONG queued behind a large
message on a slow link arrives late, and that is no reason to drop the connection.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio

from ..exceptions import ConnectionClosed

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("Keepalive",)


class Keepalive:
    """The keepalive of one connection; its task is :meth:`run`, on the connection's loop."""

    __slots__ = ("_payload", "_waiter", "latency")

    def __init__(self) -> None:
        self._payload: bytes | None = None  # of the PING waiting for its PONG
        self._waiter: anyio.Event | None = None
        self.latency: float | None = None
        """The round trip of the last PING, in seconds; ``None`` before the first answer."""

    def got_pong(self, payload: bytes) -> None:
        """A PONG arrived: it answers the PING whose payload it echoes; others are ignored."""
        waiter = self._waiter
        if waiter is not None and payload == self._payload:
            self._waiter = None
            waiter.set()

    async def run(
        self,
        interval: float,
        timeout: float | None,
        *,
        open_: Callable[[], bool],
        send_ping: Callable[[bytes], None],
        reads: Callable[[], int],
        dead: Callable[[str], None],
    ) -> None:
        """Ping every ``interval`` seconds while ``open_()``, with ``send_ping(payload)``; call
        ``dead(reason)`` and return if an answer takes longer than ``timeout`` while the count
        of reads, ``reads()``, stays the same."""
        sequence = 0
        while True:
            await anyio.sleep(interval)
            if not open_():
                return
            sequence += 1
            payload = sequence.to_bytes(8, "big")
            waiter = self._waiter = anyio.Event()
            self._payload = payload
            sent_at = anyio.current_time()
            try:
                send_ping(payload)
            except ConnectionClosed:
                return
            while True:
                before = reads()
                with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
                    await waiter.wait()
                # Bytes that came meanwhile prove the peer alive: its PONG is queued behind
                # them, as behind a large message on a slow link. Keep waiting.
                if not scope.cancelled_caught or reads() == before:
                    break
            if scope.cancelled_caught:
                dead(f"the peer did not answer a keepalive ping within {timeout:g} s")
                return
            self.latency = anyio.current_time() - sent_at
