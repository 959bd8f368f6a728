"""The fault proxy (``tests.faultproxy``) itself, against a raw anyio server, on asyncio and trio.

Each toxic must do what it says, or the reliability tests built on it prove nothing: bytes arrive
intact through latency, slicer and bandwidth; limit_data cuts at exactly N bytes; a black hole
forwards nothing while the sockets stay open; reset_peer resets; and the proxy records exactly
the bytes that crossed it. Timing is checked only as lower bounds, or as generous upper bounds
for things that must happen.
"""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import pytest

from .faultproxy import fault_proxy
from .helpers import WAIT, T, eventually, free_port, reset_on_close

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .faultproxy import FaultProxy

pytestmark = pytest.mark.anyio


# --- A raw upstream server ---------------------------------------------------------------------


class Upstream:
    """A TCP server that records what each connection sent and how it ended.

    With ``echo``, it sends every chunk back. It closes its side when the client's EOF arrives.
    """

    def __init__(self, *, echo: bool = True) -> None:
        self.echo = echo
        self.received: list[bytearray] = []
        #: How each connection ended: "eof" or "reset" (a broken connection).
        self.ends: list[str] = []
        self.streams: list[anyio.abc.SocketStream] = []

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        data = bytearray()
        self.received.append(data)
        self.streams.append(stream)
        async with stream:
            try:
                while True:
                    chunk = await stream.receive()
                    data += chunk
                    if self.echo:
                        await stream.send(chunk)
            except anyio.EndOfStream:
                self.ends.append("eof")
            except anyio.BrokenResourceError:
                self.ends.append("reset")
            except anyio.ClosedResourceError:
                self.ends.append("closed here")


@asynccontextmanager
async def serving(upstream: Upstream) -> AsyncIterator[int]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, upstream.handle)
        try:
            yield int(listener.extra(anyio.abc.SocketAttribute.local_port))
        finally:
            tasks.cancel_scope.cancel()


@asynccontextmanager
async def proxied(
    upstream: Upstream, seed: int | None = None
) -> AsyncIterator[tuple[FaultProxy, anyio.abc.SocketStream]]:
    """A running upstream, a proxy in front of it, and a client connected through the proxy."""
    async with (
        serving(upstream) as port,
        fault_proxy(port, seed=seed) as proxy,
        await anyio.connect_tcp("127.0.0.1", proxy.port) as client,
    ):
        await eventually(lambda: len(upstream.streams) == 1)
        yield proxy, client


async def read_exactly(stream: anyio.abc.SocketStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        data += await stream.receive()
    assert len(data) == size, "more bytes than were sent"
    return bytes(data)


async def read_to_end(stream: anyio.abc.SocketStream) -> tuple[bytes, str]:
    """Read until EOF or a reset; return the bytes and "eof" or "reset"."""
    data = bytearray()
    try:
        while True:
            data += await stream.receive()
    except anyio.EndOfStream:
        return bytes(data), "eof"
    except anyio.BrokenResourceError:
        return bytes(data), "reset"


def payload(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


# --- Forwarding and capture ---------------------------------------------------------------------


async def test_forwards_both_ways_and_captures_exact_bytes() -> None:
    upstream = Upstream()
    data = payload(200_000)
    with anyio.fail_after(WAIT):
        async with proxied(upstream) as (proxy, client):
            async with anyio.create_task_group() as tasks:

                async def send_all() -> None:
                    for start in range(0, len(data), 7000):
                        await client.send(data[start : start + 7000])

                tasks.start_soon(send_all)
                echoed = await read_exactly(client, len(data))
            await client.send_eof()
            rest, ending = await read_to_end(client)
            (conn,) = proxy.connections
            await conn.closed.wait()
    assert echoed == data
    assert (rest, ending) == (b"", "eof")
    assert bytes(upstream.received[0]) == data
    assert upstream.ends == ["eof"]
    for direction in ("upstream", "downstream"):
        assert proxy.captured(direction) == data
        assert proxy.forwarded(direction) == data
        assert conn.captured(direction) == data
    assert conn.ended_by == "eof"


async def test_captures_every_connection_in_order() -> None:
    upstream = Upstream(echo=False)
    with anyio.fail_after(WAIT):
        async with serving(upstream) as port, fault_proxy(port) as proxy:
            for word in (b"first ", b"second ", b"third"):
                async with await anyio.connect_tcp("127.0.0.1", proxy.port) as client:
                    await client.send(word)
                    await client.send_eof()
                    assert await read_to_end(client) == (b"", "eof")
                await eventually(lambda: all(c.closed.is_set() for c in proxy.connections))
    assert proxy.captured("upstream") == b"first second third"
    assert proxy.captured("downstream") == b""
    assert [c.ended_by for c in proxy.connections] == ["eof"] * 3


# --- Latency, slicer, bandwidth: slower, never different ------------------------------------------


async def test_latency_delays_each_direction_and_keeps_bytes() -> None:
    upstream = Upstream()
    data = payload(50_000)
    delay_ms, jitter_ms = 1000 * T, 200 * T
    with anyio.fail_after(WAIT):
        async with proxied(upstream) as (proxy, client):
            proxy.latency(delay_ms, jitter=jitter_ms)
            started = anyio.current_time()
            await client.send(b"ping")
            assert await read_exactly(client, 4) == b"ping"
            round_trip = anyio.current_time() - started
            await client.send(data)
            assert await read_exactly(client, len(data)) == data
    # Each way takes at least the latency minus the jitter.
    assert round_trip >= 2 * (delay_ms - jitter_ms) / 1000 * 0.95
    assert proxy.captured("upstream") == b"ping" + data


async def test_slicer_rechunks_into_small_writes_and_keeps_bytes() -> None:
    upstream = Upstream()
    data = payload(5000)
    with anyio.fail_after(WAIT):
        async with proxied(upstream) as (proxy, client):
            proxy.slicer(8, 7, direction="upstream")
            proxy.slicer(3, 2, direction="downstream")
            await client.send(data)
            echoed = await read_exactly(client, len(data))
            proxy.slicer(3, 2, delay_s=T / 100, direction="downstream")  # changed while running
            small = b"x" * 40
            reads = 0
            await client.send(small)
            got = b""
            while len(got) < len(small):
                got += await client.receive()
                reads += 1
    (conn,) = proxy.connections
    assert echoed == data
    assert got == small
    up, down = conn.writes("upstream"), conn.writes("downstream")
    assert sum(up) == sum(down) == len(data) + len(small)
    assert min(up) >= 1
    assert max(up) <= 15
    assert min(down) >= 1
    assert max(down) <= 5
    assert len(up) >= len(data) // 15
    # The downstream pieces were written T/100 apart: the client could not get 40 bytes in one read.
    assert reads > 1


async def test_bandwidth_paces_the_transfer() -> None:
    upstream = Upstream()
    data = payload(64 * 1024)
    kib_per_s = 128
    with anyio.fail_after(WAIT):
        async with proxied(upstream) as (proxy, client):
            proxy.bandwidth(kib_per_s, direction="upstream")
            started = anyio.current_time()
            await client.send(data)
            echoed = await read_exactly(client, len(data))
            elapsed = anyio.current_time() - started
    assert echoed == data
    expected = len(data) / (kib_per_s * 1024)  # 0.5 s
    assert elapsed >= expected * 0.9
    assert proxy.forwarded("upstream") == data


# --- Cuts: limit_data, timeout, reset_peer ------------------------------------------------------


@pytest.mark.parametrize("limit", [0, 1, 3000, 9999])
async def test_limit_data_cuts_at_exactly_n_bytes_then_closes_both_sides(limit: int) -> None:
    upstream = Upstream(echo=False)
    data = payload(10_000)
    with anyio.fail_after(WAIT):
        async with proxied(upstream) as (proxy, client):
            proxy.limit_data(limit, direction="upstream")
            for start in range(0, len(data), 1500):
                try:
                    await client.send(data[start : start + 1500])
                except anyio.BrokenResourceError:
                    break  # the proxy may have closed already
            _, ending = await read_to_end(client)
            await client.aclose()  # as a peer does when its connection ends
            await eventually(lambda: len(upstream.ends) == 1)
            (conn,) = proxy.connections
            await conn.closed.wait()
    assert bytes(upstream.received[0]) == data[:limit]
    assert proxy.forwarded("upstream") == data[:limit]
    assert upstream.ends == ["eof"]  # a clean cut, not a reset
    assert ending in ("eof", "reset")  # the client's unread bytes may turn its FIN into a reset
    assert conn.ended_by == "limit_data"


async def test_blackhole_forwards_nothing_while_sockets_stay_open() -> None:
    upstream = Upstream()
    with anyio.fail_after(WAIT):
        async with proxied(upstream) as (proxy, client):
            await client.send(b"before")
            assert await read_exactly(client, 6) == b"before"
            proxy.blackhole()
            await client.send(b"lost in the hole")
            await client.send_eof()  # an EOF falls into the hole too
            with anyio.move_on_after(5 * T) as waited:
                await client.receive()
            assert waited.cancelled_caught, "something came through the black hole"
            assert bytes(upstream.received[0]) == b"before"
            assert upstream.ends == []  # the server's socket is still open
            (conn,) = proxy.connections
            assert not conn.closed.is_set()
            assert conn.dropped["upstream"] == len(b"lost in the hole")
            # The server can still write; that is dropped as well.
            await upstream.streams[0].send(b"from the server")
            with anyio.move_on_after(3 * T) as waited:
                await client.receive()
            assert waited.cancelled_caught
            assert proxy.captured("upstream") == b"beforelost in the hole"
            assert proxy.captured("downstream") == b"beforefrom the server"


async def test_removing_the_blackhole_forwards_again() -> None:
    upstream = Upstream()
    with anyio.fail_after(WAIT):
        async with proxied(upstream) as (proxy, client):
            proxy.blackhole(direction="upstream")
            assert proxy.toxics("upstream") == ["timeout"]
            assert proxy.toxics("downstream") == []
            await client.send(b"dropped")
            await eventually(lambda: proxy.connections[0].dropped["upstream"] == 7)
            proxy.remove("timeout")
            await client.send(b"kept")
            assert await read_exactly(client, 4) == b"kept"
    assert bytes(upstream.received[0]) == b"kept"


async def test_timeout_closes_both_sides_after_its_delay() -> None:
    upstream = Upstream()
    delay = 3 * T
    with anyio.fail_after(WAIT):
        async with proxied(upstream) as (proxy, client):
            started = anyio.current_time()
            proxy.timeout(delay * 1000)
            await client.send(b"never arrives")
            rest, ending = await read_to_end(client)
            elapsed = anyio.current_time() - started
            await eventually(lambda: len(upstream.ends) == 1)
    assert (rest, ending) == (b"", "eof")
    assert upstream.ends == ["eof"]
    assert bytes(upstream.received[0]) == b""
    assert elapsed >= delay * 0.95
    assert proxy.connections[0].ended_by == "timeout"


async def test_reset_peer_resets_both_sides() -> None:
    upstream = Upstream()
    with anyio.fail_after(WAIT):
        async with proxied(upstream) as (proxy, client):
            await client.send(b"hello")
            assert await read_exactly(client, 5) == b"hello"
            started = anyio.current_time()
            proxy.reset_peer(2000 * T)
            rest, ending = await read_to_end(client)
            elapsed = anyio.current_time() - started
            await eventually(lambda: len(upstream.ends) == 1)
    assert (rest, ending) == (b"", "reset")
    assert upstream.ends == ["reset"]
    assert elapsed >= 2 * T * 0.95
    assert proxy.connections[0].ended_by == "reset_peer"


async def test_reset_from_one_side_is_passed_on_as_a_reset() -> None:
    upstream = Upstream()
    with anyio.fail_after(WAIT):
        async with proxied(upstream) as (proxy, client):
            await client.send(b"hello")
            assert await read_exactly(client, 5) == b"hello"
            reset_on_close(upstream.streams[0])
            await upstream.streams[0].aclose()
            _, ending = await read_to_end(client)
    assert ending == "reset"
    assert proxy.connections[0].ended_by == "reset"


async def test_slow_close_delays_the_eof() -> None:
    upstream = Upstream()
    delay = 3 * T
    with anyio.fail_after(WAIT):
        async with proxied(upstream) as (proxy, client):
            proxy.slow_close(delay * 1000, direction="upstream")
            await client.send(b"last words")
            assert await read_exactly(client, 10) == b"last words"
            started = anyio.current_time()
            await client.send_eof()
            assert await read_to_end(client) == (b"", "eof")
            elapsed = anyio.current_time() - started
    assert elapsed >= delay * 0.95
    assert upstream.ends == ["eof"]


# --- corrupt, pause ---------------------------------------------------------------------------


async def test_corrupt_changes_forwarded_bytes_but_not_the_capture() -> None:
    upstream = Upstream(echo=False)
    data = payload(20_000)
    with anyio.fail_after(WAIT):
        async with proxied(upstream, seed=1234) as (proxy, client):
            proxy.corrupt(0.05, direction="upstream")
            await client.send(data)
            await eventually(lambda: len(upstream.received[0]) == len(data))
            proxy.corrupt(1.0, direction="upstream")
            await client.send(b"\x00" * 100)
            await eventually(lambda: len(upstream.received[0]) == len(data) + 100)
    received = bytes(upstream.received[0])
    assert proxy.captured("upstream") == data + b"\x00" * 100
    assert proxy.forwarded("upstream") == received
    changed = sum(a != b for a, b in zip(received[: len(data)], data, strict=True))
    assert 0.03 * len(data) < changed < 0.07 * len(data)
    assert b"\x00" not in received[len(data) :]  # with probability 1 every byte changes


async def test_pause_stops_reading_and_resume_delivers_everything() -> None:
    upstream = Upstream()
    data = payload(2 * 1024 * 1024)
    with anyio.fail_after(WAIT):
        async with proxied(upstream) as (proxy, client):
            await client.send(b"a")
            assert await read_exactly(client, 1) == b"a"
            proxy.pause(direction="upstream")
            await client.send(b"b")
            await anyio.sleep(3 * T)
            assert bytes(upstream.received[0]) == b"a"
            # A paused reader pushes back: the sender cannot get megabytes out.
            async with anyio.create_task_group() as tasks:
                sent = anyio.Event()

                async def send_big() -> None:
                    await client.send(data * 8)
                    sent.set()

                tasks.start_soon(send_big)
                await anyio.sleep(3 * T)
                assert not sent.is_set(), "16 MiB went out although nobody read them"
                proxy.resume(direction="upstream")
                echoed = await read_exactly(client, 1 + 8 * len(data))
    assert echoed == b"b" + data * 8


# --- Seeds, safety, clean-up --------------------------------------------------------------------


async def test_same_seed_same_faults() -> None:
    data = payload(3000)
    runs = []
    for upstream in (Upstream(echo=False), Upstream(echo=False)):
        received = upstream.received
        with anyio.fail_after(WAIT):
            async with proxied(upstream, seed=99) as (proxy, client):
                assert "seed=99" in repr(proxy)
                proxy.slicer(10, 9).corrupt(0.1)
                await client.send(data)
                await eventually(lambda: len(received[0]) == len(data))  # noqa: B023
        runs.append((bytes(received[0]), proxy.connections[0].writes("upstream")))
    assert runs[0] == runs[1]
    assert runs[0][0] != data


async def test_failure_inside_the_block_carries_the_seed() -> None:
    upstream = Upstream()
    async with serving(upstream) as port:
        with pytest.raises(AssertionError) as info:
            async with fault_proxy(port, seed=4242):
                raise AssertionError("a failing test")
    assert type(info.value) is AssertionError  # not wrapped in an ExceptionGroup
    assert any("seed=4242" in note for note in getattr(info.value, "__notes__", []))


async def test_only_loopback_addresses() -> None:
    with pytest.raises(ValueError, match="loopback"):
        async with fault_proxy(80, "192.0.2.1"):
            pass
    with pytest.raises(ValueError, match="loopback"):
        async with fault_proxy(80, listen_host="0.0.0.0"):
            pass


async def test_bad_toxic_arguments_are_refused() -> None:
    upstream = Upstream()
    async with serving(upstream) as port, fault_proxy(port) as proxy:
        bad: list[tuple[str, tuple[Any, ...], dict[str, Any], str]] = [
            ("latency", (-1,), {}, "latency needs"),
            ("bandwidth", (0,), {}, "bandwidth needs"),
            ("slicer", (0,), {}, "slicer needs"),
            ("limit_data", (-1,), {}, "limit_data needs"),
            ("corrupt", (1.5,), {}, "corrupt needs"),
            ("timeout", (5,), {"direction": "sideways"}, "direction must be"),
        ]
        for name, args, kwargs, message in bad:
            with pytest.raises(ValueError, match=message):
                getattr(proxy, name)(*args, **kwargs)
        assert proxy.toxics("upstream") == proxy.toxics("downstream") == []


async def test_upstream_unreachable_closes_the_client() -> None:
    with anyio.fail_after(WAIT):
        async with fault_proxy(free_port()) as proxy:
            async with await anyio.connect_tcp("127.0.0.1", proxy.port) as client:
                rest, _ = await read_to_end(client)
            await proxy.connections[0].closed.wait()
    assert rest == b""
    assert proxy.connections[0].ended_by == "upstream_unreachable"


async def test_leaving_the_block_closes_every_connection() -> None:
    upstream = Upstream()
    with anyio.fail_after(WAIT):
        async with serving(upstream) as port:
            async with fault_proxy(port) as proxy:
                client = await anyio.connect_tcp("127.0.0.1", proxy.port)
                proxy.latency(10_000).pause(direction="downstream")  # tasks parked in waits
                await client.send(b"stuck in the proxy")
                await eventually(lambda: len(upstream.streams) == 1)
            async with client:
                _, ending = await read_to_end(client)
            await eventually(lambda: len(upstream.ends) == 1)
    assert ending in ("eof", "reset")
    assert proxy.connections[0].closed.is_set()
    assert proxy.connections[0].ended_by == "proxy_closed"
    assert bytes(upstream.received[0]) == b""
