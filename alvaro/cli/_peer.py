"""What ``alvaro connect`` and ``alvaro send`` share: where to connect, TLS, login, messages.

Both take ``HOST PORT``, ``--backend``, the TLS options (``--tls``, ``--cafile``, ``--insecure``,
``--cert``/``--key``) and ``--user``; both read a message the same way (JSON if it parses, else
a string) and turn alvaro's errors into one line.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from ._common import USAGE, CommandError, tell
from ._foreground import add_backend_option

if TYPE_CHECKING:
    import ssl

    from ._common import Subcommands

#: Where ``--user`` takes its password from, when set; a prompt without echo asks otherwise.
PASSWORD_VARIABLE = "ALVARO_PASSWORD"


def port_number(text: str, *, lowest: int = 1) -> int:
    """A TCP port from the command line, for argparse (``lowest=0`` lets the system pick one)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not lowest <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number from {lowest} to 65535: {text!r}")
    return port


def metadata_object(text: str) -> dict[str, Any]:
    """``--meta``'s value: a JSON object, for argparse."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"metadata must be a JSON object, not {text!r}")
    return value


def message_data(text: str) -> Any:
    """What a typed message stands for: the JSON value it spells, or else the text itself.

    ``42``, ``true``, ``[1, 2]`` and ``{"a": 1}`` are sent as JSON; ``hello`` (not JSON) as the
    string ``"hello"``; ``"42"`` (JSON for a string) as the string ``"42"``.
    """
    try:
        return json.loads(text)
    except ValueError:
        return text


def add_peer_command(
    commands: Subcommands, name: str, *, help: str, description: str
) -> argparse.ArgumentParser:
    """Add a command that connects to a host: ``HOST PORT``, ``--backend``, TLS, ``--user``."""
    parser = commands.add_parser(
        name,
        help=help,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_peer_options(parser)
    return parser


def _add_peer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", metavar="HOST", help="the host's name or IP address")
    parser.add_argument("port", metavar="PORT", type=port_number, help="the host's TCP port")
    add_backend_option(parser)
    tls = parser.add_argument_group(
        "TLS", "any of these connects over TLS; the host's certificate and name are checked"
    )
    tls.add_argument(
        "--tls", action="store_true", help="connect over TLS, trusting the system's CAs"
    )
    tls.add_argument(
        "--cafile",
        metavar="FILE",
        help="trust the CA(s) in FILE (as 'alvaro certs' writes)",
    )
    tls.add_argument("--cert", metavar="FILE", help="a client certificate, for mutual TLS")
    tls.add_argument("--key", metavar="FILE", help="its private key, if not in --cert's file")
    tls.add_argument(
        "--insecure",
        action="store_true",
        help="check no certificate: anyone on the way can read and change the traffic",
    )
    parser.add_argument(
        "--user",
        metavar="NAME",
        help=f"log in as NAME; the password comes from ${PASSWORD_VARIABLE} or a prompt",
    )


def client_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context the options ask for, or ``None`` for plaintext.

    ``--insecure`` prints a warning on stderr every time: it is never quietly on.
    """
    if args.key is not None and args.cert is None:
        raise CommandError("--key goes with --cert", USAGE)
    if args.insecure and args.cafile is not None:
        raise CommandError("--insecure checks no certificate: it cannot go with --cafile", USAGE)
    if not (args.tls or args.cafile or args.cert or args.insecure):
        return None
    import ssl

    from .. import tls
    from ..exceptions import TLSError

    try:
        context = tls.client_context(args.cafile, certfile=args.cert, keyfile=args.key)
    except TLSError as exc:
        raise CommandError(str(exc)) from None
    if args.insecure:
        tell(
            args.command,
            "WARNING: --insecure: the host's certificate is NOT checked; anyone between you "
            "and the host can read and change everything, including a login",
        )
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def login(args: argparse.Namespace) -> tuple[str, str] | None:
    """``(user, password)`` for ``--user``, the password from the environment or a prompt."""
    if args.user is None:
        return None
    from ..auth import validate_name

    try:
        validate_name(args.user)
    except ValueError as exc:
        raise CommandError(f"invalid user name {args.user!r}: {exc}", USAGE) from None
    password = os.environ.get(PASSWORD_VARIABLE)
    if password is None:
        try:
            password = getpass.getpass(f"Password for {args.user}: ")
        except EOFError:
            raise CommandError(f"no password was typed (or set ${PASSWORD_VARIABLE})") from None
    return args.user, password


def address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def failure(exc: BaseException, host: str, port: int) -> CommandError:
    """The one line that ends a command for an error of alvaro's, the system's or a timeout."""
    from ..exceptions import ConnectionClosed

    if isinstance(exc, ConnectionClosed):
        return CommandError(f"connection to {address(host, port)} closed: {exc}")
    if isinstance(exc, TimeoutError):
        return CommandError(f"timed out talking to {address(host, port)}")
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror and not text.startswith("could not"):
        text = f"cannot reach {address(host, port)}: {exc.strerror}"
    return CommandError(text)


def read_stdin() -> str:
    """All of standard input as text, less one final line ending (``echo`` adds one)."""
    text = sys.stdin.read()
    return text.removesuffix("\n").removesuffix("\r")
