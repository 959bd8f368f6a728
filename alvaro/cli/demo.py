"""``alvaro demo``: a host and two clients on 127.0.0.1, over TLS with a throwaway CA, with login.

It prints what they say to each other. SIGINT or SIGTERM stops it gracefully, a second one at once.
"""

from __future__ import annotations

import functools
import secrets
import sys
from typing import TYPE_CHECKING, Any

import anyio

from .._version import __version__
from ._common import FAILED, INSTALL_TRUSTME, OK, show, tell, throwaway_ca
from ._foreground import (
    Stopping,
    add_backend_option,
    check_backend,
    run_in_foreground,
    until_signalled,
)

if TYPE_CHECKING:
    import argparse
    import ssl
    from contextlib import AbstractAsyncContextManager

    from ..aio import Connection, Host
    from ._common import Subcommands

__all__ = ("register",)


def register(commands: Subcommands) -> None:
    """Add ``alvaro demo`` to the ``alvaro`` command."""
    demo = commands.add_parser(
        "demo", help="run a host and two clients over TLS, with login, and show what they say"
    )
    add_backend_option(demo)
    demo.add_argument(
        "--plain", action="store_true", help="run without TLS (by default a throwaway CA is made)"
    )
    demo.set_defaults(run=_run_demo)


def _got(data: Any, metadata: dict[str, Any]) -> str:
    """What a host or a client says when a message arrives."""
    return f"got {show(data)} with metadata {show(metadata)}"


class _Transcript:
    """Prints one line per event, with the speaker in a fixed-width column; nothing once quiet."""

    def __init__(self) -> None:
        self.lines = 0
        self.quiet = False

    def say(self, who: str, text: str) -> None:
        self.lines += 1
        if not self.quiet:
            print(f"  [{who:<5}] {text}", flush=True)


class _Stopping(Stopping):
    """What SIGINT and SIGTERM stop in the demo."""

    def __init__(self) -> None:
        super().__init__()
        self.out = _Transcript()
        self.host: Host | None = None
        self.talking = anyio.CancelScope()  # the clients' part of the demo

    def on_signal(self) -> None:
        self.out.quiet = True

    async def gracefully(self) -> None:
        """Stop the host as Host.stop() does, then end what the clients were doing."""
        if self.host is not None:
            await self.host.aclose()
        self.talking.cancel()


def _over(conn: Connection, *, cipher: bool = True) -> str:
    """How a connection travels: its TLS version (and cipher), or plaintext."""
    info = conn.tls
    if info is None:
        return "in plaintext"
    return f"over {info.version} ({info.cipher})" if cipher else f"over {info.version}"


# The demo's users. Their passwords are random, made for each run, and never printed.
_DEMO_USERS = ("alice", "bob")


async def _demo(
    backend: str, contexts: tuple[ssl.SSLContext, ssl.SSLContext] | None, stopping: _Stopping
) -> int:
    # Imported here so that "alvaro --version" stays fast and import-light.
    from .. import Host
    from ..auth import Accounts

    out = stopping.out
    how = "in plaintext" if contexts is None else "over TLS"
    print(f"alvaro {__version__} demo: a host and two clients on 127.0.0.1, on {backend}, {how}")
    if contexts is not None:
        print("(a throwaway CA made for this demo signs the host's certificate; --plain for none)")
    print()
    server_tls, client_tls = contexts if contexts is not None else (None, None)

    # 4096 key-derivation rounds, the least SCRAM allows, instead of the default 600,000: a
    # login then costs each client about a millisecond instead of about 0.2 s. The rounds are
    # what an attacker pays per guess against a stolen accounts file; these accounts live in
    # this process only, for a few seconds, with random passwords, and are never saved. Real
    # accounts keep the default.
    accounts = Accounts(iterations=4096)
    passwords = {name: secrets.token_urlsafe(16) for name in _DEMO_USERS}
    for name, password in passwords.items():
        accounts.add_user(name, password)

    host = Host("127.0.0.1", 0, ssl_context=server_tls, login_required=True, accounts=accounts)
    stopping.host = host

    def logged_in(conn: Connection, user: str) -> None:
        out.say("host", f"{user} logged in from {conn.addr}:{conn.port}")

    def new_client(conn: Connection) -> None:
        out.say("host", f"new client from {conn.addr}:{conn.port} {_over(conn, cipher=False)}")
        conn.send_data("welcome", metadata={"from": "host", "clients": len(host.clients)})

    async def got_data(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        out.say("host", f"{_got(data, metadata)}; relaying it")
        for other in host.clients:
            if other is not conn:
                await other.send(data, metadata={**metadata, "relayed_by": "host"})

    def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        out.say("host", f"{conn.user} asks {show(data)}; answering")
        return sorted(str(client.user) for client in host.clients)

    def lost_client(conn: Connection) -> None:
        who = conn.user or f"{conn.addr}:{conn.port}"
        code = conn.close_code
        out.say("host", f"lost {who}: close code {code} ({conn.close_reason or 'no reason'})")

    host.logged_in = logged_in
    host.new_client = new_client
    host.got_data = got_data
    host.got_request = got_request
    host.lost_client = lost_client

    status = OK
    # Not "async with host": a second signal cancels this task group, which drops the clients
    # at once, where the host's __aexit__ would wait for a graceful close in any case.
    async with anyio.create_task_group() as serving:
        await serving.start(host.start)
        out.say("host", f"listening on 127.0.0.1:{host.port}")
        users = " and ".join(_DEMO_USERS)
        plain = "" if contexts else "; without TLS, user names and messages cross readable"
        out.say("host", f"login required; users {users}, with random passwords{plain}")
        with stopping.talking:
            try:
                status = await _demo_clients(host, out, passwords, client_tls)
            except Exception:
                if stopping.signal is None:
                    raise
                # Stopped by a signal: the host closed the clients while they talked.
        out.say("host", "stopping")
        host.stop()
    if stopping.signal is None:
        print(f"\ndone: {out.lines} events, messages went both ways with metadata.")
    return status


async def _demo_clients(
    host: Host, out: _Transcript, passwords: dict[str, str], client_tls: ssl.SSLContext | None
) -> int:
    """The clients' part of the demo: log in, talk, fail a login, leave."""
    from .. import AuthenticationError, aio

    def log_in(user: str, password: str) -> AbstractAsyncContextManager[aio.Client]:
        return aio.connect("127.0.0.1", host.port, ssl_context=client_tls, login=(user, password))

    async def hear(name: str, client: aio.Client) -> None:
        message = await client.receive(timeout=10)
        out.say(name, _got(message.data, message.metadata))

    async with (
        log_in("alice", passwords["alice"]) as alice,
        log_in("bob", passwords["bob"]) as bob,
    ):
        for name, client in (("alice", alice), ("bob", bob)):
            assert client.connection is not None
            if client.connection.tls is not None:
                out.say(name, f"connected {_over(client.connection)}, certificate verified")
            out.say(name, f"logged in as {client.user}, without sending the password")
            await hear(name, client)

        alice.send_data("Hello, Bob!", metadata={"from": "alice", "kind": "chat"})
        await hear("bob", bob)

        bob.send_data({"reply": "Hi Alice!", "mood": ["happy", 3]}, metadata={"from": "bob"})
        await hear("alice", alice)

        alice.send_data(bytes(range(8)), metadata={"from": "alice", "kind": "raw"})
        await hear("bob", bob)

        answer = await alice.request("who is here?", timeout=10)
        out.say("alice", f"the host answered her request: {show(answer.data)}")

        out.say("eve", "tries to log in as bob with a wrong password")
        try:
            async with log_in("bob", "guess"):
                out.say("eve", "logged in: this should never happen")
                return FAILED
        except AuthenticationError as exc:
            out.say("eve", str(exc))
        attempts = host.get_login_attempts()
        failed = [attempt for attempt in attempts if not attempt.success]
        out.say(
            "host",
            f"login attempts: {len(attempts) - len(failed)} succeeded, {len(failed)} failed "
            f"({', '.join(f'{a.username} from {a.address}' for a in failed)})",
        )

        out.say("bob", "leaving with reason 'see you'")
        await bob.aclose("see you")
        out.say("alice", "leaving")
    return OK


def _demo_contexts(plain: bool) -> tuple[ssl.SSLContext, ssl.SSLContext] | None:
    """The demo's host and client TLS contexts from a throwaway CA; ``None`` for plaintext."""
    if plain:
        return None
    from .. import testing

    ca = throwaway_ca()
    if ca is None:
        tell(
            "demo",
            "trustme is not installed, so this demo runs without TLS "
            f"({INSTALL_TRUSTME} to see it over TLS)",
            file=sys.stdout,
        )
        return None
    return testing.server_context(ca), testing.client_context(ca)


async def _demo_until_signalled(
    backend: str, contexts: tuple[ssl.SSLContext, ssl.SSLContext] | None
) -> int:
    stopping = _Stopping()  # in the event loop: it makes a cancel scope
    work = functools.partial(_demo, backend, contexts, stopping)
    return await until_signalled("demo", work, stopping)


def _run_demo(args: argparse.Namespace) -> int:
    check_backend(args.backend)

    def start() -> int:
        contexts = _demo_contexts(args.plain)
        return anyio.run(_demo_until_signalled, args.backend, contexts, backend=args.backend)

    # Without -v, errors reach stderr, but not the warnings about logging in without TLS: the
    # transcript says that in its own words.
    return run_in_foreground("demo", start, log_errors=not args.verbose)
