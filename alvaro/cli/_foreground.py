"""Commands that run an event loop in the foreground until they are done or a signal stops them.

The first SIGINT or SIGTERM stops such a command gracefully, a second one at once; Ctrl+C before
or after its event loop runs ends it with one line. Its exit status is then 128 plus the number of
the first signal, as a shell reports a process that a signal ended.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING

import anyio

from ._common import OK, USAGE, CommandError, killed_by, tell

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable


class Stopping:
    """What a signal stops in a command, and the first signal that came."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def on_signal(self) -> None:
        """Called at the first signal, before :meth:`gracefully` starts: to stop printing, say."""

    async def gracefully(self) -> None:
        """Stop what the command does, gracefully; the second signal cancels this too."""


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--backend asyncio|trio`` to a command that runs an event loop."""
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="the event loop to run on (default: asyncio)",
    )


def check_backend(backend: str) -> None:
    """Raise a :class:`CommandError` that says so when ``backend`` is trio and trio is missing."""
    if backend == "trio":
        try:
            import trio  # noqa: F401 - only to tell a missing trio in one line
        except ImportError:
            raise CommandError(
                "--backend trio needs trio, which is not installed: pip install trio", USAGE
            ) from None


async def until_signalled(
    command: str, work: Callable[[], Awaitable[int]], stopping: Stopping
) -> int:
    """Await ``work()``, which SIGINT or SIGTERM stops gracefully, and a second one at once.

    Returns the exit status of ``work()``, or 128 plus the number of the first signal.
    """
    # Signals reach the main thread only, and asyncio on Windows cannot receive them: there
    # Ctrl+C raises KeyboardInterrupt, which run_in_foreground() turns into one line.
    if threading.current_thread() is not threading.main_thread() or sys.platform == "win32":
        return await work()
    status = OK
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tasks:

            async def run() -> None:
                nonlocal status
                status = await work()
                tasks.cancel_scope.cancel()

            tasks.start_soon(run)
            async for signum in signals:
                if stopping.signal is not None:
                    tasks.cancel_scope.cancel()  # the second signal: drop everything now
                    break
                stopping.signal = signum
                stopping.on_signal()
                tell(command, f"stopping ({signal.Signals(signum).name})")
                tasks.start_soon(stopping.gracefully)
    return status if stopping.signal is None else killed_by(stopping.signal)


def run_in_foreground(command: str, start: Callable[[], int], *, log_errors: bool) -> int:
    """Return ``start()``, which runs an event loop, and put back this thread's signal handlers.

    With ``log_errors``, the errors that alvaro logs reach stderr meanwhile, as Python's
    last-resort handler would print them (``-v`` configures logging instead).
    """
    # The signal handlers of this thread, put back afterwards (asyncio would reset them).
    handlers = (
        {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        if threading.current_thread() is threading.main_thread()
        else {}
    )
    errors = logging.StreamHandler()
    errors.setLevel(logging.ERROR)
    if log_errors:
        logging.getLogger("alvaro").addHandler(errors)
    try:
        return start()
    except KeyboardInterrupt:  # Ctrl+C before or after the command handles signals itself
        tell(command, "stopped (SIGINT)")
        return killed_by(signal.SIGINT)
    finally:
        logging.getLogger("alvaro").removeHandler(errors)
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
