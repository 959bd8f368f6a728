"""An ``alvaro.sync`` host run by ``serve_forever()`` in a process of its own, for tests that
stop it with signals.

Run it as ``python -m tests.process_peers.sync_host`` from the repository's root, so that it
imports the alvaro of this checkout. It prints, one line each, on stdout:

* ``listening PORT`` once it listens on 127.0.0.1;
* ``new client`` when a client has connected;
* ``queued N`` after queueing the N messages a client asked for with ``{"burst": N}`` in a
  message's metadata (numbered ``0`` to ``N - 1``); any other message is sent back as it came;
* ``returned X`` when ``serve_forever()`` returns ``X`` (a signal's name, or ``None``).

Then the process ends normally (exit status 0).

Options:
    --backend asyncio|trio    the event loop of alvaro's background thread.
    --close-timeout SECONDS   the host's close_timeout (default: alvaro's, 10 s).
"""

from __future__ import annotations

import argparse
from typing import Any

import alvaro.sync


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--close-timeout", type=float, default=10.0)
    options = parser.parse_args()
    host = alvaro.sync.Host(
        "127.0.0.1", 0, backend=options.backend, close_timeout=options.close_timeout
    )

    def server_started(host: alvaro.sync.Host) -> None:
        print("listening", host.port, flush=True)

    def new_client(conn: alvaro.sync.Connection) -> None:
        print("new client", flush=True)

    def got_data(conn: alvaro.sync.Connection, data: Any, metadata: dict[str, Any]) -> None:
        if "burst" not in metadata:
            conn.send_data(data, metadata)
            return
        for number in range(metadata["burst"]):
            conn.send_data(number)
        print("queued", metadata["burst"], flush=True)

    host.server_started = server_started  # type: ignore[method-assign]
    host.new_client = new_client  # type: ignore[method-assign]
    host.got_data = got_data  # type: ignore[method-assign]
    stopped_by = host.serve_forever()
    print("returned", getattr(stopped_by, "name", stopped_by), flush=True)


if __name__ == "__main__":
    main()
