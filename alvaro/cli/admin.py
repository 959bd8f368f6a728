"""``alvaro certs`` and ``alvaro users``: the files a host needs, made and managed from a shell.

``alvaro certs DIR`` writes a throwaway CA and certificates for local development. ``alvaro users``
adds, removes and lists the users of an accounts file (the file ``Host.save()`` writes and
``Host.load()`` reads), and lists, adds and lifts its address bans.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import json
import math
import os
import shlex
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ._common import (
    INSTALL_TRUSTME,
    OK,
    USAGE,
    CommandError,
    killed_by,
    positive_seconds,
    throwaway_ca,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..auth import Accounts
    from ..testing import TLSFiles
    from ._common import Subcommands

__all__ = ("register",)


def register(commands: Subcommands) -> None:
    """Add ``alvaro certs`` and ``alvaro users`` to the ``alvaro`` command."""
    _register_certs(commands)
    _register_users(commands)


# --- alvaro certs ---------------------------------------------------------------------------------


def _register_certs(commands: Subcommands) -> None:
    certs = commands.add_parser(
        "certs",
        help="write a throwaway CA and certificates for local development",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Write a throwaway CA certificate, a server certificate and key (by default for\n"
            "localhost, 127.0.0.1 and ::1), and a client certificate and key (for mutual TLS)\n"
            "to DIR (by default the current folder), as 'python -m trustme' does.\n"
            "For local development and tests only.\n\n"
            f"Needs trustme: {INSTALL_TRUSTME}"
        ),
    )
    certs.add_argument(
        "dir", metavar="DIR", type=Path, nargs="?", help="the folder to write to (or --dir)"
    )
    certs.add_argument(
        "-d",
        "--dir",
        dest="dir_option",
        type=Path,
        metavar="DIR",
        help="the folder to write to (default: the current folder)",
    )
    certs.add_argument(
        "-i",
        "--names",
        "--identities",
        nargs="+",
        metavar="NAME",
        help="the DNS names and IP addresses of the server certificate, instead of "
        f"{' '.join(_LOOPBACK)}",
    )
    certs.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="NAME",
        help="another DNS name or IP address for the server certificate (repeatable)",
    )
    certs.add_argument("--force", action="store_true", help="replace files that already exist")
    certs.add_argument("-q", "--quiet", action="store_true", help="print nothing when it works")
    certs.set_defaults(run=_run_certs)


# What testing.LOOPBACK_NAMES holds, without importing alvaro.testing (and trustme) for --help.
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


_CERT_FILES = ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")


def _quoted(path: Path) -> str:
    """A path as a Python string literal, in double quotes like the README's examples."""
    return json.dumps(str(path), ensure_ascii=False)


def _shell(path: Path) -> str:
    """A path as a shell word."""
    return shlex.quote(str(path))


def _run_certs(args: argparse.Namespace) -> int:
    if args.dir is not None and args.dir_option is not None and args.dir != args.dir_option:
        raise CommandError("give the folder once: DIR or --dir", USAGE)
    directory = args.dir or args.dir_option or Path()
    return _certs(directory, (*(args.names or _LOOPBACK), *args.name), args.force, args.quiet)


def _certs(directory: Path, names: Sequence[str], force: bool, quiet: bool) -> int:
    from .. import testing

    ca = throwaway_ca()
    if ca is None:
        raise CommandError(f"needs trustme: {INSTALL_TRUSTME}", USAGE)
    names = tuple(dict.fromkeys(names))
    targets = [directory / name for name in _CERT_FILES]
    existing = [str(path) for path in targets if os.path.lexists(path)]
    if existing and not force:
        raise CommandError(
            f"refusing to overwrite {', '.join(existing)}; pass --force to replace them"
        )
    # Written to a private folder first, then moved into place: a bad --name or a full disk
    # leaves the old files untouched, and a replaced key gets the new file's 0600 permissions
    # instead of keeping the old file's.
    try:
        directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".alvaro-certs-", dir=directory))
    except OSError as exc:
        raise CommandError(f"cannot write to {directory}: {exc}") from None
    try:
        try:
            written = testing.write_tls_files(staging, ca, names=names)
        except ValueError as exc:  # idna rejects the name (IDNAError is a ValueError)
            raise CommandError(f"invalid server name: {exc}", USAGE) from None
        staged = (written.ca, written.cert, written.key, written.client_cert, written.client_key)
        for source, target in zip(staged, targets, strict=True):
            os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not quiet:
        _print_certs_usage(directory, testing.TLSFiles(*targets), names)
    return OK


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
        f"Wrote a throwaway CA and certificates to {directory.resolve()}:",
        "",
        *(f"  {path!s:<{width}}  {text}" for path, text in rows),
        "",
        "From the shell (mutual TLS: add --client-ca to serve, --cert and --key to connect):",
        "",
        f"    alvaro serve --tls-cert {_shell(files.cert)} --tls-key {_shell(files.key)}",
        f"    alvaro connect localhost 8888 --cafile {_shell(files.ca)}",
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


_USERS_DESCRIPTION = """\
Manage the users of an accounts file: the file Host.save() writes and Host.load()
reads. Only a salted SCRAM-SHA-256 verifier of each password is stored, never the
password; the file is replaced atomically and is readable by its owner only.

A running host keeps its own copy: it sees changes when it calls host.load(FILE),
and its own host.save(FILE) would overwrite them. Change the file while the host is
stopped, or have the host load it again."""


def _register_users(commands: Subcommands) -> None:
    users = commands.add_parser(
        "users",
        help="add, remove and list the users of an accounts file",
        description=_USERS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    users.set_defaults(run=_run_users)
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
    bans = actions.add_parser(
        "bans",
        aliases=["blacklist"],  # the name before bans had one name everywhere
        parents=[file_options],
        help="list, add or lift address bans",
        description=(
            "Without options, print the banned addresses (an IPv6 address stands for its /64) "
            "and how long each ban lasts. Hosts ban an address after too many failed logins, "
            "and refuse its connections before TLS."
        ),
    )
    change = bans.add_mutually_exclusive_group()
    change.add_argument(
        "--add", type=_ban_address, metavar="ADDRESS", help="ban an IP address (IPv6: its /64)"
    )
    change.add_argument(
        "--remove", type=_ban_address, metavar="ADDRESS", help="lift the ban on an address"
    )
    bans.set_defaults(bans_parser=bans)
    bans.add_argument(
        "--seconds",
        type=positive_seconds,
        metavar="SECONDS",
        help="with --add: how long the ban lasts (default: until removed)",
    )


def load_accounts(path: Path, *, create: bool) -> Accounts:
    """The accounts saved in ``path``; a new, empty store when it does not exist and ``create``."""
    from ..auth import Accounts
    from ..exceptions import AccountsFileError

    try:
        return Accounts.load(path)
    except FileNotFoundError:
        if create:
            return Accounts()
        raise CommandError(
            f"{path} does not exist ('alvaro users add NAME --file {path}' creates it)"
        ) from None
    except AccountsFileError as exc:  # corrupt, truncated, another format, a newer version
        raise CommandError(str(exc)) from None
    except OSError as exc:  # a folder, no permission, ...
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None


def _save_accounts(accounts: Accounts, path: Path) -> None:
    try:
        accounts.save(path)  # atomic, and readable by its owner only (0600)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None


def _read_password(name: str, from_stdin: bool) -> str:
    """The new password: one line of standard input, or typed twice at a prompt without echo."""
    from ..auth import validate_password

    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CommandError("no password on standard input")
        # Only the line ending is removed: spaces are part of the password.
        password = line.removesuffix("\n").removesuffix("\r")
    else:
        try:
            password = getpass.getpass(f"Password for {name}: ")
            again = getpass.getpass("The same password again: ")
        except EOFError:
            raise CommandError("no password was typed") from None
        if password != again:
            raise CommandError("the two passwords differ; nothing was changed")
    try:
        return validate_password(password)
    except ValueError as exc:
        raise CommandError(f"this password cannot be used: {exc}") from None


def _users_add(path: Path, name: str, replace: bool, from_stdin: bool) -> int:
    from ..auth import validate_name

    try:
        validate_name(name)
    except ValueError as exc:
        raise CommandError(f"invalid user name {name!r}: {exc}") from None
    # The file is read and checked before the password is asked for.
    accounts = load_accounts(path, create=True)
    exists = accounts.has_user(name)
    if exists and not replace:
        raise CommandError(
            f"user {name!r} exists already in {path}; pass --replace to give it a new password"
        )
    password = _read_password(name, from_stdin)
    accounts.add_user(name, password, replace=True)  # only the SCRAM verifier is kept
    _save_accounts(accounts, path)
    if exists:
        print(f"changed the password of user {name} in {path}")
    else:
        print(f"added user {name} to {path}")
    return OK


def _users_remove(path: Path, name: str) -> int:
    accounts = load_accounts(path, create=False)
    try:
        accounts.remove_user(name)
    except KeyError:
        raise CommandError(f"there is no user {name!r} in {path}") from None
    _save_accounts(accounts, path)
    print(f"removed user {name} from {path}")
    return OK


def _users_list(path: Path) -> int:
    for name in load_accounts(path, create=False).users:
        print(name)
    return OK


def _ban_address(text: str) -> str:
    """An IP address, or an IPv6 /64 network as ``users bans`` lists it; for argparse."""
    try:
        if "/" not in text:
            return str(ipaddress.ip_address(text))
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None
    if network.version != 6 or network.prefixlen != 64:
        raise argparse.ArgumentTypeError(f"not an IP address or an IPv6 /64 network: {text!r}")
    return str(network.network_address)


def _describe_ban(seconds_left: float) -> str:
    if math.isinf(seconds_left):
        return "until removed"
    return f"for {math.ceil(seconds_left)} s more"


def _users_bans(path: Path, add: str | None, seconds: float | None, remove: str | None) -> int:
    from ..auth import address_bucket

    if add is None and remove is None:
        for bucket, left in sorted(load_accounts(path, create=False).bans.items()):
            print(f"{bucket}  {_describe_ban(left)}")
        return OK
    accounts = load_accounts(path, create=add is not None)
    if add is not None:
        accounts.ban(add, seconds)
        bucket = address_bucket(add)
        left = accounts.bans.get(bucket, math.inf if seconds is None else seconds)
        done = f"banned {bucket} {_describe_ban(left)}"
    else:
        assert remove is not None
        bucket = address_bucket(remove)
        if not accounts.unban(remove):
            raise CommandError(f"{bucket} is not banned in {path}")
        done = f"lifted the ban on {bucket}"
    _save_accounts(accounts, path)
    print(f"{done} in {path}")
    return OK


def _run_users(args: argparse.Namespace) -> int:
    if args.action in ("bans", "blacklist") and args.seconds is not None and args.add is None:
        args.bans_parser.error("--seconds goes with --add")
    path: Path = args.file
    try:
        if args.action == "add":
            return _users_add(path, args.name, args.replace, args.password_stdin)
        if args.action == "remove":
            return _users_remove(path, args.name)
        if args.action == "list":
            return _users_list(path)
        return _users_bans(path, args.add, args.seconds, args.remove)
    except KeyboardInterrupt:  # Ctrl+C at the password prompt: end its line, then stop
        print(file=sys.stderr)
        return killed_by(signal.SIGINT)
