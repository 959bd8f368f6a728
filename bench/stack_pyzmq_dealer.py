"""Peer: pyzmq's asyncio API (``zmq.asyncio``), DEALER/ROUTER, for the request workloads.

What a user of pyzmq writes to have several requests in flight on one socket: the client is a
DEALER that tags each request with an id (a first frame of 8 bytes) and keeps a future per id;
one reader task takes the replies and completes the future of each reply's id. The server is a
ROUTER that echoes: it decodes each request (``json.dumps({"data": ..., "metadata": ...})``),
encodes it again and sends it back with the same routing and id frames.

libzmq connects in the background and queues what is sent meanwhile; the warm-up requests go
first, before any clock starts.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import TYPE_CHECKING, Any

import zmq
import zmq.asyncio
from common import ECHO_DATA, ECHO_METADATA, json_body
from request_loops import in_flight, one_at_a_time

if TYPE_CHECKING:
    from collections.abc import Callable

    from common import Params

    Report = Callable[[dict[str, Any]], None]

ENDPOINT = "tcp://127.0.0.1"


def serve(variant: str, workload: str, params: Params, report: Report) -> None:
    """Run a ROUTER echoing every request until the process is terminated."""
    asyncio.run(_serve(report))


async def _serve(report: Report) -> None:
    context = zmq.asyncio.Context()
    router = context.socket(zmq.ROUTER)
    report({"port": router.bind_to_random_port(ENDPOINT)})
    while True:
        peer, request_id, body = await router.recv_multipart()
        message = json.loads(body)
        await router.send_multipart(
            [peer, request_id, json_body(message["data"], message["metadata"])]
        )


def run_client(
    variant: str, workload: str, params: Params, address: dict[str, Any], report: Report
) -> dict[str, Any]:
    """Run the client side of ``workload`` against the server at ``address``."""
    result: dict[str, Any] = asyncio.run(_client(workload, params, address["port"]))
    return result


async def _client(workload: str, params: Params, port: int) -> dict[str, Any]:
    context = zmq.asyncio.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.connect(f"{ENDPOINT}:{port}")
    waiting: dict[bytes, asyncio.Future[bytes]] = {}
    ids = itertools.count()
    body = json_body(ECHO_DATA, ECHO_METADATA)

    async def read_replies() -> None:
        while True:
            request_id, reply = await dealer.recv_multipart()
            future = waiting.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result(reply)

    async def ask() -> Any:
        request_id = next(ids).to_bytes(8, "big")
        future = asyncio.get_running_loop().create_future()
        waiting[request_id] = future
        try:
            await dealer.send_multipart([request_id, body])
            reply = await future
        finally:
            waiting.pop(request_id, None)
        return json.loads(reply)["data"]

    reader = asyncio.create_task(read_replies())
    try:
        if workload == "request":
            return await one_at_a_time(ask, params)
        if workload == "request-100":
            return await in_flight(ask, params)
        raise ValueError(f"unknown workload {workload!r}")
    finally:
        reader.cancel()
        context.destroy(linger=0)
