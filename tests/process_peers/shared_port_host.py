"""One of several host processes on one port, for tests/test_shared_port.py.

Prints ``listening PORT`` on stdout once it listens, then serves until it is killed. It greets
every client with ``{"pid": <this process's id>}``, so that a client can tell which process
took its connection, and echoes every message.

Options:
    --backend asyncio|trio   the event loop to run on.
    --sync                   run an alvaro.sync.Host instead of an alvaro.aio one.
    --port N                 listen on 127.0.0.1:N with reuse_port=True (0: a free port).
    --fd N                   listen on the socket with file descriptor N, inherited from the
                             process that started this one (sock=).
    --cert FILE --key FILE   serve TLS only, with this certificate and key (PEM).
"""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any

import anyio

import alvaro
import alvaro.sync
import alvaro.tls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--sync", action="store_true")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int)
    where.add_argument("--fd", type=int)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    options = parser.parse_args()

    listen: dict[str, Any] = (
        {"sock": socket.socket(fileno=options.fd)}
        if options.fd is not None
        else {"addr": "127.0.0.1", "port": options.port, "reuse_port": True}
    )
    if options.cert is not None:
        listen["ssl_context"] = alvaro.tls.server_context(options.cert, options.key)

    def greet(conn: Any) -> None:
        conn.send_data({"pid": os.getpid()})

    def echo(conn: Any, data: Any, metadata: dict[str, Any]) -> None:
        conn.send_data(data, metadata)

    def started(host: Any) -> None:
        print("listening", host.port, flush=True)

    if options.sync:
        sync_host = alvaro.sync.Host(backend=options.backend, **listen)
        sync_host.new_client, sync_host.got_data = greet, echo
        sync_host.server_started = started
        sync_host.serve_forever()
    else:
        host = alvaro.Host(**listen)
        host.new_client, host.got_data = greet, echo
        host.server_started = started
        anyio.run(host.start, backend=options.backend)


if __name__ == "__main__":
    main()
