"""Hostile and greedy peers against a live host (R02, R06, R08), with a healthy client beside them.

Each test runs on asyncio and on trio, on loopback addresses only (attackers come from
127.0.0.2 to 127.0.0.6 so that per-address limits apply to them and not to the healthy client).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import anyio.abc
import pytest

import alvaro
from alvaro import CloseCode
from alvaro.aio import Client, Connection, connect
from alvaro.aio._core import core_of
from alvaro.protocol import MAX_LIMIT, PREAMBLE, Close, FrameType, encode_hello

from ..helpers import WAIT, T, eventually, open_fds
from ..rawpeer import RawPeer, frame_header

pytestmark = pytest.mark.anyio

ATTACKERS = [f"127.0.0.{n}" for n in range(2, 7)]


async def raw_client(port: int, local_host: str = "127.0.0.1") -> RawPeer:
    return RawPeer(await anyio.connect_tcp("127.0.0.1", port, local_host=local_host), "client")


async def echo_many(client: Client, count: int, done: list[int]) -> None:
    """Send ``count`` numbered messages to an echoing host and check every echo, in order."""
    for seq in range(count):
        await client.send(seq)
    for seq in range(count):
        assert (await client.receive()).data == seq
    done.append(count)


def echo(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
    conn.send_data(data, metadata)


# --- R02: an oversized length prefix is refused from its header ----------------------------------


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        (MAX_LIMIT + 4, CloseCode.MESSAGE_TOO_BIG),  # 2^32 - 1
        (1024 * 1024 + 4 + 1, CloseCode.MESSAGE_TOO_BIG),  # one byte over max_message_size
    ],
    ids=["2^32-1", "max+1"],
)
async def test_r02_oversized_length_prefix_closes_at_once_and_others_are_served(
    declared: int, expected: int
) -> None:
    options = {"open_timeout": 10 * T, "close_timeout": 5 * T}
    done: list[int] = []
    async with alvaro.aio.Host(max_message_size=1024 * 1024, **options) as host:
        host.got_data = echo
        with anyio.fail_after(WAIT):
            async with connect("127.0.0.1", host.port, **options) as healthy:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(echo_many, healthy, 1000, done)
                    peer = await raw_client(host.port)
                    await peer.handshake()
                    # The header only: the host must not wait for (or make room for) a body.
                    await peer.send(frame_header(declared, FrameType.DATA))
                    started = time.monotonic()
                    close = await peer.expect(Close)
                    elapsed = time.monotonic() - started
                    await peer.aclose()
    assert close.code == expected
    assert elapsed < 5 * T
    assert done == [1000]


async def test_r02_oversized_frame_before_the_handshake_is_refused() -> None:
    """Before the connection is open only control frames of at most 4 KiB are read."""
    options = {"open_timeout": 10 * T, "close_timeout": 5 * T}
    async with alvaro.aio.Host(**options) as host:
        with anyio.fail_after(WAIT):
            peer = await raw_client(host.port)
            # The preamble, then a HELLO header declaring 4 KiB + 1.
            await peer.send(PREAMBLE + frame_header(4097, FrameType.HELLO))
            events = await peer.read_until_eof()
            await peer.aclose()
    closes = [event for event in events if isinstance(event, Close)]
    assert [close.code for close in closes] == [CloseCode.MESSAGE_TOO_BIG]


# --- R06: slowloris in every opening phase -----------------------------------------------------


async def drip(peer: RawPeer, data: bytes, interval: float) -> None:
    """Send ``data`` one byte every ``interval`` seconds until done or the host hangs up."""
    for index in range(len(data)):
        try:
            await peer.send(data[index : index + 1])
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return
        await anyio.sleep(interval)


async def closed_with(peer: RawPeer) -> tuple[list[int], float]:
    """Read until the host closes; the CLOSE codes received and when the end came."""
    events = await peer.read_until_eof()
    return [e.code for e in events if isinstance(e, Close)], time.monotonic()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_r06_slowloris_is_timed_out_while_a_real_client_gets_in(tls: bool) -> None:
    open_timeout = 5 * T
    options: dict[str, Any] = {"open_timeout": open_timeout, "close_timeout": 5 * T}
    client_options = dict(options)
    if tls:
        pytest.importorskip("trustme")
        from alvaro.testing import client_context, make_ca, server_context

        ca = make_ca()
        options["ssl_context"] = server_context(ca)
        client_options["ssl_context"] = client_context(ca)
    baseline = open_fds()
    results: list[tuple[str, list[int], float]] = []
    done: list[int] = []
    host = alvaro.aio.Host(max_connections=128, max_unauthenticated_per_address=16, **options)
    host.got_data = echo
    async with host:
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as attack:
                started = time.monotonic()
                peers: list[RawPeer] = []

                async def hold(kind: str, peer: RawPeer) -> None:
                    codes, ended = await closed_with(peer)
                    results.append((kind, codes, ended - started))

                for index in range(40):  # connect and say nothing
                    peer = await raw_client(host.port, ATTACKERS[index % 5])
                    peers.append(peer)
                    attack.start_soon(hold, "silent", peer)
                for index in range(10):
                    peer = await raw_client(host.port, ATTACKERS[index % 5])
                    peers.append(peer)
                    attack.start_soon(hold, "drip", peer)
                    if tls:
                        # Half a ClientHello-sized record, one byte at a time.
                        attack.start_soon(drip, peer, b"\x16\x03\x01\x02\x00" + b"\0" * 100, T)
                    else:
                        attack.start_soon(drip, peer, encode_hello("client"), T)
                # A legitimate client, meanwhile: served at once.
                joined = time.monotonic()
                async with connect("127.0.0.1", host.port, **client_options) as client:
                    assert time.monotonic() - joined < 3 * T
                    await echo_many(client, 100, done)
            for peer in peers:
                await peer.aclose()
            await eventually(lambda: open_fds() <= baseline + 2, timeout=20 * T)
    assert done == [100]
    assert len(results) == 50
    for kind, codes, when in results:
        # Plain: the host says why (TIMEOUT) before hanging up; under TLS nothing can be said.
        assert codes == ([] if tls else [CloseCode.TIMEOUT]), (kind, codes)
        assert open_timeout - 2 * T <= when <= open_timeout + 10 * T, (kind, when)


# --- R08: a fast writer and a slow application ---------------------------------------------------


async def test_r08_slow_application_pushes_back_on_a_fast_writer() -> None:
    """got_data takes its time: the host stops reading, the client's send() waits with its
    outbox within write_limit, and every message arrives once, in order."""
    count = 2000
    got: list[int] = []

    async def slow(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        got.append(data)
        if len(got) % 10 == 0:
            await anyio.sleep(T / 10)

    write_limit = 4096
    payload = "x" * 500
    peak = 0
    async with alvaro.aio.Host(max_queue=16) as host:
        host.got_data = slow
        with anyio.fail_after(WAIT * 3):
            async with connect("127.0.0.1", host.port, write_limit=write_limit) as client:
                assert client.connection is not None
                for seq in range(count):
                    await client.send(seq, {"pad": payload})
                    peak = max(peak, core_of(client.connection).outbox.pending)
                await eventually(lambda: len(got) == count, timeout=WAIT * 2)
    assert got == list(range(count))
    # The outbox never held more than write_limit plus the message that went over it.
    assert peak <= write_limit + 600


async def test_protocol_error_logs_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    """Peers that break the protocol on purpose (here 40, in the handshake and after it) get
    their close codes, but the host's log gets a few lines, not one per attacker."""
    caplog.set_level(logging.INFO, logger="alvaro.host")
    async with alvaro.Host(max_unauthenticated_per_address=64) as host:
        host.got_data = echo
        for number in range(40):
            peer = await raw_client(host.port, ATTACKERS[number % len(ATTACKERS)])
            if number % 2:
                await peer.send(PREAMBLE + b"\xff" * 64)  # a broken HELLO
            else:
                await peer.handshake()
                await peer.send(frame_header(0, 0x7F))  # an unknown frame type after it
            with anyio.fail_after(WAIT):
                closes = [event for event in await peer.read_until_eof() if type(event) is Close]
            assert [close.code for close in closes] == [CloseCode.PROTOCOL_ERROR]
            await peer.aclose()
        # The host is fine and serves a healthy client.
        async with connect("127.0.0.1", host.port) as client:
            client.send_data("ok")
            assert (await client.receive(timeout=WAIT)).data == "ok"
    logged = [
        record
        for record in caplog.records
        if record.name == "alvaro.host"
        and ("failed" in record.message or "closing" in record.message)
    ]
    assert 1 <= len(logged) <= 5, [record.message for record in logged]
