"""The ``alvaro`` command (also ``python -m alvaro``).

``alvaro demo`` runs a host and two clients on 127.0.0.1, over TLS with a throwaway CA, with login,
and prints what they say to each other. ``alvaro serve`` runs a host that echoes or relays
messages, ``alvaro connect`` talks to a host interactively, and ``alvaro send`` sends one message
from a script. ``alvaro certs`` writes a throwaway CA and certificates for local development.
``alvaro users`` adds, removes and lists the users of an accounts file (the file ``Host.save()``
writes and ``Host.load()`` reads). This package is the only part of alvaro that prints, and it
configures logging only when asked to (``-v``).

One module a command (``demo``, ``serve``, ``connect``, ``send``, ``admin``), each adding its
subcommands to the parser that ``parser`` builds; ``_common`` holds their one-line messages and
exit statuses, ``_foreground`` what runs an event loop until a signal stops it, ``_peer`` what
``connect`` and ``send`` share.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

from ._common import FAILED, OK, CommandError, tell
from .parser import build_parser

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._common import Run

__all__ = ("main",)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``alvaro`` command with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(
            level=logging.DEBUG if args.verbose > 1 else logging.INFO,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
    run: Run | None = getattr(args, "run", None)
    if run is None:  # no command
        parser.print_help()
        return OK
    try:
        return run(args)
    except CommandError as exc:
        tell(args.command, str(exc))
        return exc.status
    except BrokenPipeError:
        # The reader went away ("alvaro demo | head"): stop quietly, as other commands do. The
        # interpreter would otherwise complain again when flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return FAILED
