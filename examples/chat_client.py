"""The chat logic the Tk and Qt chat windows share, free of any GUI toolkit.

:class:`Chat` connects to ``examples/chat_host.py``, sends lines, and shows what the others say
through a ``show`` function that the window supplies. Its callbacks run wherever ``dispatch``
puts them: on the GUI thread with ``alvaro.gui.TkDispatcher`` or ``alvaro.gui.QtDispatcher``, so
``show`` may touch widgets directly.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import alvaro.sync

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


class Chat:
    """Connects to a chat host, sends lines, and shows what others say through ``show``.

    Args:
        name: the name shown next to this user's lines.
        show: called with each line to display; runs wherever ``dispatch`` runs callbacks
            (and on the caller's thread for the lines this user sends).
        dispatch: runs a zero-argument callable on the GUI's thread (``alvaro.gui``).
    """

    def __init__(
        self,
        name: str,
        show: Callable[[str], None],
        dispatch: Callable[[Callable[[], None]], object],
    ) -> None:
        self.name = name
        self.show = show
        self.client = alvaro.sync.Client(dispatch=dispatch)
        self.client.got_data = self._got_data
        self.client.lost_connection = self._lost_connection

    def connect(self, host: str, port: int) -> None:
        """Connect; raises alvaro.ConnectError if the host cannot be reached."""
        self.client.connect(host, port)
        self.show(f"* connected to {host}:{port} as {self.name}")

    def say(self, text: str) -> None:
        """Send a line to everyone else and show it locally."""
        if text.strip():
            # send_data never blocks: the GUI stays responsive whatever the network does.
            self.client.send_data(text, metadata={"from": self.name})
            self.show(f"{self.name}: {text}")

    def close(self) -> None:
        """Leave the chat; returns promptly, also on the GUI thread."""
        self.client.close()

    def _got_data(self, data: Any, metadata: dict[str, Any]) -> None:
        self.show(f"{metadata.get('from', '?')}: {data}")

    def _lost_connection(self) -> None:
        conn = self.client.connection
        reason = conn.close_reason if conn is not None else ""
        self.show(f"* disconnected {reason}".rstrip())


def parse_arguments(argv: Sequence[str], toolkit: str) -> argparse.Namespace:
    """The command line both chat windows take."""
    parser = argparse.ArgumentParser(description=f"A {toolkit} chat window over alvaro.")
    parser.add_argument("name", nargs="?", default="guest", help="your name in the chat")
    parser.add_argument("host", nargs="?", default="localhost", help="the chat host's address")
    parser.add_argument("port", nargs="?", type=int, default=8888, help="the chat host's port")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="also run the chat host (examples/chat_host.py) in this window's process",
    )
    return parser.parse_args(argv)
