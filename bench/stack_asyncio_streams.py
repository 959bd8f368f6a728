"""Baseline: a hand-written asyncio streams program, as most people would write one.

Framing: a 4-byte big-endian length, then ``json.dumps({"data": ..., "metadata": ...})``, or the
raw bytes in the bulk workload. The receiver reads each frame with two ``readexactly()`` calls;
the sender calls ``writer.write()`` per message and ``await writer.drain()`` now and then, which
lets asyncio's transport batch what piles up while the socket is busy. TLS uses asyncio's own
``ssl=`` support.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from typing import TYPE_CHECKING, Any

from common import (
    COALESCE_BYTES,
    DONE,
    ECHO_DATA,
    ECHO_METADATA,
    HEADER,
    SMALL_DATA,
    bulk_payload,
    json_frame,
    rss_kib,
    tick_metadata,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from common import Params

    Report = Callable[[dict[str, Any]], None]


def server_ssl_context(params: Params) -> ssl.SSLContext | None:
    """The server's TLS context for the TLS workload, else ``None``."""
    if params["tls"] is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(params["tls"]["server"])
    return context


def client_ssl_context(params: Params) -> ssl.SSLContext | None:
    """The client's TLS context (trusting the run's own CA) for the TLS workload, else ``None``."""
    if params["tls"] is None:
        return None
    return ssl.create_default_context(cafile=params["tls"]["ca"])


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    return await reader.readexactly(size)


def serve(variant: str, workload: str, params: Params, report: Report) -> None:
    """Run the server of ``workload`` until the process is terminated."""
    asyncio.run(_serve(workload, params, report))


async def _serve(workload: str, params: Params, report: Report) -> None:
    idle_count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal idle_count
        try:
            if workload in ("oneway", "oneway-tls", "bulk"):
                expected = params["bulk_messages"] if workload == "bulk" else params["messages"]
                for _ in range(expected):
                    body = await _read_frame(reader)
                    if workload != "bulk":
                        json.loads(body)  # decode every message, as a real receiver would
                writer.write(json_frame(DONE, {}))
                await writer.drain()
                await reader.read()  # until the client closes
            elif workload == "roundtrip":
                while True:
                    message = json.loads(await _read_frame(reader))
                    writer.write(json_frame(message["data"], message["metadata"]))
                    await writer.drain()
            elif workload in ("idle", "idle-tls"):
                idle_count += 1
                if idle_count == params["connections"]:
                    report({"rss_after_kib": rss_kib(), "connections": idle_count})
                await reader.read()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away: the measurement is over
        finally:
            writer.close()

    server = await asyncio.start_server(
        handle, "127.0.0.1", 0, ssl=server_ssl_context(params), backlog=4096
    )
    port = server.sockets[0].getsockname()[1]
    idle = workload in ("idle", "idle-tls")
    report({"port": port, "rss_before_kib": rss_kib() if idle else None})
    async with server:
        await server.serve_forever()


def run_client(
    variant: str, workload: str, params: Params, address: dict[str, Any], report: Report
) -> dict[str, Any]:
    """Run the client side of ``workload`` against the server at ``address``."""
    return asyncio.run(_client(workload, params, address["port"], report))


async def _client(workload: str, params: Params, port: int, report: Report) -> dict[str, Any]:
    if workload in ("idle", "idle-tls"):
        return await _open_idle(params["connections"], port, report, client_ssl_context(params))
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_ssl_context(params)
    )
    try:
        if workload in ("oneway", "oneway-tls"):
            start = time.perf_counter()
            for seq in range(params["messages"]):
                writer.write(json_frame(SMALL_DATA, tick_metadata(seq)))
                if writer.transport.get_write_buffer_size() > COALESCE_BYTES:
                    await writer.drain()
            await writer.drain()
            reply = json.loads(await _read_frame(reader))
            elapsed = time.perf_counter() - start
            assert reply["data"] == DONE
            return {"elapsed": elapsed}
        if workload == "roundtrip":
            samples = []
            for index in range(params["warmup"] + params["round_trips"]):
                start_ns = time.perf_counter_ns()
                writer.write(json_frame(ECHO_DATA, ECHO_METADATA))
                await writer.drain()
                reply = json.loads(await _read_frame(reader))
                if index >= params["warmup"]:
                    samples.append(time.perf_counter_ns() - start_ns)
            assert reply["data"] == ECHO_DATA
            return {"samples_ns": samples}
        if workload == "bulk":
            payload = bulk_payload()
            header = HEADER.pack(len(payload))
            start = time.perf_counter()
            for _ in range(params["bulk_messages"]):
                writer.write(header)
                writer.write(payload)
                await writer.drain()
            reply = json.loads(await _read_frame(reader))
            elapsed = time.perf_counter() - start
            assert reply["data"] == DONE
            return {"elapsed": elapsed}
        raise ValueError(f"unknown workload {workload!r}")
    finally:
        writer.close()


async def _open_idle(
    count: int, port: int, report: Report, context: ssl.SSLContext | None
) -> dict[str, Any]:
    # A bounded number of connections in flight at once, so the listen backlog never overflows.
    gate = asyncio.Semaphore(64)
    writers: list[asyncio.StreamWriter] = []

    async def open_one() -> None:
        async with gate:
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
            writers.append(writer)

    await asyncio.gather(*(open_one() for _ in range(count)))
    report({"opened": len(writers)})
    await asyncio.sleep(3600)  # held open until the runner terminates this process
    return {}
