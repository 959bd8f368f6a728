"""host.broadcast(): one message to many clients, without the slowest holding the rest back (R07b).

Each test runs on asyncio and on trio, on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

import alvaro
from alvaro import CloseCode, ConnectionClosed, EncodeError, MessageTooLarge
from alvaro.aio import Client, Connection, connect

from ..helpers import WAIT, T, eventually
from ..rawpeer import stalled_reader

pytestmark = pytest.mark.anyio

OPTIONS: dict[str, Any] = {"open_timeout": 10 * T, "close_timeout": 5 * T}


async def clients_of(
    stack: contextlib.AsyncExitStack, host: alvaro.aio.Host, count: int, **options: Any
) -> list[Client]:
    clients = [
        await stack.enter_async_context(connect("127.0.0.1", host.port, **OPTIONS, **options))
        for _ in range(count)
    ]
    await eventually(lambda: len(host.clients) == count)
    return clients


def host_side(host: alvaro.aio.Host, client: Client) -> Connection:
    """The host's connection to ``client``."""
    assert client.connection is not None
    (conn,) = [c for c in host.clients if c.port == client.connection.local_port]
    return conn


async def test_broadcast_reaches_every_client_but_those_left_out() -> None:
    async with alvaro.aio.Host(**OPTIONS) as host:
        with anyio.fail_after(WAIT):
            async with contextlib.AsyncExitStack() as stack:
                a, b, c = await clients_of(stack, host, 3)
                assert host.broadcast("all", {"n": 1}) == 3
                assert host.broadcast("not a", exclude=host_side(host, a)) == 2
                assert (
                    host.broadcast("not a or b", exclude=[host_side(host, a), host_side(host, b)])
                    == 1
                )
                only_c = host_side(host, c)
                assert host.broadcast("only c", where=lambda conn: conn is only_c) == 1
                assert host.broadcast("no one", where=lambda conn: False) == 0
                got = {
                    name: [(await client.receive()).data for _ in range(count)]
                    for name, client, count in (("a", a, 1), ("b", b, 2), ("c", c, 4))
                }
                for client in (a, b, c):
                    with pytest.raises(TimeoutError):
                        await client.receive(timeout=T)
    assert got == {
        "a": ["all"],
        "b": ["all", "not a"],
        "c": ["all", "not a", "not a or b", "only c"],
    }


async def test_broadcast_over_one_clients_limit_is_sent_to_no_one() -> None:
    async with alvaro.aio.Host(**OPTIONS) as host:
        with anyio.fail_after(WAIT):
            async with contextlib.AsyncExitStack() as stack:
                roomy = await stack.enter_async_context(connect("127.0.0.1", host.port, **OPTIONS))
                await stack.enter_async_context(
                    connect("127.0.0.1", host.port, max_message_size=1000, **OPTIONS)
                )
                await eventually(lambda: len(host.clients) == 2)
                with pytest.raises(MessageTooLarge, match="sent to no one"):
                    host.broadcast("x" * 2000)
                with pytest.raises(EncodeError):
                    host.broadcast({1, 2})
                assert host.broadcast("small") == 2
                assert (await roomy.receive()).data == "small"


async def test_r07b_a_stalled_client_is_dropped_and_the_others_get_every_broadcast() -> None:
    """8 MiB of broadcasts: the client that reads nothing is dropped as SLOW_CONSUMER once its
    outbox is full, with what it missed counted; the others receive every message in order."""
    count = 8 * 1024
    lost: list[Connection] = []
    received: list[list[int]] = [[] for _ in range(4)]

    async def collect(client: Client, into: list[int]) -> None:
        with contextlib.suppress(ConnectionClosed):
            for _ in range(count):
                into.append(int.from_bytes((await client.receive()).data[:4], "big"))

    host = alvaro.aio.Host(outbox_limit=1024 * 1024, write_timeout=None, **OPTIONS)
    host.lost_client = lost.append
    async with host:
        with anyio.fail_after(WAIT):
            async with contextlib.AsyncExitStack() as stack:
                clients = await clients_of(stack, host, 4)
                stalled = await stalled_reader(host.port)
                stack.push_async_callback(stalled.aclose)
                await eventually(lambda: len(host.clients) == 5)
                async with anyio.create_task_group() as tasks:
                    for client, into in zip(clients, received, strict=True):
                        tasks.start_soon(collect, client, into)
                    sent_to: list[int] = []
                    for seq in range(count):
                        sent_to.append(host.broadcast(seq.to_bytes(4, "big") + b"\0" * 1020))
                        if seq % 256 == 255:
                            # Pace the broadcaster on the healthy clients, which keeps their
                            # outboxes small; the stalled one falls ever further behind.
                            await eventually(
                                lambda floor=seq - 256: all(len(r) > floor for r in received)
                            )
                    await eventually(lambda: all(len(r) == count for r in received))
                (dropped,) = lost
    assert received == [list(range(count))] * 4
    assert dropped.close_code == CloseCode.SLOW_CONSUMER
    assert dropped.closed_by_peer is False
    assert "outbox_limit" in dropped.close_reason
    assert dropped.unsent > 0
    # Queued for five until the eviction, for the four healthy ones after it.
    assert sent_to[0] == 5
    assert sent_to[-1] == 4
    assert sorted(set(sent_to)) == [4, 5]
