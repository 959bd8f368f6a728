"""Helpers for alvaro's tests: a time unit, free ports, raw loopback sockets and subprocesses."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc

if TYPE_CHECKING:
    from collections.abc import Callable

#: One test time unit in seconds; slow machines scale every timeout with
#: ALVARO_TEST_TIMEOUT_FACTOR instead of editing tests.
T = 0.1 * float(os.environ.get("ALVARO_TEST_TIMEOUT_FACTOR", "1"))

#: Generous bound for waits that should succeed quickly, so a bug fails fast instead of hanging.
WAIT = 100 * T


#: The root of this checkout.
ROOT = Path(__file__).resolve().parent.parent


def checkout_env() -> dict[str, str]:
    """The environment for a Python subprocess that must import this checkout's alvaro, from
    any working directory, whichever alvaro is installed."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), path]))}


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``predicate`` (from a plain thread) until it is true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)


def wait_for_port(port: int, timeout: float = WAIT) -> None:
    """Wait until something listens on 127.0.0.1:port."""

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    wait_until(listening, timeout)


def python_process(script: str, *args: str) -> subprocess.Popen[str]:
    """Start ``python -u script`` with its output captured as text."""
    return subprocess.Popen(
        [sys.executable, "-u", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait in async code until ``predicate()`` is true; fail with TimeoutError after ``timeout``.

    For state that no event announces (a list filled by a callback, ``host.clients``).
    """
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - the state polled here has no event to await
            await anyio.sleep(T / 10)


def open_fds(pid: int | str = "self") -> int:
    """How many file descriptors a process has open (Linux); -1 where that cannot be read."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:  # not Linux
        return -1


def rss_kib(pid: int | str = "self") -> int:
    """A process's resident memory in KiB (Linux); 0 where that cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:  # not Linux
        pass
    return 0


def reset_on_close(stream: anyio.abc.SocketStream) -> None:
    """Make closing ``stream`` send a TCP reset (RST) instead of a FIN: SO_LINGER on, timeout 0.

    Does nothing if the socket is already gone.
    """
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


class FakeClock:
    """A monotonic clock and a wall clock for :class:`Accounts` that move only when told to."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = 1_700_000_000.0

    def clock(self) -> float:
        return self.mono

    def now(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds
