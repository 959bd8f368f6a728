"""Handing work from the event loop to plain threads, in order and with bounded memory.

The loop side never blocks: it hands a callable (:class:`Dispatcher`) or a message
(:class:`Inbox`) over and awaits only when ``limit`` of them are still waiting, which stops the
connection's reader and so pushes back on the peer through TCP. The thread side wakes the loop
only when it makes room after such a wait, so the common path costs no cross-thread call.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Final

import anyio

from ..aio._loop import LoopHandle

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable

    from ..exceptions import ConnectionClosed
    from ..protocol import Message

__all__ = ("HANDOFF_FACTOR", "Dispatcher", "Inbox")


#: alvaro.sync lets this many times ``max_queue`` messages wait for the callback thread or for
#: ``receive()``. Each hand-over across threads costs two wake-ups when the loop has to wait, and
#: at ``max_queue`` (16) those made a sync host three times slower than an async one; at four
#: times that, batches are large enough that the cost vanishes (measured 39k -> 65-75k msgs/s).
HANDOFF_FACTOR: Final = 4


class _Bounded:
    """Counts items handed over and not yet consumed; the loop waits while over ``limit``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._pending = 0
        self._room: anyio.Event | None = None
        self._loop: LoopHandle | None = None
        self._unbounded = False

    def unblock(self) -> None:
        """Stop holding the loop back, from now on; safe from any thread.

        Called when closing everything: the thread that would make room may be the one waiting
        for the close (a callback calling ``close()``), so the loop must not wait for it.
        """
        with self._lock:
            self._unbounded = True
        self.kick()

    def bound(self) -> None:
        """Hold the loop back again at ``limit`` (for a new connection)."""
        with self._lock:
            self._unbounded = False

    def kick(self) -> None:
        """Wake the loop side if it waits, so it checks again whether to give up; any thread."""
        with self._lock:
            room, self._room = self._room, None
        if room is not None and self._loop is not None:
            self._loop.call_soon(room.set)

    def _count(self) -> None:
        """Loop side: count one more item handed over."""
        if self._loop is None:
            self._loop = LoopHandle()
        with self._lock:
            self._pending += 1

    async def _wait_for_room(self, give_up: Callable[[], bool] | None) -> None:
        """Loop side: wait while over the limit, unless ``give_up()`` says to stop holding back."""
        while True:
            with self._lock:
                if self._pending <= self._limit or self._unbounded:
                    return
                if give_up is not None and give_up():
                    return
                room = self._room
                if room is None:
                    room = self._room = anyio.Event()
            await room.wait()

    def _consumed(self) -> None:
        """Thread side: one item was consumed; wake the loop if it waits and there is room now."""
        with self._lock:
            self._pending -= 1
            room = self._room
            if room is None or self._pending > self._limit:
                return
            self._room = None
        if self._loop is not None:
            self._loop.call_soon(room.set)


class Dispatcher(_Bounded):
    """Runs one sync object's callbacks in order, never on the event-loop thread.

    The loop thread only appends each callback to a queue; a thread of the dispatcher's own, started
    when the first one arrives, takes them from there. By default that thread runs them. With
    ``dispatch``, it passes each one to that function instead, which must run it once, in the order
    given: ``root.after(0, f)`` for Tk, emitting a queued Qt signal, ... Such a function may block
    (Tk's ``after`` called from another thread waits for the Tk thread), and the GUI thread may be
    busy or waiting for alvaro itself (in ``close()``): only this dispatcher's thread then waits,
    never the loop, so other connections and other alvaro objects go on, and the GUI's own calls
    into alvaro return.

    A callback that raises is logged with its traceback; the sync objects' own wrappers decide
    what else happens (closing the connection concerned).

    Each callable given to ``dispatch`` also has a ``drop()`` method: a dispatch function that
    will never run it (its GUI is gone, as with :mod:`alvaro.gui`) calls that instead, so that
    the loop stops counting it as pending and goes on reading.
    """

    def __init__(
        self,
        *,
        dispatch: Callable[[Callable[[], None]], object] | None,
        limit: int,
        name: str,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        super().__init__(limit)
        self._dispatch = dispatch
        self._name = name
        self._logger = logger
        # Each thread has a queue of its own, so that a thread started after stop() never takes
        # callbacks that an earlier one (still finishing) was given, which would break the order.
        # None in a queue tells its thread to stop.
        self._queue: queue.SimpleQueue[Callable[[], None] | None] | None = None
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        # Loop side: the barriers waiting for their turn, released early by unblock().
        self._barriers: set[anyio.Event] = set()
        self._dispatch_failed = False

    @property
    def thread(self) -> threading.Thread | None:
        """The dispatcher's own thread, if it runs one."""
        return self._thread

    async def submit(
        self, function: Callable[[], None], give_up: Callable[[], bool] | None = None
    ) -> None:
        """Loop side: schedule ``function``; then wait while more than ``limit`` callbacks are
        pending, unless ``give_up()`` turns true (checked again after each :meth:`kick`)."""
        self._count()
        self._hand_over(function)
        await self._wait_for_room(give_up)

    async def barrier(self) -> None:
        """Loop side: wait until every callback scheduled so far has run, or until
        :meth:`unblock` (the thread that would run them may be the one closing)."""
        loop = LoopHandle()
        done = anyio.Event()
        with self._lock:
            if self._unbounded:
                return
            self._loop = loop
            self._barriers.add(done)

        def reached() -> None:
            loop.call_soon(done.set)

        try:
            self.submit_nowait(reached)
            await done.wait()
        finally:
            with self._lock:
                self._barriers.discard(done)

    def unblock(self) -> None:
        """Stop holding the loop back, from now on, barriers included; safe from any thread."""
        super().unblock()
        with self._lock:
            barriers = list(self._barriers)
        if barriers and self._loop is not None:
            for done in barriers:
                self._loop.call_soon(done.set)

    @property
    def dispatching(self) -> bool:
        """Whether callbacks go through a ``dispatch`` function (to a GUI's thread)."""
        return self._dispatch is not None

    def submit_nowait(self, function: Callable[[], None]) -> None:
        """Schedule ``function`` without waiting, for callbacks that must never be held back."""
        with self._lock:
            self._pending += 1
        self._hand_over(function)

    def _hand_over(self, function: Callable[[], None]) -> None:
        # The loop thread's whole part: a queue append, which never blocks.
        with self._thread_lock:
            work = self._queue
            if work is None or self._thread is None:
                work = self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._work, args=(work,), name=self._name, daemon=True
                )
                self._thread.start()
        work.put(function)

    def _run(self, function: Callable[[], None]) -> None:
        try:
            function()
        except Exception:
            self._logger.exception("an alvaro.sync callback raised")
        finally:
            self._consumed()

    def _work(self, work: queue.SimpleQueue[Callable[[], None] | None]) -> None:
        dispatch = self._dispatch
        while True:
            function = work.get()
            if function is None:
                return
            if dispatch is None:
                self._run(function)
                continue
            try:
                dispatch(_Handed(self, function))
            except Exception:
                # Typically the GUI is gone (its window destroyed, its main loop ended): the
                # callback can never run. Say so once, and count it as done so that the loop is
                # not held back waiting for it.
                if not self._dispatch_failed:
                    self._dispatch_failed = True
                    self._logger.warning(
                        "the dispatch function raised; callbacks it refuses are dropped",
                        exc_info=True,
                    )
                self._consumed()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the dispatcher's thread once it has handed over the callbacks already scheduled.

        Without ``dispatch``, waits (up to ``timeout``) until they have run, unless called from
        the dispatcher's own thread (inside a callback). With ``dispatch`` it never waits: the
        caller is often the very GUI thread that would run them, which cannot run them while
        it waits here; they run once it gets back to its event loop.
        """
        with self._thread_lock:
            thread, self._thread = self._thread, None
            work, self._queue = self._queue, None
        if thread is None or work is None:
            return
        work.put(None)
        if self._dispatch is None and thread is not threading.current_thread():
            thread.join(timeout)


class _Handed:
    """A callback handed to a ``dispatch`` function: call it to run it, or :meth:`drop` it."""

    __slots__ = ("_dispatcher", "_function")

    def __init__(self, dispatcher: Dispatcher, function: Callable[[], None]) -> None:
        self._dispatcher = dispatcher
        self._function = function

    def __call__(self) -> None:
        self._dispatcher._run(self._function)

    def drop(self) -> None:
        """Say that this callback will never run (the GUI is gone): it no longer holds the
        loop back."""
        self._dispatcher._consumed()


class Inbox(_Bounded):
    """Messages waiting for a blocking ``receive()``; the reader waits when ``limit`` are queued."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self._queue: queue.SimpleQueue[Message | ConnectionClosed] = queue.SimpleQueue()

    async def put(self, message: Message, give_up: Callable[[], bool] | None = None) -> None:
        """Loop side: queue a message; then wait while more than ``limit`` are not taken,
        unless ``give_up()`` turns true."""
        self._count()
        self._queue.put(message)
        await self._wait_for_room(give_up)

    def close(self, error: ConnectionClosed) -> None:
        """No more messages will come: once the queued ones are taken, ``get`` raises ``error``."""
        self._queue.put(error)

    def get(self, timeout: float | None) -> Message:
        """Thread side: the next message, waiting up to ``timeout`` (None: forever, 0: poll).

        Raises:
            TimeoutError: no message within ``timeout``.
            ConnectionClosed: the connection closed and every message was taken.
        """
        try:
            if timeout is not None and timeout <= 0:
                item = self._queue.get_nowait()
            else:
                item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no message within {timeout:g} s") from None
        if isinstance(item, BaseException):
            self._queue.put(item)  # every later receive() raises too
            raise item
        self._consumed()
        return item
