"""The ``alvaro`` command (also ``python -m alvaro``).

``alvaro demo`` runs a host and two clients on 127.0.0.1, over TLS with a throwaway CA, with login,
and prints what they say to each other. ``alvaro certs DIR`` writes a throwaway CA and certificates
for local development. ``alvaro users`` adds, removes and lists the users of an accounts file (the
file ``Host.save()`` writes and ``Host.load()`` reads). This module is the only part of alvaro that
prints, and it configures logging only when asked to (``-v``).
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import json
import logging
import math
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ._version import __version__

if TYPE_CHECKING:
    import ssl
    from collections.abc import Sequence

    from .aio import Connection, Host
    from .auth import Accounts
    from .testing import TLSFiles

__all__ = ("main",)

# trustme is what alvaro.testing needs: named itself, since "alvaro" on the package index is
# another project (the original Alvaro 1.x).
_INSTALL_TRUSTME = "pip install trustme"


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} raw bytes {value[:16]!r}"
    return json.dumps(value, ensure_ascii=False)


class _Transcript:
    """Prints one line per event, with the speaker in a fixed-width column; nothing once quiet."""

    def __init__(self) -> None:
        self.lines = 0
        self.quiet = False

    def say(self, who: str, text: str) -> None:
        self.lines += 1
        if not self.quiet:
            print(f"  [{who:<5}] {text}", flush=True)


class _Stopping:
    """What SIGINT and SIGTERM stop in the demo, and the first of them that came."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.out = _Transcript()
        self.host: Host | None = None
        self.talking = anyio.CancelScope()  # the clients' part of the demo

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
    from . import Host
    from .auth import Accounts

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
        out.say("host", f"got {_show(data)} with metadata {_show(metadata)}; relaying it")
        for other in host.clients:
            if other is not conn:
                await other.send(data, metadata={**metadata, "relayed_by": "host"})

    def lost_client(conn: Connection) -> None:
        who = conn.user or f"{conn.addr}:{conn.port}"
        code = conn.close_code
        out.say("host", f"lost {who}: close code {code} ({conn.close_reason or 'no reason'})")

    host.logged_in = logged_in
    host.new_client = new_client
    host.got_data = got_data
    host.lost_client = lost_client

    status = 0
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
    from . import AuthenticationError, aio

    async with (
        aio.connect(
            "127.0.0.1", host.port, ssl_context=client_tls, login=("alice", passwords["alice"])
        ) as alice,
        aio.connect(
            "127.0.0.1", host.port, ssl_context=client_tls, login=("bob", passwords["bob"])
        ) as bob,
    ):
        for name, client in (("alice", alice), ("bob", bob)):
            assert client.connection is not None
            if client.connection.tls is not None:
                out.say(name, f"connected {_over(client.connection)}, certificate verified")
            out.say(name, f"logged in as {client.user}, without sending the password")
            greeting = await client.receive(timeout=10)
            out.say(name, f"got {_show(greeting.data)} with metadata {_show(greeting.metadata)}")

        alice.send_data("Hello, Bob!", metadata={"from": "alice", "kind": "chat"})
        message = await bob.receive(timeout=10)
        out.say("bob", f"got {_show(message.data)} with metadata {_show(message.metadata)}")

        bob.send_data({"reply": "Hi Alice!", "mood": ["happy", 3]}, metadata={"from": "bob"})
        message = await alice.receive(timeout=10)
        out.say("alice", f"got {_show(message.data)} with metadata {_show(message.metadata)}")

        alice.send_data(bytes(range(8)), metadata={"from": "alice", "kind": "raw"})
        message = await bob.receive(timeout=10)
        out.say("bob", f"got {_show(message.data)} with metadata {_show(message.metadata)}")

        out.say("eve", "tries to log in as bob with a wrong password")
        try:
            async with aio.connect(
                "127.0.0.1", host.port, ssl_context=client_tls, login=("bob", "guess")
            ):
                out.say("eve", "logged in: this should never happen")
                return 1
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
    return 0


async def _demo_until_signalled(
    backend: str, contexts: tuple[ssl.SSLContext, ssl.SSLContext] | None
) -> int:
    """The demo, which SIGINT or SIGTERM stops gracefully, and a second one at once.

    Returns the demo's exit status, or 128 plus the number of the first signal.
    """
    stopping = _Stopping()
    # Signals reach the main thread only, and asyncio on Windows cannot receive them: there
    # Ctrl+C raises KeyboardInterrupt, which _run_demo() turns into one line.
    if threading.current_thread() is not threading.main_thread() or sys.platform == "win32":
        return await _demo(backend, contexts, stopping)
    status = 0
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tasks:

            async def run() -> None:
                nonlocal status
                status = await _demo(backend, contexts, stopping)
                tasks.cancel_scope.cancel()

            tasks.start_soon(run)
            async for signum in signals:
                if stopping.signal is not None:
                    tasks.cancel_scope.cancel()  # the second signal: drop everything now
                    break
                stopping.signal = signum
                stopping.out.quiet = True
                name = signal.Signals(signum).name
                print(f"alvaro demo: stopping ({name})", file=sys.stderr, flush=True)
                tasks.start_soon(stopping.gracefully)
    return status if stopping.signal is None else 128 + stopping.signal


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
            f"({_INSTALL_TRUSTME} to see it over TLS)"
        )
        return None
    return testing.server_context(ca), testing.client_context(ca)


def _run_demo(args: argparse.Namespace) -> int:
    if args.backend == "trio":
        try:
            import trio  # noqa: F401 - only to tell a missing trio in one line
        except ImportError:
            print(
                "alvaro demo: --backend trio needs trio, which is not installed: pip install trio",
                file=sys.stderr,
            )
            return 2
    # The signal handlers of this thread, put back afterwards (asyncio would reset them).
    handlers = (
        {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        if threading.current_thread() is threading.main_thread()
        else {}
    )
    # Without -v, errors reach stderr as Python's last-resort handler would print them, but not
    # the warnings about logging in without TLS: the transcript says that in its own words.
    errors = logging.StreamHandler()
    errors.setLevel(logging.ERROR)
    if not args.verbose:
        logging.getLogger("alvaro").addHandler(errors)
    try:
        contexts = _demo_contexts(args.plain)
        return anyio.run(_demo_until_signalled, args.backend, contexts, backend=args.backend)
    except KeyboardInterrupt:  # Ctrl+C before or after the demo handles signals itself
        print("alvaro demo: stopped (SIGINT)", file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        logging.getLogger("alvaro").removeHandler(errors)
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)


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
        print(f"alvaro certs: needs trustme: {_INSTALL_TRUSTME}", file=sys.stderr)
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


# --- alvaro users ---------------------------------------------------------------------------------


class _UsersError(Exception):
    """A problem ``alvaro users`` reports in one line on stderr, with exit status 1."""


def _load_accounts(path: Path, *, create: bool) -> Accounts:
    """The accounts saved in ``path``; a new, empty store when it does not exist and ``create``."""
    from .auth import Accounts
    from .exceptions import AccountsFileError

    try:
        return Accounts.load(path)
    except FileNotFoundError:
        if create:
            return Accounts()
        raise _UsersError(
            f"{path} does not exist ('alvaro users add NAME --file {path}' creates it)"
        ) from None
    except AccountsFileError as exc:  # corrupt, truncated, another format, a newer version
        raise _UsersError(str(exc)) from None
    except OSError as exc:  # a folder, no permission, ...
        raise _UsersError(f"cannot read {path}: {exc.strerror or exc}") from None


def _save_accounts(accounts: Accounts, path: Path) -> None:
    try:
        accounts.save(path)  # atomic, and readable by its owner only (0600)
    except OSError as exc:
        raise _UsersError(f"cannot write {path}: {exc.strerror or exc}") from None


def _read_password(name: str, from_stdin: bool) -> str:
    """The new password: one line of standard input, or typed twice at a prompt without echo."""
    from .auth import validate_password

    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise _UsersError("no password on standard input")
        # Only the line ending is removed: spaces are part of the password.
        password = line.removesuffix("\n").removesuffix("\r")
    else:
        try:
            password = getpass.getpass(f"Password for {name}: ")
            again = getpass.getpass("The same password again: ")
        except EOFError:
            raise _UsersError("no password was typed") from None
        if password != again:
            raise _UsersError("the two passwords differ; nothing was changed")
    try:
        return validate_password(password)
    except ValueError as exc:
        raise _UsersError(f"this password cannot be used: {exc}") from None


def _users_add(path: Path, name: str, replace: bool, from_stdin: bool) -> int:
    from .auth import validate_name

    try:
        validate_name(name)
    except ValueError as exc:
        raise _UsersError(f"invalid user name {name!r}: {exc}") from None
    # The file is read and checked before the password is asked for.
    accounts = _load_accounts(path, create=True)
    exists = accounts.has_user(name)
    if exists and not replace:
        raise _UsersError(
            f"user {name!r} exists already in {path}; pass --replace to give it a new password"
        )
    password = _read_password(name, from_stdin)
    accounts.add_user(name, password, replace=True)  # only the SCRAM verifier is kept
    _save_accounts(accounts, path)
    if exists:
        print(f"changed the password of user {name} in {path}")
    else:
        print(f"added user {name} to {path}")
    return 0


def _users_remove(path: Path, name: str) -> int:
    accounts = _load_accounts(path, create=False)
    try:
        accounts.remove_user(name)
    except KeyError:
        raise _UsersError(f"there is no user {name!r} in {path}") from None
    _save_accounts(accounts, path)
    print(f"removed user {name} from {path}")
    return 0


def _users_list(path: Path) -> int:
    for name in _load_accounts(path, create=False).users:
        print(name)
    return 0


def _ban_address(text: str) -> str:
    """An IP address, or an IPv6 /64 network as ``users blacklist`` lists it; for argparse."""
    try:
        if "/" not in text:
            return str(ipaddress.ip_address(text))
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None
    if network.version != 6 or network.prefixlen != 64:
        raise argparse.ArgumentTypeError(f"not an IP address or an IPv6 /64 network: {text!r}")
    return str(network.network_address)


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return seconds


def _describe_ban(seconds_left: float) -> str:
    if math.isinf(seconds_left):
        return "until removed"
    return f"for {math.ceil(seconds_left)} s more"


def _users_blacklist(path: Path, add: str | None, seconds: float | None, remove: str | None) -> int:
    from .auth import address_bucket

    if add is None and remove is None:
        for bucket, left in sorted(_load_accounts(path, create=False).blacklist.items()):
            print(f"{bucket}  {_describe_ban(left)}")
        return 0
    accounts = _load_accounts(path, create=add is not None)
    if add is not None:
        accounts.ban(add, seconds)
        bucket = address_bucket(add)
        left = accounts.blacklist.get(bucket, math.inf if seconds is None else seconds)
        done = f"banned {bucket} {_describe_ban(left)}"
    else:
        assert remove is not None
        bucket = address_bucket(remove)
        if not accounts.unban(remove):
            raise _UsersError(f"{bucket} is not banned in {path}")
        done = f"lifted the ban on {bucket}"
    _save_accounts(accounts, path)
    print(f"{done} in {path}")
    return 0


def _users(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        if args.action == "add":
            return _users_add(path, args.name, args.replace, args.password_stdin)
        if args.action == "remove":
            return _users_remove(path, args.name)
        if args.action == "list":
            return _users_list(path)
        return _users_blacklist(path, args.add, args.seconds, args.remove)
    except _UsersError as exc:
        print(f"alvaro users: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


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
        "demo", help="run a host and two clients over TLS, with login, and show what they say"
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
            f"Needs trustme: {_INSTALL_TRUSTME}"
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
    _add_users_parser(commands)
    return parser


_USERS_DESCRIPTION = """\
Manage the users of an accounts file: the file Host.save() writes and Host.load()
reads. Only a salted SCRAM-SHA-256 verifier of each password is stored, never the
password; the file is replaced atomically and is readable by its owner only.

A running host keeps its own copy: it sees changes when it calls host.load(FILE),
and its own host.save(FILE) would overwrite them. Change the file while the host is
stopped, or have the host load it again."""


def _add_users_parser(commands: Any) -> None:
    users = commands.add_parser(
        "users",
        help="add, remove and list the users of an accounts file",
        description=_USERS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = users.add_subparsers(dest="action", metavar="ACTION", required=True)
    file_options = argparse.ArgumentParser(add_help=False)
    file_options.add_argument(
        "-f",
        "--file",
        required=True,
        type=Path,
        metavar="FILE",
        help="the accounts file",
    )
    add = actions.add_parser(
        "add",
        parents=[file_options],
        help="add a user (creates FILE if needed)",
        description=(
            "Add a user to FILE, creating the file if it does not exist. The password is "
            "asked for twice, without echo, or read from one line of standard input with "
            "--password-stdin. It is checked, turned into a SCRAM-SHA-256 verifier (600,000 "
            "rounds of PBKDF2-HMAC-SHA256, about 0.2 s) and never stored or shown."
        ),
    )
    add.add_argument("name", metavar="NAME", help="1 to 64 characters of A-Z a-z 0-9 . _ -")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of a prompt",
    )
    add.add_argument("--replace", action="store_true", help="give an existing user a new password")
    remove = actions.add_parser("remove", parents=[file_options], help="remove a user")
    remove.add_argument("name", metavar="NAME")
    actions.add_parser("list", parents=[file_options], help="print the user names, one a line")
    blacklist = actions.add_parser(
        "blacklist",
        parents=[file_options],
        help="list, add or lift address bans",
        description=(
            "Without options, print the banned addresses (an IPv6 address stands for its /64) "
            "and how long each ban lasts. Hosts ban an address after too many failed logins, "
            "and refuse its connections before TLS."
        ),
    )
    change = blacklist.add_mutually_exclusive_group()
    change.add_argument(
        "--add", type=_ban_address, metavar="ADDRESS", help="ban an IP address (IPv6: its /64)"
    )
    change.add_argument(
        "--remove", type=_ban_address, metavar="ADDRESS", help="lift the ban on an address"
    )
    blacklist.set_defaults(blacklist_parser=blacklist)
    blacklist.add_argument(
        "--seconds",
        type=_positive_seconds,
        metavar="SECONDS",
        help="with --add: how long the ban lasts (default: until removed)",
    )


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
        if args.command == "users":
            if args.action == "blacklist" and args.seconds is not None and args.add is None:
                args.blacklist_parser.error("--seconds goes with --add")
            return _users(args)
    except BrokenPipeError:
        # The reader went away ("alvaro demo | head"): stop quietly, as other commands do. The
        # interpreter would otherwise complain again when flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    parser.print_help()
    return 0
