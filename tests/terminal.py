"""A program run on a real pseudo-terminal, with what it draws kept as a screen would show it.

:class:`TerminalProgram` gives the program a pty as its standard input and output (its stderr
is a pipe, to read apart), types into it, and feeds everything it writes to a pyte terminal
emulator, so that tests can assert on the visible lines, as a user sees them, and not on escape
sequences. Every wait is bounded.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import termios
import threading
import time
from typing import TYPE_CHECKING

import pyte

from .helpers import WAIT, checkout_env

if TYPE_CHECKING:
    from collections.abc import Callable

COLUMNS, LINES = 80, 24


def _control_terminal() -> None:
    """In the child, after setsid(): make its standard input its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class TerminalProgram:
    """``python -m alvaro ARGS`` (or any command) on a pty of ``COLUMNS`` x ``LINES``."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.screen = pyte.Screen(COLUMNS, LINES)
        self._stream = pyte.Stream(self.screen)
        self.raw = ""
        self._changed = threading.Condition()
        primary, secondary = os.openpty()
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
        self._primary = primary
        self.process = subprocess.Popen(
            [sys.executable, "-m", "alvaro", *args],
            stdin=secondary,
            stdout=secondary,
            stderr=subprocess.PIPE,
            env={**checkout_env(), "TERM": "xterm", **(env or {})},
            # A session of its own with the pty as its controlling terminal, as a shell gives
            # it: then Ctrl-C is SIGINT to it.
            start_new_session=True,
            preexec_fn=_control_terminal,
            text=True,
        )
        os.close(secondary)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._primary, 4096)
            except OSError:  # EIO: the program and its children closed the pty
                chunk = b""
            with self._changed:
                if not chunk:
                    self._changed.notify_all()
                    return
                text = chunk.decode("utf-8", errors="replace")
                self.raw += text
                self._stream.feed(text)
                self._changed.notify_all()

    def display(self) -> list[str]:
        """The screen's lines, right-stripped, without the empty lines at the bottom."""
        with self._changed:
            lines = [line.rstrip() for line in self.screen.display]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def cursor(self) -> tuple[int, int]:
        """The cursor's (row, column), from 0."""
        with self._changed:
            return self.screen.cursor.y, self.screen.cursor.x

    def wait_until(self, what: str, check: Callable[[list[str]], bool]) -> list[str]:
        """Wait (bounded) until ``check(display())`` is true; return that display."""
        deadline = time.monotonic() + WAIT
        with self._changed:
            while True:
                lines = self.display()
                if check(lines):
                    return lines
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._reader.is_alive():
                    break
                self._changed.wait(min(remaining, 0.5))
        raise AssertionError(f"never showed {what}; the screen: {self.display()}")

    def wait_for_line(self, text: str) -> list[str]:
        """Wait (bounded) until a line of the screen is ``text``; return the display."""
        return self.wait_until(repr(text), lambda lines: text in lines)

    def type(self, keys: str) -> None:
        """Type ``keys`` ("\\r" is Enter, "\\x04" Ctrl-D, "\\x03" Ctrl-C)."""
        os.write(self._primary, keys.encode())

    def finish(self) -> tuple[int, str]:
        """Wait (bounded) for the program to end; return its exit status and its stderr."""
        try:
            _, stderr = self.process.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"did not end; the screen: {self.display()}") from None
        return self.process.returncode, stderr

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=WAIT)
        self._reader.join(timeout=WAIT)
        os.close(self._primary)

    def __enter__(self) -> TerminalProgram:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
