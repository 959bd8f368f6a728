"""Keepalive: pings find dead and half-open peers, and measure the round trip (R20).

A raw peer (``tests.rawpeer``) that completes the handshake and then never answers stands for a
peer whose machine vanished or whose network went silent: no FIN and no RST ever arrive, so only
the keepalive can tell.
"""

from __future__ import annotations

import time

import anyio
import pytest

from alvaro import CloseCode, Settings
from alvaro.aio import Client, Connection, Host, connect
from alvaro.protocol import Ping, encode_hello, encode_pong

from ..helpers import WAIT, T
from ..rawpeer import RawPeer, raw_server

pytestmark = pytest.mark.anyio

INTERVAL, TIMEOUT = 2 * T, 3 * T


async def test_host_drops_a_peer_that_never_answers_pings() -> None:
    lost: list[tuple[int | None, str, float]] = []
    gone = anyio.Event()
    host = Host("127.0.0.1", 0, ping_interval=INTERVAL, ping_timeout=TIMEOUT)

    def lost_client(conn: Connection) -> None:
        lost.append((conn.close_code, conn.close_reason, time.monotonic()))
        gone.set()

    host.lost_client = lost_client  # type: ignore[method-assign]
    with anyio.fail_after(WAIT):
        async with host:
            peer = await RawPeer.connect(host.port)
            await peer.send(encode_hello("client"))
            opened = time.monotonic()
            ping = await peer.expect(Ping)  # the host pings, and the peer stays silent
            assert len(ping.payload) > 0
            await gone.wait()
            await peer.aclose()
    [(code, reason, at)] = lost
    assert code == CloseCode.TIMEOUT
    assert "keepalive" in reason
    # Detected after one interval and one timeout, not after close_timeout (10 s) more.
    assert INTERVAL + TIMEOUT - T <= at - opened < INTERVAL + TIMEOUT + 10 * T


async def test_client_reports_a_silent_host_through_lost_connection() -> None:
    async def silent(peer: RawPeer) -> None:
        await peer.send(encode_hello("host"))
        await anyio.sleep(WAIT)

    client = Client(ping_interval=INTERVAL, ping_timeout=TIMEOUT)
    lost = anyio.Event()
    client.lost_connection = lost.set  # type: ignore[assignment,method-assign]
    with anyio.fail_after(WAIT):
        async with raw_server(silent) as port:
            started = time.monotonic()
            await client.connect("127.0.0.1", port)  # returns once the connection has ended
            elapsed = time.monotonic() - started
    assert lost.is_set()
    assert client.connection is not None
    assert client.connection.close_code == CloseCode.TIMEOUT
    assert client.connection.closed_by_peer is True
    assert elapsed < INTERVAL + TIMEOUT + 10 * T


async def test_a_peer_that_answers_stays_connected_and_latency_is_measured() -> None:
    host = Host("127.0.0.1", 0, ping_interval=T / 2, ping_timeout=WAIT)
    with anyio.fail_after(WAIT):
        async with host, connect("127.0.0.1", host.port, ping_interval=T / 2) as client:
            conn = client.connection
            assert conn is not None
            assert conn.latency is None  # no answer yet
            for _ in range(int(WAIT / (T / 10))):  # bounded: until both sides have measured
                if conn.latency is not None and host.clients and host.clients[0].latency:
                    break
                await anyio.sleep(T / 10)
            assert conn.latency is not None
            assert 0 < conn.latency < WAIT
            client.send_data("still here")
            await anyio.sleep(3 * T)  # several pings later
            assert conn.is_open
            assert len(host.clients) == 1


async def test_pong_with_another_payload_does_not_count_as_an_answer() -> None:
    lost = anyio.Event()
    host = Host("127.0.0.1", 0, ping_interval=INTERVAL, ping_timeout=TIMEOUT)
    host.lost_client = lambda conn: lost.set()  # type: ignore[assignment,method-assign]
    with anyio.fail_after(WAIT):
        async with host:
            peer = await RawPeer.connect(host.port)
            await peer.send(encode_hello("client"))
            ping = await peer.expect(Ping)
            await peer.send(encode_pong(ping.payload + b"x"))  # a wrong answer
            await lost.wait()
            await peer.aclose()


async def test_no_pings_with_ping_interval_none() -> None:
    host = Host("127.0.0.1", 0, ping_interval=None)
    with anyio.fail_after(WAIT):
        async with host:
            peer = await RawPeer.connect(host.port)
            await peer.send(encode_hello("client"))
            with anyio.move_on_after(5 * T):
                await peer.expect(Ping)
                raise AssertionError("the host pinged with ping_interval=None")
            assert len(host.clients) == 1
            await peer.aclose()


async def test_ping_timeout_none_never_drops_a_slow_peer() -> None:
    host = Host("127.0.0.1", 0, ping_interval=T, ping_timeout=None)
    with anyio.fail_after(WAIT):
        async with host:
            peer = await RawPeer.connect(host.port)
            await peer.send(encode_hello("client"))
            await peer.expect(Ping)
            await anyio.sleep(5 * T)  # no answer, and no limit on waiting for one
            assert len(host.clients) == 1
            assert host.clients[0].latency is None
            await peer.aclose()


def test_keepalive_defaults_and_validation() -> None:
    defaults = Settings()
    assert (defaults.ping_interval, defaults.ping_timeout) == (20.0, 20.0)
    assert Settings(ping_interval=None, ping_timeout=None).ping_interval is None
    for bad in (0, -1, float("nan"), float("inf"), True, "20"):
        with pytest.raises(ValueError, match="ping_interval"):
            Settings(ping_interval=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="ping_timeout"):
            Settings(ping_timeout=bad)  # type: ignore[arg-type]
