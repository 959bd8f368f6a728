"""A host and a client in one process whose loopback link is cut under them (a half-open link).

Run inside a network namespace of its own (``unshare -n``), where bringing ``lo`` down touches
nothing else: the sockets stay open and writes still succeed, but nothing arrives, as when a
cable is pulled. Prints one JSON line: how each side reported the loss and after how long.

Usage: python half_open.py BACKEND PING_INTERVAL PING_TIMEOUT
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio

import alvaro
from alvaro.aio import Connection, connect


async def main(interval: float, timeout: float) -> None:
    await anyio.run_process(["ip", "link", "set", "lo", "up"])
    options: dict[str, Any] = {"ping_interval": interval, "ping_timeout": timeout}
    lost: dict[str, Any] = {}
    host_lost = anyio.Event()

    def lost_client(conn: Connection) -> None:
        lost["host"] = (conn.close_code, time.monotonic())
        host_lost.set()

    async with alvaro.aio.Host(**options) as host:
        host.got_data = lambda conn, data, metadata: conn.send_data(data)
        host.lost_client = lost_client
        with anyio.fail_after(30):
            async with connect("127.0.0.1", host.port, **options) as client:
                client.send_data("before")
                assert (await client.receive()).data == "before"
                await anyio.run_process(["ip", "link", "set", "lo", "down"])
                cut = time.monotonic()
                client.send_data("into the void")
                try:
                    await client.receive()
                except alvaro.ConnectionClosed as exc:
                    lost["client"] = (exc.code, time.monotonic())
                await host_lost.wait()
    print(
        json.dumps({side: [int(code), when - cut] for side, (code, when) in lost.items()}),
        flush=True,
    )


if __name__ == "__main__":
    anyio.run(main, float(sys.argv[2]), float(sys.argv[3]), backend=sys.argv[1])
