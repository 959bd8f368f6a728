"""An alvaro host in a process of its own, for tests that kill it or measure it from outside.

Prints ``listening PORT`` on stdout once it listens on 127.0.0.1, then serves until it is killed.
Every message with a ``seq`` in its metadata is answered with ``"ack"`` and ``{"ack": seq}``;
any other message is sent back as it came (an echo).

Options:
    --backend asyncio|trio   the event loop to run on.
    --cert FILE --key FILE   serve TLS only, with this certificate and key (PEM).
    --nofile N               lower the limit on open files to N (soft and hard) once
                             listening: the host has planned for more connections than it
                             can then open, so accept() runs out of file descriptors (EMFILE).
                             (Lowered before starting, the host would size max_connections to
                             it and refuse connections instead.)
    --per-address N          max_unauthenticated_per_address (default: alvaro's, 16).
    --stall-after N          stop reading after the N-th message of each connection: its
                             ``got_data`` never returns, so the client's sends back up.
    --log                    log ``alvaro.*`` records of level WARNING and above to stderr, one
                             line each, starting with the time (``time.time()``).
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
from typing import Any

import anyio

import alvaro
import alvaro.tls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--nofile", type=int)
    parser.add_argument("--per-address", type=int, default=16)
    parser.add_argument("--stall-after", type=int)
    parser.add_argument("--log", action="store_true")
    options = parser.parse_args()

    # Many connections may be opened to this host: allow as many files as permitted.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if options.log:
        logging.basicConfig(
            stream=sys.stderr,
            level=logging.WARNING,
            format="%(created).3f %(name)s %(levelname)s %(message)s",
        )

    context = None
    if options.cert is not None:
        context = alvaro.tls.server_context(options.cert, options.key)
    host = alvaro.Host(
        "127.0.0.1", 0, ssl_context=context, max_unauthenticated_per_address=options.per_address
    )
    received: dict[alvaro.aio.Connection, int] = {}

    def server_started(host: alvaro.Host) -> None:
        if options.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (options.nofile, options.nofile))
        print("listening", host.port, flush=True)

    async def got_data(conn: alvaro.aio.Connection, data: Any, metadata: dict[str, Any]) -> None:
        count = received[conn] = received.get(conn, 0) + 1
        if options.stall_after is not None and count >= options.stall_after:
            await anyio.sleep_forever()
        try:
            if "seq" in metadata:
                await conn.send("ack", {"ack": metadata["seq"]})
            else:
                await conn.send(data, metadata)
        except alvaro.ConnectionClosed:
            pass

    def lost_client(conn: alvaro.aio.Connection) -> None:
        received.pop(conn, None)

    host.server_started = server_started  # type: ignore[method-assign]
    host.got_data = got_data  # type: ignore[method-assign]
    host.lost_client = lost_client  # type: ignore[method-assign]
    anyio.run(host.start, backend=options.backend)


if __name__ == "__main__":
    main()
