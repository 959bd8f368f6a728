"""An in-process TCP proxy that injects network faults, for tests (asyncio and trio, via anyio).

The vocabulary is toxiproxy's. Every accepted connection is forwarded to an upstream
``(host, port)`` on loopback; the toxics act per direction, ``"upstream"`` (client to server) and
``"downstream"`` (server to client), may be combined, and may be added, replaced or removed while
connections run::

    async with fault_proxy(host.port) as proxy:
        proxy.latency(20, jitter=5).slicer(8, 7, direction="upstream")
        async with alvaro.aio.connect("127.0.0.1", proxy.port) as client:
            ...
        assert b"secret" not in proxy.captured("upstream")

A direction holds at most one toxic of each kind; adding one again replaces it. Each data chunk
goes through them in a fixed order: ``latency``, ``corrupt``, ``slicer``, then for each piece
``timeout``/``blackhole`` (dropped), ``limit_data`` (cut), ``bandwidth`` (paced). Timers of
``timeout(ms)`` and ``reset_peer(ms)`` start when the toxic is added, or when a connection opens
if that is later.

Randomness (jitter, slice sizes, corruption) comes from :class:`random.Random` instances seeded
from :attr:`FaultProxy.seed`, one per connection and direction. The seed is in the proxy's repr
and is added as a note to an exception leaving the ``async with`` block; set it with ``seed=`` or
the ``ALVARO_FAULT_SEED`` environment variable to replay a failure.
"""

from __future__ import annotations

import math
import os
import random
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeAlias, TypeVar, cast

import anyio
import anyio.abc

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from .helpers import reset_on_close

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ("DIRECTIONS", "Direction", "FaultProxy", "ProxyConnection", "fault_proxy")

Direction = Literal["upstream", "downstream"]
Which = Literal["upstream", "downstream", "both"]
DIRECTIONS: tuple[Direction, Direction] = ("upstream", "downstream")
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
READ_SIZE = 65536
#: What a read loop hands its write loop: (arrival time, chunk), or None for EOF.
_Item: TypeAlias = "tuple[float, bytes] | None"


# --- Toxics ------------------------------------------------------------------------------------


@dataclass(eq=False)
class Toxic:
    """A fault on one direction; compared by identity, so per-connection state can key on it."""

    added_at: float = field(default=0.0, repr=False)


@dataclass(eq=False)
class Latency(Toxic):
    ms: float = 0.0
    jitter: float = 0.0


@dataclass(eq=False)
class Bandwidth(Toxic):
    bytes_per_s: float = 0.0


@dataclass(eq=False)
class Slicer(Toxic):
    average_size: int = 1
    size_variation: int = 0
    delay_s: float = 0.0


@dataclass(eq=False)
class LimitData(Toxic):
    n_bytes: int = 0


@dataclass(eq=False)
class Timeout(Toxic):
    ms: float = 0.0


@dataclass(eq=False)
class ResetPeer(Toxic):
    ms: float = 0.0


@dataclass(eq=False)
class SlowClose(Toxic):
    ms: float = 0.0


@dataclass(eq=False)
class Corrupt(Toxic):
    probability: float = 0.0


KINDS: dict[str, type[Toxic]] = {
    "latency": Latency,
    "bandwidth": Bandwidth,
    "slicer": Slicer,
    "limit_data": LimitData,
    "timeout": Timeout,
    "reset_peer": ResetPeer,
    "slow_close": SlowClose,
    "corrupt": Corrupt,
}
K = TypeVar("K", bound=Toxic)


# --- One proxied connection --------------------------------------------------------------------


class ProxyConnection:
    """One accepted connection and its upstream twin, pumped in both directions."""

    def __init__(self, proxy: FaultProxy, index: int, client: anyio.abc.SocketStream) -> None:
        self.proxy = proxy
        self.index = index
        self.started = anyio.current_time()
        #: Why the connection ended: "eof" (both sides closed), "limit_data", "timeout",
        #: "reset_peer", "reset" (a side reset or broke), "upstream_unreachable", "proxy_closed".
        self.ended_by: str | None = None
        #: Set once both sockets are closed.
        self.closed = anyio.Event()
        #: Bytes dropped by timeout/blackhole, per direction.
        self.dropped: dict[Direction, int] = dict.fromkeys(DIRECTIONS, 0)
        self._client = client
        self._server: anyio.abc.SocketStream | None = None
        self._received: dict[Direction, bytearray] = {d: bytearray() for d in DIRECTIONS}
        self._pieces: dict[Direction, list[bytes]] = {d: [] for d in DIRECTIONS}
        self._rng = {d: random.Random(f"{proxy.seed}/{index}/{d}") for d in DIRECTIONS}
        self._state: dict[Toxic, float] = {}
        self._writers_done = 0
        self._reset = False
        self._scope = anyio.CancelScope()
        self._reading: dict[Direction, anyio.CancelScope] = {
            d: anyio.CancelScope() for d in DIRECTIONS
        }

    def __repr__(self) -> str:
        return f"<ProxyConnection #{self.index} ended_by={self.ended_by}>"

    def captured(self, direction: Direction) -> bytes:
        """Every byte read from the sending side in ``direction``, exactly as it came."""
        return bytes(self._received[direction])

    def forwarded(self, direction: Direction) -> bytes:
        """Every byte written to the receiving side in ``direction`` (after the toxics)."""
        return b"".join(self._pieces[direction])

    def writes(self, direction: Direction) -> list[int]:
        """The size of each write to the receiving side in ``direction``, in order."""
        return [len(piece) for piece in self._pieces[direction]]

    # --- Life cycle ---

    def _end(self, reason: str, *, reset: bool) -> None:
        if self.ended_by is None:
            self.ended_by = reason
            self._reset = reset
        self._scope.cancel()

    async def run(self) -> None:
        try:
            with self._scope:
                try:
                    self._server = await anyio.connect_tcp(*self.proxy.upstream)
                except OSError:
                    self._end("upstream_unreachable", reset=True)
                    return
                server = self._server
                for stream in (self._client, server):
                    _unbuffered_writes(stream)
                up_send, up_receive = anyio.create_memory_object_stream[_Item](16)
                down_send, down_receive = anyio.create_memory_object_stream[_Item](16)
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self._timers)
                    tasks.start_soon(self._read_loop, "upstream", self._client, up_send)
                    tasks.start_soon(self._write_loop, "upstream", server, up_receive)
                    tasks.start_soon(self._read_loop, "downstream", server, down_send)
                    tasks.start_soon(self._write_loop, "downstream", self._client, down_receive)
        finally:
            if self.ended_by is None:
                self.ended_by = "proxy_closed"
            streams = [s for s in (self._client, self._server) if s is not None]
            try:
                if self._reset:
                    for stream in streams:
                        reset_on_close(stream)
                elif self.ended_by not in ("eof", "proxy_closed"):
                    # An orderly cut: FIN after the bytes already sent, then read until each
                    # side closes too, so that no unread byte turns the close into a reset.
                    # Leaving the proxy's block cancels this wait.
                    with anyio.move_on_after(self.proxy.close_grace):
                        async with anyio.create_task_group() as tasks:
                            for stream in streams:
                                tasks.start_soon(_finish, stream)
            finally:
                with anyio.CancelScope(shield=True):
                    for stream in streams:
                        await stream.aclose()
                self.closed.set()

    # --- Pumps ---

    async def _read_loop(
        self,
        direction: Direction,
        source: anyio.abc.SocketStream,
        pipe: MemoryObjectSendStream[_Item],
    ) -> None:
        async with pipe:
            while True:
                await self.proxy._wait_unpaused(direction)
                # pause() cancels a read in progress, before it takes anything from the socket.
                with anyio.CancelScope() as self._reading[direction]:
                    try:
                        chunk = await source.receive(READ_SIZE)
                    except anyio.EndOfStream:
                        break
                    except (anyio.BrokenResourceError, OSError):
                        if self._get(direction, Timeout) is None:
                            self._end("reset", reset=True)
                            return
                        break  # a reset into a black hole is lost like everything else
                if self._reading[direction].cancelled_caught:
                    continue
                self._received[direction] += chunk
                await pipe.send((anyio.current_time(), chunk))
            await pipe.send(None)

    async def _write_loop(
        self,
        direction: Direction,
        sink: anyio.abc.SocketStream,
        pipe: MemoryObjectReceiveStream[_Item],
    ) -> None:
        rng = self._rng[direction]
        async with pipe:
            async for item in pipe:
                if item is None:
                    await self._forward_eof(direction, sink)
                    return
                arrived, chunk = item
                latency = self._get(direction, Latency)
                if latency is not None:
                    delay = latency.ms + rng.uniform(-latency.jitter, latency.jitter)
                    await anyio.sleep_until(arrived + max(0.0, delay) / 1000)
                corrupt = self._get(direction, Corrupt)
                if corrupt is not None:
                    chunk = _corrupt(chunk, corrupt.probability, rng)
                slicer = self._get(direction, Slicer)
                pieces = [chunk] if slicer is None else _slice(chunk, slicer, rng)
                for number, piece in enumerate(pieces):
                    if number and slicer is not None and slicer.delay_s > 0:
                        await anyio.sleep(slicer.delay_s)
                    if not await self._write(direction, sink, piece):
                        return

    async def _write(self, direction: Direction, sink: anyio.abc.SocketStream, data: bytes) -> bool:
        """Send one piece through the last toxics; False once the connection is ending."""
        if self._get(direction, Timeout) is not None:
            self.dropped[direction] += len(data)
            return True
        limit = self._get(direction, LimitData)
        if limit is not None:
            room = limit.n_bytes - int(self._state.get(limit, 0))
            data = data[: max(0, room)]
        bandwidth = self._get(direction, Bandwidth)
        quantum = len(data) or 1
        if bandwidth is not None:
            quantum = max(1, int(bandwidth.bytes_per_s / 20))  # pace in steps of 50 ms
        for start in range(0, len(data), quantum):
            part = data[start : start + quantum]
            if bandwidth is not None:
                now = anyio.current_time()
                done = max(now, self._state.get(bandwidth, now)) + len(part) / bandwidth.bytes_per_s
                self._state[bandwidth] = done
                await anyio.sleep_until(done)
            try:
                await sink.send(part)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                self._end("reset", reset=True)
                return False
            self._pieces[direction].append(part)
        if limit is not None:
            sent = int(self._state.get(limit, 0)) + len(data)
            self._state[limit] = sent
            if sent >= limit.n_bytes:
                self._end("limit_data", reset=False)
                return False
        return True

    async def _forward_eof(self, direction: Direction, sink: anyio.abc.SocketStream) -> None:
        if self._get(direction, Timeout) is None:
            slow = self._get(direction, SlowClose)
            if slow is not None:
                await anyio.sleep(slow.ms / 1000)
            try:
                await sink.send_eof()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass
        self._writers_done += 1
        if self._writers_done == len(DIRECTIONS):
            self._end("eof", reset=False)

    async def _timers(self) -> None:
        """Fire timeout(ms) and reset_peer(ms), rearming whenever the toxics change."""
        while True:
            changed = self.proxy._changed
            deadline, action = math.inf, ""
            for direction in DIRECTIONS:
                timers: list[tuple[str, ResetPeer | Timeout | None]] = [
                    ("reset_peer", self._get(direction, ResetPeer)),
                    ("timeout", self._get(direction, Timeout)),
                ]
                for name, toxic in timers:
                    if toxic is None or (name == "timeout" and toxic.ms <= 0):
                        continue
                    at = max(toxic.added_at, self.started) + toxic.ms / 1000
                    if at < deadline:
                        deadline, action = at, name
            with anyio.move_on_at(deadline):
                await changed.wait()
                continue
            self._end(action, reset=action == "reset_peer")
            return

    def _get(self, direction: Direction, kind: type[K]) -> K | None:
        return cast("K | None", self.proxy._toxics[direction].get(kind))


def _unbuffered_writes(stream: anyio.abc.SocketStream) -> None:
    """Make ``send()`` return only once the kernel has every byte, on asyncio as on trio.

    anyio's asyncio streams keep up to 64 KiB in a user-space buffer that closing discards;
    without it, bytes counted as forwarded are bytes the kernel will deliver, and a paused or
    slow receiver pushes back at once.
    """
    transport = getattr(stream, "_transport", None)  # asyncio only; trio has no such buffer
    set_limits = getattr(transport, "set_write_buffer_limits", None)
    if set_limits is not None:
        set_limits(0)


async def _finish(stream: anyio.abc.SocketStream) -> None:
    """Send EOF, then read and discard until the other side closes."""
    try:
        await stream.send_eof()
        while await stream.receive(READ_SIZE):
            pass
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass


def _corrupt(chunk: bytes, probability: float, rng: random.Random) -> bytes:
    return bytes(b ^ rng.randrange(1, 256) if rng.random() < probability else b for b in chunk)


def _slice(chunk: bytes, slicer: Slicer, rng: random.Random) -> list[bytes]:
    pieces = []
    start = 0
    while start < len(chunk):
        size = slicer.average_size + rng.randint(-slicer.size_variation, slicer.size_variation)
        pieces.append(chunk[start : start + max(1, size)])
        start += max(1, size)
    return pieces


# --- The proxy ---------------------------------------------------------------------------------


class FaultProxy:
    """A running fault proxy; made by :func:`fault_proxy`.

    Attributes:
        port: where it listens, on ``listen_host``.
        upstream: the ``(host, port)`` every connection is forwarded to.
        seed: the seed of its random choices.
        connections: every connection accepted so far, oldest first.
        close_grace: seconds an orderly cut (limit_data, timeout) waits for both sides to close
            before closing the sockets anyway.
    """

    def __init__(
        self, listen_host: str, port: int, upstream: tuple[str, int], seed: int, close_grace: float
    ) -> None:
        self.listen_host = listen_host
        self.port = port
        self.upstream = upstream
        self.seed = seed
        self.close_grace = close_grace
        self.connections: list[ProxyConnection] = []
        self._toxics: dict[Direction, dict[type[Toxic], Toxic]] = {d: {} for d in DIRECTIONS}
        self._changed = anyio.Event()
        self._resumed: dict[Direction, anyio.Event | None] = dict.fromkeys(DIRECTIONS)

    def __repr__(self) -> str:
        toxics = {d: sorted(_name(k) for k in self._toxics[d]) for d in DIRECTIONS}
        return (
            f"<FaultProxy {self.listen_host}:{self.port} -> {self.upstream[0]}:{self.upstream[1]}"
            f" seed={self.seed} toxics={toxics}>"
        )

    # --- Toxics: each returns the proxy, for chaining ---

    def latency(self, ms: float, jitter: float = 0, *, direction: Which = "both") -> FaultProxy:
        """Delay every chunk by ``ms`` milliseconds, give or take up to ``jitter`` (uniform)."""
        _check(ms >= 0 and 0 <= jitter, "latency needs ms >= 0 and jitter >= 0")
        return self._add(direction, lambda: Latency(ms=ms, jitter=jitter))

    def bandwidth(self, kib_per_s: float, *, direction: Which = "both") -> FaultProxy:
        """Forward at most ``kib_per_s`` KiB per second."""
        _check(kib_per_s > 0, "bandwidth needs kib_per_s > 0")
        return self._add(direction, lambda: Bandwidth(bytes_per_s=kib_per_s * 1024))

    def slicer(
        self,
        average_size: int,
        size_variation: int = 0,
        delay_s: float = 0.0,
        *,
        direction: Which = "both",
    ) -> FaultProxy:
        """Re-chunk into writes of ``average_size`` +/- ``size_variation`` bytes (at least 1),
        waiting ``delay_s`` seconds between them."""
        _check(
            average_size >= 1 and size_variation >= 0 and delay_s >= 0,
            "slicer needs average_size >= 1, size_variation >= 0 and delay_s >= 0",
        )
        return self._add(
            direction,
            lambda: Slicer(
                average_size=average_size, size_variation=size_variation, delay_s=delay_s
            ),
        )

    def limit_data(self, n_bytes: int, *, direction: Which = "both") -> FaultProxy:
        """Forward ``n_bytes`` more bytes on each connection, then close both of its sides
        (with FIN): the receiver sees a stream cut wherever that falls."""
        _check(n_bytes >= 0, "limit_data needs n_bytes >= 0")
        return self._add(direction, lambda: LimitData(n_bytes=n_bytes))

    def timeout(self, ms: float, *, direction: Which = "both") -> FaultProxy:
        """Forward nothing (data and EOF are dropped) while the sockets stay open; after ``ms``
        milliseconds close both sides, or never when ``ms`` is 0."""
        _check(ms >= 0, "timeout needs ms >= 0")
        return self._add(direction, lambda: Timeout(ms=ms))

    def blackhole(self, *, direction: Which = "both") -> FaultProxy:
        """``timeout(0)``: a half-open link, until the toxic is removed."""
        return self.timeout(0, direction=direction)

    def reset_peer(self, ms: float = 0, *, direction: Which = "both") -> FaultProxy:
        """After ``ms`` milliseconds close both sides with a TCP reset (SO_LINGER 0)."""
        _check(ms >= 0, "reset_peer needs ms >= 0")
        return self._add(direction, lambda: ResetPeer(ms=ms))

    def slow_close(self, ms: float, *, direction: Which = "both") -> FaultProxy:
        """Forward an EOF only ``ms`` milliseconds after it arrived."""
        _check(ms >= 0, "slow_close needs ms >= 0")
        return self._add(direction, lambda: SlowClose(ms=ms))

    def corrupt(self, probability: float, *, direction: Which = "both") -> FaultProxy:
        """Change each forwarded byte with this probability (XOR with a random non-zero byte)."""
        _check(0 <= probability <= 1, "corrupt needs 0 <= probability <= 1")
        return self._add(direction, lambda: Corrupt(probability=probability))

    def remove(self, kind: str, *, direction: Which = "both") -> FaultProxy:
        """Remove the toxic of this kind (``"latency"``, ...), if there is one."""
        toxic_type = KINDS[kind]
        for d in _directions(direction):
            self._toxics[d].pop(toxic_type, None)
        self._touch()
        return self

    def clear(self, *, direction: Which = "both") -> FaultProxy:
        """Remove every toxic, and resume reading."""
        for d in _directions(direction):
            self._toxics[d].clear()
        self.resume(direction=direction)
        self._touch()
        return self

    def toxics(self, direction: Direction) -> list[str]:
        """The kinds of toxic active on ``direction``."""
        return sorted(_name(kind) for kind in self._toxics[direction])

    def pause(self, *, direction: Which = "both") -> FaultProxy:
        """Stop reading from the sending side: a slow reader, whose buffers fill up."""
        for d in _directions(direction):
            if self._resumed[d] is None:
                self._resumed[d] = anyio.Event()
                for conn in self.connections:
                    conn._reading[d].cancel()
        return self

    def resume(self, *, direction: Which = "both") -> FaultProxy:
        """Read again after :meth:`pause`."""
        for d in _directions(direction):
            event, self._resumed[d] = self._resumed[d], None
            if event is not None:
                event.set()
        return self

    # --- What crossed ---

    def captured(self, direction: Direction) -> bytes:
        """Every byte the sending side put on the wire in ``direction``, over all connections
        in the order they were accepted: exactly what an eavesdropper would see."""
        return b"".join(conn.captured(direction) for conn in self.connections)

    def forwarded(self, direction: Direction) -> bytes:
        """Every byte delivered to the receiving side in ``direction``, over all connections."""
        return b"".join(conn.forwarded(direction) for conn in self.connections)

    # --- Internals ---

    def _add(self, direction: Which, make: Callable[[], Toxic]) -> FaultProxy:
        now = anyio.current_time()
        for d in _directions(direction):
            toxic = make()
            toxic.added_at = now
            self._toxics[d][type(toxic)] = toxic
        self._touch()
        return self

    def _touch(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def _wait_unpaused(self, direction: Direction) -> None:
        event = self._resumed[direction]
        while event is not None:
            await event.wait()
            event = self._resumed[direction]

    async def _serve(self, client: anyio.abc.SocketStream) -> None:
        conn = ProxyConnection(self, len(self.connections), client)
        self.connections.append(conn)
        await conn.run()


def _name(kind: type[Toxic]) -> str:
    return next(name for name, k in KINDS.items() if k is kind)


def _directions(which: Which) -> tuple[Direction, ...]:
    if which == "both":
        return DIRECTIONS
    if which not in DIRECTIONS:
        raise ValueError(f"direction must be 'upstream', 'downstream' or 'both', not {which!r}")
    return (which,)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@asynccontextmanager
async def fault_proxy(
    upstream_port: int,
    upstream_host: str = "127.0.0.1",
    *,
    seed: int | None = None,
    listen_host: str = "127.0.0.1",
    close_grace: float = 2.0,
) -> AsyncIterator[FaultProxy]:
    """Run a :class:`FaultProxy` to ``upstream_host:upstream_port`` for an ``async with`` block.

    It listens on a free port of ``listen_host``; both hosts must be loopback addresses. On leaving
    the block every task is cancelled and every socket closed.
    """
    for name, address in (("upstream_host", upstream_host), ("listen_host", listen_host)):
        if address not in LOOPBACK:
            raise ValueError(f"{name} must be a loopback address, not {address!r}")
    if seed is None:
        from_env = os.environ.get("ALVARO_FAULT_SEED")
        seed = int(from_env) if from_env else random.SystemRandom().randrange(2**32)
    listener = await anyio.create_tcp_listener(local_host=listen_host, local_port=0)
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    proxy = FaultProxy(listen_host, port, (upstream_host, upstream_port), seed, close_grace)
    try:
        async with listener, anyio.create_task_group() as tasks:
            tasks.start_soon(listener.serve, proxy._serve, tasks)
            try:
                yield proxy
            finally:
                proxy.resume()
                tasks.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The task group wraps the block's own exception: give it back as itself.
        lone = _lone(group)
        if lone is None:
            raise
        _add_seed_note(lone, proxy)
        raise lone from lone.__cause__
    except Exception as exc:
        _add_seed_note(exc, proxy)
        raise


def _lone(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The only exception in a (nested) group, or None when there are several."""
    found: BaseException = group
    while isinstance(found, BaseExceptionGroup):
        if len(found.exceptions) != 1:
            return None
        found = found.exceptions[0]
    return found


def _add_seed_note(exc: BaseException, proxy: FaultProxy) -> None:
    if isinstance(exc, Exception):
        add_note = getattr(exc, "add_note", None)  # Python 3.11 and later
        if add_note is not None:
            add_note(f"fault proxy: {proxy!r}")
