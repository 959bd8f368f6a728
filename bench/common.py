"""What every benchmark process shares: payloads, framing of the hand-written baselines, limits.

Imported by the runner and by every server and client process, so it imports nothing but the
standard library: a stack's own packages are imported lazily, in the processes that run it.
"""

from __future__ import annotations

import gc
import json
import os
import struct
from typing import Any, TypedDict

# One-way workload: 100-character string data plus a small metadata dict per message.
SMALL_DATA = "x" * 100
# Round-trip and request workloads: a 100-byte payload, echoed back.
ECHO_DATA = "y" * 100
ECHO_METADATA: dict[str, Any] = {"kind": "echo"}
# Bulk workload: 16 MiB of raw bytes per message (built once per process, sent many times).
BULK_SIZE = 16 * 1024 * 1024
# Headroom above the payload for alvaro's metadata and framing when raising max_message_size.
BULK_LIMIT = BULK_SIZE + 64 * 1024
DONE = "done"
# The request workloads: one request at a time, and this many in flight at once.
REQUEST_WORKLOADS = ("request", "request-100")
IN_FLIGHT = 100

# The hand-written baselines' frame header: a 4-byte big-endian payload length.
HEADER = struct.Struct("!I")
# Clients of the hand-written baselines let writes pile up to about this much before they wait
# for (asyncio) or perform (anyio) the socket write: the natural batching of a streams program.
COALESCE_BYTES = 64 * 1024


class TlsFiles(TypedDict):
    """PEM files made with trustme for one run: the CA to trust, the server's key and chain."""

    ca: str
    server: str


class Params(TypedDict):
    """The knobs of one run, handed to every server and client process (JSON-safe)."""

    messages: int  # one-way (and one-way TLS) message count
    round_trips: int  # timed round trips
    warmup: int  # untimed round trips (and requests) before them
    requests: int  # timed requests of the request-100 workload
    bulk_messages: int  # 16 MiB messages in the bulk workload
    connections: int  # idle connections
    pin: bool  # pin both processes of the round-trip workload to one CPU
    tls: TlsFiles | None  # certificate files for the TLS workload, else None


def tick_metadata(seq: int) -> dict[str, Any]:
    """The small metadata dict of the one-way workload's message number ``seq``."""
    return {"kind": "tick", "seq": seq}


def bulk_payload() -> bytes:
    """The 16 MiB bulk message (not all zeros, so nothing along the way can shortcut it)."""
    return bytes(range(256)) * (BULK_SIZE // 256)


def json_body(data: Any, metadata: dict[str, Any]) -> bytes:
    """A baseline message: the JSON document ``{"data": ..., "metadata": ...}``."""
    return json.dumps({"data": data, "metadata": metadata}).encode()


def json_frame(data: Any, metadata: dict[str, Any]) -> bytes:
    """A baseline message with its length prefix, ready to write."""
    body = json_body(data, metadata)
    return HEADER.pack(len(body)) + body


def rss_kib() -> int:
    """This process's resident set size in KiB (VmRSS), after a full garbage collection.

    Raises:
        OSError: no /proc/self/status (not Linux).
    """
    gc.collect()
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise OSError("no VmRSS line in /proc/self/status")


def nofile_needed(connections: int) -> int:
    """File descriptors one process needs for ``connections`` sockets, with room to spare."""
    return connections + 256


def raise_nofile(needed: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``needed`` (at most the hard limit).

    Returns the soft limit now in force. Each side of the idle workload holds one socket per
    connection, and the usual soft limit (1024) is far below 10,000.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def pin_to_one_cpu() -> None:
    """Pin this process to the first CPU it may run on.

    Both processes of the round-trip workload then share one core: on small VMs a wake-up that
    crosses cores costs a variable amount, which makes unpinned latency bimodal.
    """
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {allowed[0]})
