"""Resource-leak soak (R25): many short connections, some aborted, some misbehaving, one host.

After the run the host must be back where it started: no file descriptor, task, client or
counter left over, and no error logged. The default run is short (CI profile); the full sizes
run with ``python3 -m pytest -m slow tests/aio/test_soak.py``.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import anyio
import anyio.abc
import pytest

import alvaro
from alvaro.aio import Connection, connect
from alvaro.protocol import encode_message

from ..helpers import WAIT, T, eventually, open_fds, rss_kib
from ..rawpeer import RawPeer, frame_header

pytestmark = pytest.mark.anyio

OPTIONS: dict[str, Any] = {"open_timeout": 20 * T, "close_timeout": 10 * T}


def echo(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
    conn.send_data(data, metadata)


async def normal_cycle(port: int, options: dict[str, Any]) -> None:
    """Connect, exchange 10 messages, close: all 10 must come back."""
    async with connect("127.0.0.1", port, **options) as client:
        for seq in range(10):
            await client.send(seq)
        assert [(await client.receive()).data for _ in range(10)] == list(range(10))


async def abort_cycle(port: int, tls: bool) -> None:
    """Connect and reset the connection (RST) part-way: mid-frame, or mid-TLS-handshake."""
    peer = RawPeer(await anyio.connect_tcp("127.0.0.1", port), "client")
    if tls:
        await peer.send(b"\x16\x03\x01\x00\xc8" + b"\0" * 50)
    else:
        await peer.handshake()
        await peer.send(encode_message("before") + encode_message("cut")[:9])
    await peer.reset_close()


async def violation_cycle(port: int, tls: bool) -> None:
    """Break the protocol: an unknown frame type (plain) or a bogus TLS record; wait for the end."""
    peer = RawPeer(await anyio.connect_tcp("127.0.0.1", port), "client")
    try:
        if tls:
            await peer.send(b"GET / HTTP/1.1\r\n\r\n")
        else:
            await peer.handshake()
            await peer.send(frame_header(0, 0x7E))
        await peer.read_until_eof()
    finally:
        await peer.aclose()


async def soak(cycles: int, tls: bool, caplog: pytest.LogCaptureFixture) -> None:
    options = dict(OPTIONS)
    host_options = dict(OPTIONS)
    if tls:
        pytest.importorskip("trustme")
        from alvaro.testing import client_context, make_ca, server_context

        ca = make_ca()
        host_options["ssl_context"] = server_context(ca)
        options["ssl_context"] = client_context(ca)
    rng = random.Random(25)
    caplog.set_level(logging.INFO)
    baseline_fds = open_fds()
    baseline_tasks = len(anyio.get_running_tasks())
    host = alvaro.aio.Host(**host_options)
    host.got_data = echo
    kinds = {"normal": 0, "abort": 0, "violation": 0}
    with anyio.fail_after(WAIT + cycles * 0.1):
        async with anyio.create_task_group() as tasks:
            await tasks.start(host.start)
            serving_fds = open_fds()
            serving_tasks = len(anyio.get_running_tasks())
            serving_rss = rss_kib()
            for _ in range(cycles):
                roll = rng.random()
                if roll < 0.2:
                    kinds["abort"] += 1
                    await abort_cycle(host.port, tls)
                elif roll < 0.3:
                    kinds["violation"] += 1
                    await violation_cycle(host.port, tls)
                else:
                    kinds["normal"] += 1
                    await normal_cycle(host.port, options)
            # Settle: every connection the host saw is gone, with all it held.
            await eventually(lambda: open_fds() <= serving_fds + 2, timeout=20 * T)
            await eventually(lambda: len(anyio.get_running_tasks()) <= serving_tasks)
            assert host.clients == []
            assert host._admission.active == 0
            assert host._admission.handshaking == {}
            growth = rss_kib() - serving_rss
            host.stop()
    assert open_fds() <= baseline_fds + 2
    assert len(anyio.get_running_tasks()) <= baseline_tasks
    assert all(count > 0 for count in kinds.values()), kinds
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert growth < 10 * 1024, f"resident memory grew by {growth} KiB"


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_r25_soak_ci_profile(tls: bool, caplog: pytest.LogCaptureFixture) -> None:
    await soak(500, tls, caplog)


@pytest.mark.slow
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_r25_soak_full(tls: bool, caplog: pytest.LogCaptureFixture) -> None:
    await soak(2000, tls, caplog)
