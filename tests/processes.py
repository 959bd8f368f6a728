"""Test programs in processes of their own (``tests/process_peers``), to signal, kill or measure.

:class:`Peer` runs one with its output read by threads, so that every wait has a timeout;
:func:`host_process` starts ``process_peers/host.py`` and returns the port it listens on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .helpers import WAIT

if TYPE_CHECKING:
    import signal
    from collections.abc import Sequence

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "process_peers"


class Peer:
    """A script of ``tests/process_peers`` running as a process; its output is kept by line.

    Use it as a context manager: leaving the block kills the process if it still runs, reaps
    it, and closes its pipes.
    """

    def __init__(
        self,
        script: str,
        *args: str,
        stdin: bool = False,
        pass_fds: Sequence[int] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = script
        # A module (``tests.process_peers.x``) runs with ``-m`` from the repository's root, so
        # that it imports this checkout's alvaro whatever is installed; a file name runs from
        # tests/process_peers (an absolute path from where it is). ``env`` replaces the
        # environment (a GUI program's DISPLAY).
        if script.endswith(".py"):
            command = [sys.executable, "-u", str(PEERS / script), *args]
        else:
            command = [sys.executable, "-u", "-m", script, *args]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=pass_fds,  # inherited by the process, as a supervisor hands out sockets
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._pumps = [
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True)
            for stream, sink in (
                (self.process.stdout, self.stdout),
                (self.process.stderr, self.stderr),
            )
        ]
        for pump in self._pumps:
            pump.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _pump(self, stream: IO[str], sink: list[str]) -> None:
        for line in stream:
            with self._changed:
                sink.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def lines(self, prefix: str) -> list[str]:
        """The lines printed on stdout so far that start with ``prefix``."""
        with self._changed:
            return [line for line in self.stdout if line.startswith(prefix)]

    def errors(self, text: str) -> list[str]:
        """The lines printed on stderr so far that contain ``text``."""
        with self._changed:
            return [line for line in self.stderr if text in line]

    def describe(self) -> str:
        with self._changed:
            return (
                f"{self.name} (exit code {self.process.poll()}): "
                f"stdout {self.stdout[-10:]}, stderr {self.stderr[-30:]}"
            )

    def wait_for(self, prefix: str, timeout: float = WAIT) -> str:
        """Wait (blocking) for a line on stdout that starts with ``prefix``, and return it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.stdout:
                    if line.startswith(prefix):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not any(pump.is_alive() for pump in self._pumps):
                    break
                self._changed.wait(min(remaining, 0.5))
        raise AssertionError(f"no line starting with {prefix!r}: {self.describe()}")

    def tell(self, line: str) -> None:
        """Write a line to the process's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def kill(self) -> float:
        """SIGKILL the process (without waiting for it); return the time, on time.monotonic()."""
        killed_at = time.monotonic()
        self.process.kill()
        return killed_at

    def signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` to the process."""
        os.kill(self.process.pid, signum)

    def finish(self) -> int:
        """Wait (bounded) for the process to end by itself and for the rest of its output;
        return its exit status."""
        try:
            status = self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"did not end within {WAIT} s: {self.describe()}") from None
        for pump in self._pumps:
            pump.join(timeout=WAIT)
        return status

    def close(self) -> None:
        """Kill the process if it runs, reap it, collect the rest of its output, close pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=WAIT)
        for pump in self._pumps:
            pump.join(timeout=WAIT)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def host_process(*args: str) -> tuple[Peer, int]:
    """Start ``process_peers/host.py`` with ``args``; return it and the port it listens on."""
    peer = Peer("host.py", *args)
    try:
        port = int(peer.wait_for("listening ").split()[1])
    except BaseException:
        peer.close()
        raise
    return peer, port
