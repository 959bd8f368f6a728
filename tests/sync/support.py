"""Helpers of the alvaro.sync tests: echo hosts, watchdog threads, a fake GUI loop, a raw server."""

from __future__ import annotations

import queue
import socket
import threading
from typing import TYPE_CHECKING, Any, TypeVar

from alvaro.sync import Client, Connection, Host

from ..helpers import WAIT, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from alvaro.sync._loop import Backend

R = TypeVar("R")

LOOPBACK = "127.0.0.1"


def echo(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
    conn.send_data(data, metadata)


def echo_host(backend: Backend, **options: Any) -> Host:
    """A (not yet started) sync host on a free loopback port that sends every message back."""
    host = Host(LOOPBACK, 0, backend=backend, **options)
    host.got_data = echo  # type: ignore[method-assign]
    return host


def connect(client: Client, port: int) -> Connection:
    """``client.connect()`` to the loopback host, then wait (bounded) for ``client.connection``.

    The wait works around a library race (``connect()`` may return before ``client.connection``
    exists, see ``test_connection_is_ready_when_connect_returns``), so that the other tests are
    not flaky because of it.
    """
    client.connect(LOOPBACK, port)
    wait_until(lambda: client.connection is not None)
    assert client.connection is not None
    return client.connection


def call_in_thread(function: Callable[[], R], timeout: float = WAIT) -> R:
    """Run ``function`` in a watchdog thread; fail instead of hanging if it does not return."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="test-watchdog", daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"the call did not return within {timeout} s (deadlock?)"
    if "error" in outcome:
        raise outcome["error"]
    value: R = outcome["value"]
    return value


def on_loop(obj: Host | Client, function: Callable[[], R], timeout: float = WAIT) -> R:
    """Run the plain function ``function`` on the loop thread of ``obj``, under a watchdog."""
    portal = obj._runner.portal
    assert portal is not None, "the object holds no lease on the loop thread"
    return call_in_thread(lambda: portal.call(function), timeout)


def alvaro_threads() -> list[threading.Thread]:
    """The loop and dispatcher threads of alvaro.sync alive now."""
    return [thread for thread in threading.enumerate() if thread.name.startswith("alvaro-")]


def loop_threads() -> list[threading.Thread]:
    """The ``alvaro-<backend>-loop`` threads alive now."""
    return [thread for thread in alvaro_threads() if thread.name.endswith("-loop")]


class GuiLoop:
    """A fake GUI main loop: ``dispatch`` queues callables that its own thread runs in order."""

    name = "test-gui"

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.dispatched_from: list[str] = []
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def dispatch(self, function: Callable[[], None]) -> None:
        self.dispatched_from.append(threading.current_thread().name)
        self._queue.put(function)

    def _run(self) -> None:
        while True:
            function = self._queue.get()
            if function is None:
                return
            function()

    def __enter__(self) -> GuiLoop:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._queue.put(None)
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


class RawHttpServer:
    """A plain TCP server on loopback that answers one connection with an HTTP error."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind((LOOPBACK, 0))
        self._sock.listen()
        self._sock.settimeout(WAIT)
        self.port: int = self._sock.getsockname()[1]
        self.request = b""
        self._thread = threading.Thread(target=self._serve, name="test-http", daemon=True)

    def _serve(self) -> None:
        try:
            peer, _ = self._sock.accept()
        except OSError:
            return
        with peer:
            peer.settimeout(WAIT)
            try:
                self.request = peer.recv(4096)
                peer.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                peer.shutdown(socket.SHUT_WR)
                peer.recv(4096)  # until the client closes
            except OSError:
                pass

    def __enter__(self) -> RawHttpServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._sock.close()
        self._thread.join(WAIT)
        assert not self._thread.is_alive()
