"""Graceful shutdown (R23): stop() stops accepting, drains what is queued, and is bounded.

Each test runs on asyncio and on trio, on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import anyio
import anyio.abc
import pytest

import alvaro
from alvaro import CloseCode, ConnectError, ConnectionClosed, ConnectionClosedOK
from alvaro.aio import Client, Connection, connect

from ..helpers import WAIT, T, eventually
from ..rawpeer import stalled_reader

pytestmark = pytest.mark.anyio

CLOSE_TIMEOUT = 10 * T
OPTIONS: dict[str, Any] = {"open_timeout": 10 * T, "close_timeout": CLOSE_TIMEOUT}
CLIENTS = 10
PER_CLIENT = 500


async def collect(client: Client, into: list[Any], ending: list[BaseException]) -> None:
    """Receive until the connection closes; record the messages and how it ended."""
    try:
        for _ in range(100 * PER_CLIENT):  # bounded: far more than will come
            into.append((await client.receive()).data)
    except ConnectionClosed as exc:
        ending.append(exc)


async def test_r23_stop_delivers_what_is_queued_then_going_away_and_is_bounded() -> None:
    lost: list[Connection] = []
    received: list[list[Any]] = [[] for _ in range(CLIENTS)]
    endings: list[list[BaseException]] = [[] for _ in range(CLIENTS)]
    # write_timeout beyond close_timeout, so that the close deadline is what drops the stalled
    # client; outbox_limit large enough to queue 8 MiB for it.
    host = alvaro.aio.Host(
        write_timeout=None, outbox_limit=32 * 1024 * 1024, ping_interval=None, **OPTIONS
    )
    host.lost_client = lost.append
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tasks, contextlib.AsyncExitStack() as stack:
            await tasks.start(host.start)
            for index in range(CLIENTS):
                client = await stack.enter_async_context(connect("127.0.0.1", host.port, **OPTIONS))
                tasks.start_soon(collect, client, received[index], endings[index])
            stalled = await stalled_reader(host.port)
            stack.push_async_callback(stalled.aclose)
            await eventually(lambda: len(host.clients) == CLIENTS + 1)
            stalled_port = stalled.local_port
            for conn in host.clients:
                if conn.port == stalled_port:
                    for _ in range(512):  # 8 MiB: more than the kernel's buffers hold
                        conn.send_data(b"\0" * 16 * 1024)
                else:
                    for seq in range(PER_CLIENT):
                        conn.send_data(seq)

            started = time.monotonic()
            host.stop()
            # The listener closes first: while the shutdown waits for the stalled client,
            # nobody new gets in.
            await anyio.sleep(T)
            with pytest.raises(ConnectError):
                async with connect("127.0.0.1", host.port, **OPTIONS):
                    pass
            await host.aclose()
            elapsed = time.monotonic() - started
            # A second stop is a no-op, and returns at once.
            again = time.monotonic()
            host.stop()
            await host.aclose()
            assert time.monotonic() - again < T
    assert elapsed < 2 * CLOSE_TIMEOUT + 10 * T
    for index in range(CLIENTS):
        assert received[index] == list(range(PER_CLIENT)), f"client {index} missed messages"
        (ending,) = endings[index]
        assert isinstance(ending, ConnectionClosedOK)
        assert ending.code == CloseCode.GOING_AWAY
    assert len(lost) == CLIENTS + 1
    (stalled_conn,) = [conn for conn in lost if conn.port == stalled_port]
    assert stalled_conn.close_code == CloseCode.GOING_AWAY
    assert stalled_conn.unsent > 0, "what the stalled client never got must be reported"
    assert all(conn.unsent == 0 for conn in lost if conn is not stalled_conn)
    assert host.clients == []
    assert not host.running


async def test_stop_before_start_and_twice_are_no_ops() -> None:
    host = alvaro.aio.Host(**OPTIONS)
    host.stop()
    with anyio.fail_after(WAIT):
        await host.aclose()
        async with host:
            port = host.port
        host.stop()
        await host.aclose()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()


async def read_until_closed(stream: anyio.abc.SocketStream) -> bool:
    """Read until the other side closes; ``True`` once it has."""
    for _ in range(100):  # the preamble and HELLO, then the end
        try:
            await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return True
    return False


async def test_stop_closes_connections_still_in_their_handshake() -> None:
    """A client that connected but has not finished its handshake does not delay stop()."""
    with anyio.fail_after(WAIT):
        async with alvaro.aio.Host(**OPTIONS) as host:
            silent = await anyio.connect_tcp("127.0.0.1", host.port)
            await anyio.sleep(T)
            started = time.monotonic()
            await host.aclose()
            elapsed = time.monotonic() - started
            assert await read_until_closed(silent)
            await silent.aclose()
    assert elapsed < CLOSE_TIMEOUT
