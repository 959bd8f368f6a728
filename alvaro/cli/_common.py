"""What the ``alvaro`` commands share: their one-line messages and their exit statuses."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable

    import trustme

    #: What a command module's ``register()`` adds its subcommands to.
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]
    #: What runs a subcommand (``set_defaults(run=...)``): its arguments in, its exit status out.
    Run = Callable[[argparse.Namespace], int]

# The exit statuses: FAILED when a command could not do what it was asked, USAGE (argparse's own)
# when it was asked wrongly or needs something that is not installed.
OK = 0
FAILED = 1
USAGE = 2

# trustme is what alvaro.testing needs: named itself, since "alvaro" on the package index is
# another project (the original Alvaro 1.x).
INSTALL_TRUSTME = "pip install trustme"


def killed_by(signum: int) -> int:
    """The exit status of a command that a signal stopped, as a shell reports it."""
    return 128 + signum


class CommandError(Exception):
    """A problem that ends a command: ``main()`` prints it in one line and exits with ``status``."""

    def __init__(self, message: str, status: int = FAILED) -> None:
        super().__init__(message)
        self.status = status


def tell(command: str, text: str, file: TextIO | None = None) -> None:
    """Print one line ``alvaro COMMAND: TEXT``, on stderr unless another ``file`` is given."""
    print(f"alvaro {command}: {text}", file=sys.stderr if file is None else file, flush=True)


def positive_seconds(text: str) -> float:
    """A positive, finite number of seconds from the command line, for argparse."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return seconds


def show(value: Any) -> str:
    """A message's data or metadata in one line: as JSON, or raw bytes by their size and start."""
    if isinstance(value, bytes):
        return f"{len(value)} raw bytes {value[:16]!r}"
    return json.dumps(value, ensure_ascii=False)


def throwaway_ca() -> trustme.CA | None:
    """A new CA from :func:`alvaro.testing.make_ca`, or ``None`` when trustme is not installed."""
    # Imported when needed, so that --help and --version stay import-light.
    from .. import testing

    try:
        return testing.make_ca()
    except ModuleNotFoundError as exc:
        if exc.name != "trustme":
            raise
        return None
