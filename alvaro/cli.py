"""The ``alvaro`` command (also ``python -m alvaro``).

``alvaro demo`` runs a host and two clients on 127.0.0.1, over TLS with a throwaway CA, and prints
what they say to each other. ``alvaro certs DIR`` writes a throwaway CA and certificates for local
development. This module is the only part of alvaro that prints, and it configures logging only
when asked to (``-v``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ._version import __version__

if TYPE_CHECKING:
    import ssl
    from collections.abc import Sequence

    from .aio import Connection
    from .testing import TLSFiles

__all__ = ("main",)

_INSTALL_TESTING = "pip install 'alvaro[testing]'"


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


def _over(conn: Connection, *, cipher: bool = True) -> str:
    """How a connection travels: its TLS version (and cipher), or plaintext."""
    info = conn.tls
    if info is None:
        return "in plaintext"
    return f"over {info.version} ({info.cipher})" if cipher else f"over {info.version}"


async def _demo(backend: str, contexts: tuple[ssl.SSLContext, ssl.SSLContext] | None) -> int:
    # Imported here so that "alvaro --version" stays fast and import-light.
    from . import Host, aio

    out = _Transcript()
    how = "in plaintext" if contexts is None else "over TLS"
    print(f"alvaro {__version__} demo: a host and two clients on 127.0.0.1, on {backend}, {how}")
    if contexts is not None:
        print("(a throwaway CA made for this demo signs the host's certificate; --plain for none)")
    print()
    server_tls, client_tls = contexts if contexts is not None else (None, None)

    host = Host("127.0.0.1", 0, ssl_context=server_tls)
    names: dict[Connection, str] = {}

    def new_client(conn: Connection) -> None:
        out.say("host", f"new client from {conn.addr}:{conn.port} {_over(conn, cipher=False)}")
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
            aio.connect("127.0.0.1", host.port, ssl_context=client_tls) as alice,
            aio.connect("127.0.0.1", host.port, ssl_context=client_tls) as bob,
        ):
            for name, client in (("alice", alice), ("bob", bob)):
                assert client.connection is not None
                if client.connection.tls is not None:
                    out.say(name, f"connected {_over(client.connection)}, certificate verified")
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


def _demo_contexts(plain: bool) -> tuple[ssl.SSLContext, ssl.SSLContext] | None:
    """The demo's host and client TLS contexts from a throwaway CA; ``None`` for plaintext."""
    if plain:
        return None
    from . import testing

    try:
        ca = testing.make_ca()
    except ModuleNotFoundError as exc:
        if exc.name != "trustme":
            raise
        print(
            "alvaro demo: trustme is not installed, so this demo runs without TLS "
            f"({_INSTALL_TESTING} to see it over TLS)"
        )
        return None
    return testing.server_context(ca), testing.client_context(ca)


def _run_demo(args: argparse.Namespace) -> int:
    contexts = _demo_contexts(args.plain)
    try:
        return anyio.run(_demo, args.backend, contexts, backend=args.backend)
    except ModuleNotFoundError as exc:
        if exc.name != args.backend:
            raise
        print(f"alvaro demo: {exc}; install it with: pip install 'alvaro[trio]'", file=sys.stderr)
        return 2


# --- alvaro certs ---------------------------------------------------------------------------------

_CERT_FILES = ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")


def _quoted(path: Path) -> str:
    """A path as a Python string literal, in double quotes like the README's examples."""
    return json.dumps(str(path), ensure_ascii=False)


def _certs(directory: Path, extra_names: Sequence[str], force: bool) -> int:
    from . import testing

    try:
        ca = testing.make_ca()
    except ModuleNotFoundError as exc:
        if exc.name != "trustme":
            raise
        print(f"alvaro certs: needs trustme: {_INSTALL_TESTING}", file=sys.stderr)
        return 2
    names = tuple(dict.fromkeys((*testing.LOOPBACK_NAMES, *extra_names)))
    targets = [directory / name for name in _CERT_FILES]
    existing = [str(path) for path in targets if os.path.lexists(path)]
    if existing and not force:
        print(
            f"alvaro certs: refusing to overwrite {', '.join(existing)}; "
            "pass --force to replace them",
            file=sys.stderr,
        )
        return 1
    # Written to a private folder first, then moved into place: a bad --name or a full disk
    # leaves the old files untouched, and a replaced key gets the new file's 0600 permissions
    # instead of keeping the old file's.
    try:
        directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".alvaro-certs-", dir=directory))
    except OSError as exc:
        print(f"alvaro certs: cannot write to {directory}: {exc}", file=sys.stderr)
        return 1
    try:
        try:
            written = testing.write_tls_files(staging, ca, names=names)
        except ValueError as exc:  # idna rejects the name (IDNAError is a ValueError)
            print(f"alvaro certs: invalid --name: {exc}", file=sys.stderr)
            return 2
        staged = (written.ca, written.cert, written.key, written.client_cert, written.client_key)
        for source, target in zip(staged, targets, strict=True):
            os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files = testing.TLSFiles(*targets)
    _print_certs_usage(directory, files, names)
    return 0


def _print_certs_usage(directory: Path, files: TLSFiles, names: Sequence[str]) -> None:
    ca, cert, key = _quoted(files.ca), _quoted(files.cert), _quoted(files.key)
    client_cert, client_key = _quoted(files.client_cert), _quoted(files.client_key)
    width = max(len(str(path)) for path in vars(files).values())
    rows = (
        (files.ca, "the CA certificate: clients trust it (its private key was not kept)"),
        (files.cert, f"the server certificate, for {', '.join(names)}"),
        (files.key, "the server's private key (owner-only)"),
        (files.client_cert, "a client certificate, for mutual TLS"),
        (files.client_key, "the client's private key (owner-only)"),
    )
    lines = [
        f"Wrote a throwaway CA and certificates to {directory}:",
        "",
        *(f"  {path!s:<{width}}  {text}" for path, text in rows),
        "",
        "The original Alvaro style:",
        "",
        f"    asyncio.run( server.start(useSSL=True, sslCert={cert}, sslKey={key}) )",
        f'    asyncio.run( client.connect("localhost", 8888, useSSL=True, sslCert={ca}) )',
        "",
        "With alvaro.tls:",
        "",
        f"    server_tls = alvaro.tls.server_context({cert}, {key})",
        '    host = alvaro.Host("localhost", 8888, ssl_context=server_tls)',
        f"    client = alvaro.Client(ssl_context=alvaro.tls.client_context({ca}))",
        "",
        "Mutual TLS (the host also checks the client's certificate):",
        "",
        "    server_tls = alvaro.tls.server_context(",
        f"        {cert}, {key}, client_ca={ca}",
        "    )",
        "    client_tls = alvaro.tls.client_context(",
        f"        {ca}, certfile={client_cert}, keyfile={client_key}",
        "    )",
        "",
        "Warning: these certificates are for local development and tests only. Never use them",
        "in production, and never add ca.pem to a system or browser trust store.",
    ]
    print("\n".join(lines))


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alvaro", description="Easy, event-based message passing over TCP."
    )
    parser.add_argument("--version", action="version", version=f"alvaro {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log to stderr (-vv for debug)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="run a host and two clients over TLS and show what they say"
    )
    demo.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="the event loop to run on (default: asyncio)",
    )
    demo.add_argument(
        "--plain", action="store_true", help="run without TLS (by default a throwaway CA is made)"
    )
    certs = commands.add_parser(
        "certs",
        help="write a throwaway CA and certificates for local development",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Write a throwaway CA certificate, a server certificate and key for localhost,\n"
            "127.0.0.1 and ::1, and a client certificate and key (for mutual TLS) to DIR.\n"
            "For local development and tests only.\n\n"
            f"Needs trustme: {_INSTALL_TESTING}"
        ),
    )
    certs.add_argument("dir", metavar="DIR", type=Path, help="the folder to write to")
    certs.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="NAME",
        help="another DNS name or IP address for the server certificate (repeatable)",
    )
    certs.add_argument("--force", action="store_true", help="replace files that already exist")
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
    try:
        if args.command == "demo":
            return _run_demo(args)
        if args.command == "certs":
            return _certs(args.dir, args.name, args.force)
    except BrokenPipeError:
        # The reader went away ("alvaro demo | head"): stop quietly, as other commands do. The
        # interpreter would otherwise complain again when flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    parser.print_help()
    return 0
