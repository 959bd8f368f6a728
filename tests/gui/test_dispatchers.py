"""alvaro.gui's dispatchers with real alvaro.sync objects, on both loop backends.

The test's own thread is the GUI thread: it makes the Tk root (on the Xvfb screen) or uses the
process's QCoreApplication (Qt needs no screen for this), and runs their event loops in bounded
steps until what it waits for has happened.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

import alvaro.gui
import alvaro.sync

from ..helpers import WAIT, checkout_env

if TYPE_CHECKING:
    import tkinter
    from collections.abc import Callable, Iterator

    from alvaro.sync._loop import Backend

COUNT = 100


def run_until(step: Callable[[], object], done: Callable[[], bool], timeout: float = WAIT) -> None:
    """Run the GUI's event loop by steps until ``done()``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not done within {timeout} s")
        step()
        time.sleep(0.002)


@pytest.fixture
def root(x_display: str) -> Iterator[tkinter.Tk]:
    tkinter = pytest.importorskip("tkinter", reason="this Python has no tkinter")
    made = tkinter.Tk(screenName=x_display)
    try:
        yield made
    finally:
        with contextlib.suppress(tkinter.TclError):  # a test may have destroyed it
            made.destroy()
        # Tk objects must be deleted on Tk's thread: collect those the test left in reference
        # cycles here, before a collection on some other thread does (which aborts Tcl).
        del made
        gc.collect()


@pytest.fixture(scope="session")
def qt_app() -> Any:
    """The process's QCoreApplication (one per process, kept for the session)."""
    qt_core = pytest.importorskip("PySide6.QtCore", reason="PySide6 is not installed")
    return qt_core.QCoreApplication.instance() or qt_core.QCoreApplication([])


@pytest.fixture
def host(sync_backend: Backend) -> Iterator[alvaro.sync.Host]:
    """A host that sends each new client COUNT numbered messages, and COUNT more on request."""
    made = alvaro.sync.Host("127.0.0.1", 0, backend=sync_backend)

    def burst(conn: alvaro.sync.Connection) -> None:
        for number in range(COUNT):
            conn.send_data(number)

    made.new_client = burst
    made.got_data = lambda conn, data, metadata: burst(conn)
    made.start()
    try:
        yield made
    finally:
        made.close()


class Recorder:
    """A client's callbacks, recording what ran and on which thread."""

    def __init__(self, client: alvaro.sync.Client) -> None:
        self.events: list[tuple[int, Any]] = []
        client.made_connection = lambda: self.events.append((threading.get_ident(), "made"))
        client.got_data = lambda data, metadata: self.events.append((threading.get_ident(), data))
        client.lost_connection = lambda: self.events.append((threading.get_ident(), "lost"))

    def seen(self, item: object) -> bool:
        return any(value == item for _, value in self.events)


def check_delivery(
    host: alvaro.sync.Host,
    backend: Backend,
    dispatch: Callable[[Callable[[], None]], object],
    step: Callable[[], object],
) -> None:
    """Callbacks run on this (the GUI) thread, in order; close() here returns while one is due."""
    client = alvaro.sync.Client(backend=backend, dispatch=dispatch)
    recorder = Recorder(client)
    client.connect("127.0.0.1", host.port)
    run_until(step, lambda: recorder.seen(COUNT - 1))
    # close() on the GUI thread returns though lost_connection must wait for this thread...
    client.close()
    assert not recorder.seen("lost")
    # ...which runs it once back in its event loop.
    run_until(step, lambda: recorder.seen("lost"))
    assert {thread for thread, _ in recorder.events} == {threading.get_ident()}
    assert [value for _, value in recorder.events] == ["made", *range(COUNT), "lost"]


def check_gone(
    host: alvaro.sync.Host,
    backend: Backend,
    dispatcher: alvaro.gui.TkDispatcher | alvaro.gui.QtDispatcher,
    step: Callable[[], object],
    end_gui: Callable[[], object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once the GUI is gone, callbacks are dropped: nothing raises, hangs or floods the log."""
    caplog.set_level(logging.INFO, logger="alvaro")
    client = alvaro.sync.Client(backend=backend, dispatch=dispatcher)
    recorder = Recorder(client)
    client.connect("127.0.0.1", host.port)
    run_until(step, lambda: recorder.seen(0))
    end_gui()
    assert dispatcher.closed
    seen = len(recorder.events)
    client.send_data("more")  # COUNT more messages, for a GUI that is gone
    run_until(lambda: None, lambda: dispatcher.dropped >= COUNT)
    dispatcher(lambda: None)  # a direct call does not raise either
    client.close()  # returns: nothing waits for the GUI
    assert len(recorder.events) == seen  # nothing ran after the GUI was gone
    # One line for all of it, and no warning: a close racing with the last callback is normal.
    assert [r.levelname for r in caplog.records if r.name == "alvaro.gui"] == ["INFO"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_importing_alvaro_gui_loads_no_toolkit() -> None:
    code = (
        "import sys, alvaro.gui\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tkinter', '_tkinter', 'PySide6', 'PyQt6', 'shiboken6')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    assert done.stdout.strip() == "[]"


def test_tk_callbacks_run_on_tk_thread_in_order(
    root: tkinter.Tk, host: alvaro.sync.Host, sync_backend: Backend
) -> None:
    check_delivery(host, sync_backend, alvaro.gui.TkDispatcher(root), root.update)


def test_qt_callbacks_run_on_gui_thread_in_order(
    qt_app: Any, host: alvaro.sync.Host, sync_backend: Backend
) -> None:
    dispatcher = alvaro.gui.QtDispatcher()
    assert dispatcher.binding == "PySide6"
    check_delivery(host, sync_backend, dispatcher, qt_app.processEvents)


def test_tk_root_destroyed_drops_callbacks(
    root: tkinter.Tk,
    host: alvaro.sync.Host,
    sync_backend: Backend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = alvaro.gui.TkDispatcher(root)
    check_gone(host, sync_backend, dispatcher, root.update, root.destroy, caplog)


def test_qt_application_quit_drops_callbacks(
    qt_app: Any, host: alvaro.sync.Host, sync_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    from PySide6.QtCore import QTimer

    dispatcher = alvaro.gui.QtDispatcher()

    def quit_application() -> None:
        QTimer.singleShot(0, qt_app.quit)
        qt_app.exec()  # returns at once, having said aboutToQuit

    check_gone(host, sync_backend, dispatcher, qt_app.processEvents, quit_application, caplog)


def test_tk_dispatcher_goes_on_after_a_callable_raises(
    root: tkinter.Tk, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher = alvaro.gui.TkDispatcher(root)
    ran: list[str] = []

    def hand_over() -> None:  # from another thread, as alvaro.sync's dispatcher does
        dispatcher(lambda: 1 / 0)
        dispatcher(lambda: ran.append("next"))

    worker = threading.Thread(target=hand_over)
    worker.start()
    worker.join(WAIT)
    run_until(root.update, lambda: bool(ran))
    assert "ZeroDivisionError" in caplog.text


def test_tk_dispatcher_checks_its_interval(root: tkinter.Tk) -> None:
    with pytest.raises(ValueError, match="interval"):
        alvaro.gui.TkDispatcher(root, interval=0)


def test_qt_dispatcher_is_made_on_the_gui_thread(qt_app: Any) -> None:
    raised: list[BaseException] = []

    def make() -> None:
        try:
            alvaro.gui.QtDispatcher()
        except RuntimeError as exc:
            raised.append(exc)

    worker = threading.Thread(target=make)
    worker.start()
    worker.join(WAIT)
    assert len(raised) == 1
    assert "GUI thread" in str(raised[0])


def check_requests(
    host: alvaro.sync.Host,
    backend: Backend,
    dispatch: Callable[[Callable[[], None]], object],
    step: Callable[[], object],
) -> None:
    """The GUI form of requests: request_nowait() returns at once on the GUI thread, and the
    answer (or the failure) runs there too, through the dispatcher; a request the client
    answers runs there as well."""
    host.got_request = lambda conn, data, metadata: {"echo": data}
    client = alvaro.sync.Client(backend=backend, dispatch=dispatch)
    outcomes: list[tuple[int, object]] = []
    client.got_request = lambda data, metadata: (threading.get_ident(), data)
    # Take the host's burst of messages: answers are read in turn with messages, so a client
    # that leaves its queue full gets no answer either.
    client.got_data = lambda data, metadata: None
    client.connect("127.0.0.1", host.port)
    try:
        client.request_nowait(
            "ping", on_reply=lambda message: outcomes.append((threading.get_ident(), message.data))
        )
        client.request_nowait(
            b"\xff" * (2**21),  # over the host's max_message_size: fails, and says so
            on_reply=lambda message: outcomes.append((threading.get_ident(), "unexpected")),
            on_error=lambda error: outcomes.append((threading.get_ident(), type(error).__name__)),
        )
        run_until(step, lambda: len(outcomes) == 2)
        assert sorted(outcomes, key=str) == sorted(
            [(threading.get_ident(), {"echo": "ping"}), (threading.get_ident(), "MessageTooLarge")],
            key=str,
        )
        # The host asks the GUI client: its handler runs on the GUI thread, and the host waits
        # in a thread of its own meanwhile (never this one, which must keep stepping).
        answers: list[object] = []
        asker = threading.Thread(
            target=lambda: answers.append(host.clients[0].request("hi", timeout=WAIT).data)
        )
        asker.start()
        run_until(step, lambda: bool(answers))
        asker.join(WAIT)
        assert answers == [[threading.get_ident(), "hi"]]
    finally:
        client.close()


def test_tk_requests_answer_on_tk_thread(
    root: tkinter.Tk, host: alvaro.sync.Host, sync_backend: Backend
) -> None:
    check_requests(host, sync_backend, alvaro.gui.TkDispatcher(root), root.update)


def test_qt_requests_answer_on_gui_thread(
    qt_app: Any, host: alvaro.sync.Host, sync_backend: Backend
) -> None:
    check_requests(host, sync_backend, alvaro.gui.QtDispatcher(), qt_app.processEvents)
