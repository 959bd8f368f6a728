"""A blocking alvaro client in a process of its own that streams numbered messages to a host.

Usage: ``streaming_client.py PORT BACKEND``. Connects to 127.0.0.1:PORT with ``alvaro.sync`` on
the given loop backend and prints ``connected``. Then it sends messages 1, 2, 3, ... with
``send()`` (which waits while the outbox is full), each with metadata ``{"seq": n}`` and data
``{"seq": n, "size": k, "fill": <k times one letter>}``, the size varying from 0 to about 20 KB so
that frames often span several writes. The host answers each with metadata ``{"ack": n}``; the
client prints ``acked n`` for each answer as it arrives, so whatever it printed was confirmed by
the host. It stops after 60 s or when the connection ends; tests kill it long before.
"""

from __future__ import annotations

import string
import sys
import time
from typing import Any

import alvaro
import alvaro.sync

LETTERS = string.ascii_lowercase


def message(seq: int) -> dict[str, Any]:
    size = (seq * 7919) % 20_011
    return {"seq": seq, "size": size, "fill": LETTERS[seq % len(LETTERS)] * size}


def main() -> None:
    port, backend = int(sys.argv[1]), sys.argv[2]
    client = alvaro.sync.Client(backend=backend)  # type: ignore[arg-type]

    def got_data(data: Any, metadata: dict[str, Any]) -> None:
        sys.stdout.write(f"acked {metadata['ack']}\n")
        sys.stdout.flush()

    client.got_data = got_data  # type: ignore[method-assign]
    client.connect("127.0.0.1", port)
    print("connected", flush=True)
    deadline = time.monotonic() + 60
    seq = 0
    try:
        while time.monotonic() < deadline:
            seq += 1
            client.send(message(seq), {"seq": seq})
    except alvaro.ConnectionClosed:
        pass
    finally:
        client.close()


if __name__ == "__main__":
    main()
