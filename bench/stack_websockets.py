"""Peer: the websockets library's asyncio API, one JSON text message per message.

Server ``websockets.asyncio.server.serve`` and client ``websockets.asyncio.client.connect``, both
with ``compression=None`` (per-message deflate costs CPU and memory that alvaro does not spend),
``max_queue=None`` and ``max_size=None`` (no flow-control or size cap in the way of throughput).
Each message is ``json.dumps({"data": ..., "metadata": ...})`` sent as one text message; the bulk
workload sends binary messages.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from common import (
    DONE,
    ECHO_DATA,
    ECHO_METADATA,
    SMALL_DATA,
    bulk_payload,
    rss_kib,
    tick_metadata,
)
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from collections.abc import Callable

    from common import Params
    from websockets.asyncio.client import ClientConnection
    from websockets.asyncio.server import ServerConnection

    Report = Callable[[dict[str, Any]], None]

OPTIONS: dict[str, Any] = {"compression": None, "max_queue": None, "max_size": None}


def _message(data: Any, metadata: dict[str, Any]) -> str:
    return json.dumps({"data": data, "metadata": metadata})


def serve(variant: str, workload: str, params: Params, report: Report) -> None:
    """Run the server of ``workload`` until the process is terminated."""
    asyncio.run(_serve(workload, params, report))


async def _serve(workload: str, params: Params, report: Report) -> None:
    idle_count = 0

    async def handle(ws: ServerConnection) -> None:
        nonlocal idle_count
        try:
            if workload in ("oneway", "bulk"):
                expected = params["bulk_messages"] if workload == "bulk" else params["messages"]
                for _ in range(expected):
                    message = await ws.recv()
                    if workload != "bulk":
                        json.loads(message)  # decode every message, as a real receiver would
                await ws.send(_message(DONE, {}))
                await ws.wait_closed()
            elif workload == "roundtrip":
                async for message in ws:
                    decoded = json.loads(message)
                    await ws.send(_message(decoded["data"], decoded["metadata"]))
            elif workload == "idle":
                idle_count += 1
                if idle_count == params["connections"]:
                    report({"rss_after_kib": rss_kib(), "connections": idle_count})
                await ws.wait_closed()
        except ConnectionClosed:
            pass  # the client went away: the measurement is over

    async with ws_serve(handle, "127.0.0.1", 0, backlog=4096, **OPTIONS) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        report({"port": port, "rss_before_kib": rss_kib() if workload == "idle" else None})
        await server.serve_forever()


def run_client(
    variant: str, workload: str, params: Params, address: dict[str, Any], report: Report
) -> dict[str, Any]:
    """Run the client side of ``workload`` against the server at ``address``."""
    return asyncio.run(_client(workload, params, f"ws://127.0.0.1:{address['port']}/", report))


async def _client(workload: str, params: Params, uri: str, report: Report) -> dict[str, Any]:
    if workload == "idle":
        return await _open_idle(params["connections"], uri, report)
    async with connect(uri, **OPTIONS) as ws:
        if workload == "oneway":
            start = time.perf_counter()
            for seq in range(params["messages"]):
                await ws.send(_message(SMALL_DATA, tick_metadata(seq)))
            reply = json.loads(await ws.recv())
            elapsed = time.perf_counter() - start
            assert reply["data"] == DONE
            return {"elapsed": elapsed}
        if workload == "roundtrip":
            samples = []
            for index in range(params["warmup"] + params["round_trips"]):
                start_ns = time.perf_counter_ns()
                await ws.send(_message(ECHO_DATA, ECHO_METADATA))
                reply = json.loads(await ws.recv())
                if index >= params["warmup"]:
                    samples.append(time.perf_counter_ns() - start_ns)
            assert reply["data"] == ECHO_DATA
            return {"samples_ns": samples}
        if workload == "bulk":
            payload = bulk_payload()
            start = time.perf_counter()
            for _ in range(params["bulk_messages"]):
                await ws.send(payload)
            reply = json.loads(await ws.recv())
            elapsed = time.perf_counter() - start
            assert reply["data"] == DONE
            return {"elapsed": elapsed}
        raise ValueError(f"unknown workload {workload!r}")


async def _open_idle(count: int, uri: str, report: Report) -> dict[str, Any]:
    # A bounded number of handshakes in flight at once, so the listen backlog never overflows.
    gate = asyncio.Semaphore(64)
    connections: list[ClientConnection] = []

    async def open_one() -> None:
        async with gate:
            connections.append(await connect(uri, open_timeout=60, **OPTIONS))

    await asyncio.gather(*(open_one() for _ in range(count)))
    report({"opened": len(connections)})
    await asyncio.sleep(3600)  # held open until the runner terminates this process
    return {}
