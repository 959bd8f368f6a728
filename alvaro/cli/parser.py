"""The ``alvaro`` command's argument parser: its own options, then each command module's part."""

from __future__ import annotations

import argparse

from .._version import __version__
from . import admin, connect, demo, send, serve

__all__ = ("build_parser",)

# Each module adds its subcommands and what runs them (``set_defaults(run=...)``); the help lists
# the subcommands in this order. A new command is a module and one line here.
_COMMANDS = (
    demo.register,
    serve.register,
    connect.register,
    send.register,
    admin.register,
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``alvaro``: ``--version``, ``-v`` and the subcommands."""
    parser = argparse.ArgumentParser(
        prog="alvaro", description="Easy, event-based message passing over TCP."
    )
    parser.add_argument("--version", action="version", version=f"alvaro {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log to stderr (-vv for debug)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _COMMANDS:
        register(commands)
    return parser
