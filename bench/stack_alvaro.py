"""alvaro itself, host and client alike, in four variants.

- ``asyncio``: ``alvaro.aio`` on asyncio;
- ``uvloop``: ``alvaro.aio`` on asyncio with uvloop (anyio's
  ``backend_options={"use_uvloop": True}``);
- ``trio``: ``alvaro.aio`` on trio;
- ``sync``: ``alvaro.sync`` on both ends (its loop thread on asyncio), as a blocking program
  would use it: callbacks run on the host's dispatcher thread, the client calls blocking methods.

Clients send with the backpressure-aware ``send()``. The bulk workload raises
``max_message_size`` on both sides to fit 16 MiB of raw ``bytes``.

The request workloads (aio variants only) ask with ``await client.request(...)``; the host's
``got_request`` answers with the request's data and metadata. In ``request`` the client also
times a send-then-receive echo of the same message after each request, on the same connection,
so that the request's cost is measured against alvaro's own round trip under the same load.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
from common import (
    BULK_LIMIT,
    DONE,
    ECHO_DATA,
    ECHO_METADATA,
    REQUEST_WORKLOADS,
    SMALL_DATA,
    bulk_payload,
    rss_kib,
    tick_metadata,
)
from request_loops import in_flight, one_at_a_time

import alvaro
import alvaro.sync
import alvaro.tls

if TYPE_CHECKING:
    from collections.abc import Callable

    from common import Params

    Report = Callable[[dict[str, Any]], None]

# How long a client waits for the host's answer: the runner's own time limit ends it sooner.
REPLY_TIMEOUT = 600.0


def _tls_options(params: Params, *, server: bool) -> dict[str, Any]:
    """Host or Client keyword arguments that turn TLS on for the TLS workloads (else none).

    ``params["tls"]["server"]`` is the host's PEM key and certificate chain, ``"ca"`` the
    certificate the client trusts, as in ``stack_asyncio_streams``.
    """
    if params["tls"] is None:
        return {}
    if server:
        return {"ssl_context": alvaro.tls.server_context(params["tls"]["server"])}
    return {"ssl_context": alvaro.tls.client_context(params["tls"]["ca"])}


def _options(workload: str, params: Params, *, server: bool) -> dict[str, Any]:
    options = _tls_options(params, server=server)
    if workload == "bulk":
        options["max_message_size"] = BULK_LIMIT
    return options


def _backend(variant: str) -> tuple[str, dict[str, Any]]:
    if variant == "uvloop":
        return "asyncio", {"use_uvloop": True}
    return variant, {}


def serve(variant: str, workload: str, params: Params, report: Report) -> None:
    """Run an alvaro host for ``workload`` until the process is terminated."""
    if variant == "sync":
        _serve_sync(workload, params, report)
        return
    backend, backend_options = _backend(variant)
    anyio.run(
        _serve_aio, workload, params, report, backend=backend, backend_options=backend_options
    )


def _expected(workload: str, params: Params) -> int:
    return params["bulk_messages"] if workload == "bulk" else params["messages"]


async def _serve_aio(workload: str, params: Params, report: Report) -> None:
    # The idle workload holds more connections than a host serves by default (1024).
    capacity = params["connections"] + 64 if workload.startswith("idle") else 1024
    host = alvaro.aio.Host(
        "127.0.0.1", 0, max_connections=capacity, **_options(workload, params, server=True)
    )
    counts: dict[Any, int] = {}
    expected = _expected(workload, params)

    def count(conn: alvaro.aio.Connection, data: Any, metadata: dict[str, Any]) -> None:
        counts[conn] = counts.get(conn, 0) + 1
        if counts[conn] == expected:
            conn.send_data(DONE)

    def echo(conn: alvaro.aio.Connection, data: Any, metadata: dict[str, Any]) -> None:
        conn.send_data(data, metadata)

    def answer(conn: alvaro.aio.Connection, data: Any, metadata: dict[str, Any]) -> alvaro.Reply:
        return alvaro.Reply(data, metadata)

    opened = 0

    def new_client(conn: alvaro.aio.Connection) -> None:
        # new_client runs once the handshake is done: the connection is fully open, and idle.
        nonlocal opened
        opened += 1
        if opened == params["connections"]:
            report({"rss_after_kib": rss_kib(), "connections": len(host.clients)})

    if workload == "roundtrip":
        host.got_data = echo  # type: ignore[method-assign]
    elif workload in REQUEST_WORKLOADS:
        host.got_data = echo  # type: ignore[method-assign]
        host.got_request = answer  # type: ignore[method-assign]
    elif workload in ("idle", "idle-tls"):
        host.new_client = new_client  # type: ignore[method-assign]
    else:
        host.got_data = count  # type: ignore[method-assign]
    async with host:
        idle = workload in ("idle", "idle-tls")
        report({"port": host.port, "rss_before_kib": rss_kib() if idle else None})
        await anyio.sleep_forever()


def _serve_sync(workload: str, params: Params, report: Report) -> None:
    if workload in REQUEST_WORKLOADS:
        raise ValueError(f"the sync variant does not run {workload!r}")
    host = alvaro.sync.Host("127.0.0.1", 0, **_options(workload, params, server=True))
    counts: dict[Any, int] = {}
    expected = _expected(workload, params)

    def count(conn: alvaro.sync.Connection, data: Any, metadata: dict[str, Any]) -> None:
        counts[conn] = counts.get(conn, 0) + 1
        if counts[conn] == expected:
            conn.send_data(DONE)

    def echo(conn: alvaro.sync.Connection, data: Any, metadata: dict[str, Any]) -> None:
        conn.send_data(data, metadata)

    host.got_data = echo if workload == "roundtrip" else count  # type: ignore[method-assign]
    host.start()
    report({"port": host.port})
    host.serve_forever()


def run_client(
    variant: str, workload: str, params: Params, address: dict[str, Any], report: Report
) -> dict[str, Any]:
    """Run an alvaro client for ``workload`` against the host at ``address``."""
    if variant == "sync":
        return _client_sync(workload, params, address["port"])
    backend, backend_options = _backend(variant)
    result: dict[str, Any] = anyio.run(
        _client_aio,
        workload,
        params,
        address["port"],
        report,
        backend=backend,
        backend_options=backend_options,
    )
    return result


async def _client_aio(workload: str, params: Params, port: int, report: Report) -> dict[str, Any]:
    if workload in ("idle", "idle-tls"):
        return await _open_idle(
            params["connections"], port, report, _options(workload, params, server=False)
        )
    options = _options(workload, params, server=False)
    async with alvaro.aio.connect("127.0.0.1", port, **options) as client:
        if workload in ("oneway", "oneway-tls"):
            start = time.perf_counter()
            for seq in range(params["messages"]):
                await client.send(SMALL_DATA, tick_metadata(seq))
            reply = await client.receive(timeout=REPLY_TIMEOUT)
            elapsed = time.perf_counter() - start
            assert reply.data == DONE
            return {"elapsed": elapsed}
        if workload == "roundtrip":
            samples = []
            for index in range(params["warmup"] + params["round_trips"]):
                start_ns = time.perf_counter_ns()
                await client.send(ECHO_DATA, ECHO_METADATA)
                reply = await client.receive(timeout=REPLY_TIMEOUT)
                if index >= params["warmup"]:
                    samples.append(time.perf_counter_ns() - start_ns)
            assert reply.data == ECHO_DATA
            return {"samples_ns": samples}
        if workload == "bulk":
            payload = bulk_payload()
            start = time.perf_counter()
            for _ in range(params["bulk_messages"]):
                await client.send(payload)
            reply = await client.receive(timeout=REPLY_TIMEOUT)
            elapsed = time.perf_counter() - start
            assert reply.data == DONE
            return {"elapsed": elapsed}

        async def ask() -> Any:
            return (await client.request(ECHO_DATA, ECHO_METADATA, timeout=REPLY_TIMEOUT)).data

        async def echo() -> Any:
            await client.send(ECHO_DATA, ECHO_METADATA)
            return (await client.receive(timeout=REPLY_TIMEOUT)).data

        if workload == "request":
            return await one_at_a_time(ask, params, echo)
        if workload == "request-100":
            return await in_flight(ask, params)
        raise ValueError(f"unknown workload {workload!r}")


def _client_sync(workload: str, params: Params, port: int) -> dict[str, Any]:
    options = _options(workload, params, server=False)
    with alvaro.sync.connect("127.0.0.1", port, **options) as client:
        if workload == "oneway":
            start = time.perf_counter()
            for seq in range(params["messages"]):
                client.send(SMALL_DATA, tick_metadata(seq))
            reply = client.receive(timeout=REPLY_TIMEOUT)
            elapsed = time.perf_counter() - start
            assert reply.data == DONE
            return {"elapsed": elapsed}
        if workload == "roundtrip":
            samples = []
            for index in range(params["warmup"] + params["round_trips"]):
                start_ns = time.perf_counter_ns()
                client.send(ECHO_DATA, ECHO_METADATA)
                reply = client.receive(timeout=REPLY_TIMEOUT)
                if index >= params["warmup"]:
                    samples.append(time.perf_counter_ns() - start_ns)
            assert reply.data == ECHO_DATA
            return {"samples_ns": samples}
        if workload == "bulk":
            payload = bulk_payload()
            start = time.perf_counter()
            for _ in range(params["bulk_messages"]):
                client.send(payload)
            reply = client.receive(timeout=REPLY_TIMEOUT)
            elapsed = time.perf_counter() - start
            assert reply.data == DONE
            return {"elapsed": elapsed}
        raise ValueError(f"unknown workload {workload!r}")


async def _open_idle(
    count: int, port: int, report: Report, options: dict[str, Any]
) -> dict[str, Any]:
    # A bounded number of handshakes in flight at once, so the listen backlog never overflows,
    # and no more than a host lets one address have in its handshakes (the default
    # max_unauthenticated_per_address, 16): more would be refused with TRY_AGAIN_LATER.
    limiter = anyio.CapacityLimiter(16)
    opened = 0
    all_open = anyio.Event()
    async with anyio.create_task_group() as tasks:

        async def open_one() -> None:
            nonlocal opened
            async with limiter:
                await tasks.start(alvaro.aio.Client(**options).connect, "127.0.0.1", port)
            opened += 1
            if opened == count:
                all_open.set()

        for _ in range(count):
            tasks.start_soon(open_one)
        await all_open.wait()
        report({"opened": opened})
        await anyio.sleep(3600)  # held open until the runner terminates this process
    return {}
