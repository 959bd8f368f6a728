"""The ``alvaro`` command (also ``python -m alvaro``).

``alvaro demo`` runs a host and two clients on 127.0.0.1 and prints what they say to each other.
This module is the only part of alvaro that prints, and it configures logging only when asked to
(``-v``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

import anyio

from ._version import __version__

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .aio import Connection

__all__ = ("main",)


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} raw bytes {value[:16]!r}"
    return json.dumps(value, ensure_ascii=False)


class _Transcript:
    """Prints one line per event, with the speaker in a fixed-width column."""

    def __init__(self) -> None:
        self.lines = 0

    def say(self, who: str, text: str) -> None:
        self.lines += 1
        print(f"  [{who:<5}] {text}", flush=True)


async def _demo(backend: str) -> int:
    # Imported here so that "alvaro --version" stays fast and import-light.
    from . import Host, aio

    out = _Transcript()
    print(f"alvaro {__version__} demo: a host and two clients on 127.0.0.1, on {backend}\n")

    host = Host("127.0.0.1", 0)
    names: dict[Connection, str] = {}

    def new_client(conn: Connection) -> None:
        out.say("host", f"new client from {conn.addr}:{conn.port}")
        conn.send_data("welcome", metadata={"from": "host", "clients": len(host.clients)})

    async def got_data(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        sender = metadata.get("from", "?")
        names[conn] = sender
        out.say("host", f"got {_show(data)} with metadata {_show(metadata)}; relaying it")
        for other in host.clients:
            if other is not conn:
                await other.send(data, metadata={**metadata, "relayed_by": "host"})

    def lost_client(conn: Connection) -> None:
        who = names.get(conn, f"{conn.addr}:{conn.port}")
        code = conn.close_code
        out.say("host", f"lost {who}: close code {code} ({conn.close_reason or 'no reason'})")

    host.new_client = new_client  # type: ignore[method-assign]
    host.got_data = got_data  # type: ignore[method-assign]
    host.lost_client = lost_client  # type: ignore[method-assign]

    async with host:
        out.say("host", f"listening on 127.0.0.1:{host.port}")
        async with (
            aio.connect("127.0.0.1", host.port) as alice,
            aio.connect("127.0.0.1", host.port) as bob,
        ):
            for name, client in (("alice", alice), ("bob", bob)):
                greeting = await client.receive(timeout=10)
                out.say(
                    name, f"got {_show(greeting.data)} with metadata {_show(greeting.metadata)}"
                )

            alice.send_data("Hello, Bob!", metadata={"from": "alice", "kind": "chat"})
            message = await bob.receive(timeout=10)
            out.say("bob", f"got {_show(message.data)} with metadata {_show(message.metadata)}")

            bob.send_data({"reply": "Hi Alice!", "mood": ["happy", 3]}, metadata={"from": "bob"})
            message = await alice.receive(timeout=10)
            out.say("alice", f"got {_show(message.data)} with metadata {_show(message.metadata)}")

            alice.send_data(bytes(range(8)), metadata={"from": "alice", "kind": "raw"})
            message = await bob.receive(timeout=10)
            out.say("bob", f"got {_show(message.data)} with metadata {_show(message.metadata)}")

            out.say("bob", "leaving with reason 'see you'")
            await bob.aclose("see you")
            out.say("alice", "leaving")
        out.say("host", "stopping")
    print(f"\ndone: {out.lines} events, messages went both ways with metadata.")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alvaro", description="Easy, event-based message passing over TCP."
    )
    parser.add_argument("--version", action="version", version=f"alvaro {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log to stderr (-vv for debug)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser("demo", help="run a host and two clients and show what they say")
    demo.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="the event loop to run on (default: asyncio)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``alvaro`` command with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(
            level=logging.DEBUG if args.verbose > 1 else logging.INFO,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
    if args.command == "demo":
        try:
            return anyio.run(_demo, args.backend, backend=args.backend)
        except ModuleNotFoundError as exc:
            print(
                f"alvaro demo: {exc}; install it with: pip install 'alvaro[trio]'", file=sys.stderr
            )
            return 2
    parser.print_help()
    return 0
