"""A small Tk chat window: alvaro.sync with ``alvaro.gui.TkDispatcher``, so callbacks run on Tk's
thread.

Run:  python examples/chat_host.py      then, once per person:
      python examples/tk_chat.py NAME [HOST] [PORT]
or, for the first person, without a separate host:
      python examples/tk_chat.py NAME localhost 8888 --serve

Tk is not thread-safe: widgets may only be touched from the thread running ``mainloop()``.
``dispatch=alvaro.gui.TkDispatcher(root)`` makes alvaro hand every callback to Tk's thread, so
they update widgets directly, and handing them over never waits for Tk. Enter or the Send button
sends; Ctrl+Q or the window's close button leaves. Each line shown is also printed.
"""

from __future__ import annotations

import sys
import tkinter as tk

from chat_client import Chat, parse_arguments
from chat_host import make_host

import alvaro
import alvaro.gui


def main(argv: list[str]) -> int:
    """Open the chat window; returns the exit status."""
    arguments = parse_arguments(argv, "Tk")
    host = make_host(arguments.port) if arguments.serve else None
    if host is not None:
        host.start()

    root = tk.Tk()
    root.title(f"alvaro chat - {arguments.name}")
    messages = tk.Listbox(root, height=20, width=60)
    messages.pack(fill="both", expand=True)
    row = tk.Frame(root)
    row.pack(fill="x")
    entry = tk.Entry(row)
    entry.pack(side="left", fill="x", expand=True)

    def show(line: str) -> None:  # on Tk's thread, always
        messages.insert("end", line)
        messages.see("end")
        print(line, flush=True)

    chat = Chat(arguments.name, show, dispatch=alvaro.gui.TkDispatcher(root))

    def send(_event: object = None) -> None:
        chat.say(entry.get())
        entry.delete(0, "end")

    def close(_event: object = None) -> None:
        chat.close()  # returns promptly: alvaro never waits for Tk's thread
        if host is not None:
            host.close()
        root.destroy()

    tk.Button(row, text="Send", command=send).pack(side="right")
    entry.bind("<Return>", send)
    root.bind("<Control-q>", close)
    root.protocol("WM_DELETE_WINDOW", close)
    try:
        chat.connect(arguments.host, host.port if host is not None else arguments.port)
    except alvaro.ConnectError as exc:
        print(f"cannot connect: {exc}", file=sys.stderr)
        close()
        return 1
    entry.focus_set()
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
