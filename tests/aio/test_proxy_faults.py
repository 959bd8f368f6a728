"""Network faults between a real Host and Client, injected by a fault proxy (tests.faultproxy).

Every test runs on asyncio and trio, over plain TCP and over TLS, with the client connected to
the host through an in-process proxy that slices, delays, throttles, cuts, black-holes, resets
or corrupts the byte streams. The cases are named after the reliability cases R04 and R20.

What they check is what an application relies on: every message delivered is one that was sent,
in order and without gaps; a connection that cannot go on is reported exactly once, with the
close code that says why; and a healthy but slow or choppy link is never taken for a dead one.
"""

from __future__ import annotations

import logging
import random
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

import alvaro.testing
from alvaro import CloseCode, ConnectionClosed
from alvaro.aio import Client, Connection, Host
from alvaro.protocol import Decoder, Ping

from ..faultproxy import Direction, fault_proxy
from ..helpers import WAIT, T

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    import trustme

    from ..faultproxy import FaultProxy

pytestmark = pytest.mark.anyio

#: Settings of every Host and Client here: small, so that faults resolve fast.
OPTIONS: dict[str, Any] = {"open_timeout": 20 * T, "close_timeout": 5 * T}
#: Extra time allowed on top of a deadline for the work around it, on a busy 2-core machine.
MARGIN = 5 * T
#: The close codes a receiver may use for bytes that are not a valid alvaro stream.
BAD_DATA = {CloseCode.PROTOCOL_ERROR, CloseCode.INVALID_DATA, CloseCode.MESSAGE_TOO_BIG}

Record = tuple[Any, dict[str, Any]]


@pytest.fixture(params=["plain", "tls"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- Recording both ends --------------------------------------------------------------------------


class Log:
    """What one end saw: messages in order, and every report of a lost connection.

    ``lost`` holds ``(close_code, closed_by_peer, anyio time)`` per call of the lost callback.
    """

    def __init__(self) -> None:
        self.data: list[Record] = []
        self.lost: list[tuple[int | None, bool | None, float]] = []
        self._changed = anyio.Event()

    def notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds after some callback; bound it with fail_after."""
        while not predicate():
            await self._changed.wait()

    def record_lost(self, conn: Connection | None) -> None:
        assert conn is not None
        self.lost.append((conn.close_code, conn.closed_by_peer, anyio.current_time()))
        self.notify()


class HostLog(Log):
    """Host callbacks; ``got_data`` echoes messages whose metadata asks for it."""

    def __init__(self) -> None:
        super().__init__()
        self.connections: list[Connection] = []

    def new_client(self, conn: Connection) -> None:
        self.connections.append(conn)
        self.notify()

    def got_data(self, conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        self.data.append((data, metadata))
        if metadata.get("echo"):
            try:
                conn.send_data(data, metadata)
            except ConnectionClosed:
                pass  # lost meanwhile; lost_client tells the test
        self.notify()

    def lost_client(self, conn: Connection) -> None:
        self.record_lost(conn)


@dataclass
class Link:
    """A host, a client connected to it through a fault proxy, and what each end saw."""

    host: Host
    client: Client
    proxy: FaultProxy
    host_log: HostLog
    client_log: Log

    @property
    def host_conn(self) -> Connection:
        return self.host_log.connections[0]


@asynccontextmanager
async def linked(
    transport: str,
    ca: trustme.CA,
    *,
    seed: int | None = None,
    host_options: dict[str, Any] | None = None,
    client_options: dict[str, Any] | None = None,
) -> AsyncIterator[Link]:
    """Run a Host, a fault proxy in front of it, and a Client connected through the proxy.

    The client's ``got_data`` is left unset, so messages wait for ``client.receive()``. On leaving
    the block the toxics are cleared and a still open client closes normally.
    """
    tls = transport == "tls"
    host_log, client_log = HostLog(), Log()
    host = Host(
        "127.0.0.1",
        0,
        ssl_context=alvaro.testing.server_context(ca) if tls else None,
        **{**OPTIONS, **(host_options or {})},
    )
    host.new_client = host_log.new_client  # type: ignore[method-assign]
    host.got_data = host_log.got_data  # type: ignore[method-assign]
    host.lost_client = host_log.lost_client  # type: ignore[method-assign]
    client = Client(
        ssl_context=alvaro.testing.client_context(ca) if tls else None,
        **{**OPTIONS, **(client_options or {})},
    )
    client.lost_connection = lambda: client_log.record_lost(client.connection)  # type: ignore[method-assign]
    async with (
        host,
        fault_proxy(host.port, seed=seed) as proxy,
        anyio.create_task_group() as tasks,
    ):
        await tasks.start(client.connect, "127.0.0.1", proxy.port)
        await host_log.wait_for(lambda: bool(host_log.connections))
        yield Link(host, client, proxy, host_log, client_log)
        proxy.clear()
        if client.connected:
            await client.aclose()


def mixed_messages(count: int, seed: int = 1) -> list[Record]:
    """Messages of every kind: raw bytes, text, objects, arrays, numbers; numbered in metadata."""
    rng = random.Random(seed)
    alphabet = 'ab é✓𝄞"\\\n\x00{}'
    messages: list[Record] = []
    for n in range(count):
        kind = n % 5
        data: Any
        if kind == 0:
            data = rng.randbytes(rng.randint(0, 200))
        elif kind == 1:
            data = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        elif kind == 2:
            data = {"n": n, "values": [rng.random() for _ in range(rng.randint(0, 5))], "ok": None}
        elif kind == 3:
            data = [n, True, None, -1.5, "x" * rng.randint(0, 30)]
        else:
            data = rng.randint(-(2**53), 2**53)
        messages.append((data, {"seq": n, "kind": kind}))
    return messages


def frames_of(stream: bytes, receiver: str) -> list[Any]:
    """Decode one direction of a plaintext alvaro stream as its receiver would."""
    decoder = Decoder("host" if receiver == "host" else "client")
    decoder.receive_data(stream)
    return decoder.events()


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


def assert_prefix(delivered: list[int], what: str) -> None:
    """Numbered messages delivered in order, from the first, with no gap and no stranger."""
    assert delivered == list(range(len(delivered))), f"{what}: lost, repeated or strange messages"


# --- Choppy links: every message, in order --------------------------------------------------------


async def test_sliced_and_delayed_stream_delivers_every_message_in_order(
    transport: str, alvaro_ca: trustme.CA
) -> None:
    messages = mixed_messages(500)
    with anyio.fail_after(WAIT):
        async with linked(transport, alvaro_ca) as link:
            # Pieces of 1 to 16 bytes, each chunk delayed 2 to 8 ms, in both directions.
            handshake = len(link.proxy.connections[0].writes("upstream"))
            link.proxy.slicer(8, 8).latency(5, jitter=3)
            async with anyio.create_task_group() as tasks:

                async def send_all() -> None:
                    for data, metadata in messages:
                        await link.client.send(data, {**metadata, "echo": True})

                tasks.start_soon(send_all)
                echoed = [await link.client.receive() for _ in messages]
            assert link.client.connected
            writes = link.proxy.connections[0].writes("upstream")[handshake:]
    assert [(data, {**meta, "echo": True}) for data, meta in messages] == link.host_log.data
    assert [(m.data, m.metadata) for m in echoed] == link.host_log.data
    assert all(type(m.data) is type(data) for m, (data, _) in zip(echoed, messages, strict=True))
    assert max(writes) <= 16
    assert len(writes) > 1000  # the stream really was chopped up
    assert link.host_log.lost == [(CloseCode.NORMAL, True, link.host_log.lost[0][2])]


# --- R04(c): the stream is cut in the middle of a frame -------------------------------------------


@pytest.mark.parametrize("direction", ["upstream", "downstream"])
async def test_r04c_limit_data_cut_mid_frame_delivers_only_complete_frames(
    direction: Direction, transport: str, alvaro_ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    """Upstream, the host receives the cut stream; downstream, the client does."""
    first = [({"n": 1}, {}), ("two", {"k": 2}), ([3, 3, 3], {})]
    cut = 32 * 1024
    received: list[Record] = []
    with anyio.fail_after(WAIT):
        async with linked(transport, alvaro_ca) as link:
            before = len(link.proxy.forwarded(direction))  # the handshake
            link.proxy.limit_data(cut, direction=direction)
            sender: Client | Connection = link.client if direction == "upstream" else link.host_conn
            for data, metadata in first:
                sender.send_data(data, metadata)
            sender.send_data(b"\x04" * (64 * 1024), {"n": 4})  # cut halfway through
            if direction == "downstream":
                try:
                    async for message in link.client:
                        received.append((message.data, message.metadata))
                except ConnectionClosed:
                    pass
            else:
                received = link.host_log.data
            await link.host_log.wait_for(lambda: bool(link.host_log.lost))
            await link.client_log.wait_for(lambda: bool(link.client_log.lost))
            forwarded = len(link.proxy.forwarded(direction))
    assert link.proxy.connections[0].ended_by == "limit_data"
    assert forwarded == before + cut
    assert received == first
    # Reported once, as a connection lost without a CLOSE frame, on both sides.
    [(code, by_peer, _)] = link.host_log.lost
    assert (code, by_peer) == (CloseCode.ABNORMAL, True)
    [(code, by_peer, _)] = link.client_log.lost
    assert (code, by_peer) == (CloseCode.ABNORMAL, True)
    assert errors_logged(caplog) == []


# --- R20: keepalive finds half-open links and leaves slow ones alone ------------------------------


async def test_r20a_blackhole_both_ways_times_out_on_both_sides(
    transport: str, alvaro_ca: trustme.CA
) -> None:
    interval = timeout = 2 * T
    keepalive = {"ping_interval": interval, "ping_timeout": timeout}
    with anyio.fail_after(WAIT):
        async with linked(
            transport, alvaro_ca, host_options=keepalive, client_options=keepalive
        ) as link:
            link.client.send_data("before", {"echo": True})
            assert (await link.client.receive()).data == "before"
            link.proxy.blackhole()
            started = anyio.current_time()
            link.client.send_data("into the hole")
            link.host_conn.send_data("into the hole too")
            await link.host_log.wait_for(lambda: bool(link.host_log.lost))
            await link.client_log.wait_for(lambda: bool(link.client_log.lost))
            # The sockets stayed open: only the keepalive could tell.
            assert not link.proxy.connections[0].closed.is_set()
    assert link.host_log.data == [("before", {"echo": True})]
    for log in (link.host_log, link.client_log):
        [(code, _, at)] = log.lost
        assert code == CloseCode.TIMEOUT
        assert at - started <= interval + timeout + T + MARGIN
    conn = link.client.connection
    assert conn is not None
    assert conn.close_code == CloseCode.TIMEOUT
    assert link.host_conn.close_code == CloseCode.TIMEOUT


async def test_r20c_idle_choppy_link_stays_up_for_twenty_ping_intervals(
    transport: str, alvaro_ca: trustme.CA
) -> None:
    interval = T / 2
    keepalive = {"ping_interval": interval, "ping_timeout": 5 * T}
    with anyio.fail_after(WAIT):
        async with linked(
            transport, alvaro_ca, host_options=keepalive, client_options=keepalive
        ) as link:
            link.proxy.latency(10, jitter=5).slicer(4, 3)
            await anyio.sleep(20 * interval)
            assert link.host_log.lost == []
            assert link.client_log.lost == []
            assert link.client.connected
            assert link.host.clients == [link.host_conn]
            # Both sides measured round trips: their pings were answered through the proxy.
            assert link.host_conn.latency is not None
            assert link.client.connection is not None
            assert link.client.connection.latency is not None
            link.client.send_data("still here", {"echo": True})
            assert (await link.client.receive()).data == "still here"
            upstream = link.proxy.captured("upstream")
            downstream = link.proxy.captured("downstream")
    if transport == "plain":
        # The test really spanned many pings in each direction.
        assert sum(isinstance(e, Ping) for e in frames_of(upstream, "host")) >= 8
        assert sum(isinstance(e, Ping) for e in frames_of(downstream, "client")) >= 8


async def test_r20d_large_messages_on_a_slow_link_outlast_ping_timeout(
    transport: str, alvaro_ca: trustme.CA
) -> None:
    """Scaled down from 1 MiB at 512 KiB/s with the default keepalive: each transfer takes
    about 1.5 s, five times ping_timeout, and the pongs wait behind it. Bytes arriving meanwhile
    prove the peer alive (Settings.ping_timeout), so neither side may give up."""
    interval, timeout = 2 * T, 3 * T
    keepalive = {"ping_interval": interval, "ping_timeout": timeout}
    size = 192 * 1024
    up, down = random.Random(1).randbytes(size), random.Random(2).randbytes(size)
    slowest: list[float] = [0.0]

    async def watch_latency(link: Link) -> None:
        client_conn = link.client.connection
        assert client_conn is not None
        while True:
            for conn in (link.host_conn, client_conn):
                slowest[0] = max(slowest[0], conn.latency or 0.0)
            await anyio.sleep(T / 4)

    with anyio.fail_after(WAIT):
        async with linked(
            transport, alvaro_ca, host_options=keepalive, client_options=keepalive
        ) as link:
            link.proxy.bandwidth(128)
            started = anyio.current_time()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch_latency, link)
                link.client.send_data(up, {"big": "up"})
                link.host_conn.send_data(down, {"big": "down"})
                message = await link.client.receive()
                await link.host_log.wait_for(lambda: bool(link.host_log.data))
                await anyio.sleep(interval)  # one more ping cycle after the transfers
                tasks.cancel_scope.cancel()
            elapsed = anyio.current_time() - started
            assert link.client.connected
            link.client.send_data("after", {"echo": True})
            assert (await link.client.receive()).data == "after"
    assert message.data == down
    assert link.host_log.data[0] == (up, {"big": "up"})
    assert link.host_log.lost[0][0] == CloseCode.NORMAL
    assert link.client_log.lost[0][0] == CloseCode.NORMAL
    assert elapsed >= size / (128 * 1024) * 0.9
    # A ping really waited longer than ping_timeout for its answer, and was not taken for dead.
    assert slowest[0] > timeout


# --- corrupt: never deliver what was not sent -----------------------------------------------------


async def test_corrupted_frame_header_closes_with_a_protocol_error(
    alvaro_ca: trustme.CA,
) -> None:
    """Without TLS nothing protects the payload (TCP's checksum is all there is), but a
    corrupted header must be refused: here every byte of the next frame is changed."""
    before = [("one", {}), (b"two", {"n": 2})]
    with anyio.fail_after(WAIT):
        async with linked("plain", alvaro_ca) as link:
            for data, metadata in before:
                link.client.send_data(data, metadata)
            await link.host_log.wait_for(lambda: len(link.host_log.data) == 2)
            link.proxy.corrupt(1.0, direction="upstream")
            link.client.send_data({"victim": True})
            await link.host_log.wait_for(lambda: bool(link.host_log.lost))
            await link.client_log.wait_for(lambda: bool(link.client_log.lost))
    assert link.host_log.data == before
    [(code, by_peer, _)] = link.host_log.lost
    assert code in BAD_DATA
    assert by_peer is False
    # The host told the client why, on the uncorrupted direction.
    [(client_code, by_peer, _)] = link.client_log.lost
    assert (client_code, by_peer) == (code, True)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_corrupted_tls_stream_fails_and_delivers_only_what_was_sent(
    seed: int, alvaro_ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[int] = []
    with anyio.fail_after(WAIT):
        async with linked("tls", alvaro_ca, seed=seed) as link:
            link.client.send_data(-1, {"echo": True})
            assert (await link.client.receive()).data == -1
            link.proxy.corrupt(1e-5)  # about one byte in 100 000, in both directions
            echoed: list[int] = []
            async with anyio.create_task_group() as tasks:

                async def receive_all() -> None:
                    try:
                        async for message in link.client:
                            echoed.append(message.data)
                    except ConnectionClosed:
                        pass

                tasks.start_soon(receive_all)
                try:
                    for n in range(100_000):  # bounded; the corruption ends it much sooner
                        await link.client.send(n, {"echo": True, "pad": "x" * 50})
                        sent.append(n)
                except ConnectionClosed:
                    pass
            await link.host_log.wait_for(lambda: bool(link.host_log.lost))
    delivered = [data for data, _ in link.host_log.data[1:]]
    assert len(sent) < 100_000, "the corruption went unnoticed"
    # With these seeds the first changed byte comes after whole TLS records: those get through.
    assert delivered
    assert_prefix(delivered, "host")
    assert_prefix(echoed, "client")
    assert len(echoed) <= len(delivered) <= len(sent)
    for log in (link.host_log, link.client_log):
        [(code, _, _)] = log.lost
        assert code in {CloseCode.ABNORMAL} | BAD_DATA
    assert errors_logged(caplog) == []


@pytest.mark.parametrize(
    ("direction", "detector"), [("upstream", "host"), ("downstream", "client")]
)
async def test_tampered_tls_record_is_not_reported_as_a_handshake_problem(
    direction: Direction, detector: str, alvaro_ca: trustme.CA
) -> None:
    with anyio.fail_after(WAIT):
        async with linked("tls", alvaro_ca) as link:
            link.client.send_data("intact", {"echo": True})
            assert (await link.client.receive()).data == "intact"
            link.proxy.corrupt(1.0, direction=direction)
            link.client.send_data("tampered", {"echo": True})
            await link.host_log.wait_for(lambda: bool(link.host_log.lost))
            await link.client_log.wait_for(lambda: bool(link.client_log.lost))
    conn = link.host_conn if detector == "host" else link.client.connection
    assert conn is not None
    assert conn.close_code == CloseCode.ABNORMAL
    expected = ["intact"] if direction == "upstream" else ["intact", "tampered"]
    assert [data for data, _ in link.host_log.data] == expected
    # The handshake succeeded long ago, and both peers speak TLS: the reason must not say
    # otherwise, or an operator hunts for a misconfiguration instead of a broken network.
    reason = conn.close_reason
    for misleading in ("handshake", "plaintext", "not speaking TLS"):
        assert misleading not in reason, reason


# --- reset_peer: a reset in the middle of a stream ------------------------------------------------


async def test_reset_mid_stream_is_reported_once_after_an_unbroken_prefix(
    transport: str, alvaro_ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[int] = []
    echoed: list[int] = []
    with anyio.fail_after(WAIT):
        async with linked(transport, alvaro_ca) as link:
            link.proxy.latency(2)
            async with anyio.create_task_group() as tasks:

                async def send_all() -> None:
                    try:
                        for n in range(1_000_000):  # bounded; the reset ends it much sooner
                            await link.client.send(n, {"echo": True})
                            sent.append(n)
                            await anyio.lowlevel.checkpoint()  # let the echoes be read meanwhile
                    except ConnectionClosed:
                        pass

                tasks.start_soon(send_all)
                try:
                    async for message in link.client:
                        echoed.append(message.data)
                        if len(echoed) == 100:  # in full flow both ways: reset now
                            link.proxy.reset_peer()
                except ConnectionClosed:
                    pass
            await link.host_log.wait_for(lambda: bool(link.host_log.lost))
            await link.client_log.wait_for(lambda: bool(link.client_log.lost))
    assert link.proxy.connections[0].ended_by == "reset_peer"
    delivered = [data for data, _ in link.host_log.data]
    assert_prefix(delivered, "host")
    assert_prefix(echoed, "client")
    assert 100 <= len(echoed) <= len(delivered) <= len(sent) < 1_000_000
    for log in (link.host_log, link.client_log):
        [(code, by_peer, _)] = log.lost
        assert (code, by_peer) == (CloseCode.ABNORMAL, True)
    assert errors_logged(caplog) == []


# --- pause: a reader that stops taking bytes -----------------------------------------------------


async def test_client_that_stops_reading_is_dropped_as_a_slow_consumer(
    transport: str, alvaro_ca: trustme.CA
) -> None:
    write_timeout = 3 * T
    block = b"\x00" * (64 * 1024)
    taken: list[int] = []
    sent: list[int] = []
    with anyio.fail_after(WAIT):
        async with linked(
            transport, alvaro_ca, host_options={"write_timeout": write_timeout}
        ) as link:

            def take(data: Any, metadata: dict[str, Any]) -> None:
                taken.append(metadata["n"])

            link.client.got_data = take  # type: ignore[method-assign]
            link.proxy.pause(direction="downstream")  # nothing more leaves the host's socket
            started = anyio.current_time()
            try:
                for n in range(2000):  # 125 MiB at most: far more than the socket buffers hold
                    await link.host_conn.send(block, {"n": n})
                    sent.append(n)
            except ConnectionClosed:
                pass
            await link.host_log.wait_for(lambda: bool(link.host_log.lost))
            dropped = anyio.current_time()
            link.proxy.resume(direction="downstream")
            await link.client_log.wait_for(lambda: bool(link.client_log.lost))
    assert len(sent) < 2000
    [(code, by_peer, _)] = link.host_log.lost
    assert (code, by_peer) == (CloseCode.SLOW_CONSUMER, False)
    # Dropped once nothing was taken for write_timeout (the socket buffers fill in a moment).
    assert write_timeout * 0.9 <= dropped - started <= write_timeout + 2 * MARGIN
    # What the client got before the end is what was sent, in order.
    assert_prefix(taken, "client")
    assert len(link.client_log.lost) == 1


# --- What crosses the wire ------------------------------------------------------------------------


async def test_capture_sees_the_plaintext_only_without_tls(
    transport: str, alvaro_ca: trustme.CA
) -> None:
    secret = "correct horse battery staple"
    with anyio.fail_after(WAIT):
        async with linked(transport, alvaro_ca) as link:
            link.client.send_data({"password": secret}, {"echo": True})
            assert (await link.client.receive()).data == {"password": secret}
    upstream, downstream = link.proxy.captured("upstream"), link.proxy.captured("downstream")
    assert len(upstream) > len(secret)
    assert len(downstream) > len(secret)
    visible = secret.encode() in upstream and secret.encode() in downstream
    assert visible is (transport == "plain")
