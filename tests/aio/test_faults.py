"""Faults on live connections: broken peers, malformed bytes, failing callbacks, failed connects.

Each test runs on asyncio and on trio, on 127.0.0.1. A raw peer (``tests.rawpeer``) speaks the wire
protocol byte by byte, so the tests can send what no alvaro peer would: half a frame, invalid
UTF-8, unknown frame types, HTTP. The cases are named after the reliability cases R03, R04, R10.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

import alvaro
from alvaro import CloseCode, ConnectError, ConnectionClosed, RemoteProtocolError
from alvaro.aio import Client, Connection, connect
from alvaro.protocol import (
    PREAMBLE,
    Close,
    Hello,
    Pong,
    encode_close,
    encode_hello,
    encode_message,
    encode_ping,
)

from ..helpers import WAIT, T, free_port
from ..rawpeer import RawPeer, data_frame, frame_header, raw_server

if TYPE_CHECKING:
    from collections.abc import Callable

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

pytestmark = pytest.mark.anyio

#: Limits and timeouts of every Host and Client here: small, so that faults resolve fast.
OPTIONS: dict[str, Any] = {"open_timeout": 10 * T, "close_timeout": 10 * T}


# --- Helpers ----------------------------------------------------------------------------------


class Recorder:
    """Callbacks for a Host that record what happened, keyed by the client's port.

    ``got_data`` echoes a message back when its metadata says ``{"echo": True}``: healthy alvaro
    clients use that to prove the host still serves them.
    """

    def __init__(self) -> None:
        self.new: list[int] = []
        self.data: dict[int, list[Any]] = {}
        self.lost: dict[int, list[tuple[int | None, str, bool | None]]] = {}
        self._changed = anyio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds after some callback; bound it with fail_after."""
        while not predicate():
            await self._changed.wait()

    async def wait_lost(self, port: int) -> tuple[int | None, str, bool | None]:
        await self.wait_for(lambda: port in self.lost)
        return self.lost[port][0]

    def new_client(self, conn: Connection) -> None:
        self.new.append(conn.port)
        self._notify()

    def got_data(self, conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        self.data.setdefault(conn.port, []).append(data)
        if metadata.get("echo"):
            conn.send_data(data, metadata)
        self._notify()

    def lost_client(self, conn: Connection) -> None:
        info = (conn.close_code, conn.close_reason, conn.closed_by_peer)
        self.lost.setdefault(conn.port, []).append(info)
        self._notify()

    def install(self, host: alvaro.Host) -> None:
        host.new_client = self.new_client  # type: ignore[method-assign]
        host.got_data = self.got_data  # type: ignore[method-assign]
        host.lost_client = self.lost_client  # type: ignore[method-assign]


def recording_host(recorder: Recorder, **options: Any) -> alvaro.Host:
    host = alvaro.Host("127.0.0.1", 0, **{**OPTIONS, **options})
    recorder.install(host)
    return host


async def round_trip(client: Client, value: Any) -> None:
    """Send ``value`` to an echoing host and check that it comes back."""
    client.send_data(value, {"echo": True})
    message = await client.receive()
    assert message.data == value


async def raw_handshake(port: int) -> RawPeer:
    peer = await RawPeer.connect(port)
    hello = await peer.handshake()
    assert hello.role == "host"
    return peer


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


# --- R04: EOF or reset in the middle of a frame ------------------------------------------------


@pytest.mark.parametrize("ending", ["half_close", "close", "reset"])
async def test_r04_eof_in_the_middle_of_a_frame(ending: str) -> None:
    recorder = Recorder()
    messages = [{"n": 1}, "two", [3, 3, 3]]
    fourth = encode_message({"n": 4, "pad": "x" * 100})
    with anyio.fail_after(WAIT):
        async with recording_host(recorder) as host:
            peer = await raw_handshake(host.port)
            port = peer.local_port
            await recorder.wait_for(lambda: port in recorder.new)
            await peer.send(
                b"".join(encode_message(m) for m in messages) + fourth[: len(fourth) // 2]
            )
            if ending == "half_close":
                await peer.send_eof()
                # The host must close its side too: nothing more can come from this peer.
                events = await peer.read_until_eof()
                assert not [e for e in events if not isinstance(e, Hello)]
                await peer.aclose()
            elif ending == "close":
                await peer.aclose()
            else:
                await peer.reset_close()

            code, reason, by_peer = await recorder.wait_lost(port)
            assert reason  # alvaro describes what ended the connection
            assert recorder.data[port] == messages
            assert code == CloseCode.ABNORMAL
            assert by_peer is True
            assert host.clients == []

            # The host keeps serving well-behaved clients.
            async with connect("127.0.0.1", host.port, **OPTIONS) as client:
                await round_trip(client, "still here")
            assert host.running
    assert len(recorder.lost[port]) == 1


# --- R03: malformed input from a client --------------------------------------------------------

BEFORE = ["first", {"second": 2}]
"""Valid messages sent in the same write as the bad frame, just before it."""

MALFORMED = {
    # name: (the bad bytes, the close code the host must send)
    "invalid_utf8_payload": (data_frame(b"", b'"caf\xff"'), CloseCode.INVALID_DATA),
    "metadata_is_an_array": (data_frame(b"[1,2]", b'"x"'), CloseCode.INVALID_DATA),
    "unknown_frame_type": (frame_header(0, 0x7F), CloseCode.PROTOCOL_ERROR),
    "message_too_big": (frame_header(10**6, 0x01), CloseCode.MESSAGE_TOO_BIG),
}


class Traffic:
    """Round trips of a healthy client in the background, until ``stop_at`` of them are done."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.count = 0
        self.stop_at = 100_000  # a bound, so that the loop cannot run away
        self._progress = anyio.Event()

    async def run(self) -> None:
        while self.count < self.stop_at:
            await round_trip(self.client, self.count)
            self.count += 1
            self._progress.set()
            self._progress = anyio.Event()

    async def wait_count(self, count: int) -> None:
        while self.count < count:
            await self._progress.wait()


R03_CASES = [
    *(
        pytest.param(case, when, id=f"{case}-{when}")
        for case in MALFORMED
        # after_handshake: the bad bytes follow the handshake, in a write of their own.
        # with_hello: the client's HELLO, the valid messages and the bad frame are one write, so
        # the host may read them all at once, during its opening handshake.
        for when in ("after_handshake", "with_hello")
    ),
    pytest.param("garbage_preamble", "instead_of_hello", id="garbage_preamble"),
]


@pytest.mark.parametrize(("case", "when"), R03_CASES)
async def test_r03_malformed_input_closes_only_that_client(
    case: str, when: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="alvaro")
    recorder = Recorder()
    host = recording_host(recorder, max_message_size=1000, max_metadata_size=500)
    with anyio.fail_after(WAIT):
        async with host, connect("127.0.0.1", host.port, **OPTIONS) as healthy:
            await round_trip(healthy, "before")
            healthy_port = healthy.connection.local_port  # type: ignore[union-attr]
            traffic = Traffic(healthy)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(traffic.run)
                await traffic.wait_count(3)

                peer = await RawPeer.connect(host.port)
                port = peer.local_port
                started = time.monotonic()
                if case == "garbage_preamble":
                    await peer.send(b"GET / HTTP/1.1\r\n\r\n")
                    expected = CloseCode.PROTOCOL_ERROR
                else:
                    bad, expected = MALFORMED[case]
                    valid = b"".join(encode_message(m) for m in BEFORE)
                    if when == "after_handshake":
                        await peer.handshake()
                        await recorder.wait_for(lambda: port in recorder.new)
                        await peer.send(valid + bad)
                    else:
                        await peer.send(encode_hello("client") + valid + bad)
                events = await peer.read_until_eof()
                elapsed = time.monotonic() - started
                await peer.aclose()

                closes = [e for e in events if isinstance(e, Close)]
                assert [c.code for c in closes] == [expected], (events, peer.error)
                assert events[-1] == closes[0], "nothing may follow CLOSE"
                assert elapsed < 20 * T

                if case == "garbage_preamble":
                    # The handshake never completed: the application never saw this peer.
                    assert port not in recorder.new
                    assert port not in recorder.data
                    assert port not in recorder.lost
                else:
                    # The HELLO was valid: the client was connected, whatever came after it.
                    assert port in recorder.new, "new_client was never called"
                    assert recorder.data.get(port) == BEFORE
                    code, _, by_peer = await recorder.wait_lost(port)
                    assert code == expected
                    assert by_peer is False
                    assert len(recorder.lost[port]) == 1

                # The healthy client kept exchanging messages throughout, and still does.
                traffic.stop_at = traffic.count + 5
            assert traffic.count == traffic.stop_at
            await round_trip(healthy, "after")
            assert healthy.connected
            assert healthy_port not in recorder.lost
            assert host.running

    # Protocol errors are the peer's fault: logged at WARNING or below, never at ERROR.
    assert errors_logged(caplog) == []


# --- R10: a callback that raises affects only its own connection --------------------------------


@pytest.mark.parametrize("style", ["plain", "async"])
async def test_r10_got_data_raises_closes_only_that_client(
    style: str, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    host = recording_host(recorder)
    bad_port: list[int] = []

    def got_data(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        if conn.port in bad_port and data == "a3":
            raise ValueError("the application cannot handle a3")
        recorder.got_data(conn, data, metadata)

    async def async_got_data(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        await anyio.lowlevel.checkpoint()
        got_data(conn, data, metadata)

    host.got_data = got_data if style == "plain" else async_got_data  # type: ignore[method-assign]
    lost_a = anyio.Event()
    seen_by_a: list[int | None] = []

    def lost_connection() -> None:
        seen_by_a.append(client_a.connection.close_code)  # type: ignore[union-attr]
        lost_a.set()

    with anyio.fail_after(WAIT):
        async with host, connect("127.0.0.1", host.port, **OPTIONS) as client_b:
            for n in range(100):
                client_b.send_data(n, {"echo": True})
            echoed = [(await client_b.receive()).data for _ in range(100)]

            client_a = Client(**OPTIONS)
            client_a.lost_connection = lost_connection  # type: ignore[method-assign]
            async with anyio.create_task_group() as tasks:
                await tasks.start(client_a.connect, "127.0.0.1", host.port)
                conn_a = client_a.connection
                assert conn_a is not None
                bad_port.append(conn_a.local_port)
                for n in (1, 2, 3):
                    client_a.send_data(f"a{n}")
                await lost_a.wait()
            assert seen_by_a == [CloseCode.INTERNAL_ERROR]
            assert conn_a.close_code == CloseCode.INTERNAL_ERROR
            assert conn_a.closed_by_peer is True
            code, _, by_peer = await recorder.wait_lost(conn_a.local_port)
            assert code == CloseCode.INTERNAL_ERROR
            assert by_peer is False
            assert recorder.data[conn_a.local_port] == ["a1", "a2"]
            assert [c.port for c in host.clients] == [client_b.connection.local_port]  # type: ignore[union-attr]

            for n in range(100, 200):
                client_b.send_data(n, {"echo": True})
            echoed += [(await client_b.receive()).data for _ in range(100)]
            assert echoed == list(range(200))
            assert client_b.connected
            assert host.running

    errors = errors_logged(caplog)
    assert len(errors) == 1, errors
    (record,) = errors
    assert record.name == "alvaro.host"
    assert record.exc_info is not None
    assert record.exc_info[0] is ValueError


async def test_r10_new_client_raises_closes_only_that_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    host = recording_host(recorder)
    refuse: list[bool] = [False]

    def new_client(conn: Connection) -> None:
        recorder.new_client(conn)
        if refuse[0]:
            raise ValueError("new_client failed")

    host.new_client = new_client  # type: ignore[method-assign]
    lost = anyio.Event()
    with anyio.fail_after(WAIT):
        async with host, connect("127.0.0.1", host.port, **OPTIONS) as healthy:
            await round_trip(healthy, "before")
            refuse[0] = True
            victim = Client(**OPTIONS)
            seen: list[int | None] = []

            def lost_connection() -> None:
                seen.append(victim.connection.close_code)  # type: ignore[union-attr]
                lost.set()

            victim.lost_connection = lost_connection  # type: ignore[method-assign]
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(victim.connect, "127.0.0.1", host.port)
                await lost.wait()
            refuse[0] = False
            conn = victim.connection
            assert conn is not None
            assert seen == [CloseCode.INTERNAL_ERROR]
            assert conn.close_code == CloseCode.INTERNAL_ERROR
            code, _, by_peer = await recorder.wait_lost(conn.local_port)
            assert code == CloseCode.INTERNAL_ERROR
            assert by_peer is False
            assert len(recorder.lost[conn.local_port]) == 1

            await round_trip(healthy, "after")
            async with connect("127.0.0.1", host.port, **OPTIONS) as newcomer:
                await round_trip(newcomer, "newcomer")
            assert host.running
    assert len(recorder.lost[conn.local_port]) == 1

    errors = errors_logged(caplog)
    assert len(errors) == 1, errors
    assert errors[0].name == "alvaro.host"
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[0] is ValueError


async def test_r10_lost_client_raises_is_logged_and_host_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    host = recording_host(recorder)

    def lost_client(conn: Connection) -> None:
        recorder.lost_client(conn)
        raise ValueError("lost_client failed")

    host.lost_client = lost_client  # type: ignore[method-assign]
    with anyio.fail_after(WAIT):
        async with host:
            for value in ("one", "two"):
                async with connect("127.0.0.1", host.port, **OPTIONS) as client:
                    await round_trip(client, value)
                    port = client.connection.local_port  # type: ignore[union-attr]
                assert (await recorder.wait_lost(port))[0] == CloseCode.NORMAL
                # The traceback is logged right after lost_client raises, in the same step.
                await recorder.wait_for(lambda: len(errors_logged(caplog)) >= len(recorder.lost))
            assert host.running
            assert host.clients == []

    errors = errors_logged(caplog)
    assert len(errors) == 2, errors
    for record in errors:
        assert record.name == "alvaro.host"
        assert record.exc_info is not None
        assert record.exc_info[0] is ValueError


# --- Connect failures --------------------------------------------------------------------------


class Served:
    """What a raw server's handler saw: each finished peer, and an event per finished peer."""

    def __init__(self) -> None:
        self.peers: list[RawPeer] = []
        self._done = anyio.Event()

    async def finish(self, peer: RawPeer) -> None:
        """Read until the client closes, then record the peer."""
        with anyio.fail_after(WAIT):
            await peer.read_until_eof()
        self.peers.append(peer)
        self._done.set()

    async def wait(self) -> RawPeer:
        with anyio.fail_after(WAIT):
            await self._done.wait()
        return self.peers[0]


async def test_connect_refused_raises_connect_error() -> None:
    with anyio.fail_after(WAIT), pytest.raises(ConnectError) as info:
        await Client(**OPTIONS).connect("127.0.0.1", free_port())
    assert isinstance(info.value, OSError)
    assert isinstance(info.value, alvaro.AlvaroError)
    assert isinstance(info.value.__cause__, OSError)  # the operating system's error is kept


async def test_connect_to_http_server_raises_connect_error() -> None:
    served = Served()

    async def http(peer: RawPeer) -> None:
        await peer.send(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await served.finish(peer)

    async with raw_server(http) as port:
        with anyio.fail_after(WAIT), pytest.raises(ConnectError) as info:
            await Client(**OPTIONS).connect("127.0.0.1", port)
        peer = await served.wait()
    assert "not speaking the alvaro protocol" in str(info.value)
    assert isinstance(info.value.__cause__, RemoteProtocolError)
    # The client told the server why it gave up, then closed.
    assert [c.code for c in peer.closes()] == [CloseCode.PROTOCOL_ERROR]


async def test_connect_to_host_with_wrong_role_raises_connect_error() -> None:
    served = Served()

    async def wrong_role(peer: RawPeer) -> None:
        await peer.send(encode_hello("client"))
        await served.finish(peer)

    async with raw_server(wrong_role) as port:
        with anyio.fail_after(WAIT), pytest.raises(ConnectError) as info:
            await Client(**OPTIONS).connect("127.0.0.1", port)
        peer = await served.wait()
    assert "role" in str(info.value)
    assert isinstance(info.value.__cause__, RemoteProtocolError)
    assert [c.code for c in peer.closes()] == [CloseCode.PROTOCOL_ERROR]


async def test_connect_to_silent_server_times_out() -> None:
    served = Served()
    open_timeout = 5 * T
    async with raw_server(served.finish) as port:
        started = time.monotonic()
        with anyio.fail_after(WAIT), pytest.raises(TimeoutError):
            await Client(open_timeout=open_timeout, close_timeout=10 * T).connect("127.0.0.1", port)
        elapsed = time.monotonic() - started
        peer = await served.wait()
    assert open_timeout * 0.9 <= elapsed < open_timeout + 20 * T
    # The client said why it gave up before closing.
    assert [c.code for c in peer.closes()] == [CloseCode.TIMEOUT]


async def test_host_closing_with_try_again_later_right_after_hello() -> None:
    served = Served()

    async def overloaded(peer: RawPeer) -> None:
        await peer.send(encode_hello("host") + encode_close(CloseCode.TRY_AGAIN_LATER, "busy"))
        await served.finish(peer)

    lost = anyio.Event()
    client = Client(**OPTIONS)
    seen: list[int | None] = []

    def lost_connection() -> None:
        seen.append(client.connection.close_code)  # type: ignore[union-attr]
        lost.set()

    client.lost_connection = lost_connection  # type: ignore[method-assign]
    async with raw_server(overloaded) as port:
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tasks:
                await tasks.start(client.connect, "127.0.0.1", port)
                await lost.wait()
        peer = await served.wait()
    conn = client.connection
    assert conn is not None
    assert seen == [CloseCode.TRY_AGAIN_LATER]
    assert conn.close_code == CloseCode.TRY_AGAIN_LATER
    assert conn.close_reason == "busy"
    assert conn.closed_by_peer is True
    # The client answered the CLOSE with one echoing its code.
    assert [c.code for c in peer.closes()] == [CloseCode.TRY_AGAIN_LATER]


async def test_host_refusing_with_close_before_its_hello() -> None:
    """A CLOSE may be received before the peer's HELLO (docs/protocol.md 5.4; 7.1 C1 accepts it).

    The client must report the host's code promptly instead of waiting out open_timeout for a
    HELLO that cannot come (nothing after a CLOSE is parsed), and answer the CLOSE with one
    echoing its code (6.2).
    """
    served = Served()

    async def refusing(peer: RawPeer) -> None:
        await peer.send(PREAMBLE + encode_close(CloseCode.TRY_AGAIN_LATER, "busy"))
        await served.finish(peer)

    open_timeout = OPTIONS["open_timeout"]
    async with raw_server(refusing) as port:
        started = time.monotonic()
        error: BaseException | None = None
        with anyio.fail_after(WAIT):
            try:
                await Client(**OPTIONS).connect("127.0.0.1", port)
            except (ConnectError, TimeoutError) as exc:
                error = exc
        elapsed = time.monotonic() - started
        peer = await served.wait()
    assert isinstance(error, ConnectError), f"expected ConnectError, got {error!r}"
    cause = error.__cause__
    assert isinstance(cause, ConnectionClosed)
    assert cause.code == CloseCode.TRY_AGAIN_LATER
    assert cause.by_peer is True
    assert elapsed < open_timeout / 2
    assert [c.code for c in peer.closes()] == [CloseCode.TRY_AGAIN_LATER]


async def test_client_closing_before_its_hello() -> None:
    """A client that sends CLOSE instead of HELLO gets a CLOSE echoing its code at once (5.4, 6.2),
    not a TIMEOUT after open_timeout."""
    recorder = Recorder()
    with anyio.fail_after(WAIT):
        async with recording_host(recorder) as host:
            peer = await RawPeer.connect(host.port)
            started = time.monotonic()
            await peer.send(PREAMBLE + encode_close(CloseCode.NORMAL, "changed my mind"))
            events = await peer.read_until_eof()
            elapsed = time.monotonic() - started
            await peer.aclose()
            assert host.running
    assert [c.code for c in peer.closes()] == [CloseCode.NORMAL], events
    assert elapsed < OPTIONS["open_timeout"] / 2
    assert recorder.new == []
    assert recorder.lost == {}


# --- Handshake timeout on the host ------------------------------------------------------------


async def test_host_closes_silent_client_after_open_timeout() -> None:
    recorder = Recorder()
    open_timeout = 5 * T
    with anyio.fail_after(WAIT):
        async with recording_host(recorder, open_timeout=open_timeout) as host:
            peer = await RawPeer.connect(host.port)
            started = time.monotonic()
            events = await peer.read_until_eof()
            elapsed = time.monotonic() - started
            await peer.aclose()
            assert host.running
    assert [c.code for c in peer.closes()] == [CloseCode.TIMEOUT], events
    assert open_timeout * 0.9 <= elapsed < open_timeout + 20 * T
    assert recorder.new == []
    assert recorder.lost == {}


# --- Closing handshake started by the peer ------------------------------------------------------


async def test_host_echoes_the_peers_close() -> None:
    recorder = Recorder()
    with anyio.fail_after(WAIT):
        async with recording_host(recorder) as host:
            peer = await raw_handshake(host.port)
            port = peer.local_port
            await peer.send(encode_message("last words") + encode_close(CloseCode.NORMAL, "bye"))
            close = await peer.expect(Close)
            await peer.read_until_eof()
            await peer.aclose()
            info = await recorder.wait_lost(port)
    assert close.code == CloseCode.NORMAL
    assert recorder.data[port] == ["last words"]
    assert info == (CloseCode.NORMAL, "bye", True)
    assert len(recorder.lost[port]) == 1


async def test_ping_gets_pong_with_same_payload() -> None:
    recorder = Recorder()
    with anyio.fail_after(WAIT):
        async with recording_host(recorder) as host:
            peer = await raw_handshake(host.port)
            await peer.send(encode_ping(b"\x00payload\xff") + encode_ping(b""))
            assert (await peer.expect(Pong)).payload == b"\x00payload\xff"
            assert (await peer.expect(Pong)).payload == b""
            await peer.send(encode_close(CloseCode.NORMAL))
            assert (await peer.expect(Close)).code == CloseCode.NORMAL
            await peer.read_until_eof()
            await peer.aclose()
            assert (await recorder.wait_lost(peer.local_port))[0] == CloseCode.NORMAL


# --- ExceptionGroup never escapes ----------------------------------------------------------------


async def test_user_exception_in_connect_block_propagates_as_itself() -> None:
    async with alvaro.Host("127.0.0.1", 0, **OPTIONS) as host:
        with anyio.fail_after(WAIT), pytest.raises(KeyError) as info:
            async with connect("127.0.0.1", host.port, **OPTIONS):
                raise KeyError("user error")
        assert host.running
    assert type(info.value) is KeyError
    assert not isinstance(info.value, BaseExceptionGroup)


async def _raise_in_host_block(hosts: list[alvaro.Host], *, in_client: bool) -> None:
    async with alvaro.Host("127.0.0.1", 0, **OPTIONS) as host:
        hosts.append(host)
        async with connect("127.0.0.1", host.port, **OPTIONS) as client:
            assert client.connected
            if in_client:
                raise KeyError("user error in both blocks")
        raise KeyError("user error in the host block")


@pytest.mark.parametrize("in_client", [False, True], ids=["host_block", "both_blocks"])
async def test_user_exception_in_host_block_propagates_as_itself(in_client: bool) -> None:
    hosts: list[alvaro.Host] = []
    with anyio.fail_after(WAIT), pytest.raises(KeyError) as info:
        await _raise_in_host_block(hosts, in_client=in_client)
    assert type(info.value) is KeyError
    assert not isinstance(info.value, BaseExceptionGroup)
    assert ("both" in str(info.value)) is in_client
    assert not hosts[0].running
