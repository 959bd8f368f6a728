"""``alvaro serve``: a host to talk to from the shell, a GUI or a program, until a signal stops it.

``--mode echo`` (the default) sends every message back to its sender; ``--mode relay`` sends it
to every other client, as a chat room does. Its first line is ``listening on ADDRESS:PORT``, so
that ``--port 0`` can be read by a script; then one line per client that comes or goes and per
message (``--quiet``: none). SIGINT or SIGTERM stops it gracefully, a second one at once.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .._errors import unwrap_group
from .._reply import Reply
from ._common import OK, USAGE, CommandError, show
from ._foreground import (
    Stopping,
    add_backend_option,
    check_backend,
    run_in_foreground,
    until_signalled,
)
from ._peer import address, port_number

if TYPE_CHECKING:
    import ssl

    from ..aio import Connection, Host
    from ..auth import Accounts
    from ._common import Subcommands

__all__ = ("register",)

_DESCRIPTION = """\
Run a host until Ctrl+C (or SIGTERM). In echo mode each message goes back to its
sender; in relay mode to every other client, with "from" added to its metadata when
the sender did not set it (and, with --users, "user": the sender's login name).
In both modes a request is answered with its own data and metadata.

The first line printed is "listening on ADDRESS:PORT": with --port 0, read the port
the system picked from it."""


def register(commands: Subcommands) -> None:
    """Add ``alvaro serve`` to the ``alvaro`` command."""
    serve = commands.add_parser(
        "serve",
        help="run a host that echoes or relays messages",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDR",
        help="the address to listen on (default: 127.0.0.1; 0.0.0.0 or :: for the network)",
    )
    serve.add_argument(
        "--port",
        type=functools.partial(port_number, lowest=0),
        default=8888,
        metavar="N",
        help="the TCP port (default: 8888; 0 picks a free one)",
    )
    serve.add_argument(
        "--mode",
        choices=("echo", "relay"),
        default="echo",
        help="echo each message to its sender, or relay it to the other clients",
    )
    add_backend_option(serve)
    serve.add_argument(
        "-q", "--quiet", action="store_true", help="print only the 'listening on' line"
    )
    tls = serve.add_argument_group("TLS", "'alvaro certs' writes files to try these with")
    tls.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve over TLS with FILE")
    tls.add_argument("--tls-key", type=Path, metavar="FILE", help="its private key")
    tls.add_argument(
        "--client-ca",
        type=Path,
        metavar="FILE",
        help="mutual TLS: accept only clients with a certificate from these CA(s)",
    )
    serve.add_argument(
        "--users",
        type=Path,
        metavar="FILE",
        help="require login, with the accounts of FILE ('alvaro users add' writes it)",
    )
    serve.set_defaults(run=_run_serve)


def _server_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_cert is None:
        if args.tls_key is not None or args.client_ca is not None:
            raise CommandError("--tls-key and --client-ca go with --tls-cert", USAGE)
        return None
    from .. import tls
    from ..exceptions import TLSError

    try:
        return tls.server_context(args.tls_cert, args.tls_key, client_ca=args.client_ca)
    except TLSError as exc:
        raise CommandError(str(exc)) from None


def _accounts(path: Path | None) -> Accounts | None:
    if path is None:
        return None
    from .admin import load_accounts

    accounts = load_accounts(path, create=False)
    if not accounts.users:
        raise CommandError(f"{path} has no users ('alvaro users add NAME --file {path}')")
    return accounts


class _Stopping(Stopping):
    def __init__(self) -> None:
        super().__init__()
        self.host: Host | None = None
        self.quiet = False

    def on_signal(self) -> None:
        self.quiet = True  # "stopping" is the last line

    async def gracefully(self) -> None:
        if self.host is not None:
            await self.host.aclose()


async def _serve(
    args: argparse.Namespace,
    context: ssl.SSLContext | None,
    accounts: Accounts | None,
    stopping: _Stopping,
) -> int:
    from .. import Host, MessageTooLarge

    host = Host(
        args.host,
        args.port,
        ssl_context=context,
        login_required=accounts is not None,
        accounts=accounts,
    )
    stopping.host = host
    quiet: bool = args.quiet

    def say(text: str) -> None:
        if not (quiet or stopping.quiet):
            print(text, flush=True)

    def who(conn: Connection) -> str:
        name = address(conn.addr, conn.port)
        return name if conn.user is None else f"{conn.user}@{name}"

    def new_client(conn: Connection) -> None:
        over = "" if conn.tls is None else f" over {conn.tls.version}"
        say(f"+ {who(conn)} connected{over}")

    def got_data(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        say(f"< {who(conn)}: {show(data)} {show(metadata)}")
        if args.mode == "echo":
            conn.send_data(data, metadata)
            return
        relayed = {**metadata}
        relayed.setdefault("from", conn.user or address(conn.addr, conn.port))
        if conn.user is not None:
            relayed["user"] = conn.user  # the login name, which the sender cannot fake
        try:
            host.broadcast(data, relayed, exclude=conn)
        except MessageTooLarge as exc:  # over another client's limits: tell the sender only
            say(f"! not relayed: {exc}")
            conn.send_data(f"not relayed: {exc}", {"from": "alvaro serve", "error": True})

    def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Reply:
        say(f"? {who(conn)} asks: {show(data)} {show(metadata)}")
        return Reply(data, metadata)

    def lost_client(conn: Connection) -> None:
        reason = f", {conn.close_reason}" if conn.close_reason else ""
        say(f"- {who(conn)} left (code {conn.close_code}{reason})")

    host.new_client = new_client
    host.got_data = got_data
    host.got_request = got_request
    host.lost_client = lost_client
    try:
        with unwrap_group():
            async with anyio.create_task_group() as serving:
                await serving.start(host.start)
                # Always printed, even with --quiet: scripts read the port from it.
                print(f"listening on {address(args.host, host.port)}", flush=True)
                if accounts is not None:
                    say(f"login required: {len(accounts.users)} user(s) from {args.users}")
    except OSError as exc:
        raise CommandError(
            f"cannot listen on {address(args.host, args.port)}: {exc.strerror or exc}"
        ) from None
    return OK


def _run_serve(args: argparse.Namespace) -> int:
    check_backend(args.backend)
    context = _server_tls(args)
    accounts = _accounts(args.users)

    async def main() -> int:
        stopping = _Stopping()
        work = functools.partial(_serve, args, context, accounts, stopping)
        with unwrap_group():  # a CommandError from _serve, as itself
            return await until_signalled("serve", work, stopping)

    return run_in_foreground(
        "serve", lambda: anyio.run(main, backend=args.backend), log_errors=not args.verbose
    )
