"""A chat host: relays every message to every other client, with the sender's name.

Run:  python examples/chat_host.py [PORT]      (Ctrl+C stops it cleanly)
"""

from __future__ import annotations

import sys
from typing import Any

import alvaro.sync


def make_host(port: int) -> alvaro.sync.Host:
    """A host on localhost that relays messages between its clients."""
    host = alvaro.sync.Host("localhost", port)

    def got_data(conn: alvaro.sync.Connection, data: Any, metadata: dict[str, Any]) -> None:
        # Runs on the host's callback thread; send_data never blocks.
        for other in host.clients:
            if other is not conn:
                other.send_data(data, metadata=metadata)

    def new_client(conn: alvaro.sync.Connection) -> None:
        conn.send_data("welcome to the chat", metadata={"from": "host"})

    host.got_data = got_data
    host.new_client = new_client
    return host


if __name__ == "__main__":
    chat = make_host(int(sys.argv[1]) if len(sys.argv) > 1 else 8888)
    chat.start()
    print(f"chat host on localhost:{chat.port}; Ctrl+C to stop")
    chat.serve_forever()
