"""Dispatchers that run alvaro.sync callbacks on a GUI's own thread: Tk and Qt.

GUI toolkits let only their own thread touch widgets. Pass one of these as ``dispatch=`` to an
:mod:`alvaro.sync` ``Host`` or ``Client``, and every callback of that object runs on the GUI
thread, in order, where it may update widgets directly::

    root = tkinter.Tk()
    client = alvaro.sync.Client(dispatch=alvaro.gui.TkDispatcher(root))

    app = QApplication(sys.argv)
    client = alvaro.sync.Client(dispatch=alvaro.gui.QtDispatcher())

Handing a callback over never blocks the thread that hands it over (alvaro's dispatcher thread,
which the event loop never waits for): :class:`TkDispatcher` puts it on a queue that Tk's thread
drains every few milliseconds, :class:`QtDispatcher` emits a signal with a queued connection.
So a busy GUI (a slow callback, a dialog, a ``close()`` called on the GUI thread) slows only its
own callbacks, and closing a window never hangs.

Once the GUI is gone (the Tk widget destroyed, the Qt application quitting), the callbacks not
yet run and those handed over later are dropped, with one INFO line on the ``alvaro.gui`` logger
for the dispatcher's whole life: that happens at every close that races with a last callback
(``lost_connection``), so it is no warning. Nothing raises and nothing waits for the GUI.

Importing this module imports neither tkinter nor Qt: Qt (PySide6, or PyQt6 if PySide6 is
absent or PyQt6 is the one already imported) is loaded when the first :class:`QtDispatcher` is
made.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import queue
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import tkinter
    from collections.abc import Callable

__all__ = ("QtDispatcher", "TkDispatcher")

logger = logging.getLogger("alvaro.gui")

#: The Qt bindings QtDispatcher can use, in order of preference.
QT_BINDINGS: Final = ("PySide6", "PyQt6")


class _Pending:
    """What a dispatcher was given and has not run yet, whether its GUI is gone, and what it
    dropped since.

    Shared by both dispatchers: the hand-over side (any thread) and the GUI side meet here.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._closed = ""  # why, once the GUI is gone
        self._told = False
        self.dropped = 0

    @property
    def closed(self) -> bool:
        return bool(self._closed)

    def accept(self) -> bool:
        """Count one callable in; False (and it is dropped) if the GUI is gone."""
        with self._lock:
            if not self._closed:
                self._count += 1
                return True
            self.dropped += 1
        self._tell()
        return False

    def done(self) -> None:
        with self._lock:
            self._count -= 1

    def close(self, why: str) -> None:
        """Drop every callable from now on, and those not yet run."""
        with self._lock:
            if self._closed:
                return
            self._closed = why
            self.dropped += self._count
            self._count = 0
        if self.dropped:
            self._tell()

    def _tell(self) -> None:
        # Once per dispatcher: a GUI that is gone may be handed thousands of callables.
        with self._lock:
            told, self._told = self._told, True
        if not told:
            logger.info("%s: alvaro callbacks are dropped from now on", self._closed)


class _GuiDispatcher:
    """What both dispatchers tell about a GUI that is gone."""

    _pending: _Pending

    @property
    def closed(self) -> bool:
        """Whether the GUI is gone (Tk widget destroyed, Qt application quitting) or
        ``close()`` was called: callables are dropped from then on."""
        return self._pending.closed

    @property
    def dropped(self) -> int:
        """How many callables were dropped because the GUI was gone."""
        return self._pending.dropped


def _drop(function: Callable[[], None]) -> None:
    # alvaro.sync's callables have drop(): without it, each one never run would count as
    # pending, and after a few dozen the connection would stop reading.
    drop = getattr(function, "drop", None)
    if callable(drop):
        drop()


def _run(function: Callable[[], None]) -> None:
    # alvaro.sync's callables log their own errors; a user's own may not, and one that raises
    # must not stop the callables after it.
    try:
        function()
    except Exception:
        logger.exception("a callable run by an alvaro.gui dispatcher raised")


class TkDispatcher(_GuiDispatcher):
    """Runs callables on the Tk thread of ``root``: pass it as ``dispatch=`` to alvaro.sync.

    Make it on Tk's thread (the one that runs ``mainloop()``), after the widget. Calling it, from
    any thread, puts the callable on a queue and returns at once; Tk's thread runs what is queued,
    in order, every ``interval`` seconds while its event loop runs. Unlike ``root.after(0, f)``
    called from another thread (which waits for Tk's thread on a threaded Tcl, and fails on an
    unthreaded one), it never waits.

    When ``root`` is destroyed, the callables still queued and those given later are dropped,
    with one INFO line on the ``alvaro.gui`` logger; nothing raises and nothing waits.

    Args:
        root: the Tk root, or any widget; polling stops when it is destroyed.
        interval: seconds between two looks at the queue (the most a callback waits on an idle
            GUI). Must be positive.

    Raises:
        ValueError: ``interval`` is not positive.
    """

    def __init__(self, root: tkinter.Misc, *, interval: float = 0.01) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, not {interval!r}")
        # Weak: the last reference to a Tk object must never go on another thread (alvaro's,
        # when a client holding this dispatcher is collected there), which aborts Tcl.
        self._root = weakref.ref(root)
        self._delay = max(1, round(interval * 1000))
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._pending = _Pending()
        # Bound on the widget itself: a toplevel's binding also fires for each of its children,
        # which _destroyed tells apart.
        root.bind("<Destroy>", self._destroyed, add="+")
        self._after = root.after(self._delay, self._drain)

    def __call__(self, function: Callable[[], None]) -> None:
        """Queue ``function`` to run on Tk's thread and return at once; safe from any thread.

        Once the widget is destroyed (or :meth:`close` was called), ``function`` is dropped.
        """
        if self._pending.accept():
            self._queue.put(function)
        else:
            _drop(function)

    def close(self) -> None:
        """Stop running callables: those queued and those given later are dropped.

        For a GUI that goes on without alvaro; destroying the widget does the same. Call it on
        Tk's thread.
        """
        import tkinter

        self._pending.close("the TkDispatcher was closed")
        root = self._root()
        if root is not None:
            # Fails only when the widget is already gone, and with it what was scheduled.
            with contextlib.suppress(tkinter.TclError):
                root.after_cancel(self._after)
        self._discard()

    def _drain(self) -> None:
        # Tk's thread. Only what is queued now runs in this turn, so that callables queueing
        # more cannot keep Tk from drawing and handling input.
        for _ in range(self._queue.qsize()):
            if self._pending.closed:
                return
            try:
                function = self._queue.get_nowait()
            except queue.Empty:  # pragma: no cover - only this thread takes from the queue
                break
            self._pending.done()
            _run(function)
        root = self._root()
        if root is None:
            self._pending.close("the Tk widget was deleted")
        elif not self._pending.closed:
            self._after = root.after(self._delay, self._drain)

    def _destroyed(self, event: tkinter.Event[tkinter.Misc]) -> None:
        root = self._root()
        if root is None or event.widget is root or str(event.widget) == str(root):
            self._pending.close("the Tk widget was destroyed")
            self._discard()

    def _discard(self) -> None:
        while True:
            try:
                _drop(self._queue.get_nowait())
            except queue.Empty:
                return


class QtDispatcher(_GuiDispatcher):
    """Runs callables on the Qt GUI thread: pass it as ``dispatch=`` to alvaro.sync.

    Make it on the GUI thread, after the ``QApplication`` (or ``QCoreApplication``). Calling it,
    from any thread, emits a signal whose queued connection runs the callable on the GUI thread
    when its event loop gets to it, in the order emitted; it never waits.

    When the application is about to quit, the callables not yet run and those given later are
    dropped, with one INFO line on the ``alvaro.gui`` logger; nothing raises and nothing waits.

    Uses PySide6, or PyQt6: whichever of them the program has already imported, else PySide6 if
    installed (the ``qt`` extra of this project installs it), else PyQt6.

    Raises:
        ModuleNotFoundError: neither PySide6 nor PyQt6 is installed.
        RuntimeError: there is no ``QCoreApplication`` yet, or this is not its thread.
    """

    def __init__(self) -> None:
        qt_core, signal = _qt()
        app = qt_core.QCoreApplication.instance()
        if app is None:
            raise RuntimeError("make the QApplication before the QtDispatcher")
        if qt_core.QThread.currentThread() != app.thread():
            raise RuntimeError("make the QtDispatcher on the Qt GUI thread")
        self._pending = _Pending()
        self._binding: str = qt_core.__name__.split(".")[0]
        # The receiver lives on this (the GUI) thread, so its queued slot runs there. Owned by
        # the application, so that it is deleted on this thread too, never on the thread that
        # happens to drop the last reference to this dispatcher.
        self._receiver = _receiver_class(qt_core, signal)(self._pending, app)
        app.aboutToQuit.connect(self._quitting)

    @property
    def binding(self) -> str:
        """The Qt binding in use: ``"PySide6"`` or ``"PyQt6"``."""
        return self._binding

    def __call__(self, function: Callable[[], None]) -> None:
        """Have ``function`` run on the GUI thread and return at once; safe from any thread.

        Once the application is quitting (or :meth:`close` was called), ``function`` is dropped.
        """
        if not self._pending.accept():
            _drop(function)
            return
        try:
            self._receiver.deliver.emit(function)
        except RuntimeError:
            # The receiver's Qt object was deleted meanwhile: the application is torn down.
            self._pending.close("the Qt application is gone")
            _drop(function)

    def close(self) -> None:
        """Stop running callables: those not yet run and those given later are dropped."""
        self._pending.close("the QtDispatcher was closed")

    def _quitting(self) -> None:
        self._pending.close("the Qt application is quitting")


def _qt() -> tuple[Any, Any]:
    """Qt's ``QtCore`` module and its signal class, from the binding to use."""
    loaded = [name for name in QT_BINDINGS if f"{name}.QtCore" in sys.modules]
    for name in [*loaded, *QT_BINDINGS]:
        try:
            qt_core = importlib.import_module(f"{name}.QtCore")
        except ImportError:
            continue
        return qt_core, qt_core.Signal if name == "PySide6" else qt_core.pyqtSignal
    raise ModuleNotFoundError(
        "QtDispatcher needs PySide6 or PyQt6: pip install PySide6-Essentials", name="PySide6"
    )


_receivers: dict[str, type[Any]] = {}


def _receiver_class(qt_core: Any, signal: Any) -> type[Any]:
    """The QObject class whose queued slot runs callables, made once per binding (a Qt signal
    must be declared on a class, which needs Qt imported)."""
    name: str = qt_core.__name__
    made = _receivers.get(name)
    if made is not None:
        return made

    class Receiver(qt_core.QObject):  # type: ignore[misc]
        deliver = signal(object)

        def __init__(self, pending: _Pending, parent: Any) -> None:
            super().__init__(parent)
            self._pending = pending
            self.deliver.connect(self._run, qt_core.Qt.ConnectionType.QueuedConnection)

        def _run(self, function: Callable[[], None]) -> None:
            if self._pending.closed:
                _drop(function)
                return
            self._pending.done()
            _run(function)

    _receivers[name] = Receiver
    return Receiver
