"""Keepalive: a PING now and then, and a peer that stops answering taken for dead.

A half-open connection (the peer's machine lost power, a cable was pulled) sends nothing and
takes nothing, and TCP alone can hold it open for hours. Every ``ping_interval`` the connection
sends a PING whose payload is a sequence number; if neither its PONG nor any other byte arrives
within ``ping_timeout``, the peer is dead. Any byte proves it alive: a PONG queued behind a large
message on a slow link arrives late, and that is no reason to drop the connection.
"""

from __future__ import annotations

import math
from typing import Protocol

import anyio

from ..exceptions import ConnectionClosed

__all__ = ("Keepalive", "Pinged")


class Pinged(Protocol):
    """What the keepalive needs of its connection (a Connection is one, at no cost per
    connection: no closures to keep)."""

    @property
    def reads(self) -> int:
        """How many reads brought bytes so far."""

    def can_ping(self) -> bool:
        """Whether the connection is open for sending."""

    def send_ping(self, payload: bytes) -> None:
        """Queue a PING with ``payload``; raises ConnectionClosed once sending has stopped."""

    def peer_dead(self, reason: str) -> None:
        """No answer came: drop the connection at once."""


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

    async def run(self, conn: Pinged, interval: float, timeout: float | None) -> None:
        """Ping ``conn`` every ``interval`` seconds while it can be pinged; tell it the peer is
        dead, and return, if an answer takes longer than ``timeout`` while no byte comes."""
        sequence = 0
        while True:
            await anyio.sleep(interval)
            if not conn.can_ping():
                return
            sequence += 1
            payload = sequence.to_bytes(8, "big")
            waiter = self._waiter = anyio.Event()
            self._payload = payload
            sent_at = anyio.current_time()
            try:
                conn.send_ping(payload)
            except ConnectionClosed:
                return
            while True:
                before = conn.reads
                with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
                    await waiter.wait()
                # Bytes that came meanwhile prove the peer alive: its PONG is queued behind
                # them, as behind a large message on a slow link. Keep waiting.
                if not scope.cancelled_caught or conn.reads == before:
                    break
            if scope.cancelled_caught:
                conn.peer_dead(f"the peer did not answer a keepalive ping within {timeout:g} s")
                return
            self.latency = anyio.current_time() - sent_at
