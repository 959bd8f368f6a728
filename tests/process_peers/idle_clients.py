"""Many idle alvaro clients in a process of its own, so that a test measures only the host.

Usage: ``idle_clients.py PORT [--ca FILE]``. Reads commands from stdin, one a line:
``open N`` opens N more connections to 127.0.0.1:PORT (over TLS, trusting the CA in FILE, when
``--ca`` is given), and prints ``open TOTAL`` once every one of them has finished its opening
handshake. The connections then stay open and idle. The process exits at the end of stdin.

A host may turn away connections beyond a few in their handshakes from one address at a time
(TRY_AGAIN_LATER), so connections are opened a few at a time, and a refused one is retried.
"""

from __future__ import annotations

import argparse
import resource
import sys
from functools import partial

import anyio
import anyio.abc
import anyio.to_thread

import alvaro
import alvaro.tls

#: Connections opened at the same time.
BATCH = 8
#: How often one connection is tried before giving up.
ATTEMPTS = 50


async def open_clients(
    tasks: anyio.abc.TaskGroup, port: int, options: dict[str, object], count: int
) -> None:
    async def open_one() -> None:
        for attempt in range(1, ATTEMPTS + 1):
            client = alvaro.Client(**options)  # type: ignore[arg-type]
            try:
                await tasks.start(partial(client.connect, "127.0.0.1", port))
            except alvaro.ConnectError:
                if attempt == ATTEMPTS:
                    raise
                await anyio.sleep(0.02)
            else:
                return

    for first in range(0, count, BATCH):
        async with anyio.create_task_group() as batch:
            for _ in range(min(BATCH, count - first)):
                batch.start_soon(open_one)


async def run(port: int, options: dict[str, object]) -> None:
    total = 0
    async with anyio.create_task_group() as tasks:
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                break
            command, count = line.split()
            assert command == "open", line
            await open_clients(tasks, port, options, int(count))
            total += int(count)
            print("open", total, flush=True)
        tasks.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--ca")
    arguments = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    options: dict[str, object] = {"ping_interval": None}
    if arguments.ca is not None:
        options["ssl_context"] = alvaro.tls.client_context(arguments.ca)
    anyio.run(run, arguments.port, options)


if __name__ == "__main__":
    main()
