"""A small Qt chat window: alvaro.sync with ``alvaro.gui.QtDispatcher``, so callbacks run on the
GUI thread.

Needs PySide6 (``pip install PySide6-Essentials``) or PyQt6 (change the imports below).
Run:  python examples/chat_host.py      then, once per person:
      python examples/qt_chat.py NAME [HOST] [PORT]
or, for the first person, without a separate host:
      python examples/qt_chat.py NAME localhost 8888 --serve

Qt widgets may only be touched from the GUI thread. ``dispatch=alvaro.gui.QtDispatcher()``
makes alvaro hand every callback to it through a queued signal, so they update widgets
directly, and handing them over never waits for the GUI. Enter or the Send button sends;
Ctrl+Q or the window's close button leaves. Each line shown is also printed.
"""

from __future__ import annotations

import sys

from chat_client import Chat, parse_arguments
from chat_host import make_host
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

import alvaro
import alvaro.gui
import alvaro.sync


class ChatWindow(QWidget):
    """A message list, an entry and a Send button, over a :class:`Chat`."""

    def __init__(self, name: str, host: alvaro.sync.Host | None) -> None:
        super().__init__()
        self.host = host
        self.setWindowTitle(f"alvaro chat - {name}")
        self.messages = QListWidget()
        self.entry = QLineEdit()
        send = QPushButton("Send")
        row = QHBoxLayout()
        row.addWidget(self.entry)
        row.addWidget(send)
        layout = QVBoxLayout(self)
        layout.addWidget(self.messages)
        layout.addLayout(row)
        self.resize(460, 360)
        # Made on the GUI thread, after the QApplication: callbacks run on this thread.
        self.chat = Chat(name, self.show_line, dispatch=alvaro.gui.QtDispatcher())
        send.clicked.connect(self.send)
        self.entry.returnPressed.connect(self.send)
        QShortcut(QKeySequence("Ctrl+Q"), self, self.close)

    def show_line(self, line: str) -> None:  # on the GUI thread, always
        self.messages.addItem(line)
        self.messages.scrollToBottom()
        print(line, flush=True)

    def send(self) -> None:
        self.chat.say(self.entry.text())
        self.entry.clear()

    def closeEvent(self, event: QCloseEvent) -> None:  # Qt calls it by this name
        self.chat.close()  # returns promptly: alvaro never waits for the GUI thread
        if self.host is not None:
            self.host.close()
        event.accept()


def main(argv: list[str]) -> int:
    """Open the chat window; returns the exit status."""
    arguments = parse_arguments(argv, "Qt")
    app = QApplication(sys.argv[:1])
    host = make_host(arguments.port) if arguments.serve else None
    if host is not None:
        host.start()
    window = ChatWindow(arguments.name, host)
    try:
        window.chat.connect(arguments.host, host.port if host is not None else arguments.port)
    except alvaro.ConnectError as exc:
        print(f"cannot connect: {exc}", file=sys.stderr)
        window.close()
        return 1
    window.show()
    window.entry.setFocus()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
