"""What a login costs: connections per second with and without it, and where the time goes.

The host runs in its own process and requires login (or not, for the baseline); the client
process opens connections one after another, each connecting, logging in and closing. Each
round measures every variant once, in turn; the medians are reported with their ratio to the
plain connection in the same run, since absolute numbers move with the machine and its load.

Variants:
  plain         connect and close, no login (the baseline)
  login-4096    login with 4096 key-derivation rounds (the least SCRAM allows; test accounts)
  login-600k    login with the default 600,000 rounds (what real accounts use)

The host derives nothing at login (checking a SCRAM proof is a few HMACs); the client derives
its key from the password at every login, in a worker thread, which is what login-600k shows.
The host's CPU time per connection is reported too (from the host process's own clock), which
is what a flood of logins costs a server.

Run:  python3 bench/login.py [--connections 200] [--rounds 3] [--backend asyncio|trio]
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
from alvaro.auth import Accounts

USER, PASSWORD = "bench", "a long enough bench password"
VARIANTS = {"plain": None, "login-4096": 4096, "login-600k": 600_000}


def _serve(
    iterations: int | None,
    backend: str,
    ports: multiprocessing.Queue[int],
    cpu: multiprocessing.Queue[float],
    stop: Any,
) -> None:
    """A host process; reports its port, then, when ``stop`` is set, its CPU seconds."""

    async def main() -> None:
        if iterations is None:
            host = alvaro.Host("127.0.0.1", 0)
        else:
            accounts = Accounts(iterations=iterations)
            accounts.add_user(USER, PASSWORD)
            host = alvaro.Host("127.0.0.1", 0, login_required=True, accounts=accounts)
        async with host:
            start = time.process_time()
            ports.put(host.port)
            await anyio.to_thread.run_sync(stop.wait)
            cpu.put(time.process_time() - start)

    anyio.run(main, backend=backend)


async def _connect_many(port: int, connections: int, login: bool) -> float:
    credentials = (USER, PASSWORD) if login else None
    start = time.perf_counter()
    for _ in range(connections):
        async with alvaro.aio.connect("127.0.0.1", port, login=credentials):
            pass
    return connections / (time.perf_counter() - start)


def _measure(variant: str, connections: int, backend: str) -> tuple[float, float]:
    """Connections per second, and the host's CPU milliseconds per connection."""
    context = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue[int] = context.Queue()
    cpu: multiprocessing.Queue[float] = context.Queue()
    stop = context.Event()
    iterations = VARIANTS[variant]
    process = context.Process(target=_serve, args=(iterations, backend, ports, cpu, stop))
    process.start()
    try:
        port = ports.get(timeout=60)
        rate = anyio.run(_connect_many, port, connections, iterations is not None, backend=backend)
        stop.set()
        host_cpu = cpu.get(timeout=60)
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()
    return rate, host_cpu * 1000 / connections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    results: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name in VARIANTS:
            # 600,000 rounds cost a fraction of a second each: fewer connections, same rate.
            slow = VARIANTS[name] == 600_000
            count = max(5, args.connections // 20) if slow else args.connections
            results[name].append(_measure(name, count, args.backend))

    baseline = statistics.median(rate for rate, _ in results["plain"])
    report = {}
    print(f"login cost, {args.backend}, median of {args.rounds} rounds")
    print(f"{'variant':<12} {'conn/s':>9} {'vs plain':>9} {'host CPU ms/conn':>17}")
    for name, runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        host_ms = statistics.median(ms for _, ms in runs)
        report[name] = {"connections_per_s": rate, "ratio": rate / baseline, "host_cpu_ms": host_ms}
        print(f"{name:<12} {rate:>9.1f} {rate / baseline:>8.2f}x {host_ms:>17.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump({"backend": args.backend, "rounds": args.rounds, "results": report}, file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
