"""Server or client of one workload, written against the original Alvaro 1.3.0 from PyPI.

Runs inside ``bench/.venv-alvaro13`` (see ``stack_alvaro13.py``), never in the project's own
environment, whose ``alvaro`` is the new library. It uses the old API the way its README does:
``Host(addr, port)`` with ``gotData`` assigned, ``Client().connect(...)`` under ``asyncio.run``
in a thread, and ``sendData(data, metaData=...)``. The Host keeps its default
``multithreading=True``, which runs each ``gotData`` call in a new thread with a new event loop.

It talks to the runner through its standard output: one ``@@BENCH <json>`` line per report
(anything else the library prints is ignored), and takes its orders from the command line::

    python alvaro13_driver.py server WORKLOAD PARAMS_JSON
    python alvaro13_driver.py client WORKLOAD PARAMS_JSON PORT

Version 1.3.0 cannot send ``bytes`` (it JSON-encodes all data), so its bulk messages are
16 MiB ``str`` values instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import sys
import threading
import time
from typing import Any

from common import BULK_SIZE, DONE, ECHO_DATA, ECHO_METADATA, SMALL_DATA, tick_metadata

from alvaro import Client, Host  # the original Alvaro 1.3.0: this runs in its own venv

REPLY_TIMEOUT = 600.0


def report(message: dict[str, Any]) -> None:
    """Send one report line to the runner."""
    sys.stdout.write("@@BENCH " + json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(workload: str, params: dict[str, Any]) -> None:
    """Run a 1.3.0 Host for ``workload`` until the process is terminated."""
    host = Host("127.0.0.1", 0)
    expected = params["bulk_messages"] if workload == "bulk" else params["messages"]
    counts: dict[Any, int] = {}
    lock = threading.Lock()  # gotData runs on a new thread per message

    async def count(client: Any, data: Any, metaData: Any) -> None:
        with lock:
            counts[client] = counts.get(client, 0) + 1
            done = counts[client] == expected
        if done:
            client.sendData(DONE)

    async def echo(client: Any, data: Any, metaData: Any) -> None:
        client.sendData(data, metaData=metaData)

    async def server_started(server: Any) -> None:
        report({"port": server._server.sockets[0].getsockname()[1]})

    host.gotData = echo if workload == "roundtrip" else count
    host.serverStarted = server_started
    asyncio.run(host.start())


def run_client(workload: str, params: dict[str, Any], port: int) -> dict[str, Any]:
    """Run a 1.3.0 Client for ``workload``; return what the runner turns into a figure."""
    client = Client()
    replies: queue.SimpleQueue[Any] = queue.SimpleQueue()

    async def got_data(data: Any, metaData: Any) -> None:
        replies.put(data)

    client.gotData = got_data
    thread = threading.Thread(
        target=lambda: asyncio.run(client.connect("127.0.0.1", port)), daemon=True
    )
    thread.start()
    # Its waitForConnection() spins on the CPU (and misses a connection made before the call),
    # so look at the flags it sets instead, sleeping in between.
    deadline = time.monotonic() + 30
    while not (client.connected and client.loop):
        if time.monotonic() > deadline or not thread.is_alive():
            raise ConnectionError("could not connect")
        time.sleep(0.001)

    if workload == "oneway":
        start = time.perf_counter()
        for seq in range(params["messages"]):
            client.sendData(SMALL_DATA, metaData=tick_metadata(seq))
        reply = replies.get(timeout=REPLY_TIMEOUT)
        elapsed = time.perf_counter() - start
        assert reply == DONE, reply
        return {"elapsed": elapsed}
    if workload == "roundtrip":
        samples = []
        for index in range(params["warmup"] + params["round_trips"]):
            start_ns = time.perf_counter_ns()
            client.sendData(ECHO_DATA, metaData=ECHO_METADATA)
            reply = replies.get(timeout=REPLY_TIMEOUT)
            if index >= params["warmup"]:
                samples.append(time.perf_counter_ns() - start_ns)
        assert reply == ECHO_DATA, reply
        return {"samples_ns": samples}
    if workload == "bulk":
        payload = "z" * BULK_SIZE
        start = time.perf_counter()
        for _ in range(params["bulk_messages"]):
            client.sendData(payload)
        reply = replies.get(timeout=REPLY_TIMEOUT)
        elapsed = time.perf_counter() - start
        assert reply == DONE, reply
        return {"elapsed": elapsed}
    raise ValueError(f"unknown workload {workload!r}")


def main(argv: list[str]) -> None:
    """Run the role the runner asked for, report the outcome, and exit without lingering."""
    role, workload, params = argv[0], argv[1], json.loads(argv[2])
    try:
        if params.get("pin"):
            from common import pin_to_one_cpu

            pin_to_one_cpu()
        if role == "server":
            serve(workload, params)
        else:
            report({"result": run_client(workload, params, int(argv[3]))})
    except BaseException as exc:
        report({"error": f"{type(exc).__name__}: {exc}"})
    # 1.3.0 leaves non-daemon threads (buffer monitors, per-message loops) behind: do not wait.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
