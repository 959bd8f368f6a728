"""``alvaro connect HOST PORT``: an interactive client, to talk to any host from a terminal.

Each line typed is sent when Enter is pressed: as JSON when it parses as JSON, else as a string.
Messages that arrive are printed as ``< DATA  METADATA`` above the line being typed, which stays
as it was. Lines that start with ``/`` are commands (``/help``). Line editing and history (this
session's only: nothing is written to disk) come from the standard library's ``readline`` where
it exists. ``/quit``, Ctrl-D and Ctrl-C leave with status 0; a connection that the host closes or
loses ends the command with one line on stderr and status 1.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from ..exceptions import AlvaroError
from ._common import FAILED, OK, CommandError, show, tell
from ._foreground import check_backend
from ._peer import add_peer_command, address, client_tls, failure, login, message_data

if TYPE_CHECKING:
    import argparse

    from ..sync import Client
    from ._common import Subcommands

__all__ = ("register",)

_HELP = """\
Type a line and press Enter to send it: as JSON when it parses as JSON
(42, true, [1, 2], {"a": 1}), else as a string. Messages that arrive are shown as
'< DATA  METADATA'.
  /meta {JSON}   metadata for the messages sent next ({} for none); /meta alone shows it
  /ask DATA      send DATA as a request; its answer is shown as '<< DATA  METADATA'
  /quit          leave (Ctrl-D and Ctrl-C leave too)
  /help          this text
  //TEXT         send "/TEXT"
File transfers are not in this version yet."""

_PROMPT = "> "


def register(commands: Subcommands) -> None:
    """Add ``alvaro connect`` to the ``alvaro`` command."""
    connect = add_peer_command(
        commands,
        "connect",
        help="talk to a host interactively: type to send, see what arrives",
        description=_HELP,
    )
    connect.set_defaults(run=_run_connect)


class _Terminal:
    """Prints whole lines while someone may be typing on the line below them.

    On a terminal each line is inserted above the cursor's line with VT100 sequences: the
    prompt and what was typed so far stay where they are, cursor included, and readline's idea
    of the screen stays true. Elsewhere (a pipe) lines are simply printed.
    """

    def __init__(self) -> None:
        self.interactive = sys.stdin.isatty() and sys.stdout.isatty()
        self._lock = threading.Lock()  # lines come from the callback thread and the main one

    def show(self, text: str) -> None:
        with self._lock:
            if not self.interactive:
                print(text, flush=True)
                return
            # A line too long for the terminal would wrap onto the prompt's line: insert it
            # in pieces of one screen line each.
            width = max(shutil.get_terminal_size().columns - 1, 10)
            for line in text.splitlines() or [""]:
                for start in range(0, max(len(line), 1), width):
                    sys.stdout.write(
                        "\x1b7"  # save the cursor (on the prompt's line)
                        "\n"  # make sure a line exists below it, scrolling if needed
                        "\x1b[A"  # back up to the prompt's line
                        "\x1b[L"  # insert a blank line there, pushing the prompt down
                        f"\r{line[start : start + width]}"
                        "\x1b8"  # restore the cursor ...
                        "\x1b[B"  # ... one line down, where the prompt now is
                    )
            sys.stdout.flush()

    def read(self) -> str:
        """The next line typed (without its line ending); EOFError at Ctrl-D or end of input."""
        if self.interactive:
            return input(_PROMPT)
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\r\n")

    def clear_line(self) -> None:
        """Wipe the prompt's line, before a last message goes to stderr."""
        if self.interactive:
            with self._lock:
                sys.stdout.write("\r\x1b[2K")
                sys.stdout.flush()


class _Session:
    """The typed lines and commands of one connection, until it ends or the user leaves."""

    def __init__(self, client: Client, term: _Terminal) -> None:
        self.client = client
        self.term = term
        self.metadata: dict[str, Any] = {}
        self.leaving = False
        self.lost: str | None = None  # why the connection ended, when it was not us
        self._lock = threading.Lock()  # leaving or lost, whichever comes first
        self._main = threading.main_thread().ident

    def got_data(self, data: Any, metadata: dict[str, Any]) -> None:
        shown = f"< {show(data)}"
        self.term.show(f"{shown}  {show(metadata)}" if metadata else shown)

    def lost_connection(self) -> None:
        """On the callback thread: note why, and wake the main thread out of its prompt."""
        conn = self.client.connection
        how = "the connection ended"
        if conn is not None:
            by = "the host closed it" if conn.closed_by_peer else "it was lost"
            reason = f": {conn.close_reason}" if conn.close_reason else ""
            how = f"{by} (code {conn.close_code}{reason})"
        with self._lock:
            if self.leaving:
                return
            self.lost = how
        # input() returns only for a key or a signal: SIGINT, to the main thread, ends it.
        if self._main is not None and hasattr(signal, "pthread_kill"):
            signal.pthread_kill(self._main, signal.SIGINT)
        else:  # pragma: no cover - Windows
            import _thread

            _thread.interrupt_main()

    def run(self) -> int:
        """Read and act on lines until the user leaves (0) or the connection ends (1)."""
        interrupted = False
        try:
            while True:
                try:
                    line = self.term.read()
                except EOFError:
                    break
                if self.lost is not None or not self._handle(line):
                    break
        except KeyboardInterrupt:
            interrupted = True
        with self._lock:
            self.leaving = True  # from now on a lost connection is ours, and sends no signal
            lost = self.lost
        if lost is None:
            if self.term.interactive:
                print(flush=True)  # leave the prompt's line
            return OK
        if not interrupted:
            # The SIGINT that lost_connection() sent is on its way: take it here, not later.
            try:
                time.sleep(5)
            except KeyboardInterrupt:
                pass
        return FAILED

    def _handle(self, line: str) -> bool:
        """Act on one typed line; ``False`` to leave."""
        if line.startswith("/") and not line.startswith("//"):
            command, _, rest = line.partition(" ")
            return self._command(command, rest.strip())
        if not line:
            return True
        data = message_data(line[1:] if line.startswith("//") else line)
        try:
            self.client.send_data(data, self.metadata)
        except AlvaroError as exc:  # too large for the host, outbox full, or closed meanwhile
            self.term.show(f"! not sent: {exc}")
        return True

    def _ask(self, text: str) -> None:
        """Send a request; its answer (or why there is none) is shown when it comes, while the
        user goes on typing."""
        if not text:
            self.term.show("! /ask takes the data to send, such as /ask [1, 2]")
            return
        try:
            self.client.request_nowait(
                message_data(text),
                self.metadata,
                on_reply=lambda reply: self.term.show(
                    f"<< {show(reply.data)}  {show(reply.metadata)}"
                ),
                on_error=lambda error: self.term.show(f"! no answer: {error}"),
            )
        except AlvaroError as exc:
            self.term.show(f"! not asked: {exc}")

    def _command(self, command: str, rest: str) -> bool:
        if command in ("/quit", "/exit"):
            return False
        if command == "/help":
            self.term.show(_HELP)
        elif command == "/ask":
            self._ask(rest)
        elif command == "/meta":
            if rest:
                try:
                    value = json.loads(rest)
                except ValueError as exc:
                    value = exc
                if not isinstance(value, dict):
                    self.term.show('! /meta takes a JSON object, such as {"from": "me"}')
                    return True
                self.metadata = value
            self.term.show(f"metadata: {show(self.metadata)}")
        else:
            self.term.show(f"! unknown command {command}; /help lists them")
        return True


def _run_connect(args: argparse.Namespace) -> int:
    check_backend(args.backend)
    context = client_tls(args)
    credentials = login(args)
    from .. import sync

    term = _Terminal()
    if term.interactive:
        try:
            import readline  # noqa: F401 - importing it gives input() line editing and history
        except ImportError:  # pragma: no cover - Windows has no readline
            pass
    client = sync.Client(ssl_context=context, backend=args.backend)
    session = _Session(client, term)
    client.got_data = session.got_data
    client.lost_connection = session.lost_connection
    # input() must raise KeyboardInterrupt at SIGINT, even if this process was started with
    # SIGINT ignored: that is how a lost connection ends the prompt.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        try:
            client.connect(args.host, args.port, login=credentials)
        except (AlvaroError, OSError, TimeoutError, ValueError) as exc:
            raise failure(exc, args.host, args.port) from None
        except KeyboardInterrupt:
            tell("connect", "stopped while connecting")
            return FAILED
        conn = client.connection
        over = "" if conn is None or conn.tls is None else f" over {conn.tls.version}"
        user = "" if client.user is None else f" as {client.user}"
        try:
            term.show(
                f"connected to {address(args.host, args.port)}{over}{user}; "
                "/help for commands, Ctrl-D to leave"
            )
            status = session.run()
        except KeyboardInterrupt:  # Ctrl-C just before the prompt: leave, as at the prompt
            status = OK if session.lost is None else FAILED
        if status == OK:
            return OK
        term.clear_line()
        raise CommandError(f"connection to {address(args.host, args.port)} lost: {session.lost}")
    finally:
        session.leaving = True
        try:
            client.close()
        except KeyboardInterrupt:  # Ctrl-C again while closing: leave without waiting
            pass
        signal.signal(signal.SIGINT, previous)
