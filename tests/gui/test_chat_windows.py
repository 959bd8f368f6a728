"""The Tk and the Qt chat windows of examples/, chatting through a real host, on a real X screen.

Each program runs as a user starts it, as a process of its own; xdotool types into one window as a
user would, and the line must show in the other window (the examples print each line they show).
Ctrl+Q closes each window, and each process must then end by itself, with status 0. A screenshot
of each window is written under the artefacts folder (tests/gui/conftest.py).
"""

from __future__ import annotations

import re
import signal
import subprocess
from typing import TYPE_CHECKING

import pytest

from ..helpers import ROOT, WAIT, checkout_env
from ..processes import Peer
from ..terminal import TerminalProgram
from .conftest import gui_environment, screenshot

if TYPE_CHECKING:
    from collections.abc import Iterator

pytest.importorskip("tkinter", reason="this Python has no tkinter")

EXAMPLES = ROOT / "examples"


def xdotool(display: str, *args: str) -> str:
    """Run xdotool on ``display``; its output, stripped."""
    done = subprocess.run(
        ["xdotool", *args],
        env=gui_environment(display),
        capture_output=True,
        text=True,
        timeout=3 * WAIT,
        check=True,
    )
    return done.stdout.strip()


def window_of(display: str, title: str) -> str:
    """The id of the visible window called ``title``; waits until it is mapped."""
    return xdotool(display, "search", "--sync", "--onlyvisible", "--name", f"^{title}$").split()[0]


def type_line(display: str, window: str, text: str) -> None:
    """Focus ``window`` and type ``text`` then Enter there, as a user at the keyboard."""
    xdotool(display, "windowfocus", "--sync", window)
    xdotool(display, "type", "--delay", "20", text)
    xdotool(display, "key", "Return")


@pytest.fixture
def chat_port() -> Iterator[int]:
    """A chat host (examples/chat_host.py) running as a process; its port."""
    with Peer(str(EXAMPLES / "chat_host.py"), "0", env=checkout_env()) as host:
        found = re.search(r":(\d+);", host.wait_for("chat host on "))
        assert found is not None, host.describe()
        yield int(found.group(1))
        host.signal(signal.SIGINT)  # Ctrl+C, as its usage line says
        assert host.finish() == 0, host.describe()


def chat_window(display: str, program: str, name: str, port: int) -> Peer:
    environment = gui_environment(display)
    environment["QT_QPA_PLATFORM"] = "xcb"
    return Peer(str(EXAMPLES / program), name, "127.0.0.1", str(port), env=environment)


def test_tk_and_qt_windows_chat_and_close(qt_on_x: str, chat_port: int) -> None:
    """A Tk window, a Qt window and `alvaro connect` in a terminal chat, as docs/gui.md says."""
    display = qt_on_x
    with (
        chat_window(display, "tk_chat.py", "alice", chat_port) as tk,
        chat_window(display, "qt_chat.py", "bob", chat_port) as qt,
        TerminalProgram("connect", "127.0.0.1", str(chat_port)) as term,
    ):
        for window in (tk, qt):
            window.wait_for("host: welcome to the chat")
        term.wait_for_line('< "welcome to the chat"  {"from": "host"}')
        term.type('/meta {"from": "carol"}\r')
        term.wait_for_line('metadata: {"from": "carol"}')
        tk_window = window_of(display, "alvaro chat - alice")
        qt_window = window_of(display, "alvaro chat - bob")
        # Side by side (there is no window manager to place them), so that each screenshot
        # shows its own window whole.
        xdotool(display, "windowmove", "--sync", qt_window, "550", "0")

        type_line(display, tk_window, "hello from Tk")
        qt.wait_for("alice: hello from Tk")
        tk.wait_for("alice: hello from Tk")  # shown in the sender's own window too
        type_line(display, qt_window, "hello from Qt")
        tk.wait_for("bob: hello from Qt")
        term.wait_for_line('< "hello from Tk"  {"from": "alice"}')
        term.wait_for_line('< "hello from Qt"  {"from": "bob"}')
        term.type("hello from a terminal\r")
        tk.wait_for("carol: hello from a terminal")
        qt.wait_for("carol: hello from a terminal")
        term.type("/quit\r")
        assert term.finish() == (0, "")

        screenshot(display, tk_window, "tk_chat")
        screenshot(display, qt_window, "qt_chat")

        for window_id, program in ((tk_window, tk), (qt_window, qt)):
            xdotool(display, "windowfocus", "--sync", window_id)
            xdotool(display, "key", "ctrl+q")
            # Ends by itself, promptly (finish() fails after WAIT), and cleanly.
            assert program.finish() == 0, program.describe()
            assert not program.errors("Traceback"), program.describe()
        # Each window showed each line once: nothing lost, nothing doubled.
        assert tk.lines("bob: ") == ["bob: hello from Qt"]
        assert qt.lines("alice: ") == ["alice: hello from Tk"]
        assert tk.lines("carol: ") == qt.lines("carol: ") == ["carol: hello from a terminal"]
