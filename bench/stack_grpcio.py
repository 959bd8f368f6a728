"""Peer: grpcio's asyncio API (``grpc.aio``), unary-unary calls, for the request workloads.

No generated code (so no grpcio-tools): the server registers a generic handler whose request and
response (de)serializers are left out, so the handler gets and returns the raw ``bytes``; the
client calls ``channel.unary_unary(path)`` without serializers, so it sends and gets ``bytes``
too. Each request is ``json.dumps({"data": ..., "metadata": ...})``, which the server decodes and
encodes again as its answer, as the other stacks' echo servers do.

``request``: one call at a time, each timed. ``request-100``: 100 tasks on one channel, each
calling in a loop until the run's count is reached.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import grpc
from common import ECHO_DATA, ECHO_METADATA, json_body
from request_loops import in_flight, one_at_a_time

if TYPE_CHECKING:
    from collections.abc import Callable

    from common import Params

    Report = Callable[[dict[str, Any]], None]

METHOD = "/bench.Echo/Echo"
# Generous: the runner's own time limit ends a stuck call sooner.
CALL_TIMEOUT = 600.0


def serve(variant: str, workload: str, params: Params, report: Report) -> None:
    """Run a grpc.aio server answering ``METHOD`` until the process is terminated."""
    asyncio.run(_serve(report))


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    message = json.loads(request)
    return json_body(message["data"], message["metadata"])


async def _serve(report: Report) -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    report({"port": port})
    await server.wait_for_termination()


def run_client(
    variant: str, workload: str, params: Params, address: dict[str, Any], report: Report
) -> dict[str, Any]:
    """Run the client side of ``workload`` against the server at ``address``."""
    result: dict[str, Any] = asyncio.run(_client(workload, params, address["port"]))
    return result


async def _client(workload: str, params: Params, port: int) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), CALL_TIMEOUT)
        call = channel.unary_unary(METHOD)
        body = json_body(ECHO_DATA, ECHO_METADATA)

        async def ask() -> Any:
            reply = await call(body, timeout=CALL_TIMEOUT)
            return json.loads(reply)["data"]

        if workload == "request":
            return await one_at_a_time(ask, params)
        if workload == "request-100":
            return await in_flight(ask, params)
        raise ValueError(f"unknown workload {workload!r}")
