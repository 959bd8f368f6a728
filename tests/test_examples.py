"""The examples work: the chat windows' logic through a fake GUI dispatcher, the basic sync client.

The windows themselves run on a real X screen in tests/gui/test_chat_windows.py.
"""

from __future__ import annotations

import importlib.util
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .helpers import WAIT, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import ModuleType

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeGui:
    """Stands in for a GUI main loop: runs dispatched callables, in order, on one thread."""

    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="fake-gui")
        self.thread.start()

    def dispatch(self, function: Callable[[], None]) -> None:
        self.calls.put(function)

    def _loop(self) -> None:
        while (function := self.calls.get()) is not None:
            function()

    def stop(self) -> None:
        self.calls.put(None)
        self.thread.join(WAIT)


@pytest.fixture
def chat_host() -> Iterator[int]:
    host = load("chat_host").make_host(0)
    host.start()
    try:
        yield host.port
    finally:
        host.close()


def test_chat_logic_delivers_on_the_gui_thread(chat_host: int) -> None:
    chat_client = load("chat_client")
    gui = FakeGui()
    shown: dict[str, list[tuple[str, str]]] = {"alice": [], "bob": []}

    def shower(name: str) -> Callable[[str], None]:
        return lambda line: shown[name].append((threading.current_thread().name, line))

    alice = chat_client.Chat("alice", shower("alice"), gui.dispatch)
    bob = chat_client.Chat("bob", shower("bob"), gui.dispatch)
    try:
        alice.connect("localhost", chat_host)
        bob.connect("localhost", chat_host)
        wait_until(lambda: any("welcome" in line for _, line in shown["bob"]))
        alice.say("hi bob")
        alice.say("   ")  # blank lines are not sent
        wait_until(lambda: any(line == "alice: hi bob" for _, line in shown["bob"]))
        bob.say("hello alice")
        wait_until(lambda: any(line == "bob: hello alice" for _, line in shown["alice"]))
    finally:
        alice.close()
        bob.close()
        gui.stop()
    # Every line that came from the network was shown on the GUI's thread.
    received = [entry for entry in shown["bob"] if entry[1] in ("alice: hi bob",)]
    assert received == [("fake-gui", "alice: hi bob")]
    assert ("fake-gui", "host: welcome to the chat") in shown["alice"]
    assert not any(line.endswith(": ") for _, line in shown["bob"])


def test_basic_sync_client_example_runs(chat_host: int, tmp_path: Path) -> None:
    script = tmp_path / "basic_client.py"
    script.write_text((EXAMPLES / "basic_client.py").read_text().replace("8888", str(chat_host)))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=WAIT, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Connected!"
