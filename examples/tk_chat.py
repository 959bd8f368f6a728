"""A small Tk chat client: alvaro.sync with ``dispatch=``, so callbacks run on Tk's thread.

Run:  python examples/chat_host.py      then, once per person:
      python examples/tk_chat.py NAME [HOST] [PORT]

Tk is not thread-safe: widgets may only be touched from the thread running ``mainloop()``.
``dispatch=lambda f: root.after(0, f)`` makes alvaro hand every callback to Tk's own thread, so
they can update widgets directly. The chat logic lives in :class:`Chat`, free of Tk, so it can be
tested with any dispatcher.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import alvaro.sync

if TYPE_CHECKING:
    from collections.abc import Callable


class Chat:
    """Connects to a chat host, sends lines, and shows what others say through ``show``.

    Args:
        name: the name shown next to this user's lines.
        show: called with each line to display; runs wherever ``dispatch`` runs callbacks.
        dispatch: runs a zero-argument callable on the GUI's thread.
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
            self.client.send_data(text, metadata={"from": self.name})
            self.show(f"{self.name}: {text}")

    def close(self) -> None:
        """Leave the chat."""
        self.client.close()

    def _got_data(self, data: Any, metadata: dict[str, Any]) -> None:
        self.show(f"{metadata.get('from', '?')}: {data}")

    def _lost_connection(self) -> None:
        conn = self.client.connection
        reason = conn.close_reason if conn is not None else ""
        self.show(f"* disconnected {reason}".rstrip())


def main(argv: list[str]) -> None:
    """Open the chat window."""
    import tkinter as tk

    name = argv[0] if argv else "guest"
    host = argv[1] if len(argv) > 1 else "localhost"
    port = int(argv[2]) if len(argv) > 2 else 8888

    root = tk.Tk()
    root.title(f"alvaro chat - {name}")
    log = tk.Text(root, height=20, width=60, state="disabled")
    log.pack(fill="both", expand=True)
    entry = tk.Entry(root)
    entry.pack(fill="x")

    def show(line: str) -> None:
        log.configure(state="normal")
        log.insert("end", line + "\n")
        log.configure(state="disabled")
        log.see("end")

    chat = Chat(name, show, dispatch=lambda function: root.after(0, function))

    def send(_event: object) -> None:
        chat.say(entry.get())
        entry.delete(0, "end")

    entry.bind("<Return>", send)

    def close() -> None:
        chat.close()
        root.destroy()

    root.protocol("WM_DELETE_WINDOW", close)
    chat.connect(host, port)
    entry.focus()
    root.mainloop()


if __name__ == "__main__":
    main(sys.argv[1:])
