"""Baseline: a hand-written anyio streams program, on asyncio (variant "asyncio") or trio.

Same framing as the asyncio-streams baseline: a 4-byte big-endian length, then
``json.dumps({"data": ..., "metadata": ...})`` or raw bytes. The receiver reads with
``receive()`` (anyio's default of 64 KiB at most) into a bytearray and cuts frames out of it.
anyio's ``send()`` writes at once and waits for the socket, so the sender coalesces like asyncio's
transport does: frames pile up in a list and go out joined once about 64 KiB are waiting (and at
the end).

Not ``BufferedByteReceiveStream.receive_exactly()``: it asks the socket stream for only the bytes
still missing, so each 4-byte header costs a receive of its own (on trio a ``recv`` system call;
on asyncio anyio copies the rest of its 256 KiB chunk back into its queue), which made this
baseline several times slower than the asyncio one at small messages.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from common import (
    COALESCE_BYTES,
    DONE,
    ECHO_DATA,
    ECHO_METADATA,
    HEADER,
    SMALL_DATA,
    bulk_payload,
    json_frame,
    tick_metadata,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from common import Params

    Report = Callable[[dict[str, Any]], None]


class FrameReader:
    """Cuts length-prefixed frames out of what a stream receives."""

    def __init__(self, stream: anyio.abc.ByteReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def frame(self) -> bytes:
        """The next frame's payload.

        Raises:
            anyio.EndOfStream: the peer closed the connection.
        """
        buffer = self._buffer
        while True:
            if len(buffer) >= HEADER.size:
                end = HEADER.size + HEADER.unpack_from(buffer)[0]
                if len(buffer) >= end:
                    with memoryview(buffer) as view:
                        payload = bytes(view[HEADER.size : end])  # one copy
                    del buffer[:end]  # cheap: CPython moves a bytearray's start, not its bytes
                    return payload
            buffer += await self._stream.receive()


def serve(variant: str, workload: str, params: Params, report: Report) -> None:
    """Run the server of ``workload`` on the ``variant`` backend until terminated."""
    anyio.run(_serve, workload, params, report, backend=variant)


async def _serve(workload: str, params: Params, report: Report) -> None:
    async def handle(stream: anyio.abc.SocketStream) -> None:
        reader = FrameReader(stream)
        try:
            if workload in ("oneway", "bulk"):
                expected = params["bulk_messages"] if workload == "bulk" else params["messages"]
                for _ in range(expected):
                    body = await reader.frame()
                    if workload != "bulk":
                        json.loads(body)  # decode every message, as a real receiver would
                await stream.send(json_frame(DONE, {}))
                await stream.receive()  # until the client closes
            elif workload == "roundtrip":
                while True:
                    message = json.loads(await reader.frame())
                    await stream.send(json_frame(message["data"], message["metadata"]))
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass  # the client went away: the measurement is over
        finally:
            await stream.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    report({"port": listener.extra(anyio.abc.SocketAttribute.local_port)})
    await listener.serve(handle)


def run_client(
    variant: str, workload: str, params: Params, address: dict[str, Any], report: Report
) -> dict[str, Any]:
    """Run the client side of ``workload`` on the ``variant`` backend."""
    result: dict[str, Any] = anyio.run(_client, workload, params, address["port"], backend=variant)
    return result


async def _client(workload: str, params: Params, port: int) -> dict[str, Any]:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        reader = FrameReader(stream)
        if workload == "oneway":
            start = time.perf_counter()
            pending: list[bytes] = []
            pending_bytes = 0
            for seq in range(params["messages"]):
                frame = json_frame(SMALL_DATA, tick_metadata(seq))
                pending.append(frame)
                pending_bytes += len(frame)
                if pending_bytes >= COALESCE_BYTES:
                    await stream.send(b"".join(pending))
                    pending.clear()
                    pending_bytes = 0
            if pending:
                await stream.send(b"".join(pending))
            reply = json.loads(await reader.frame())
            elapsed = time.perf_counter() - start
            assert reply["data"] == DONE
            return {"elapsed": elapsed}
        if workload == "roundtrip":
            samples = []
            for index in range(params["warmup"] + params["round_trips"]):
                start_ns = time.perf_counter_ns()
                await stream.send(json_frame(ECHO_DATA, ECHO_METADATA))
                reply = json.loads(await reader.frame())
                if index >= params["warmup"]:
                    samples.append(time.perf_counter_ns() - start_ns)
            assert reply["data"] == ECHO_DATA
            return {"samples_ns": samples}
        if workload == "bulk":
            payload = bulk_payload()
            header = HEADER.pack(len(payload))
            start = time.perf_counter()
            for _ in range(params["bulk_messages"]):
                await stream.send(header)
                await stream.send(payload)
            reply = json.loads(await reader.frame())
            elapsed = time.perf_counter() - start
            assert reply["data"] == DONE
            return {"elapsed": elapsed}
        raise ValueError(f"unknown workload {workload!r}")
