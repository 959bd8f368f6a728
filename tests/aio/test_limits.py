"""Limits a host enforces on its peers: frame timeout, slow consumers, queue bytes, connection caps.

Each test runs on asyncio and on trio, on loopback addresses only. Raw peers (``tests.rawpeer``)
play the misbehaving side: a client that trickles a frame, one that stops reading, one that
connects and says nothing. The cases follow the reliability cases R02, R06, R07, R08 and R09.
"""

from __future__ import annotations

import contextlib
import socket
import time
import tracemalloc
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

import alvaro
from alvaro import CloseCode, ConnectError, ConnectionClosed, ConnectionClosedError, OutboxFull
from alvaro.aio import Connection, connect
from alvaro.aio._admission import FD_RESERVE
from alvaro.aio._core import core_of
from alvaro.protocol import Close, encode_hello, encode_message, encode_ping

from ..helpers import WAIT, T, eventually
from ..rawpeer import RawPeer, frame_header, raw_server, stalled_reader

pytestmark = pytest.mark.anyio

#: Small timeouts so that every limit trips within a few T.
OPTIONS: dict[str, Any] = {"open_timeout": 10 * T, "close_timeout": 5 * T}


class Lost:
    """Records the connections a host reports lost, and lets a test wait for them."""

    def __init__(self) -> None:
        self.connections: list[Connection] = []
        self._changed = anyio.Event()

    def __call__(self, conn: Connection) -> None:
        self.connections.append(conn)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait(self, count: int = 1) -> list[Connection]:
        while len(self.connections) < count:
            await self._changed.wait()
        return self.connections


async def raw_client(port: int, *, local_host: str = "127.0.0.1") -> RawPeer:
    stream = await anyio.connect_tcp("127.0.0.1", port, local_host=local_host)
    return RawPeer(stream, "client")


# --- frame_timeout: a started frame must finish ------------------------------------------------


async def test_frame_trickled_slower_than_frame_timeout_closes_with_timeout() -> None:
    lost = Lost()
    async with alvaro.aio.Host(frame_timeout=3 * T, **OPTIONS) as host:
        host.lost_client = lost
        with anyio.fail_after(WAIT):
            peer = await raw_client(host.port)
            await peer.handshake()
            # A header promising 1000 bytes, then a few of them, then nothing.
            await peer.send(frame_header(1000, 1) + b"\0\0\0\0")
            started = time.monotonic()
            close = await peer.expect(Close)
            elapsed = time.monotonic() - started
            (conn,) = await lost.wait()
            await peer.aclose()
    assert close.code == CloseCode.TIMEOUT
    assert "frame" in close.reason
    assert conn.close_code == CloseCode.TIMEOUT
    assert conn.closed_by_peer is False
    assert 3 * T * 0.9 <= elapsed < 3 * T + 20 * T


async def test_steady_stream_of_small_frames_is_not_a_slow_frame() -> None:
    """Reads that keep ending inside a frame are fine while frames keep completing."""
    got: list[Any] = []
    frame = encode_message("x" * 50)
    async with alvaro.aio.Host(frame_timeout=3 * T, **OPTIONS) as host:
        host.got_data = lambda conn, data, metadata: got.append(data)
        with anyio.fail_after(WAIT):
            peer = await raw_client(host.port)
            await peer.handshake()
            # 12 frames, each split in two writes T/2 apart, with the split always inside a
            # frame: 6 T in all, twice frame_timeout, with a partial frame buffered throughout.
            half = len(frame) // 2
            await peer.send(frame[:half])
            for _ in range(11):
                await anyio.sleep(T / 2)
                await peer.send(frame[half:] + frame[:half])
            await anyio.sleep(T / 2)
            await peer.send(frame[half:])
            await eventually(lambda: len(got) == 12)
            assert host.clients, "the host dropped a client that kept completing frames"
            await peer.aclose()
    assert got == ["x" * 50] * 12


async def test_a_slow_application_does_not_count_against_the_peers_frame_clock() -> None:
    """While got_data takes its time, the half frame behind it waits in the buffer: that is the
    application's delay, not the peer's, and must not close the connection (nor cancel the
    callback)."""
    got: list[Any] = []
    lost = Lost()

    async def slow(conn: Connection, data: Any, metadata: Any) -> None:
        await anyio.sleep(5 * T)  # longer than frame_timeout
        got.append(data)

    second = encode_message("second")
    async with alvaro.aio.Host(frame_timeout=3 * T, **OPTIONS) as host:
        host.got_data = slow
        host.lost_client = lost
        with anyio.fail_after(WAIT):
            peer = await raw_client(host.port)
            await peer.handshake()
            await peer.send(encode_message("first") + second[:5])
            await anyio.sleep(T)
            await peer.send(second[5:])
            await eventually(lambda: len(got) == 2)
            assert not lost.connections
            await peer.aclose()
    assert got == ["first", "second"]


async def test_frame_timeout_none_waits_for_a_slow_frame() -> None:
    got: list[Any] = []
    frame = encode_message("slow")
    async with alvaro.aio.Host(frame_timeout=None, **OPTIONS) as host:
        host.got_data = lambda conn, data, metadata: got.append(data)
        with anyio.fail_after(WAIT):
            peer = await raw_client(host.port)
            await peer.handshake()
            for byte in range(len(frame)):
                await peer.send(frame[byte : byte + 1])
                await anyio.sleep(T / 10)
            await eventually(lambda: bool(got))
            await peer.aclose()
    assert got == ["slow"]


# --- keepalive: bytes arriving prove the peer alive ----------------------------------------------


async def test_slow_large_frame_is_not_taken_for_a_dead_peer() -> None:
    """A peer busy sending one large frame cannot answer a ping until it is done: the bytes
    arriving meanwhile keep it connected, past ping_timeout. Once it goes silent, it is dropped."""
    got: list[Any] = []
    lost = Lost()
    frame = encode_message(b"\1" * 20_000)
    options = dict(OPTIONS, ping_interval=2 * T, ping_timeout=2 * T, frame_timeout=None)
    async with alvaro.aio.Host(**options) as host:
        host.got_data = lambda conn, data, metadata: got.append(data)
        host.lost_client = lost
        with anyio.fail_after(WAIT):
            peer = await raw_client(host.port)
            await peer.handshake()
            # 20 pieces T/2 apart: 10 T, far past ping_interval + ping_timeout. This raw peer
            # never answers pings.
            step = len(frame) // 20 + 1
            for start in range(0, len(frame), step):
                await peer.send(frame[start : start + step])
                await anyio.sleep(T / 2)
            await eventually(lambda: bool(got))
            assert not lost.connections, "dropped while its frame was still arriving"
            (conn,) = await lost.wait()
            await peer.aclose()
    assert got == [b"\1" * 20_000]
    assert conn.close_code == CloseCode.TIMEOUT


# --- write_timeout: slow consumers (R07) -------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_send_to_a_stalled_reader_waits_then_drops_it_as_slow_consumer(tls: bool) -> None:
    lost = Lost()
    opened = anyio.Event()
    conns: list[Connection] = []
    options = dict(OPTIONS, write_timeout=3 * T, ping_interval=None)
    if tls:
        pytest.importorskip("trustme")
        from alvaro.testing import client_context, make_ca, server_context

        ca = make_ca()
        options["ssl_context"] = server_context(ca)

    def new_client(conn: Connection) -> None:
        conns.append(conn)
        opened.set()

    sent = 0
    error: BaseException | None = None
    stack = contextlib.AsyncExitStack()
    async with alvaro.aio.Host(**options) as host:
        host.new_client = new_client
        host.lost_client = lost
        with anyio.fail_after(WAIT):
            if tls:
                # An alvaro client that never calls receive(): once its queue is full, it
                # stops reading.
                client = await stack.enter_async_context(
                    connect("127.0.0.1", host.port, ssl_context=client_context(ca), **OPTIONS)
                )
            else:
                peer = await stalled_reader(host.port)
            await opened.wait()
            (conn,) = conns
            started = time.monotonic()
            try:
                while True:
                    await conn.send(b"\0" * 1024)
                    sent += 1
            except ConnectionClosed as exc:
                error = exc
            elapsed = time.monotonic() - started
            await lost.wait()
            if tls:
                await drain_until_closed(client)
                await stack.aclose()
            else:
                await peer.aclose()
    assert isinstance(error, ConnectionClosedError)
    assert error.code == CloseCode.SLOW_CONSUMER
    assert error.by_peer is False
    assert conn.close_code == CloseCode.SLOW_CONSUMER
    assert conn.closed_by_peer is False
    assert "took nothing" in conn.close_reason
    # send() waited instead of queueing without bound: a few hundred KiB at most went out.
    assert sent * 1024 < 8 * 1024 * 1024
    assert elapsed >= 3 * T * 0.9


async def drain_until_closed(client: alvaro.aio.Client) -> None:
    """Take messages until the connection reports its close."""
    for _ in range(100_000):
        try:
            await client.receive()
        except ConnectionClosed:
            return
    raise AssertionError("the connection never reported its close")


async def fill_outbox(conn: Connection) -> None:
    """``send_data`` 1 KiB messages, up to 100 MB, letting the writer run now and then."""
    for count in range(100_000):
        conn.send_data(b"\0" * 1024)
        if count % 64 == 0:
            await anyio.lowlevel.checkpoint()


async def test_send_data_raises_outbox_full_for_a_stalled_reader() -> None:
    conns: list[Connection] = []
    opened = anyio.Event()

    def new_client(conn: Connection) -> None:
        conns.append(conn)
        opened.set()

    options = dict(OPTIONS, outbox_limit=256 * 1024, write_timeout=None, ping_interval=None)
    async with alvaro.aio.Host(**options) as host:
        host.new_client = new_client
        with anyio.fail_after(WAIT):
            peer = await stalled_reader(host.port)
            await opened.wait()
            (conn,) = conns
            with pytest.raises(OutboxFull, match="outbox_limit"):
                await fill_outbox(conn)
            assert conn.is_open, "a full outbox refuses messages; it does not close"
            await peer.aclose()
    # Sent: the kernel's buffers on loopback; then 256 KiB queued; far below 100 MB.
    assert 256 * 1024 <= core_of(conn).outbox.pending < 512 * 1024


# --- max_queue_bytes and max_queue: a slow application stops the reader (R08) ------------------


@pytest.mark.parametrize(
    ("size", "max_queue", "max_queue_bytes"),
    [(64 * 1024, 1000, 256 * 1024), (16 * 1024, 8, 4 * 1024 * 1024)],
    ids=["bytes-cap", "count-cap"],
)
async def test_receive_queue_stays_bounded_while_the_application_does_not_read(
    size: int, max_queue: int, max_queue_bytes: int
) -> None:
    """With nothing taking messages, the host stops reading once its queue is full by count or
    by bytes; the client's ``await send()`` then waits. Nothing is lost when reading resumes."""
    conns: list[Connection] = []
    opened = anyio.Event()

    def new_client(conn: Connection) -> None:
        conns.append(conn)
        opened.set()

    count = 16 * 1024 * 1024 // size  # more than the kernel's buffers on loopback hold
    sent = 0
    options = dict(OPTIONS, max_queue=max_queue, max_queue_bytes=max_queue_bytes)
    async with alvaro.aio.Host(**options) as host:
        host.new_client = new_client
        with anyio.fail_after(WAIT):
            async with connect("127.0.0.1", host.port, write_limit=4096, **OPTIONS) as client:
                await opened.wait()
                (conn,) = conns

                async def send_all() -> None:
                    nonlocal sent
                    for seq in range(count):
                        await client.send(seq.to_bytes(4, "big") + b"\0" * (size - 4))
                        sent += 1

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(send_all)
                    # Let the sender run into the limits.
                    previous = -1
                    while sent != previous:
                        previous = sent
                        await anyio.sleep(3 * T)
                    assert sent < count, "the sender never had to wait"
                    # What the queue holds: within its caps, plus at most one read's worth.
                    waiting = len(core_of(conn).inbox)
                    assert waiting <= max(max_queue, max_queue_bytes // size) + 256 * 1024 // size
                    received = [await conn.receive() for _ in range(count)]
    assert [int.from_bytes(m.data[:4], "big") for m in received] == list(range(count))


async def test_receive_queue_counts_each_message_by_its_own_size() -> None:
    """A read's bytes are not shared out over the frames in it: 256 KiB messages each followed
    by 1,000 empty PINGs in the same write still count 256 KiB each against max_queue_bytes."""
    conns: list[Connection] = []
    opened = anyio.Event()

    def new_client(conn: Connection) -> None:
        conns.append(conn)
        opened.set()

    size = 256 * 1024
    max_queue_bytes = 512 * 1024
    burst = encode_message(b"\0" * size) + encode_ping() * 1000
    sent = 0
    options = dict(OPTIONS, max_queue=200, max_queue_bytes=max_queue_bytes)
    async with alvaro.aio.Host(**options) as host:
        host.new_client = new_client
        with anyio.fail_after(WAIT):
            peer = await raw_client(host.port)
            await peer.handshake()
            await opened.wait()
            (conn,) = conns

            async def flood() -> None:
                nonlocal sent
                for _ in range(64):  # 16 MiB of messages: more than loopback's buffers hold
                    await peer.send(burst)
                    sent += 1

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(flood)
                previous = -1
                while sent != previous:  # until the host stops reading
                    previous = sent
                    await anyio.sleep(3 * T)
                assert sent < 64, "the host never stopped reading"
                # The byte cap, plus the one message that took the queue over it.
                assert len(core_of(conn).inbox) * size <= max_queue_bytes + size
                assert core_of(conn).inbox.queued_bytes >= len(core_of(conn).inbox) * size
                tasks.cancel_scope.cancel()
            await peer.aclose()


async def test_ping_flood_from_a_host_that_never_reads_does_not_grow_the_client() -> None:
    """The client's answers to a hostile host's PINGs are bounded too (tracemalloc)."""
    flood = encode_ping(b"p" * 4096) * 64  # 256 KiB a write
    writes = 128  # 32 MiB in all

    async def hostile_host(peer: RawPeer) -> None:
        raw = peer.stream.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await peer.handshake(encode_hello("host"))
        for _ in range(writes):
            await peer.send(flood)
        await peer.send(encode_message("end"))  # after every PING: read once this arrives
        await anyio.sleep_forever()

    ended = anyio.Event()
    async with raw_server(hostile_host) as port:
        client = alvaro.Client(**OPTIONS)
        client.got_data = lambda data, metadata: ended.set()
        tracemalloc.start()
        try:
            async with anyio.create_task_group() as tasks:
                with anyio.fail_after(WAIT):
                    await tasks.start(client.connect, "127.0.0.1", port)
                    before, _ = tracemalloc.get_traced_memory()
                    tracemalloc.reset_peak()
                    await ended.wait()
                    _, peak = tracemalloc.get_traced_memory()
                tasks.cancel_scope.cancel()
        finally:
            tracemalloc.stop()
    # Reads of up to 256 KiB and their PINGs come and go; a queue of 32 MiB of PONGs did not.
    assert peak - before < 4 * 1024 * 1024


# --- max_connections and per-address caps (R06, R09) -------------------------------------------


async def connect_refused(port: int, **options: Any) -> ConnectionClosed:
    with pytest.raises(ConnectError) as info:
        async with connect("127.0.0.1", port, **OPTIONS, **options):
            pass
    cause = info.value.__cause__
    assert isinstance(cause, ConnectionClosed), repr(info.value)
    return cause


async def test_connections_over_max_connections_are_refused_with_try_again_later() -> None:
    async with alvaro.aio.Host(max_connections=3, **OPTIONS) as host:
        host.got_data = lambda conn, data, metadata: conn.send_data(data)
        with anyio.fail_after(WAIT):
            async with contextlib.AsyncExitStack() as stack:
                clients = [
                    await stack.enter_async_context(connect("127.0.0.1", host.port, **OPTIONS))
                    for _ in range(3)
                ]
                refused = await connect_refused(host.port)
                assert refused.code == CloseCode.TRY_AGAIN_LATER
                assert "too many connections" in refused.reason
                # The clients already connected are served as before.
                for number, client in enumerate(clients):
                    client.send_data(number)
                    assert (await client.receive()).data == number
                # A place freed is a place taken.
                await clients[0].aclose()
                await eventually(lambda: len(host.clients) == 2)
                async with connect("127.0.0.1", host.port, **OPTIONS) as again:
                    again.send_data("again")
                    assert (await again.receive()).data == "again"


async def test_max_connections_is_lowered_to_the_file_descriptor_budget(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    resource = pytest.importorskip("resource")
    monkeypatch.setattr(resource, "getrlimit", lambda which: (FD_RESERVE + 2, FD_RESERVE + 2))
    async with alvaro.aio.Host(**OPTIONS) as host:
        with anyio.fail_after(WAIT):
            async with (
                connect("127.0.0.1", host.port, **OPTIONS),
                connect("127.0.0.1", host.port, **OPTIONS),
            ):
                refused = await connect_refused(host.port)
    assert refused.code == CloseCode.TRY_AGAIN_LATER
    assert any("file-descriptor limit" in r.getMessage() for r in caplog.records)


async def test_silent_connections_per_address_are_capped_and_others_still_served() -> None:
    """Slowloris: one address holding connections open without a handshake gets no more than
    max_unauthenticated_per_address; other addresses are served; the silent ones time out."""
    options = dict(OPTIONS, open_timeout=6 * T)
    async with alvaro.aio.Host(max_unauthenticated_per_address=3, **options) as host:
        with anyio.fail_after(WAIT):
            silent = [await raw_client(host.port, local_host="127.0.0.2") for _ in range(3)]
            await anyio.sleep(T)  # let the host accept them
            extra = await raw_client(host.port, local_host="127.0.0.2")
            events = await extra.read_until_eof()
            # Someone else is served at once, while the attacker's connections are held.
            started = time.monotonic()
            async with connect("127.0.0.1", host.port, **OPTIONS) as client:
                client.send_data("hello")
                assert time.monotonic() - started < 3 * T
            # The silent ones are closed at open_timeout with TIMEOUT.
            for peer in silent:
                closes = [e for e in await peer.read_until_eof() if isinstance(e, Close)]
                assert [c.code for c in closes] == [CloseCode.TIMEOUT]
                await peer.aclose()
            await extra.aclose()
            # Their places are free again.
            again = await raw_client(host.port, local_host="127.0.0.2")
            await again.handshake()
            await again.aclose()
    assert [(type(e), getattr(e, "code", None)) for e in events] == [
        (Close, CloseCode.TRY_AGAIN_LATER)
    ]


async def test_a_tls_host_refuses_over_the_limit_before_the_tls_handshake() -> None:
    pytest.importorskip("trustme")
    from alvaro.testing import client_context, make_ca, server_context

    ca = make_ca()
    async with alvaro.aio.Host(
        max_connections=1, ssl_context=server_context(ca), **OPTIONS
    ) as host:
        context = client_context(ca)
        with anyio.fail_after(WAIT):
            async with connect("127.0.0.1", host.port, ssl_context=context, **OPTIONS):
                with pytest.raises(ConnectError):
                    async with connect("127.0.0.1", host.port, ssl_context=context, **OPTIONS):
                        pass


async def test_host_limits_are_validated() -> None:
    for name in ("max_connections", "max_unauthenticated_per_address"):
        for bad in (0, -1, 1.5, True, "8"):
            with pytest.raises(ValueError, match=name):
                alvaro.aio.Host(**{name: bad})
