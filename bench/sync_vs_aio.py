"""How fast the blocking API sends compared with the async API, against the same host.

Workload: one-way small messages (100-character string data plus a small metadata dict), sent
with the backpressure-aware ``send()`` as fast as the client can; the host, in a separate process,
counts them and answers once it has them all. Each round runs the async client and the sync
client once each, alternating which goes first; the medians of all rounds are reported with their
ratio, since absolute numbers move with the machine and its load.

Run:  python3 bench/sync_vs_aio.py [--messages 100000] [--rounds 5] [--backend asyncio|trio]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from typing import Any

import anyio

import alvaro
import alvaro.sync

DATA = "x" * 100
METADATA = {"kind": "tick", "seq": 1}


def _serve(port_queue: multiprocessing.Queue[int], messages: int) -> None:
    """The host process: counts each connection's messages and answers "done" at the end."""

    async def main() -> None:
        host = alvaro.Host("127.0.0.1", 0)
        counts: dict[Any, int] = {}

        def got_data(conn: alvaro.Connection, data: Any, metadata: dict[str, Any]) -> None:
            counts[conn] = counts.get(conn, 0) + 1
            if counts[conn] == messages:
                conn.send_data("done")

        host.got_data = got_data  # type: ignore[method-assign]
        async with host:
            port_queue.put(host.port)
            await anyio.sleep(3600)  # the parent terminates this process

    anyio.run(main)


async def _aio_round(port: int, messages: int) -> float:
    async with alvaro.aio.connect("127.0.0.1", port) as client:
        start = time.perf_counter()
        for _ in range(messages):
            await client.send(DATA, METADATA)
        reply = await client.receive(timeout=120)
        elapsed = time.perf_counter() - start
    assert reply.data == "done"
    return messages / elapsed


def _sync_round(port: int, messages: int, backend: str) -> float:
    with alvaro.sync.connect("127.0.0.1", port, backend=backend) as client:  # type: ignore[arg-type]
        start = time.perf_counter()
        for _ in range(messages):
            client.send(DATA, METADATA)
        reply = client.receive(timeout=120)
        elapsed = time.perf_counter() - start
    assert reply.data == "done"
    return messages / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    context = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue[int] = context.Queue()
    server = context.Process(target=_serve, args=(ports, args.messages), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=30)
        aio_rates: list[float] = []
        sync_rates: list[float] = []
        for round_no in range(args.rounds):
            order = ("aio", "sync") if round_no % 2 == 0 else ("sync", "aio")
            for kind in order:
                if kind == "aio":
                    aio_rates.append(
                        anyio.run(_aio_round, port, args.messages, backend=args.backend)
                    )
                else:
                    sync_rates.append(_sync_round(port, args.messages, args.backend))
    finally:
        server.terminate()
        server.join(10)

    aio_median = statistics.median(aio_rates)
    sync_median = statistics.median(sync_rates)
    ratio = sync_median / aio_median
    print(f"one-way, {args.messages} messages x {args.rounds} rounds, backend {args.backend}")
    print(f"  aio   send(): median {aio_median:>10,.0f} msgs/s  (runs: {_runs(aio_rates)})")
    print(f"  sync  send(): median {sync_median:>10,.0f} msgs/s  (runs: {_runs(sync_rates)})")
    print(f"  sync / aio = {ratio:.2f}  (target >= 0.80)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(
                {
                    "backend": args.backend,
                    "messages": args.messages,
                    "aio": aio_rates,
                    "sync": sync_rates,
                    "ratio": ratio,
                    "python": sys.version,
                    "alvaro": alvaro.__version__,
                },
                file,
                indent=2,
            )
    return 0


def _runs(rates: list[float]) -> str:
    return ", ".join(f"{rate:,.0f}" for rate in rates)


if __name__ == "__main__":
    raise SystemExit(main())
