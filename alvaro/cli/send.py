"""``alvaro send HOST PORT DATA``: send one message from a script, and perhaps wait for a reply.

DATA is sent as JSON when it parses as JSON, else as a string; ``-`` reads it from standard
input. ``--wait-reply`` prints the first message that comes back. ``--json`` prints what
happened as JSON lines, for programs. Exit status: 0 sent (and answered), 1 the connection, the
login, TLS or the reply failed, 2 the command line was wrong.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import TYPE_CHECKING, Any

import anyio

from ..exceptions import AlvaroError, RemoteError
from ._common import OK, CommandError, positive_seconds
from ._foreground import check_backend, run_in_foreground
from ._peer import (
    add_peer_command,
    client_tls,
    failure,
    login,
    message_data,
    metadata_object,
    read_stdin,
)

if TYPE_CHECKING:
    import argparse
    import ssl

    from ..protocol import Message
    from ._common import Subcommands

__all__ = ("register",)

_DESCRIPTION = """\
Connect, send one message, and close. DATA is sent as JSON when it parses as JSON
(42, true, [1, 2], {"a": 1}), else as a string; '-' reads it from standard input.

Exit status: 0 sent (and, with --wait-reply, answered); 1 the connection, TLS, the
login or the reply failed; 2 the command line was wrong. Errors are one line on
stderr (with --json, also a JSON line on stdout)."""


def register(commands: Subcommands) -> None:
    """Add ``alvaro send`` to the ``alvaro`` command."""
    send = add_peer_command(
        commands, "send", help="send one message to a host (for scripts)", description=_DESCRIPTION
    )
    send.add_argument("data", metavar="DATA", help="the message; '-' reads standard input")
    send.add_argument(
        "--meta", type=metadata_object, default={}, metavar="JSON", help="metadata, a JSON object"
    )
    send.add_argument(
        "--wait-reply", action="store_true", help="wait for one message back and print it"
    )
    send.add_argument(
        "--ask",
        action="store_true",
        help="send DATA as a request and print its answer (the host's got_request)",
    )
    send.add_argument(
        "--timeout",
        type=positive_seconds,
        default=10.0,
        metavar="S",
        help="with --wait-reply or --ask: how long to wait for the answer (default: 10)",
    )
    send.add_argument(
        "--json",
        action="store_true",
        help="print JSON lines: connected, sent, reply (or error), for programs",
    )
    send.set_defaults(run=_run_send)


def _record(event: str, **fields: Any) -> str:
    """One JSON line; raw bytes as ``data_base64``, since JSON has no bytes."""
    record: dict[str, Any] = {"event": event}
    for name, value in fields.items():
        if name == "data" and isinstance(value, bytes):
            record["data_base64"] = base64.b64encode(value).decode("ascii")
        else:
            record[name] = value
    return json.dumps(record, ensure_ascii=False)


def _print_back(event: str, message: Message, *, as_json: bool) -> None:
    """What came back: a JSON line record for programs, or the data alone for people."""
    if as_json:
        print(_record(event, data=message.data, metadata=message.metadata), flush=True)
    else:
        _print_reply(message.data)


def _print_reply(data: Any) -> None:
    """A reply for people and shell scripts: JSON on one line, raw bytes as they are."""
    if isinstance(data, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        print(json.dumps(data, ensure_ascii=False), flush=True)


async def _send(
    args: argparse.Namespace,
    data: Any,
    context: ssl.SSLContext | None,
    credentials: tuple[str, str] | None,
) -> int:
    from .. import aio

    async with aio.connect(args.host, args.port, ssl_context=context, login=credentials) as client:
        conn = client.connection
        assert conn is not None
        if args.json:
            tls = conn.tls
            print(
                _record(
                    "connected",
                    host=args.host,
                    port=args.port,
                    tls=None if tls is None else tls.version,
                    user=client.user,
                ),
                flush=True,
            )
        if args.ask:
            try:
                answer = await client.request(data, args.meta, timeout=args.timeout)
            except TimeoutError:
                raise CommandError(f"no answer within {args.timeout:g} s") from None
            except RemoteError as exc:
                raise CommandError(f"the request failed: {exc}") from None
            _print_back("answer", answer, as_json=args.json)
            return OK
        # send(), not send_data(): it waits for room, and raises here if the message is over
        # the host's limits.
        await client.send(data, args.meta)
        if args.json:
            print(_record("sent", data=data, metadata=args.meta), flush=True)
        if args.wait_reply:
            try:
                reply = await client.receive(timeout=args.timeout)
            except TimeoutError:
                raise CommandError(f"no reply within {args.timeout:g} s") from None
            _print_back("reply", reply, as_json=args.json)
    return OK


def _run_send(args: argparse.Namespace) -> int:
    try:
        check_backend(args.backend)
        context = client_tls(args)
        credentials = login(args)
        data = message_data(read_stdin() if args.data == "-" else args.data)
        return run_in_foreground(
            "send",
            lambda: anyio.run(_send, args, data, context, credentials, backend=args.backend),
            log_errors=not args.verbose,
        )
    except CommandError as exc:
        _report(args, exc)
        raise
    # alvaro's errors (ConnectError is also an OSError, MessageTooLarge a ValueError), the
    # system's, and timeouts: one line, never a traceback.
    except (AlvaroError, OSError, TimeoutError, ValueError) as exc:
        error = failure(exc, args.host, args.port)
        _report(args, error)
        raise error from None


def _report(args: argparse.Namespace, error: CommandError) -> None:
    """With ``--json``, the error as a JSON line on stdout too (stderr has it in words)."""
    if args.json:
        print(_record("error", message=str(error), status=error.status), flush=True)
